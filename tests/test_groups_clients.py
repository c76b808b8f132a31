"""Consumer groups with real clients against a real `shoal start` process: a 3-member
confluent-kafka group rebalancing on join and leave (range and cooperative-sticky),
kafka-python and aiokafka groups committing and resuming, committed offsets surviving a
kill -9 of the broker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support import create_topic, wait_until

PARTITIONS = 6
WAIT_S = 30.0


def produce(bootstrap: str, topic: str, count: int, partitions: int) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = [f"message-{index}".encode() for index in range(count)]
    for index, value in enumerate(values):
        producer.produce(topic, value=value, key=str(index).encode(), partition=index % partitions)
    assert producer.flush(15) == 0
    return values


class PollingMember:
    """One confluent-kafka consumer polled by its own thread; `owned` is its current
    assignment as seen by that thread after each poll."""

    def __init__(self, bootstrap: str, group_id: str, topic: str, strategy: str, name: str) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group_id, "client.id": name,
            "partition.assignment.strategy": strategy, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500, "topic.metadata.refresh.interval.ms": 2000,
        })
        self.consumer.subscribe([topic])
        self.owned: frozenset[int] = frozenset()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.consumer.poll(0.1)
            if message is not None and message.error() is not None and not message.error().retriable():
                self.errors.append(str(message.error()))
            self.owned = frozenset(tp.partition for tp in self.consumer.assignment())

    def leave(self) -> None:
        """Stop polling and close: the consumer sends LeaveGroup."""
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def assignments_are_balanced(members: list[PollingMember]) -> bool:
    owned = [member.owned for member in members]
    union = frozenset().union(*owned)
    disjoint = sum(len(partitions) for partitions in owned) == len(union)
    even = max(map(len, owned)) - min(map(len, owned)) <= 1
    return union == frozenset(range(PARTITIONS)) and disjoint and even


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_three_members_rebalance_on_join_and_leave(broker, strategy):
    topic = f"rebalance-{strategy}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    members: list[PollingMember] = []
    try:
        for index in range(3):
            members.append(PollingMember(broker.bootstrap, f"group-{strategy}", topic, strategy, f"member{index}"))
            wait_until(lambda: assignments_are_balanced(members))
        assert sorted(len(member.owned) for member in members) == [2, 2, 2]
        members.pop().leave()
        wait_until(lambda: assignments_are_balanced(members))
        assert sorted(len(member.owned) for member in members) == [3, 3]
        members.pop(0).leave()
        wait_until(lambda: assignments_are_balanced(members))
        assert members[0].owned == frozenset(range(PARTITIONS))
        assert all(not member.errors for member in members), [member.errors for member in members]
    finally:
        for member in members:
            member.leave()


def confluent_consume(bootstrap: str, group_id: str, topic: str, count: int) -> list[bytes]:
    """Read `count` messages with a fresh group member, commit them synchronously, close."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(values) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count - len(values), timeout=0.5):
                assert message.error() is None, message.error()
                values.append(message.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def test_committed_offsets_survive_kill_9(broker):
    topic = "survive-kill"
    create_topic(broker.bootstrap, topic, 3)
    produced = produce(broker.bootstrap, topic, 30, 3)
    first = confluent_consume(broker.bootstrap, "survivors", topic, 12)
    assert len(first) == 12
    broker.kill()
    broker.start()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "survivors"})
    try:
        committed = consumer.committed([TopicPartition(topic, partition) for partition in range(3)], timeout=15)
    finally:
        consumer.close()
    # partitions the first member read nothing from have no commit (offset -1001)
    assert sum(max(tp.offset, 0) for tp in committed) == 12 and all(tp.error is None for tp in committed)
    rest = confluent_consume(broker.bootstrap, "survivors", topic, 18)
    assert sorted(first + rest) == sorted(produced)


def test_kafka_python_group_commits_and_resumes(broker):
    from kafka import KafkaConsumer

    topic = "kafka-python-resume"
    create_topic(broker.bootstrap, topic, 3)
    produced = produce(broker.bootstrap, topic, 24, 3)

    def consume(count: int) -> list[bytes]:
        consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="kafka-python-group",
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 session_timeout_ms=6000, heartbeat_interval_ms=500)
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(values) < count and time.monotonic() < deadline:
                batches = consumer.poll(timeout_ms=500, max_records=count - len(values))
                values.extend(record.value for records in batches.values() for record in records)
            consumer.commit()
        finally:
            consumer.close()
        return values

    first = consume(10)
    rest = consume(14)
    assert len(first) == 10 and sorted(first + rest) == sorted(produced)


def test_aiokafka_group_commits_and_resumes(broker):
    from aiokafka import AIOKafkaConsumer

    topic = "aiokafka-resume"
    create_topic(broker.bootstrap, topic, 3)
    produced = produce(broker.bootstrap, topic, 24, 3)

    async def consume(count: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="aiokafka-group",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=500)
        await consumer.start()
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(values) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=count - len(values))
                values.extend(record.value for records in batches.values() for record in records)
            await consumer.commit()
        finally:
            await consumer.stop()
        return values

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        return await consume(10), await consume(14)

    first, rest = asyncio.run(asyncio.wait_for(scenario(), timeout=90))
    assert len(first) == 10 and sorted(first + rest) == sorted(produced)


def test_a_live_member_keeps_its_membership_across_a_kill_9(broker):
    """Group metadata is durable too: after the broker restarts the group is Stable with the
    same member and generation, so the running consumer carries on without rejoining."""
    topic = "live-across-kill"
    create_topic(broker.bootstrap, topic, 2)
    produced = produce(broker.bootstrap, topic, 20, 2)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "steady", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 30000,
                         "heartbeat.interval.ms": 500, "reconnect.backoff.max.ms": 200})
    consumer.subscribe([topic])
    seen: list[bytes] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 20 and time.monotonic() < deadline:
            seen.extend(message.value() for message in consumer.consume(20 - len(seen), timeout=0.5)
                        if message.error() is None)
        consumer.commit(asynchronous=False)
        member_id = consumer.memberid()
        broker.kill()
        broker.start()
        more = produce(broker.bootstrap, topic, 10, 2)
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 30 and time.monotonic() < deadline:
            seen.extend(message.value() for message in consumer.consume(30 - len(seen), timeout=0.5)
                        if message.error() is None)
        # on failure, say what differed and show the broker's log (restart, group replay)
        missing, unexpected = Counter(produced + more) - Counter(seen), Counter(seen) - Counter(produced + more)
        assert sorted(seen) == sorted(produced + more), \
            f"{len(seen)} seen, missing {sorted(missing.elements())}, unexpected {sorted(unexpected.elements())}:\n{broker.log_text()}"
        assert consumer.memberid() == member_id, f"{consumer.memberid()} != {member_id}:\n{broker.log_text()}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        [description] = [future.result(15) for future in admin.describe_consumer_groups(["steady"]).values()]
        members = [member.member_id for member in description.members]
        assert str(description.state).endswith("STABLE") and members == [member_id], \
            f"{description.state} {members}:\n{broker.log_text()}"
    finally:
        consumer.close()
