"""Prometheus metrics for the broker (the `*_probe` of Redpanda's vocabulary).

One registry per Broker so several brokers in one test process don't collide; the admin
HTTP server renders it (plus the tiered-storage collectors) at /metrics."""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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
        # Rendered after self.registry at /metrics. The process-wide default registry holds
        # the process_* / python_* collectors (and anything OpenTelemetry's Prometheus
        # exporter registers there).
        self._extra_registries: list[CollectorRegistry] = [REGISTRY]

    # -- hooks for other subsystems (tiered storage, shadow indexing, ...) -------------------

    def add_collector(self, collector: Collector) -> None:
        """Register a collector (its metrics appear at /metrics). Metric names must be unique
        across everything registered; prefix them (shoal_tiered_..., shoal_remote_read_...)."""
        self.registry.register(collector)

    def remove_collector(self, collector: Collector) -> None:
        self.registry.unregister(collector)

    def add_registry(self, registry: CollectorRegistry) -> None:
        """Render a whole registry of its own at /metrics too (once, however often added)."""
        if all(existing is not registry for existing in self._extra_registries):
            self._extra_registries.append(registry)

    def render(self) -> bytes:
        """Prometheus text exposition of every registry."""
        return b"".join(generate_latest(registry) for registry in (self.registry, *self._extra_registries))


class BrokerStateCollector:
    """Gauges read from the broker when /metrics is scraped: topics, per-partition offsets
    and local sizes, and the local log's counters (broker.storage LogProbe totals)."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def collect(self) -> Iterable[Any]:
        broker = self._broker
        if broker.topics is None:
            return
        topics = broker.topics.topics()
        yield _gauge("shoal_topics", "Topics in the topic table", len(topics))
        yield from self._partition_gauges(topics)
        if broker.logs is not None and hasattr(broker.logs, "probe_totals"):
            yield from _log_counters(broker.logs.probe_totals())

    def _partition_gauges(self, topics: list[Any]) -> Iterable[Any]:
        labels = ["topic", "partition"]
        start = GaugeMetricFamily("shoal_partition_log_start_offset", "First offset held locally", labels=labels)
        end = GaugeMetricFamily("shoal_partition_log_end_offset", "Next offset to be assigned", labels=labels)
        high_watermark = GaugeMetricFamily("shoal_partition_high_watermark", "Last durable offset + 1",
                                           labels=labels)
        size = GaugeMetricFamily("shoal_partition_local_size_bytes", "Bytes of the partition's local segments",
                                 labels=labels)
        for topic in topics:
            for partition in range(topic.partitions):
                partition_log = self._broker.partition_log(topic.name, partition)
                if partition_log is None:
                    continue
                label_values = [topic.name, str(partition)]
                start.add_metric(label_values, int(partition_log.log_start_offset))
                end.add_metric(label_values, int(partition_log.log_end_offset))
                high_watermark.add_metric(label_values, int(partition_log.high_watermark))
                size.add_metric(label_values, sum(segment.size_bytes for segment in partition_log.segments()))
        yield from (start, end, high_watermark, size)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _log_counters(totals: Any) -> Iterable[Any]:
    """Every integer field of the storage LogProbe as shoal_log_<field>_total."""
    for name, value in vars(totals).items():
        if isinstance(value, int):
            yield CounterMetricFamily(f"shoal_log_{name}", f"Local log: {name.replace('_', ' ')} (all partitions)",
                                      value=value)
