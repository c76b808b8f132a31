"""Real clients validating their position after a leader change that lost data (KIP-320),
through OffsetForLeaderEpoch: confluent-kafka (librdkafka, v2), kafka-python (v4) and the
Java client (v3+; skipped without a JDK).

What a failover does to a partition, made on one node while it is stopped: offsets 0-4
were written in epoch 0 and read by consumers; the new leader had only 0-2, so the log is
cut back to 3 (`PartitionLog.truncate_to`, what a follower does on divergence), the
partition's epoch becomes 2 in the topic table, and 3-6 are written again in epoch 2.

- A consumer that read 0-4 and kept running (librdkafka; kafka-python) is fenced, refreshes
  its metadata, sees epoch 2 and validates offset 5 of epoch 0: epoch 0 ends at 3, so it
  seeks back to 3 and reads 3-6 of epoch 2 (without KIP-320 it would read 5-6 and never
  see 3-4; an answer of (-1, -1) would reset it to the earliest offset).
- Groups that committed with leader epoch 0, at 3 (`resume-*`) or at 5 (`diverged-*`),
  resume from there. The Java client validates a committed position too: both groups read
  3-6. librdkafka 2.16 and kafka-python 3.0 validate only on a leader change seen while
  consuming, not a committed position (their `diverged-*` group would read 5-6, the
  broker is never asked), so only their `resume-*` groups are checked: they read 3-6."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from broker.ids import Offset
from tests.java import client_jars
from tests.storage_support import log_config, open_log
from tests.support import create_topic, running_broker
from tests.test_protocol_leader_epoch import set_leader_epoch

TOPIC = "validated"
READ_BEFORE_FAILOVER = 5  # offsets 0-4 of epoch 0
KEPT_BY_NEW_LEADER = 3  # offsets 0-2 survive
WRITTEN_AFTER = 4  # offsets 3-6 of epoch 2
NEW_EPOCH = 2
CONSUME_DEADLINE_S = 30
JAVA_SOURCE = Path(__file__).resolve().parent / "java" / "src" / "ShoalLeaderEpochCheck.java"
JAVA_RUN_TIMEOUT_S = 120

pytestmark = pytest.mark.timeout(300)

EXPECTED = [(offset, NEW_EPOCH) for offset in range(KEPT_BY_NEW_LEADER, KEPT_BY_NEW_LEADER + WRITTEN_AFTER)]


def produce_one_batch_each(bootstrap: str, count: int, tag: str) -> None:
    """`count` records, each flushed alone (one batch each: truncation cuts whole batches)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False})
    for index in range(count):
        producer.produce(TOPIC, value=f"{tag}-{index}".encode())
        assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, offset: int, leader_epoch: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(TOPIC, 0, offset, leader_epoch=leader_epoch)], asynchronous=False)
        committed = consumer.committed([TopicPartition(TOPIC, 0)], timeout=10)[0]
        assert (committed.offset, committed.leader_epoch) == (offset, leader_epoch)
    finally:
        consumer.close()


def truncate_log(data_dir: Path, end_offset: int) -> None:
    """Cut the stopped node's log of TOPIC-0 back to `end_offset`, as a follower does."""
    async def truncate() -> None:
        partition_log = await open_log(data_dir / "topics" / TOPIC / "0", log_config(external_commit=True))
        try:
            assert await partition_log.truncate_to(Offset(end_offset)) == end_offset
        finally:
            await partition_log.close()

    asyncio.run(truncate())


def poll_confluent(consumer: Consumer, count: int) -> list[tuple[int, int]]:
    received = []
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    while len(received) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        received.append((message.offset(), message.leader_epoch()))
    return received


def poll_kafka_python(consumer, count: int) -> list[tuple[int, int]]:
    received = []
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    while len(received) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received += [(record.offset, record.leader_epoch) for record in records]
    return received


def live_consumers(bootstrap: str) -> dict:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPythonPartition

    confluent = Consumer({"bootstrap.servers": bootstrap, "group.id": "live-confluent", "enable.auto.commit": False,
                          "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
    confluent.assign([TopicPartition(TOPIC, 0, 0)])
    kafka_python = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", metadata_max_age_ms=1000)
    kafka_python.assign([KafkaPythonPartition(TOPIC, 0)])
    first_epoch = [(offset, 0) for offset in range(READ_BEFORE_FAILOVER)]
    assert poll_confluent(confluent, READ_BEFORE_FAILOVER) == first_epoch
    assert poll_kafka_python(kafka_python, READ_BEFORE_FAILOVER) == first_epoch
    return {"confluent": confluent, "kafka-python": kafka_python}


@pytest.fixture(scope="module")
def failover(tmp_path_factory):
    """The node after the failover, and the consumers that were reading before it."""
    data_dir = tmp_path_factory.mktemp("clients-leader-epoch") / "node0"
    with running_broker(data_dir) as process:
        create_topic(process.bootstrap, TOPIC, 1)
        produce_one_batch_each(process.bootstrap, READ_BEFORE_FAILOVER, "lost")
        for client in ("confluent", "kafka-python", "java"):
            commit(process.bootstrap, f"resume-{client}", KEPT_BY_NEW_LEADER, 0)
        commit(process.bootstrap, "diverged-java", READ_BEFORE_FAILOVER, 0)
        consumers = live_consumers(process.bootstrap)
        try:
            assert process.stop() == 0
            truncate_log(data_dir, KEPT_BY_NEW_LEADER)
            set_leader_epoch(data_dir, TOPIC, NEW_EPOCH)
            process.start()
            produce_one_batch_each(process.bootstrap, WRITTEN_AFTER, "new")
            yield process, consumers
        finally:
            consumers["confluent"].close()
            consumers["kafka-python"].close()


def test_live_confluent_consumer_seeks_back_to_the_divergence(failover):
    _, consumers = failover
    assert poll_confluent(consumers["confluent"], len(EXPECTED)) == EXPECTED


def test_live_kafka_python_consumer_seeks_back_to_the_divergence(failover):
    _, consumers = failover
    assert poll_kafka_python(consumers["kafka-python"], len(EXPECTED)) == EXPECTED


def test_confluent_group_resumes_at_the_end_of_its_epoch(failover):
    process, _ = failover
    consumer = Consumer({"bootstrap.servers": process.bootstrap, "group.id": "resume-confluent",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([TOPIC])
    try:
        assert poll_confluent(consumer, len(EXPECTED)) == EXPECTED
    finally:
        consumer.close()


def test_kafka_python_group_resumes_at_the_end_of_its_epoch(failover):
    from kafka import KafkaConsumer

    process, _ = failover
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=process.bootstrap, group_id="resume-kafka-python",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        assert poll_kafka_python(consumer, len(EXPECTED)) == EXPECTED
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def java_classpath() -> str:
    try:
        return client_jars.ensure_client_jars().classpath
    except client_jars.ClientJarsUnavailable as reason:
        pytest.skip(f"Apache Kafka Java client not available here: {reason}")


@pytest.mark.parametrize("group", ["resume", "diverged"])
def test_java_group_validates_its_committed_position(failover, java_classpath, group):
    process, _ = failover
    command = ["java", "-cp", java_classpath, str(JAVA_SOURCE), process.bootstrap, TOPIC, f"{group}-java",
               str(len(EXPECTED))]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=JAVA_RUN_TIMEOUT_S)
    assert completed.returncode == 0, f"java client failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert [tuple(record) for record in summary["records"]] == EXPECTED
