"""DeleteRecords (21) against a real broker process: confluent-kafka's AdminClient,
kafka-python's KafkaAdminClient, every version through kio, and the deletion surviving a
restart and a kill -9."""

from __future__ import annotations

import datetime
import itertools
import json
import time
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from tests.admin_support import KioClient, build, nested, request_class
from tests.support import BrokerProcess

REQUEST_TIMEOUT_S = 10
MESSAGES = 10
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def admin_for(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10_000})


def create_filled_topic(broker, admin: AdminClient, partitions: int = 2) -> str:
    """A local-only topic with MESSAGES messages in each partition."""
    name = unique("delete-records")
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                     config={"remote.storage.enable": "false"})
    admin.create_topics([topic], request_timeout=REQUEST_TIMEOUT_S)[name].result()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for partition in range(partitions):
        for index in range(MESSAGES):
            producer.produce(name, value=b"m%d" % index, partition=partition)
    assert producer.flush(REQUEST_TIMEOUT_S) == 0
    return name


def delete(admin: AdminClient, name: str, offsets: dict[int, int]) -> dict[int, object]:
    """partition -> DeletedRecords or KafkaError."""
    futures = admin.delete_records([TopicPartition(name, partition, offset) for partition, offset in offsets.items()],
                                   request_timeout=REQUEST_TIMEOUT_S, operation_timeout=5)
    results = {}
    for topic_partition, future in futures.items():
        try:
            results[topic_partition.partition] = future.result()
        except KafkaException as error:
            results[topic_partition.partition] = error.args[0]
    return results


def earliest_offsets(broker, name: str, partitions: int = 2) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("probe")})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=REQUEST_TIMEOUT_S)[0]
                for partition in range(partitions)]
    finally:
        consumer.close()


def first_consumed_offset(broker, name: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("reader"),
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING)])
        for _ in range(50):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message.offset()
        raise AssertionError("nothing consumed")
    finally:
        consumer.close()


def test_confluent_admin_deletes_records_and_reports_the_low_watermark(broker):
    admin = admin_for(broker)
    name = create_filled_topic(broker, admin)
    results = delete(admin, name, {0: 4, 1: OFFSET_END})
    assert (results[0].low_watermark, results[1].low_watermark) == (4, MESSAGES)
    assert earliest_offsets(broker, name) == [4, MESSAGES]
    assert first_consumed_offset(broker, name, 0) == 4
    assert delete(admin, name, {0: 2})[0].low_watermark == 4  # never backwards, not an error


def test_confluent_admin_gets_kafkas_errors_for_out_of_range_and_internal_topics(broker):
    admin = admin_for(broker)
    name = create_filled_topic(broker, admin, partitions=1)
    beyond = delete(admin, name, {0: MESSAGES + 1})[0]
    assert isinstance(beyond, KafkaError) and beyond.code() == KafkaError.OFFSET_OUT_OF_RANGE
    internal = delete(admin, "__consumer_offsets", {0: OFFSET_END})[0]
    assert isinstance(internal, KafkaError) and internal.code() == KafkaError.TOPIC_EXCEPTION
    assert earliest_offsets(broker, name, 1) == [0]
    # (an unknown topic never reaches the broker: librdkafka finds no leader for it first;
    # the broker's UNKNOWN_TOPIC_OR_PARTITION is checked through kio below)


def test_kafka_python_admin_deletes_records(broker):
    from kafka import TopicPartition as PythonTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import OffsetOutOfRangeError

    name = create_filled_topic(broker, admin_for(broker))
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        result = client.delete_records({PythonTopicPartition(name, 0): 3, PythonTopicPartition(name, 1): 7})
        low_watermarks = {partition.partition: entry["low_watermark"] for partition, entry in result.items()}
        assert low_watermarks == {0: 3, 1: 7}
        with pytest.raises(OffsetOutOfRangeError):
            client.delete_records({PythonTopicPartition(name, 0): MESSAGES + 5})
    finally:
        client.close()
    assert earliest_offsets(broker, name) == [3, 7]


def call_delete_records(port: int, version: int, topic: str, offsets: dict[int, int]) -> dict[int, tuple[int, int]]:
    """partition -> (error code, low watermark) through kio at `version`."""
    request_type = request_class(21, version)
    topic_type = nested(request_type, "DeleteRecordsTopic")
    partition_type = nested(request_type, "DeleteRecordsPartition")
    request = build(request_type, timeout=datetime.timedelta(seconds=5), topics=(
        build(topic_type, name=topic, partitions=tuple(
            build(partition_type, partition_index=partition, offset=offset) for partition, offset in offsets.items())),))
    with KioClient(port) as client:
        response = client.call(request)
    (topic_result,) = response.topics
    assert topic_result.name == topic
    return {result.partition_index: (result.error_code, result.low_watermark) for result in topic_result.partitions}


def test_every_version_through_kio_including_the_internal_topic_refusal(broker):
    name = create_filled_topic(broker, admin_for(broker))
    for version, offset in zip(range(3), (2, 5, 9)):
        assert call_delete_records(broker.kafka_port, version, name, {0: offset}) == {0: (ErrorCode.none, offset)}
    answers = call_delete_records(broker.kafka_port, 2, name, {1: -1, 5: 1, 0: -7})
    assert answers == {1: (ErrorCode.none, MESSAGES), 5: (ErrorCode.unknown_topic_or_partition, -1),
                       0: (ErrorCode.offset_out_of_range, -1)}
    internal = call_delete_records(broker.kafka_port, 2, "__consumer_offsets", {0: -1})
    assert internal == {0: (ErrorCode.invalid_topic_exception, -1)}


def test_a_deletion_survives_a_restart_and_a_kill_minus_9(broker):
    admin = admin_for(broker)
    name = create_filled_topic(broker, admin)
    delete(admin, name, {0: 6, 1: MESSAGES})
    assert broker.stop() == 0
    broker.start()
    assert earliest_offsets(broker, name) == [6, MESSAGES]
    delete(admin_for(broker), name, {0: 8})
    broker.kill()
    broker.start()
    assert earliest_offsets(broker, name) == [8, MESSAGES]
    assert first_consumed_offset(broker, name, 0) == 8


def tiered_status(broker, topic: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/v1/tiered/status", timeout=5) as response:
        entries = json.loads(response.read())["partitions"]
    return next((entry for entry in entries if entry["topic"] == topic), {})


def test_remote_enabled_topics_delete_in_both_tiers(tmp_path):
    """History pushed into the (file://) bucket by tiny segments and local retention; a
    deletion inside the bucket-only range: nothing below it is readable from either tier."""
    broker = BrokerProcess(tmp_path / "node0", {"cloud_storage": {"url": f"file://{tmp_path / 'bucket'}",
                                                                 "upload_interval": "1s"}})
    broker.start()
    try:
        admin = admin_for(broker)
        name = unique("tiered-delete")
        configs = {"remote.storage.enable": "true", "segment.bytes": str(16 * 1024),
                   "local.retention.bytes": str(32 * 1024)}
        admin.create_topics([NewTopic(name, 1, 1, config=configs)], request_timeout=REQUEST_TIMEOUT_S)[name].result()
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 4096})
        for index in range(300):
            producer.produce(name, value=b"%06d" % index * 170, partition=0)
        assert producer.flush(REQUEST_TIMEOUT_S) == 0
        deadline = time.monotonic() + 30
        while not tiered_status(broker, name).get("local_start_offset", 0) > 150:
            assert time.monotonic() < deadline, tiered_status(broker, name)
            time.sleep(0.3)
        assert earliest_offsets(broker, name, 1) == [0]  # the bucket holds the history
        assert delete(admin, name, {0: 120})[0].low_watermark == 120
        assert earliest_offsets(broker, name, 1) == [120]
        assert first_consumed_offset(broker, name, 0) == 120
        assert broker.stop() == 0
        broker.start()
        assert earliest_offsets(broker, name, 1) == [120]
        assert first_consumed_offset(broker, name, 0) == 120
    finally:
        try:
            broker.stop()
        finally:
            broker.kill()
