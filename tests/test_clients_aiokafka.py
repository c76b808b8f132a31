"""aiokafka 0.14 (Produce <= 7, Fetch <= 11, ApiVersions v0 first) against a real
`shoal start`: every codec round-trips keys, headers and null values exactly; the
idempotent producer works; offsets_for_times answers; a waiting getone() is woken at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support import BASE_TIMESTAMP_MS, module_broker, sample_messages

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


broker = module_broker("aiokafka")


def expected_messages(count: int, tag: str) -> list[tuple]:
    return sample_messages(count, tag, value_repeat_cycle=9)


async def produce_all(bootstrap: str, topic: str, messages: list[tuple], **config) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=timestamp)
                   for key, value, headers, timestamp in messages]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        received = []
        while len(received) < count:
            batch = await asyncio.wait_for(consumer.getmany(partition, timeout_ms=1000), 15)
            received += batch.get(partition, [])
        return received
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", CODECS)
def test_codec_round_trip_is_exact(broker, codec):
    topic = f"aiokafka-{codec or 'none'}"
    messages = expected_messages(50, str(codec))

    async def scenario():
        offsets = await produce_all(broker.bootstrap, topic, messages, compression_type=codec)
        return offsets, await consume_all(broker.bootstrap, topic, len(messages))

    offsets, received = asyncio.run(scenario())
    assert offsets == list(range(len(messages)))
    got = [(message.key, message.value, list(message.headers), message.timestamp) for message in received]
    assert got == messages


def test_idempotent_producer_has_no_duplicates(broker):
    messages = expected_messages(200, "idem")

    async def scenario():
        offsets = await produce_all(broker.bootstrap, "aiokafka-idempotent", messages,
                                    enable_idempotence=True, max_batch_size=600)
        return offsets, await consume_all(broker.bootstrap, "aiokafka-idempotent", len(messages))

    offsets, received = asyncio.run(scenario())
    assert offsets == list(range(len(messages)))
    assert [message.value for message in received] == [value for _, value, _, _ in messages]


def test_offsets_for_times_and_long_poll(broker):
    topic = "aiokafka-times"

    async def scenario():
        await produce_all(broker.bootstrap, topic, expected_messages(10, "times"))
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=20000)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            found = (await consumer.offsets_for_times({partition: BASE_TIMESTAMP_MS + 6}))[partition]
            assert (found.offset, found.timestamp) == (6, BASE_TIMESTAMP_MS + 6)
            assert (await consumer.end_offsets([partition])) == {partition: 10}
            consumer.assign([partition])
            consumer.seek(partition, 10)
            waiting = asyncio.ensure_future(consumer.getone())
            await asyncio.sleep(1.0)  # the consumer is parked in a long poll by now
            assert not waiting.done()
            await produce_all(broker.bootstrap, topic, [(b"k", b"wake up", [], BASE_TIMESTAMP_MS)])
            started = time.monotonic()
            message = await asyncio.wait_for(waiting, 25)
            return message.value, time.monotonic() - started
        finally:
            await consumer.stop()

    value, elapsed = asyncio.run(scenario())
    assert value == b"wake up"
    # a fetch that was never woken would return only after 20 s
    assert elapsed < 8, f"getone() returned {elapsed:.2f}s after the produce was acknowledged"
