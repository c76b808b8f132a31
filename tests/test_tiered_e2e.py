"""End to end: real `shoal start` processes, real Kafka clients (confluent-kafka), a real S3
endpoint (moto_server) or the local backend.

Tiny segments and a small local retention push the history into the bucket; a fresh
consumer from earliest must read every message with its original offset and timestamp."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support import REPO, SHOAL, BrokerProcess
from tests.tiered_support import frozen_safe_moto, moto_s3  # noqa: F401  (fixtures)
from tiered.manifest import PartitionManifest

SEGMENT_BYTES = 64 * 1024
LOCAL_RETENTION_BYTES = 128 * 1024
TOPIC_CONFIGS = {"segment.bytes": str(SEGMENT_BYTES), "local.retention.bytes": str(LOCAL_RETENTION_BYTES),
                 "remote.storage.enable": "true"}


def cloud_section(kind: str, tmp_path: Path, request) -> dict:
    common = {"upload_interval": "1s", "chunk_size": "256KiB", "cache_size": "64MiB"}
    if kind == "local":
        return {"url": f"file://{tmp_path / 'bucket'}", **common}
    server = request.getfixturevalue("moto_s3")
    return server.yaml_section(server.new_bucket(), **common)


def start_broker(data_dir: Path, cloud: dict) -> BrokerProcess:
    return BrokerProcess(data_dir, {"cloud_storage": cloud}).start()


def admin_json(broker: BrokerProcess, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}{path}", timeout=5) as response:
        return json.loads(response.read())


def create_topic(broker: BrokerProcess, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=configs or TOPIC_CONFIGS)])
    futures[name].result(timeout=20)


def produce(broker: BrokerProcess, topic: str, count: int, value_bytes: int, partitions: int = 1) -> dict:
    """Produce `count` messages; returns {(partition, offset): (timestamp_ms, value)} from delivery reports."""
    delivered: dict = {}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all",
                         "compression.type": "none", "batch.size": 16384})

    def on_delivery(error, message):
        assert error is None, error
        delivered[(message.partition(), message.offset())] = (message.timestamp()[1], message.value())

    base_time = int(time.time() * 1000) - 3_600_000
    for index in range(count):
        value = f"{index:08d}:".encode() + bytes([65 + index % 26]) * (value_bytes - 9)
        producer.produce(topic, value=value, partition=index % partitions, timestamp=base_time + index,
                         on_delivery=on_delivery)
        if index % 500 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert len(delivered) == count
    return delivered


def consume_all(broker: BrokerProcess, topic: str, expected: int, timeout_s: float = 90) -> dict:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 4 * 1024 * 1024})
    consumer.subscribe([topic])
    seen: dict = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                key = (message.partition(), message.offset())
                assert key not in seen, f"duplicate {key}"
                seen[key] = (message.timestamp()[1], message.value())
    finally:
        consumer.close()
    return seen


def wait_archived(broker: BrokerProcess, topic: str, partitions: int, timeout_s: float = 60) -> list[dict]:
    """Until every partition's data below the active segment is in the bucket."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = [entry for entry in admin_json(broker, "/v1/tiered/status")["partitions"] if entry["topic"] == topic]
        done = len(status) == partitions and all(
            entry["archived_offset"] == entry["high_watermark"] - 1 for entry in status)
        if done:
            return status
        assert time.monotonic() < deadline, f"not archived in {timeout_s}s: {status}"
        time.sleep(0.3)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_history_lives_in_the_bucket_and_reads_back_exactly(tmp_path, kind, request):
    cloud = cloud_section(kind, tmp_path, request)
    broker = start_broker(tmp_path / "node", cloud)
    try:
        create_topic(broker, "history", partitions=2)
        produced = produce(broker, "history", 12_000, 500, partitions=2)  # ~6 MB
        status = wait_archived(broker, "history", 2)
        time.sleep(2.5)  # two housekeeping ticks: local retention drops archived segments
        # (their files linger limits.segment_delete_delay_ms for in-flight reads, so the
        # bound is checked on the log's own accounting)
        after_retention = [entry for entry in admin_json(broker, "/v1/tiered/status")["partitions"]
                           if entry["topic"] == "history"]
        for entry in after_retention:
            assert entry["bytes_local"] <= LOCAL_RETENTION_BYTES + 2 * SEGMENT_BYTES
            assert entry["local_start_offset"] > 0
        assert sum(entry["bytes_remote"] for entry in status) > 5_000_000
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
        assert consumer.get_watermark_offsets(TopicPartition("history", 0), timeout=10)[0] == 0
        consumer.close()
        consumed = consume_all(broker, "history", len(produced))
        assert consumed == produced
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/metrics", timeout=5).read().decode()
        assert "shoal_tiered_upload_lag_bytes" in metrics and "shoal_cloud_cache_misses_total" in metrics
    finally:
        broker.stop()
        broker.kill()


def test_kill_during_uploads_loses_and_duplicates_nothing(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    cloud = moto_s3.yaml_section(bucket, upload_interval="1s")
    broker = start_broker(tmp_path / "node", cloud)
    try:
        create_topic(broker, "crash")
        produced = produce(broker, "crash", 6000, 500)
        time.sleep(0.4)  # uploads in flight
        broker.kill()
        broker.start()
        wait_archived(broker, "crash", 1)
        consumed = consume_all(broker, "crash", len(produced))
        assert consumed == produced
    finally:
        broker.stop()
        broker.kill()
    client = moto_s3.client()
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    manifest_key = next(key for key in keys if key.endswith("/crash/0/manifest.json"))
    manifest = PartitionManifest.from_json(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    for earlier, later in zip(manifest.segments, manifest.segments[1:]):
        assert later.base_offset == earlier.last_offset + 1, "gap or overlap in the manifest"
    data_objects = {key.split("/", 1)[1] for key in keys if key.endswith(".log")}
    assert data_objects == {segment.data_key for segment in manifest.segments}  # no duplicate, no orphan


def test_recovery_into_an_empty_node(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    cloud = moto_s3.yaml_section(bucket, upload_interval="1s")
    first = start_broker(tmp_path / "first", cloud)
    try:
        create_topic(first, "restored", partitions=2)
        produced = produce(first, "restored", 4000, 400, partitions=2)
        wait_archived(first, "restored", 2)
    finally:
        first.stop()
        first.kill()
    second = start_broker(tmp_path / "second", cloud)
    try:
        assert admin_json(second, "/v1/tiered/remote-topic?name=restored")["partition_count"] == 2
        admin_url = f"http://127.0.0.1:{second.admin_port}"
        recovered = run_cli(second, "topic", "recover", "restored", "--admin", admin_url,
                            *[argument for name, value in TOPIC_CONFIGS.items() for argument in ("-c", f"{name}={value}")])
        assert "recovering 'restored' (2 partitions)" in recovered
        assert "partition 0: offsets 0..1999 readable (1/2 done)" in recovered
        assert "partition 1: offsets 0..1999 readable (2/2 done)" in recovered
        consumed = consume_all(second, "restored", len(produced))
        assert consumed == produced
        more = produce(second, "restored", 100, 100, partitions=2)
        assert min(offset for (_, offset) in more) > 0
        assert all(offset >= 2000 for (_, offset) in more)
        status = run_cli(second, "tier", "status", "--admin", admin_url)
        assert "restored" in status and "LAG-BYTES" in status
        document = json.loads(run_cli(second, "tier", "status", "--admin", admin_url, "--format", "json"))
        assert {entry["partition"] for entry in document["partitions"] if entry["topic"] == "restored"} == {0, 1}
    finally:
        second.stop()
        second.kill()


def run_cli(broker: BrokerProcess, *arguments: str) -> str:
    completed = subprocess.run(SHOAL + list(arguments) + ["-b", broker.bootstrap], cwd=REPO,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def produce_through_freeze(tmp_path, server, freeze_seconds: float) -> None:
    """Producers keep going while the S3 endpoint is frozen; nothing is lost; archiving
    catches up after it thaws."""
    bucket = server.new_bucket()
    cloud = server.yaml_section(bucket, upload_interval="1s")
    broker = start_broker(tmp_path / "node", cloud)
    try:
        create_topic(broker, "outage")
        produced = produce(broker, "outage", 1500, 500)
        wait_archived(broker, "outage", 1)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all"})
        latencies: list[float] = []
        server.freeze()
        try:
            deadline = time.monotonic() + freeze_seconds
            index = 0
            while time.monotonic() < deadline:
                sent = time.monotonic()
                producer.produce("outage", value=f"during-{index}".encode() + b"x" * 500,
                                 on_delivery=lambda error, message, sent=sent: latencies.append(
                                     time.monotonic() - sent if error is None else float("inf")))
                producer.poll(0.01)
                index += 1
            assert producer.flush(30) == 0
            status = [entry for entry in admin_json(broker, "/v1/tiered/status")["partitions"]
                      if entry["topic"] == "outage"][0]
            assert status["upload_lag_bytes"] > 0 and status["archived_offset"] < status["high_watermark"] - 1
        finally:
            server.thaw()
        # S3 calls have a 30 s deadline: a producer waiting on the bucket would show it
        assert len(latencies) == index and max(latencies) < 5.0, f"producers stalled: {max(latencies):.2f}s"
        wait_archived(broker, "outage", 1, timeout_s=90)
        total = len(produced) + index
        consumed = consume_all(broker, "outage", total)
        assert len(consumed) == total
        assert sorted(offset for (_, offset) in consumed) == list(range(total))
    finally:
        broker.stop()
        broker.kill()


def test_frozen_s3_never_stalls_producers(tmp_path, frozen_safe_moto):
    produce_through_freeze(tmp_path, frozen_safe_moto, freeze_seconds=6)


@pytest.mark.soak
def test_frozen_s3_for_tens_of_seconds(tmp_path, frozen_safe_moto):
    produce_through_freeze(tmp_path, frozen_safe_moto, freeze_seconds=40)


def test_deleted_topic_takes_its_history_and_a_new_one_starts_fresh(tmp_path, request):
    broker = start_broker(tmp_path / "node", cloud_section("local", tmp_path, request))
    try:
        create_topic(broker, "reused")
        produce(broker, "reused", 2000, 300)
        wait_archived(broker, "reused", 1)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.delete_topics(["reused"])["reused"].result(timeout=20)
        deadline = time.monotonic() + 20
        while any(path.is_file() for path in (tmp_path / "bucket").rglob("*") if "reused" in str(path)):
            assert time.monotonic() < deadline, "bucket data of the deleted topic is still there"
            time.sleep(0.2)
        for _ in range(50):  # metadata of the deletion reaches the client
            try:
                create_topic(broker, "reused")
                break
            except Exception:
                time.sleep(0.2)
        fresh = produce(broker, "reused", 300, 300)
        assert sorted(offset for (_, offset) in fresh) == list(range(300))
        wait_archived(broker, "reused", 1)
        assert consume_all(broker, "reused", 300) == fresh
    finally:
        broker.stop()
        broker.kill()
