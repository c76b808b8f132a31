"""The Apache Kafka Java client (3.x) against a real `shoal start` process: AdminClient
creates a topic, an idempotent zstd producer (acks=all) sends keyed messages with headers,
a consumer group reads them back and commits. The program is tests/java/src; its jars
come from Maven Central or PyPI (tests/java/client_jars.py); without a JDK or either
registry the test skips and says why. First run on a fresh machine: ~10 s to fetch and
compile, then ~10 s per run."""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.java import client_jars

PARTITIONS = 3
MESSAGES = 300
JAVA_RUN_TIMEOUT_S = 150

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def java_classpath() -> tuple[str, str]:
    try:
        jars = client_jars.ensure_client_jars()
    except client_jars.ClientJarsUnavailable as reason:
        pytest.skip(f"Apache Kafka Java client not available here: {reason}")
    return client_jars.compiled_classpath(jars), jars.client_version


def expected_message(index: int) -> dict:
    """Mirror of keyOf/valueOf/headersOf in ShoalJavaClientCheck.java."""
    key = None if index % 10 == 9 else f"key-{index}"
    value = None if index % 17 == 16 else f"value-{index}-" + "".join(
        chr(ord("a") + letter % 26) for letter in range(index % 50))
    headers = [["index", str(index)], ["client", "java"]] + ([["empty", None]] if index % 5 == 0 else [])
    return {"key": key, "value": value, "headers": headers}


def run_java_check(classpath: str, bootstrap: str, topic: str, group: str) -> dict:
    command = ["java", "-cp", classpath, client_jars.MAIN_CLASS, bootstrap, topic,
               str(PARTITIONS), str(MESSAGES), group]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=JAVA_RUN_TIMEOUT_S)
    assert completed.returncode == 0, f"java client failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    summary_line = completed.stdout.strip().splitlines()[-1]
    return json.loads(summary_line)


def read_with_librdkafka(bootstrap: str, topic: str, count: int) -> dict[tuple[int, int], dict]:
    """An independent reader: what is stored, by (partition, offset)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "java-check-verifier",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in range(PARTITIONS)])
    stored: dict[tuple[int, int], dict] = {}
    try:
        for _ in range(60):
            if len(stored) >= count:
                break
            for message in consumer.consume(num_messages=count - len(stored), timeout=1.0):
                assert message.error() is None, message.error()
                stored[(message.partition(), message.offset())] = {
                    "key": None if message.key() is None else message.key().decode(),
                    "value": None if message.value() is None else message.value().decode(),
                    "headers": [[name, None if value is None else value.decode()]
                                for name, value in (message.headers() or [])],
                }
    finally:
        consumer.close()
    return stored


def test_java_client_creates_produces_consumes_and_commits(broker, java_classpath):
    classpath, client_version = java_classpath
    summary = run_java_check(classpath, broker.bootstrap, "java-check", "java-check-group")

    assert summary["client_version"] == client_version
    assert client_version.startswith("3.")
    assert summary["described_partitions"] == PARTITIONS

    acknowledged = [tuple(position) for position in summary["acknowledged"]]
    assert len(acknowledged) == MESSAGES
    assert len(set(acknowledged)) == MESSAGES, "two messages acknowledged at the same offset"
    for partition in range(PARTITIONS):
        offsets = sorted(offset for p, offset in acknowledged if p == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition}: gaps or duplicates"

    consumed = {(record["partition"], record["offset"]): record for record in summary["consumed"]}
    assert len(summary["consumed"]) == MESSAGES == len(consumed)
    for index, position in enumerate(acknowledged):
        record = consumed[position]
        assert {name: record[name] for name in ("key", "value", "headers")} == expected_message(index), index

    end_offsets = {str(partition): sum(1 for p, _ in acknowledged if p == partition)
                   for partition in range(PARTITIONS)}
    assert summary["committed"] == end_offsets

    stored = read_with_librdkafka(broker.bootstrap, "java-check", MESSAGES)
    assert stored == {position: expected_message(index) for index, position in enumerate(acknowledged)}
