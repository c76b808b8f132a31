"""Three real `shoal start` processes on loopback as one cluster: topics created through
any node, Metadata listing every broker, partitions replicated with Raft semantics; an
idempotent acks=all producer running while the leader is killed with kill -9 (and
restarted) or frozen with SIGSTOP past the election timeout (and thawed). A checker reads
every partition back and proves each acknowledged message is there exactly once, in the
order it was acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cluster_support import Cluster, running_cluster
from tests.support import REPO, SHOAL, wait_until

TOPIC = "orders"


class AckedProducer:
    """An idempotent acks=all producer writing numbered values to one partition from its
    own thread; `acked` holds (value, offset) in acknowledgement order."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        self.acked: list[tuple[bytes, int]] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                   "linger.ms": 5, "message.timeout.ms": 60000, "socket.timeout.ms": 5000})
        self._thread = threading.Thread(target=self._run, args=(topic, partition), daemon=True)
        self._thread.start()

    def _run(self, topic: str, partition: int) -> None:
        sequence = 0
        while not self._stop.is_set():
            value = f"{sequence:08d}".encode()
            try:
                self._producer.produce(topic, value=value, partition=partition, on_delivery=self._delivered)
                sequence += 1
            except BufferError:
                pass
            self._producer.poll(0.002)
        assert self._producer.flush(60) == 0

    def _delivered(self, error, message) -> None:
        if error is None:
            self.acked.append((message.value(), message.offset()))
        else:
            self.failed.append(str(error))

    def acked_after(self, count: int, timeout_s: float) -> None:
        target = len(self.acked) + count
        wait_until(lambda: len(self.acked) >= target, f"{count} more acknowledgements", timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive(), "producer did not flush"


def read_partition(bootstrap: str, topic: str, partition: int, expected: int, timeout_s: float = 30) -> list[tuple[bytes, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False,
                         "enable.partition.eof": True, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, partition, 0)])
    records: list[tuple[bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF and len(records) >= expected:
                    break
                continue
            records.append((message.value(), message.offset()))
    finally:
        consumer.close()
    return records


def check_history(acked: list[tuple[bytes, int]], read: list[tuple[bytes, int]]) -> None:
    """Every acknowledged value read back exactly once, at the offset it was acknowledged
    with, in acknowledgement order; nothing read that was never sent."""
    values = [value for value, _ in read]
    duplicates = len(values) - len(set(values))
    assert duplicates == 0, f"{duplicates} duplicated values"
    offsets = {value: offset for value, offset in read}
    lost = [value for value, _ in acked if value not in offsets]
    assert not lost, f"{len(lost)} acknowledged values lost, first {lost[:3]}"
    moved = [(value, offset, offsets[value]) for value, offset in acked if offsets[value] != offset]
    assert not moved, f"acknowledged at one offset, read at another: {moved[:3]}"
    assert values == sorted(values), "values out of order"


def create_replicated_topic(cluster: Cluster, via_node: int, partitions: int = 1, configs: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.nodes[via_node].bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, partitions, 3, config=configs or {})],
                                      request_timeout=20).values():
        future.result(30)
    for partition in range(partitions):
        cluster.wait_for_leader(TOPIC, partition)


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(tmp_path, 3) as started:
        yield started


def test_any_node_takes_topic_changes_and_metadata_lists_every_broker(cluster: Cluster) -> None:
    create_replicated_topic(cluster, via_node=2, partitions=3)
    for node in cluster.nodes:
        metadata = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10)
        assert sorted(metadata.brokers) == [0, 1, 2]
        partitions = metadata.topics[TOPIC].partitions
        assert sorted(partitions) == [0, 1, 2]
        assert all(sorted(p.replicas) == [0, 1, 2] for p in partitions.values())
        assert sorted(p.leader for p in partitions.values()) == [0, 1, 2]  # leadership spread

    producer = Producer({"bootstrap.servers": cluster.nodes[0].bootstrap, "acks": "all", "enable.idempotence": True})
    for index in range(300):
        producer.produce(TOPIC, value=f"{index:08d}".encode(), partition=index % 3)
    assert producer.flush(30) == 0
    for partition in range(3):
        read = read_partition(cluster.nodes[1].bootstrap, TOPIC, partition, 100)
        assert [value for value, _ in read] == [f"{index:08d}".encode() for index in range(partition, 300, 3)]
    wait_until(lambda: all(replica["high_watermark"] == 100 for node_id in range(3)
                           for replica in cluster.partition_states(node_id)),
               lambda: [cluster.partition_states(node_id) for node_id in range(3)], 10)

    status = subprocess.run(SHOAL + ["-b", cluster.nodes[1].bootstrap, "cluster", "status", "--format", "json"],
                            cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")})
    assert status.returncode == 0, status.stderr
    answer = json.loads(status.stdout)
    assert answer["node_id"] == 1 and answer["under_replicated_partitions"] == 0
    assert sorted(node["node_id"] for node in answer["brokers"] if node["is_alive"]) == [0, 1, 2]
    assert sorted(replica["partition"] for replica in answer["replicas"]) == [0, 1, 2]


def test_acks_all_survives_kill_9_of_the_leader_and_its_restart(cluster: Cluster) -> None:
    create_replicated_topic(cluster, via_node=0)
    leader = cluster.wait_for_leader(TOPIC, 0)
    producer = AckedProducer(cluster.bootstrap, TOPIC, 0)
    try:
        producer.acked_after(200, 20)
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        survivors = [node for node in range(3) if node != leader]
        new_leader = cluster.wait_for_leader(TOPIC, 0, among=survivors, timeout_s=15)
        failover_s = time.monotonic() - killed_at
        producer.acked_after(200, 30)  # writes resume on the new leader
        cluster.restart(leader)
        producer.acked_after(200, 30)
    finally:
        producer.stop()
    assert not producer.failed, producer.failed[:3]
    assert new_leader != leader and failover_s < 10, (new_leader, failover_s)
    check_history(producer.acked, read_partition(cluster.bootstrap, TOPIC, 0, len(producer.acked)))
    wait_until(lambda: cluster.leader_of(TOPIC, 0) is not None and all(
        replica["log_end_offset"] == replica["high_watermark"] for replica in cluster.partition_states(leader)),
        "the restarted node caught up", 20)


def test_a_frozen_leader_is_replaced_and_rejoins_as_a_follower(cluster: Cluster) -> None:
    create_replicated_topic(cluster, via_node=1)
    leader = cluster.wait_for_leader(TOPIC, 0)
    producer = AckedProducer(cluster.bootstrap, TOPIC, 0)
    frozen = cluster.nodes[leader].process.pid
    try:
        producer.acked_after(200, 20)
        os.kill(frozen, signal.SIGSTOP)
        try:
            survivors = [node for node in range(3) if node != leader]
            cluster.wait_for_leader(TOPIC, 0, among=survivors, timeout_s=15)
            producer.acked_after(200, 30)
        finally:
            os.kill(frozen, signal.SIGCONT)
        wait_until(lambda: any(replica["role"] == "follower" for replica in cluster.partition_states(leader)),
                   "the thawed leader follows", 20)
        producer.acked_after(200, 30)
    finally:
        producer.stop()
    assert not producer.failed, producer.failed[:3]
    check_history(producer.acked, read_partition(cluster.bootstrap, TOPIC, 0, len(producer.acked)))


def test_min_insync_replicas_refuses_acks_all_when_too_few_replicas_are_in_sync(cluster: Cluster) -> None:
    create_replicated_topic(cluster, via_node=0, configs={"min.insync.replicas": "3"})
    leader = cluster.wait_for_leader(TOPIC, 0)
    follower = next(node for node in range(3) if node != leader)
    cluster.nodes[follower].kill()
    errors: list = []
    producer = Producer({"bootstrap.servers": cluster.nodes[leader].bootstrap, "acks": "all",
                         "message.timeout.ms": 8000, "retries": 0})
    wait_until(lambda: _not_enough_replicas(producer, errors), lambda: errors[-3:], 20, 0.5)


def _not_enough_replicas(producer: Producer, errors: list) -> bool:
    outcome: list = []
    producer.produce(TOPIC, value=b"x", partition=0, on_delivery=lambda error, message: outcome.append(error))
    producer.flush(10)
    errors.extend(outcome)
    return bool(outcome) and outcome[0] is not None and outcome[0].code() == KafkaError.NOT_ENOUGH_REPLICAS


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_fault_schedule_soak(tmp_path: Path, seed: int) -> None:
    """Rounds of kill -9 + restart or SIGSTOP + SIGCONT of the current leader (chosen by
    the seed) under a running idempotent acks=all producer; the checker at the end."""
    import random

    rng = random.Random(seed)
    with running_cluster(tmp_path, 3) as soak_cluster:
        create_replicated_topic(soak_cluster, via_node=rng.randrange(3))
        producer = AckedProducer(soak_cluster.bootstrap, TOPIC, 0)
        try:
            for _ in range(6):
                producer.acked_after(100, 60)
                leader = soak_cluster.wait_for_leader(TOPIC, 0, timeout_s=30)
                node = soak_cluster.nodes[leader]
                if rng.random() < 0.5:
                    node.kill()
                    time.sleep(rng.uniform(0.5, 4))
                    soak_cluster.restart(leader)
                else:
                    os.kill(node.process.pid, signal.SIGSTOP)
                    time.sleep(rng.uniform(0.5, 6))
                    os.kill(node.process.pid, signal.SIGCONT)
            producer.acked_after(100, 60)
        finally:
            producer.stop()
        assert not producer.failed, producer.failed[:3]
        check_history(producer.acked, read_partition(soak_cluster.bootstrap, TOPIC, 0, len(producer.acked), 60))
