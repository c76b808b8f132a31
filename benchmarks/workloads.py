"""The benchmark's workloads, run identically against any Kafka-protocol broker with
confluent-kafka (librdkafka). Consumers use assign() rather than a group, so the figures
measure produce and fetch, not rebalancing.

Every workload checks what it measures: each message is acknowledged without error and
read back, and an order-insensitive digest of the values read equals the one produced.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC_READY_TIMEOUT_S = 30
PRODUCE_LOOP_POLL_EVERY = 1000  # serve delivery callbacks every N produce() calls
CONSUME_IDLE_TIMEOUT_S = 30
CONSUME_BATCH_MAX = 10_000  # a consumer that reads nothing for this long gives up
LATENCY_DRAIN_TIMEOUT_S = 30
DIGEST_MODULUS = 1 << 64


class _Throughput:
    """Rates of a result that has `messages`, `payload_bytes` and `seconds`."""

    messages: int
    payload_bytes: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.payload_bytes / self.seconds / 1e6 if self.seconds else 0.0


@dataclass
class ProduceResult(_Throughput):
    messages: int
    payload_bytes: int
    seconds: float
    delivered: int
    errors: int
    digest: int
    first_error: str | None = None


@dataclass
class ConsumeResult(_Throughput):
    messages: int
    payload_bytes: int
    seconds: float
    digest: int
    first_error: str | None = None


@dataclass
class LatencyResult:
    rate_per_second: int
    sent: int
    received: int
    end_to_end_ms: list[float] = field(default_factory=list)
    acknowledge_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, samples: list[float], fraction: float) -> float:
        if not samples:
            return float("nan")
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class PayloadSource:
    """Text-like values of a fixed size (about 2x compressible, like JSON logs), cut from
    one pre-generated pool at random offsets, so no per-message generation cost."""

    def __init__(self, size_bytes: int, seed: int = 7) -> None:
        generator = random.Random(seed)
        words = ["".join(generator.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(generator.randint(3, 9)))
                 for _ in range(2000)]
        pool_text = " ".join(generator.choice(words) + (f"={generator.randint(0, 99999)}" if generator.random() < 0.3 else "")
                             for _ in range(400_000))
        self.pool = pool_text.encode()
        self.size = size_bytes
        self.offsets = [generator.randrange(0, len(self.pool) - size_bytes) for _ in range(4096)]

    def value(self, index: int) -> bytes:
        start = self.offsets[index % len(self.offsets)] + (index // len(self.offsets)) % 97
        return self.pool[start:start + self.size]


def value_digest(value: bytes) -> int:
    return zlib.crc32(value)


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=TOPIC_READY_TIMEOUT_S)
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if metadata is not None and metadata.error is None and len(metadata.partitions) == partitions:
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} not visible in metadata")


def producer_config(bootstrap: str, compression: str, linger_ms: int) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 262_144,
        "enable.idempotence": False,
    }


def produce_throughput(bootstrap: str, topic: str, count: int, payloads: PayloadSource,
                       compression: str) -> ProduceResult:
    """Send `count` values as fast as the client allows; time until the last acknowledgement."""
    producer = Producer(producer_config(bootstrap, compression, linger_ms=5))
    outcome = {"delivered": 0, "errors": 0, "first_error": None}

    def on_delivery(error, _message) -> None:
        if error is None:
            outcome["delivered"] += 1
            return
        outcome["errors"] += 1
        outcome["first_error"] = outcome["first_error"] or str(error)

    producer.list_topics(topic, timeout=10)  # connect and learn the leader before timing
    digest = 0
    started = time.perf_counter()
    for index in range(count):
        value = payloads.value(index)
        digest = (digest + value_digest(value)) % DIGEST_MODULUS
        _produce_with_backpressure(producer, topic, value, on_delivery)
        if index % PRODUCE_LOOP_POLL_EVERY == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    if remaining:
        outcome["errors"] += remaining
        outcome["first_error"] = outcome["first_error"] or f"{remaining} messages never acknowledged"
    return ProduceResult(count, count * payloads.size, seconds, outcome["delivered"],
                         outcome["errors"], digest, outcome["first_error"])


def _produce_with_backpressure(producer: Producer, topic: str, value: bytes, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, value, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let librdkafka send and acknowledge
            producer.poll(0.01)


def consumer_config(bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "shoal-benchmark-unused",  # required by librdkafka; assign() joins no group
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 500,
    }


def consume_throughput(bootstrap: str, topic: str, expected: int) -> ConsumeResult:
    """Read `expected` messages of partition 0 from the earliest offset; timed from the
    first message received to the last."""
    consumer = Consumer(consumer_config(bootstrap))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    received, payload_bytes, digest, first_error = 0, 0, 0, None
    started = None  # at the first message: connection and offset lookup are not throughput
    last_progress = time.monotonic()
    try:
        while received < expected and time.monotonic() - last_progress < CONSUME_IDLE_TIMEOUT_S:
            wanted = min(CONSUME_BATCH_MAX, expected - received)  # consume() waits for all wanted
            for message in consumer.consume(num_messages=wanted, timeout=1.0):
                if message.error() is not None:
                    first_error = first_error or str(message.error())
                    continue
                started = started or time.perf_counter()
                value = message.value()
                received += 1
                payload_bytes += len(value)
                digest = (digest + value_digest(value)) % DIGEST_MODULUS
                last_progress = time.monotonic()
        seconds = time.perf_counter() - started if started else 0.0
    finally:
        consumer.close()
    return ConsumeResult(received, payload_bytes, seconds, digest, first_error)


def end_to_end_latency(bootstrap: str, topic: str, rate_per_second: int, duration_s: float,
                       payloads: PayloadSource) -> LatencyResult:
    """Produce at a fixed rate (acks=all, no linger); a consumer thread in the same process
    measures send-to-receive time. The send time travels in the message key."""
    total = int(rate_per_second * duration_s)
    result = LatencyResult(rate_per_second=rate_per_second, sent=0, received=0)
    consumer = Consumer(consumer_config(bootstrap))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    ready = threading.Event()
    reader = threading.Thread(target=_read_latencies, args=(consumer, total, result, ready), daemon=True)
    reader.start()
    ready.wait(10)
    producer = Producer(producer_config(bootstrap, "none", linger_ms=0))
    producer.list_topics(topic, timeout=10)

    def on_delivery(error, message) -> None:
        if error is not None:
            result.errors += 1
            return
        sent_ns = int(message.key())
        result.acknowledge_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    _send_at_fixed_rate(producer, topic, total, rate_per_second, payloads, on_delivery, result)
    producer.flush(30)
    reader.join(LATENCY_DRAIN_TIMEOUT_S)
    return result


def _send_at_fixed_rate(producer, topic, total, rate_per_second, payloads, on_delivery, result) -> None:
    interval_s = 1.0 / rate_per_second
    started = time.perf_counter()
    for index in range(total):
        due = started + index * interval_s
        while (delay := due - time.perf_counter()) > 0:
            producer.poll(delay)  # serve acknowledgements while waiting for the next slot
        producer.produce(topic, payloads.value(index), key=str(time.monotonic_ns()).encode(),
                         on_delivery=on_delivery)
        result.sent += 1
        producer.poll(0)


def _read_latencies(consumer: Consumer, total: int, result: LatencyResult, ready: threading.Event) -> None:
    deadline = time.monotonic() + LATENCY_DRAIN_TIMEOUT_S * 4
    try:
        consumer.poll(0.5)  # connect and start the first fetch before anything is sent
        ready.set()
        while result.received < total and time.monotonic() < deadline:
            message = consumer.poll(0.2)  # returns as soon as one message is there
            if message is None or message.error() is not None:
                continue
            received_ns = time.monotonic_ns()
            result.end_to_end_ms.append((received_ns - int(message.key())) / 1e6)
            result.received += 1
    except KafkaException:
        pass
    finally:
        ready.set()
        consumer.close()
