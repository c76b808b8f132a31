"""The admin HTTP API of a real broker process, read with urllib: readiness, Prometheus
metrics, JSON for brokers, cluster, topics and partitions, and JSON 4xx errors."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from confluent_kafka import Producer

from broker.admin_http import AdminHttpServer
from broker.app import Broker
from broker.config import build_config
from tests.admin_support import http_get
from tests.support import create_topic, module_broker

MESSAGES = 5


node = module_broker("admin-http", cloud_storage=None, log={"segment_bytes": "64KiB"})


@pytest.fixture(scope="module")
def topic_with_data(node):
    """A 2-partition topic with MESSAGES records in partition 0."""
    name = "http-orders"
    create_topic(node.bootstrap, name, 2, config={"retention.ms": "3600000"})
    producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 0})
    for index in range(MESSAGES):
        producer.produce(name, value=f"order-{index}".encode(), partition=0)
    assert producer.flush(10) == 0
    return name


def test_ready(node):
    status, content_type, body = http_get(node.admin_port, "/v1/status/ready")
    assert (status, body) == (200, {"status": "ready"})
    assert content_type.startswith("application/json")


def test_brokers_and_cluster(node):
    status, _, brokers = http_get(node.admin_port, "/v1/brokers")
    assert status == 200
    assert [(b["node_id"], b["kafka_host"], b["kafka_port"], b["admin_port"]) for b in brokers] == [
        (0, "127.0.0.1", node.kafka_port, node.admin_port)]
    status, _, cluster = http_get(node.admin_port, "/v1/cluster")
    assert status == 200
    assert cluster["cluster_id"] and cluster["controller_id"] == 0
    assert cluster["under_replicated_partitions"] == 0 and cluster["ready"] is True


def test_topics_and_partitions(node, topic_with_data):
    status, _, topics = http_get(node.admin_port, "/v1/topics")
    assert status == 200
    (listed,) = [topic for topic in topics if topic["name"] == topic_with_data]
    assert (listed["partition_count"], listed["replication_factor"], listed["internal"]) == (2, 1, False)
    status, _, detail = http_get(node.admin_port, f"/v1/topics/{topic_with_data}")
    assert status == 200 and detail["topic_id"] == listed["topic_id"]
    first, second = detail["partitions"]
    assert (first["log_start_offset"], first["log_end_offset"], first["high_watermark"]) == (0, MESSAGES, MESSAGES)
    assert first["local_size_bytes"] > 0 and first["leader"] == 0 and first["isr"] == [0]
    assert (second["log_end_offset"], second["high_watermark"]) == (0, 0)
    assert detail["configs"]["retention.ms"] == {"value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"}
    assert detail["configs"]["cleanup.policy"]["source"] == "DEFAULT_CONFIG"


def test_metrics_are_prometheus_text(node, topic_with_data):
    status, content_type, text = http_get(node.admin_port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = _samples(text)
    assert samples['shoal_kafka_requests_total{api="produce"}'] >= 1
    assert 'shoal_kafka_request_latency_seconds_count{api="create_topics"}' in samples
    assert samples["shoal_kafka_received_bytes_total"] > 0 and samples["shoal_kafka_sent_bytes_total"] > 0
    assert samples["shoal_under_replicated_partitions"] == 0
    assert samples["shoal_partitions"] >= 2
    assert samples[f'shoal_partition_high_watermark{{partition="0",topic="{topic_with_data}"}}'] == MESSAGES
    assert "shoal_kafka_connections" in samples and "process_cpu_seconds_total" in samples


def test_errors_are_json(node):
    for path, method, expected_status in [
        ("/v1/topics/no-such-topic", "GET", 404),
        ("/v1/no/such/endpoint", "GET", 404),
        ("/v1/topics", "POST", 405),
        ("/v1/status/ready", "DELETE", 405),
    ]:
        status, content_type, body = http_get(node.admin_port, path, method)
        assert status == expected_status, path
        assert content_type.startswith("application/json") and body["status"] == expected_status
        assert body["error"]


def test_garbage_does_not_break_the_admin_api(node):
    for garbage in (b"\x00\xff garbage\r\n\r\n", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/9\r\n"):
        with socket.create_connection(("127.0.0.1", node.admin_port), timeout=5) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            reply = _read_all(sock)
        assert reply == b"" or reply.startswith(b"HTTP/1.") and b" 4" in reply.split(b"\r\n", 1)[0]
    assert http_get(node.admin_port, "/v1/status/ready")[0] == 200


def test_ready_only_once_listener_and_logs_are_up(tmp_path):
    """In process: before Broker.start() the admin API answers 503 naming what it waits
    for; after start 200; after stop the port is closed."""
    async def scenario() -> None:
        config = build_config({"data_dir": str(tmp_path / "data"), "cloud_storage": None,
                               "kafka_api": {"listen": "127.0.0.1:0"}, "admin_api": {"listen": "127.0.0.1:0"}})
        broker = Broker(config)
        early = AdminHttpServer(broker)
        early_port = await early.start("127.0.0.1", 0)
        status, _, body = await asyncio.to_thread(http_get, early_port, "/v1/status/ready")
        assert (status, body["waiting_for"]) == (503, ["kafka_listener", "logs"])
        assert (await asyncio.to_thread(http_get, early_port, "/v1/topics"))[0] == 503
        await early.stop()
        await broker.start()
        try:
            assert (await asyncio.to_thread(http_get, broker.admin_port, "/v1/status/ready"))[0] == 200
        finally:
            await broker.stop()
        with pytest.raises(OSError):
            await asyncio.to_thread(http_get, broker.admin_port, "/v1/status/ready")

    asyncio.run(scenario())


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data
