"""Prometheus metrics for the broker (the `*_probe` of Redpanda's vocabulary).

One registry per Broker so several brokers in one test process don't collide; the admin
HTTP server renders it (plus the tiered-storage collectors) at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class BrokerProbe:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shoal_kafka_requests", "Kafka requests handled", ["api"], registry=self.registry)
        self.request_errors = Counter(
            "shoal_kafka_request_failures", "Kafka requests that failed inside the broker (connection closed)",
            ["api"], registry=self.registry)
        self.request_latency = Histogram(
            "shoal_kafka_request_latency_seconds", "Time from request decoded to response ready",
            ["api"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.bytes_received = Counter(
            "shoal_kafka_received_bytes", "Bytes received on Kafka connections", registry=self.registry)
        self.bytes_sent = Counter(
            "shoal_kafka_sent_bytes", "Bytes sent on Kafka connections", registry=self.registry)
        self.produce_bytes = Counter(
            "shoal_produce_bytes", "Record-batch bytes appended", ["topic"], registry=self.registry)
        self.fetch_bytes = Counter(
            "shoal_fetch_bytes", "Record-batch bytes served to fetchers", ["topic"], registry=self.registry)
        self.connections = Gauge(
            "shoal_kafka_connections", "Open Kafka connections", registry=self.registry)
        self.malformed_frames = Counter(
            "shoal_kafka_malformed_frames", "Connections closed for malformed input", registry=self.registry)
        self.partitions = Gauge(
            "shoal_partitions", "Partitions hosted by this node", registry=self.registry)
        self.under_replicated_partitions = Gauge(
            "shoal_under_replicated_partitions",
            "Partitions with fewer in-sync replicas than their replication factor", registry=self.registry)
