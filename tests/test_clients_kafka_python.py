"""kafka-python 3.x against a real `shoal start`: its broker-version probe lands on a real
Kafka version, every codec round-trips keys, headers and null values exactly, the
(default-on) idempotent producer works, and offsets_for_times answers."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.support import BASE_TIMESTAMP_MS, module_broker, sample_messages

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


broker = module_broker("kafka-python")


def expected_messages(count: int, tag: str) -> list[tuple]:
    return sample_messages(count, tag, value_repeat_cycle=11)


def produce_all(bootstrap: str, topic: str, messages: list[tuple], **config) -> list[int]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=timestamp)
                   for key, value, headers, timestamp in messages]
        producer.flush(timeout=30)
        return [future.get(timeout=30).offset for future in futures]
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=15_000, fetch_max_wait_ms=200)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        received = []
        for message in consumer:
            received.append(message)
            if len(received) == count:
                break
        return received
    finally:
        consumer.close()


def test_broker_version_probe_lands_on_a_kafka_release(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        version = producer.config["api_version"]
        assert version is not None and version >= (2, 7), version  # Fetch 12 and friends: 2.7+
    finally:
        producer.close(timeout=10)


@pytest.mark.parametrize("codec", CODECS)
def test_codec_round_trip_is_exact(broker, codec):
    topic = f"kafka-python-{codec or 'none'}"
    messages = expected_messages(50, str(codec))
    offsets = produce_all(broker.bootstrap, topic, messages, compression_type=codec)
    assert offsets == list(range(len(messages)))
    received = consume_all(broker.bootstrap, topic, len(messages))
    got = [(message.key, message.value, list(message.headers), message.timestamp) for message in received]
    assert got == messages


def test_idempotent_producer_has_no_duplicates(broker):
    messages = expected_messages(200, "idem")
    offsets = produce_all(broker.bootstrap, "kafka-python-idempotent", messages, enable_idempotence=True, acks="all",
                          batch_size=512)
    assert offsets == list(range(len(messages)))
    received = consume_all(broker.bootstrap, "kafka-python-idempotent", len(messages))
    assert [message.value for message in received] == [value for _, value, _, _ in messages]


def test_offsets_for_times_and_end_offsets(broker):
    topic = "kafka-python-times"
    produce_all(broker.bootstrap, topic, expected_messages(10, "times"))
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        partition = TopicPartition(topic, 0)
        found = consumer.offsets_for_times({partition: BASE_TIMESTAMP_MS + 4})[partition]
        assert (found.offset, found.timestamp) == (4, BASE_TIMESTAMP_MS + 4)
        assert consumer.offsets_for_times({partition: BASE_TIMESTAMP_MS + 50})[partition] is None
        assert consumer.beginning_offsets([partition]) == {partition: 0}
        assert consumer.end_offsets([partition]) == {partition: 10}
    finally:
        consumer.close()
