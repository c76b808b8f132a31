"""End to end: real `shoal start` processes, real Kafka clients (confluent-kafka), a real S3
endpoint (moto_server) or the local backend.

Tiny segments and a small local retention push the history into the bucket; a fresh
consumer from earliest must read every message with its original offset and timestamp."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from broker.protocol.kio_build import build
from tests.support import REPO, SHOAL, BrokerProcess
from tests.tiered_support import FailingS3Proxy, frozen_safe_moto, moto_s3  # noqa: F401  (fixtures)
from tests.wire_client import WireClient, request_class
from tiered.manifest import PartitionManifest

LIST_OFFSETS = 2
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


def produce(broker: BrokerProcess, topic: str, count: int, value_bytes: int, partitions: int = 1,
            base_time_ms: int | None = None) -> dict:
    """Produce `count` messages, message i with timestamp base_time_ms + i (default: an hour
    ago); returns {(partition, offset): (timestamp_ms, value)} from delivery reports."""
    delivered: dict = {}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all",
                         "compression.type": "none", "batch.size": 16384})

    def on_delivery(error, message):
        assert error is None, error
        delivered[(message.partition(), message.offset())] = (message.timestamp()[1], message.value())

    base_time = int(time.time() * 1000) - 3_600_000 if base_time_ms is None else base_time_ms
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
        produced = produce(broker, "history", 20_000, 1024, partitions=2)  # ~20 MiB
        status = wait_archived(broker, "history", 2)
        time.sleep(2.5)  # two housekeeping ticks: local retention drops archived segments
        # (their files linger limits.segment_delete_delay_ms for in-flight reads, so the
        # bound is checked on the log's own accounting)
        after_retention = [entry for entry in admin_json(broker, "/v1/tiered/status")["partitions"]
                           if entry["topic"] == "history"]
        for entry in after_retention:
            assert entry["bytes_local"] <= LOCAL_RETENTION_BYTES + 2 * SEGMENT_BYTES
            assert entry["local_start_offset"] > 0
        assert sum(entry["bytes_remote"] for entry in status) > 20_000 * 1024
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


def list_offsets_by_timestamp(broker: BrokerProcess, topic: str, timestamps: dict[int, int]) -> dict:
    """{partition: (error_code, offset)} from one ListOffsets v7 request (raw wire client:
    real clients retry KAFKA_STORAGE_ERROR themselves, and the test wants to see it)."""
    version = 7
    partition_class = request_class(LIST_OFFSETS, version, "ListOffsetsPartition")
    topic_class = request_class(LIST_OFFSETS, version, "ListOffsetsTopic")
    request = build(request_class(LIST_OFFSETS, version), replica_id=-1, isolation_level=0, topics=(
        build(topic_class, name=topic, partitions=tuple(
            build(partition_class, partition_index=partition, timestamp=timestamp, current_leader_epoch=-1,
                  max_num_offsets=1) for partition, timestamp in timestamps.items())),))
    with WireClient(broker.kafka_port, timeout_s=40) as client:
        response = client.call(request)
    return {entry.partition_index: (entry.error_code, entry.offset) for entry in response.topics[0].partitions}


class OutageProducer:
    """Produces ~1 KiB messages to both partitions as fast as one loop turn allows, timing
    each from produce() to its delivery report, and samples the tiered status meanwhile."""

    def __init__(self, broker: BrokerProcess, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all"})
        self.latencies: list[float] = []
        self.delivered: dict = {}
        self.sent = 0
        self.status_samples: list[dict] = []

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        next_sample = 0.0
        while time.monotonic() < deadline:
            sent_at = time.monotonic()
            value = f"outage-{self.sent:08d}:".encode() + b"o" * 1000
            self.producer.produce(self.topic, value=value, partition=self.sent % 2,
                                  on_delivery=lambda error, message, sent_at=sent_at: self._delivered(
                                      error, message, sent_at))
            self.sent += 1
            self.producer.poll(0.01)
            if time.monotonic() >= next_sample:
                next_sample = time.monotonic() + 1.0
                self.status_samples.extend(tiered_status(self.broker, self.topic))

    def _delivered(self, error, message, sent_at: float) -> None:
        self.latencies.append(time.monotonic() - sent_at if error is None else float("inf"))
        if error is None:
            self.delivered[(message.partition(), message.offset())] = (message.timestamp()[1], message.value())

    def finish(self) -> None:
        assert self.producer.flush(30) == 0


def tiered_status(broker: BrokerProcess, topic: str) -> list[dict]:
    return [entry for entry in admin_json(broker, "/v1/tiered/status")["partitions"] if entry["topic"] == topic]


def outage_scenario(tmp_path: Path, server, frozen_seconds: float, failing_seconds: float) -> None:
    """The S3 endpoint frozen (SIGSTOP), then failing (503 to every request): producers
    never stall, no unarchived segment is deleted, a cold-tier ListOffsets answers
    KAFKA_STORAGE_ERROR for that partition only and in bounded time, archiving catches up
    and every message reads back."""
    bucket = server.new_bucket()
    proxy = FailingS3Proxy(server.port).start()
    cloud = dict(server.yaml_section(bucket, upload_interval="1s", chunk_size="64KiB"), endpoint=proxy.endpoint)
    broker = start_broker(tmp_path / "node", cloud)
    try:
        create_topic(broker, "outage", partitions=2)
        history = produce(broker, "outage", 1200, 1024, partitions=2)  # ~600 KiB per partition
        wait_archived(broker, "outage", 2)
        wait_for(lambda: all(entry["local_start_offset"] > 20 for entry in tiered_status(broker, "outage")),
                 "local retention never dropped the archived history")
        old_timestamp = history[(0, 5)][0]  # only in the bucket, never read: nothing cached
        outage_began_ms = int(time.time() * 1000)
        writer = OutageProducer(broker, "outage")
        lookup: dict = {}
        server.freeze()
        try:
            lookup_thread = threading.Thread(target=lambda: lookup.update(timed(
                list_offsets_by_timestamp, broker, "outage", {0: old_timestamp, 1: outage_began_ms})))
            lookup_thread.start()
            writer.run_for(frozen_seconds)
            lookup_thread.join(timeout=30)
        finally:
            server.thaw()
        proxy.fail()
        try:
            writer.run_for(failing_seconds)
        finally:
            proxy.recover()
        writer.finish()
        during = tiered_status(broker, "outage")
        print(f"outage: {writer.sent} messages, slowest produce {max(writer.latencies):.3f}s, "
              f"ListOffsets answered in {lookup.get('seconds', -1):.1f}s, 503s sent {proxy.failures_sent}, "
              f"local bytes {[entry['bytes_local'] for entry in during]}")
        assert lookup["result"][0][0] == ErrorCode.kafka_storage_error, lookup
        assert lookup["result"][1][0] == ErrorCode.none and lookup["result"][1][1] >= history_end(history, 1), lookup
        assert lookup["seconds"] < 20, f"ListOffsets waited {lookup['seconds']:.1f}s on the frozen bucket"
        assert proxy.failures_sent > 0
        assert len(writer.latencies) == writer.sent and max(writer.latencies) < 5.0, \
            f"producers stalled: {max(writer.latencies):.2f}s"
        for sample in writer.status_samples:  # local never ran ahead of the bucket
            assert sample["local_start_offset"] <= sample["archived_offset"] + 1, sample
        assert all(entry["bytes_local"] > 4 * LOCAL_RETENTION_BYTES for entry in during)  # local grew instead
        wait_archived(broker, "outage", 2, timeout_s=90)
        after = list_offsets_by_timestamp(broker, "outage", {0: old_timestamp})
        assert after[0] == (ErrorCode.none, 5)
        produced = {**history, **writer.delivered}
        consumed = consume_all(broker, "outage", len(produced))
        assert consumed == produced
    finally:
        broker.stop()
        broker.kill()
        proxy.stop()


def history_end(delivered: dict, partition: int) -> int:
    return max(offset for (each, offset) in delivered if each == partition) + 1


def timed(function, *arguments) -> dict:
    started = time.monotonic()
    return {"result": function(*arguments), "seconds": time.monotonic() - started}


def wait_for(condition, message: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.3)


def test_s3_frozen_then_failing_never_stalls_producers_nor_loses_data(tmp_path, frozen_safe_moto):
    outage_scenario(tmp_path, frozen_safe_moto, frozen_seconds=20, failing_seconds=10)


@pytest.mark.soak
def test_s3_frozen_and_failing_for_a_minute_and_a_half(tmp_path, frozen_safe_moto):
    outage_scenario(tmp_path, frozen_safe_moto, frozen_seconds=60, failing_seconds=30)


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
