"""confluent-kafka (librdkafka) against a real `shoal start`: every codec round-trips keys,
headers and null values exactly; the idempotent producer leaves no duplicates;
offsets_for_times works; a long-polling consumer is woken at once; acknowledged data
survives kill -9."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support import BrokerProcess, module_broker

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_TIMESTAMP_MS = 1_700_000_000_000


broker = module_broker("confluent")


def expected_messages(count: int, tag: str) -> list[tuple]:
    """(key, value, headers, timestamp) with null keys, null values and null header values."""
    messages = []
    for index in range(count):
        key = None if index % 7 == 3 else f"key-{tag}-{index}".encode()
        value = None if index % 5 == 2 else (f"value-{tag}-{index}-".encode() * (index % 13 + 1))
        headers = [("trace", f"t{index}".encode()), ("empty", b""), ("null", None)] if index % 2 else []
        messages.append((key, value, headers, BASE_TIMESTAMP_MS + index))
    return messages


def produce_all(bootstrap: str, topic: str, messages: list[tuple], **config) -> list[int]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    errors: list = []
    offsets: list[int] = []

    def delivered(error, message) -> None:
        if error is not None:
            errors.append(error)
        else:
            offsets.append(message.offset())

    for key, value, headers, timestamp in messages:
        producer.produce(topic, key=key, value=value, headers=headers or None, timestamp=timestamp,
                         on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == []
    return offsets


def consume_all(bootstrap: str, topic: str, count: int, **config) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **config})
    consumer.assign([TopicPartition(topic, 0, 0)])
    received = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append(message)
    finally:
        consumer.close()
    return received


@pytest.mark.parametrize("codec", CODECS)
def test_codec_round_trip_is_exact(broker, codec):
    topic = f"confluent-{codec}"
    messages = expected_messages(60, codec)
    produce_all(broker.bootstrap, topic, messages, **{"compression.type": codec})
    received = consume_all(broker.bootstrap, topic, len(messages))
    assert [message.offset() for message in received] == list(range(len(messages)))
    got = [(message.key(), message.value(), message.headers() or [], message.timestamp()[1]) for message in received]
    assert got == messages


def test_idempotent_producer_has_no_duplicates(broker):
    topic = "confluent-idempotent"
    messages = expected_messages(500, "idem")
    offsets = produce_all(broker.bootstrap, topic, messages, **{
        "enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5,
        "batch.num.messages": 37, "compression.type": "lz4"})
    assert sorted(offsets) == list(range(len(messages)))
    received = consume_all(broker.bootstrap, topic, len(messages))
    assert [message.value() for message in received] == [value for _, value, _, _ in messages]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "idempotent-check"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, len(messages))
    finally:
        consumer.close()


def test_offsets_for_times(broker):
    topic = "confluent-times"
    produce_all(broker.bootstrap, topic, expected_messages(20, "times"))
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, BASE_TIMESTAMP_MS + 12)], timeout=10)
        assert found[0].offset == 12
        beyond = consumer.offsets_for_times([TopicPartition(topic, 0, BASE_TIMESTAMP_MS + 99)], timeout=10)
        assert beyond[0].offset == -1  # no such message: OFFSET_END
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, 20)
    finally:
        consumer.close()


def test_long_poll_consumer_is_woken_by_a_produce(broker):
    topic = "confluent-long-poll"
    produce_all(broker.bootstrap, topic, [(b"k", b"first", [], BASE_TIMESTAMP_MS)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "long-poll",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20000, "fetch.min.bytes": 1})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    try:
        consumer.assign([TopicPartition(topic, 0, 1)])
        assert consumer.poll(2.0) is None  # the consumer is now parked in a long poll
        time.sleep(0.5)
        producer.produce(topic, value=b"wake up")
        producer.flush(10)
        started = time.monotonic()
        message = None
        while message is None and time.monotonic() - started < 25:
            message = consumer.poll(0.1)
        elapsed = time.monotonic() - started
        assert message is not None and message.value() == b"wake up"
        # a fetch that was never woken would return only after 20 s
        assert elapsed < 8, f"consumer got the message {elapsed:.2f}s after it was acknowledged"
    finally:
        consumer.close()


def test_acknowledged_data_survives_kill_9(tmp_path):
    broker = BrokerProcess(tmp_path / "node0").start()
    try:
        messages = expected_messages(300, "crash")
        produce_all(broker.bootstrap, "crash", messages, **{"acks": "all", "enable.idempotence": True})
        broker.kill()
        broker.start()
        received = consume_all(broker.bootstrap, "crash", len(messages))
        got = [(message.key(), message.value()) for message in received]
        assert got == [(key, value) for key, value, _, _ in messages]
        more = produce_all(broker.bootstrap, "crash", expected_messages(5, "after"), **{"enable.idempotence": True})
        assert sorted(more) == list(range(300, 305))
    finally:
        broker.close()
