"""Issue 2, point 6, as a scenario x client matrix: the combinations the per-client test
files leave open, run with the real clients against real `shoal start` processes.
C = confluent-kafka (librdkafka), KP = kafka-python 3.x, AIO = aiokafka 0.14.

Where each scenario is covered ("here" = this file):
- keys, headers, null values, every codec, exact round trip: test_clients_confluent,
  test_clients_kafka_python, test_clients_aiokafka (each client reading its own records),
  test_clients_kcat (5 codecs), test_clients_kafkajs (none, gzip); here: every Python
  client reads the records of every other, for each codec.
- group of 3 rebalancing on join and leave: C range and cooperative-sticky in
  test_groups_clients; here KP range and cooperative-sticky, AIO range and roundrobin,
  mixed-client groups (range: C+KP+AIO; cooperative-sticky: KP+C), kcat -G with two
  members, kafkajs with two members.
- committed offsets and acknowledged data across kill -9: C in test_groups_clients and
  test_clients_confluent; here C, KP and AIO, plus ListOffsets by time after the restart.
- idempotent producer with retries: each client's file produces idempotently without a
  fault; here retries are forced for C, KP and AIO, by lost responses and by kill -9.
- ListOffsets by time: each client's file, kcat and kafkajs on one uncompressed batch;
  here C, KP and AIO inside gzip and zstd batches with out-of-order timestamps, and the
  max-timestamp lookup (C, KP).
- admin create/describe/alter/delete and create-partitions: C and KP in
  test_admin_clients, kafkajs in test_admin_kafkajs; here AIO.
- kcat consumer group (-G) committing on exit and resuming: here.

Client limits honoured rather than hidden: kafka-python refuses a record whose key and
value are both null and a header with a null value; aiokafka refuses the former, has no
cooperative assignor (its "sticky" is eager) and no call for the max-timestamp lookup;
kafkajs compresses only with gzip natively (snappy, lz4 and zstd need npm codec plugins,
which the suite does not install)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support import BrokerProcess, create_topic, module_broker, wait_until

# An hour ago, whole seconds: records stamped further back than the default 7-day
# retention.ms are expired by retention, as Kafka expires them (after a restart Shoal rolls
# such a segment at once, the archiver uploads it and remote retention drops it).
BASE_TIMESTAMP_MS = (int(time.time()) - 3600) * 1000
WAIT_S = 30.0
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PYTHON_CLIENTS = ["confluent", "kafka-python", "aiokafka"]
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
NODE = shutil.which("node")
JS_DIRECTORY = Path(__file__).resolve().parent / "js"
KAFKAJS_MISSING = NODE is None or not (JS_DIRECTORY / "node_modules" / "kafkajs").is_dir()

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"matrix-{prefix}-{next(_names)}"


# -- brokers ----------------------------------------------------------------------------------

broker = module_broker("matrix")


class FaultProxy:
    """A TCP proxy in front of a broker that can lose the response to chosen Produce
    requests: it forwards the request, lets the broker append it, then swallows the
    response and cuts that connection, the failure idempotence exists for. Produce
    requests are numbered from 1 across all connections after `lose_produce_responses`."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._produce_requests_seen = 0
        self._numbers_to_lose: frozenset[int] = frozenset()
        self.responses_lost = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True).start()

    def lose_produce_responses(self, numbers: set[int]) -> None:
        with self._lock:
            self._produce_requests_seen = 0
            self._numbers_to_lose = frozenset(numbers)
            self.responses_lost = 0

    @property
    def produce_requests_seen(self) -> int:
        with self._lock:
            return self._produce_requests_seen

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for connection in self._sockets:
                connection.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            doomed_correlation_ids: set[int] = set()
            threading.Thread(target=self._forward_requests, args=(client, upstream, doomed_correlation_ids),
                             daemon=True).start()
            threading.Thread(target=self._forward_responses, args=(upstream, client, doomed_correlation_ids),
                             daemon=True).start()

    def _forward_requests(self, client: socket.socket, upstream: socket.socket, doomed: set[int]) -> None:
        for frame in _frames(client):
            api_key, _, correlation_id = struct.unpack_from(">hhi", frame, 4)
            if api_key == 0 and self._next_produce_is_doomed():
                doomed.add(correlation_id)  # before forwarding: the response cannot overtake it
            if not _send(upstream, frame):
                break
        _cut(client, upstream)

    def _forward_responses(self, upstream: socket.socket, client: socket.socket, doomed: set[int]) -> None:
        for frame in _frames(upstream):
            (correlation_id,) = struct.unpack_from(">i", frame, 4)
            if correlation_id in doomed:
                with self._lock:
                    self.responses_lost += 1
                break
            if not _send(client, frame):
                break
        _cut(client, upstream)

    def _next_produce_is_doomed(self) -> bool:
        with self._lock:
            self._produce_requests_seen += 1
            return self._produce_requests_seen in self._numbers_to_lose


def _frames(connection: socket.socket):
    """Whole Kafka frames (size prefix included) until the connection ends."""
    while True:
        size_bytes = _receive(connection, 4)
        if size_bytes is None:
            return
        body = _receive(connection, struct.unpack(">i", size_bytes)[0])
        if body is None:
            return
        yield size_bytes + body


def _receive(connection: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        try:
            chunk = connection.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send(connection: socket.socket, frame: bytes) -> bool:
    try:
        connection.sendall(frame)
        return True
    except OSError:
        return False


def _cut(*connections: socket.socket) -> None:
    for connection in connections:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory):
    """A broker that advertises a FaultProxy as its address, so every client connection,
    bootstrap and metadata-driven alike, goes through the proxy."""
    process = BrokerProcess(tmp_path_factory.mktemp("matrix-proxied") / "node0")
    proxy = FaultProxy(process.kafka_port)
    process.config["kafka_api"] = {"listen": f"127.0.0.1:{process.kafka_port}",
                                   "advertise": f"127.0.0.1:{proxy.port}"}
    try:
        process.start()
        yield process, proxy
    finally:
        try:
            process.close()
        finally:
            proxy.close()


# -- what the clients exchange ------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


def varied_records(count: int, partition: int, tag: str, *, null_header_values: bool,
                   null_key_and_value: bool) -> list[Record]:
    """Empty and null keys and values (distinct), binary and non-UTF-8 bytes, an
    incompressible 20 KB value, repeated and non-ASCII header names, explicit timestamps."""
    noise = random.Random(tag).randbytes(20_000)
    records = []
    for index in range(count):
        key: bytes | None = f"key-{tag}-{index}".encode()
        value: bytes | None = f"value-{tag}-{index}-".encode() * (index % 9 + 1)
        if index == 0:
            key, value = b"", b""
        elif index == 1:
            key, value = b"\xff\x00\xfe", bytes(range(256))
        elif index == 2:
            value = noise
        elif index % 5 == 3:
            value = None
        elif index % 7 == 4:
            key = None
        if index == 6 and null_key_and_value:
            key, value = None, None
        headers: list[tuple[str, bytes | None]] = []
        if index % 2:
            headers = [("trace", f"t{index}".encode()), ("empty", b""), ("twice", b"1"), ("twice", b"2"),
                       ("clé-ü", "värde".encode())]
            if null_header_values:
                headers.append(("null", None))
        records.append(Record(partition, key, value, tuple(headers), BASE_TIMESTAMP_MS + index * 1000))
    return records


def run_async(coroutine, timeout_s: float = 60.0):
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


Positions = list[tuple[int, int]]  # (partition, offset) of each record, in send order
Stored = dict[tuple[int, int], Record]  # (partition, offset) -> record read back


# -- client drivers: one face for three clients ---------------------------------------------------

class ConfluentDriver:
    name = "confluent"
    null_header_values = True
    null_key_and_value = True

    def produce(self, bootstrap: str, topic: str, records: list[Record], *, codec: str = "none",
                idempotent: bool = False, small_batches: bool = False) -> Positions:
        config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "compression.type": codec,
                  "enable.idempotence": idempotent, "retry.backoff.ms": 50, "reconnect.backoff.ms": 50,
                  "reconnect.backoff.max.ms": 500}
        if small_batches:
            config["batch.num.messages"] = 10
        producer = Producer(config)
        positions: list = [None] * len(records)
        errors: list = []

        def delivered(index: int, error, message) -> None:
            if error is not None:
                errors.append(error)
            else:
                positions[index] = (message.partition(), message.offset())

        for index, record in enumerate(records):
            producer.produce(topic, partition=record.partition, key=record.key, value=record.value,
                             headers=list(record.headers) or None, timestamp=record.timestamp,
                             on_delivery=functools.partial(delivered, index))
        assert producer.flush(WAIT_S) == 0, "messages still unacknowledged"
        assert errors == [], errors
        return positions

    def _consumer(self, bootstrap: str, group: str | None = None, **config) -> Consumer:
        return Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"reader-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 100, **config})

    def read(self, bootstrap: str, topic: str, counts: dict[int, int]) -> Stored:
        consumer = self._consumer(bootstrap)
        consumer.assign([TopicPartition(topic, partition, 0) for partition in counts])
        stored: Stored = {}
        try:
            deadline = time.monotonic() + WAIT_S
            while len(stored) < sum(counts.values()) and time.monotonic() < deadline:
                for message in consumer.consume(100, timeout=0.2):
                    assert message.error() is None, message.error()
                    stored[(message.partition(), message.offset())] = Record(
                        message.partition(), message.key(), message.value(), tuple(message.headers() or ()),
                        message.timestamp()[1])
        finally:
            consumer.close()
        return stored

    def offsets_for_times(self, bootstrap: str, topic: str, timestamps: dict[int, int]) -> dict:
        consumer = self._consumer(bootstrap)
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp) for partition, timestamp in timestamps.items()],
                timeout=10)
            # librdkafka does not hand the found record's timestamp back
            return {item.partition: None if item.offset < 0 else (item.offset, None) for item in found}
        finally:
            consumer.close()

    def watermarks(self, bootstrap: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        consumer = self._consumer(bootstrap)
        try:
            return {partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                    for partition in partitions}
        finally:
            consumer.close()

    def max_timestamp(self, bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka.admin import OffsetSpec

        admin = AdminClient({"bootstrap.servers": bootstrap})
        partition_key = TopicPartition(topic, partition)
        found = admin.list_offsets({partition_key: OffsetSpec.max_timestamp()}, request_timeout=10)
        info = next(iter(found.values())).result()
        return info.offset, info.timestamp

    def group_consume(self, bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
        consumer = self._consumer(bootstrap, group, **{"session.timeout.ms": 6000})
        consumer.subscribe([topic])
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(values) < count and time.monotonic() < deadline:
                for message in consumer.consume(count - len(values), timeout=0.2):
                    assert message.error() is None, message.error()
                    values.append(message.value())
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return values

    def committed(self, bootstrap: str, topic: str, group: str, partitions: list[int]) -> dict[int, int | None]:
        consumer = self._consumer(bootstrap, group)
        try:
            found = consumer.committed([TopicPartition(topic, partition) for partition in partitions], timeout=15)
            return {item.partition: None if item.offset < 0 else item.offset for item in found}
        finally:
            consumer.close()

    def member(self, bootstrap: str, group: str, topic: str, strategy: str, name: str) -> "GroupMember":
        return ConfluentMember(bootstrap, group, topic, strategy, name)


class KafkaPythonDriver:
    name = "kafka-python"
    null_header_values = False  # "All headers items must be (str, bytes) tuples"
    null_key_and_value = False  # "Need at least one: key or value"

    def produce(self, bootstrap: str, topic: str, records: list[Record], *, codec: str = "none",
                idempotent: bool = False, small_batches: bool = False) -> Positions:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks="all", compression_type=None if codec == "none" else codec,
            enable_idempotence=idempotent, batch_size=500 if small_batches else 16384, retry_backoff_ms=50,
            reconnect_backoff_ms=50, reconnect_backoff_max_ms=500)
        try:
            futures = [producer.send(topic, partition=record.partition, key=record.key, value=record.value,
                                     headers=list(record.headers), timestamp_ms=record.timestamp)
                       for record in records]
            producer.flush(timeout=WAIT_S)
            return [(metadata.partition, metadata.offset)
                    for metadata in (future.get(timeout=WAIT_S) for future in futures)]
        finally:
            producer.close(timeout=10)

    def _consumer(self, bootstrap: str, group: str | None = None, **config):
        from kafka import KafkaConsumer

        return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100, **config)

    def read(self, bootstrap: str, topic: str, counts: dict[int, int]) -> Stored:
        from kafka import TopicPartition as PythonTopicPartition

        consumer = self._consumer(bootstrap)
        try:
            partitions = [PythonTopicPartition(topic, partition) for partition in counts]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            stored: Stored = {}
            deadline = time.monotonic() + WAIT_S
            while len(stored) < sum(counts.values()) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    for message in batch:
                        stored[(message.partition, message.offset)] = Record(
                            message.partition, message.key, message.value, tuple(message.headers),
                            message.timestamp)
            return stored
        finally:
            consumer.close()

    def offsets_for_times(self, bootstrap: str, topic: str, timestamps: dict[int, int]) -> dict:
        from kafka import TopicPartition as PythonTopicPartition

        consumer = self._consumer(bootstrap)
        try:
            found = consumer.offsets_for_times(
                {PythonTopicPartition(topic, partition): timestamp for partition, timestamp in timestamps.items()})
            return {key.partition: None if item is None else (item.offset, item.timestamp)
                    for key, item in found.items()}
        finally:
            consumer.close()

    def watermarks(self, bootstrap: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        from kafka import TopicPartition as PythonTopicPartition

        consumer = self._consumer(bootstrap)
        try:
            keys = [PythonTopicPartition(topic, partition) for partition in partitions]
            low, high = consumer.beginning_offsets(keys), consumer.end_offsets(keys)
            return {key.partition: (low[key], high[key]) for key in keys}
        finally:
            consumer.close()

    def max_timestamp(self, bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
        from kafka import TopicPartition as PythonTopicPartition
        from kafka.admin import KafkaAdminClient, OffsetSpec

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            key = PythonTopicPartition(topic, partition)
            found = admin.list_partition_offsets({key: OffsetSpec.MAX_TIMESTAMP})[key]
            return found.offset, found.timestamp
        finally:
            admin.close()

    def group_consume(self, bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
        consumer = self._consumer(bootstrap, group, session_timeout_ms=6000, heartbeat_interval_ms=500)
        consumer.subscribe([topic])
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(values) < count and time.monotonic() < deadline:
                batches = consumer.poll(timeout_ms=200, max_records=count - len(values))
                values.extend(message.value for batch in batches.values() for message in batch)
            consumer.commit()
        finally:
            consumer.close()
        return values

    def committed(self, bootstrap: str, topic: str, group: str, partitions: list[int]) -> dict[int, int | None]:
        from kafka import TopicPartition as PythonTopicPartition

        consumer = self._consumer(bootstrap, group)
        try:
            return {partition: consumer.committed(PythonTopicPartition(topic, partition), timeout_ms=15_000)
                    for partition in partitions}
        finally:
            consumer.close()

    def member(self, bootstrap: str, group: str, topic: str, strategy: str, name: str) -> "GroupMember":
        return KafkaPythonMember(bootstrap, group, topic, strategy, name)


class AiokafkaDriver:
    name = "aiokafka"
    null_header_values = True
    null_key_and_value = False  # "Need at least one: key or value"

    def produce(self, bootstrap: str, topic: str, records: list[Record], *, codec: str = "none",
                idempotent: bool = False, small_batches: bool = False) -> Positions:
        from aiokafka import AIOKafkaProducer

        async def scenario() -> Positions:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                compression_type=None if codec == "none" else codec, enable_idempotence=idempotent,
                max_batch_size=500 if small_batches else 16384, retry_backoff_ms=50)
            await producer.start()
            try:
                futures = [await producer.send(topic, partition=record.partition, key=record.key, value=record.value,
                                               headers=list(record.headers), timestamp_ms=record.timestamp)
                           for record in records]
                return [(metadata.partition, metadata.offset) for metadata in await asyncio.gather(*futures)]
            finally:
                await producer.stop()

        return run_async(scenario())

    def _consumer(self, bootstrap: str, group: str | None = None, *topics: str, **config):
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100, **config)

    def read(self, bootstrap: str, topic: str, counts: dict[int, int]) -> Stored:
        from aiokafka import TopicPartition as AioTopicPartition

        async def scenario() -> Stored:
            consumer = self._consumer(bootstrap)
            await consumer.start()
            try:
                partitions = [AioTopicPartition(topic, partition) for partition in counts]
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                stored: Stored = {}
                deadline = time.monotonic() + WAIT_S
                while len(stored) < sum(counts.values()) and time.monotonic() < deadline:
                    for batch in (await consumer.getmany(timeout_ms=200)).values():
                        for message in batch:
                            stored[(message.partition, message.offset)] = Record(
                                message.partition, message.key, message.value, tuple(message.headers),
                                message.timestamp)
                return stored
            finally:
                await consumer.stop()

        return run_async(scenario())

    def offsets_for_times(self, bootstrap: str, topic: str, timestamps: dict[int, int]) -> dict:
        from aiokafka import TopicPartition as AioTopicPartition

        async def scenario() -> dict:
            consumer = self._consumer(bootstrap)
            await consumer.start()
            try:
                found = await consumer.offsets_for_times(
                    {AioTopicPartition(topic, partition): timestamp for partition, timestamp in timestamps.items()})
                return {key.partition: None if item is None else (item.offset, item.timestamp)
                        for key, item in found.items()}
            finally:
                await consumer.stop()

        return run_async(scenario())

    def watermarks(self, bootstrap: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        from aiokafka import TopicPartition as AioTopicPartition

        async def scenario() -> dict:
            consumer = self._consumer(bootstrap)
            await consumer.start()
            try:
                keys = [AioTopicPartition(topic, partition) for partition in partitions]
                low, high = await consumer.beginning_offsets(keys), await consumer.end_offsets(keys)
                return {key.partition: (low[key], high[key]) for key in keys}
            finally:
                await consumer.stop()

        return run_async(scenario())

    def group_consume(self, bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
        async def scenario() -> list[bytes]:
            consumer = self._consumer(bootstrap, group, topic, session_timeout_ms=6000, heartbeat_interval_ms=500)
            await consumer.start()
            values: list[bytes] = []
            try:
                deadline = time.monotonic() + WAIT_S
                while len(values) < count and time.monotonic() < deadline:
                    batches = await consumer.getmany(timeout_ms=200, max_records=count - len(values))
                    values.extend(message.value for batch in batches.values() for message in batch)
                await consumer.commit()
            finally:
                await consumer.stop()
            return values

        return run_async(scenario())

    def committed(self, bootstrap: str, topic: str, group: str, partitions: list[int]) -> dict[int, int | None]:
        from aiokafka import TopicPartition as AioTopicPartition

        async def scenario() -> dict:
            consumer = self._consumer(bootstrap, group)
            await consumer.start()
            try:
                return {partition: await consumer.committed(AioTopicPartition(topic, partition))
                        for partition in partitions}
            finally:
                await consumer.stop()

        return run_async(scenario())

    def member(self, bootstrap: str, group: str, topic: str, strategy: str, name: str) -> "GroupMember":
        return AiokafkaMember(bootstrap, group, topic, strategy, name)


DRIVERS = {driver.name: driver for driver in (ConfluentDriver(), KafkaPythonDriver(), AiokafkaDriver())}


# -- group members: one polling thread each -----------------------------------------------------

class GroupMember:
    """A subscribed consumer polled by its own thread; `owned` is the set of partitions it
    holds after its latest poll. `leave()` stops it and closes it (a LeaveGroup)."""

    def __init__(self, bootstrap: str, group: str, topic: str, strategy: str, name: str) -> None:
        self.bootstrap, self.group, self.topic, self.strategy, self.name = bootstrap, group, topic, strategy, name
        self.owned: frozenset[int] = frozenset()
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded_run, name=name, daemon=True)
        self._thread.start()

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.failure = error

    def _run(self) -> None:
        raise NotImplementedError

    def leave(self) -> None:
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), f"{self.name} did not close within 20s"


class ConfluentMember(GroupMember):
    def _run(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "client.id": self.name,
            "partition.assignment.strategy": self.strategy, "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
        consumer.subscribe([self.topic])
        try:
            while not self._stop.is_set():
                consumer.poll(0.1)
                self.owned = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()


class KafkaPythonMember(GroupMember):
    def _run(self) -> None:
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                    "cooperative-sticky": CooperativeStickyAssignor}[self.strategy]
        consumer = KafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=self.group, client_id=self.name,
            partition_assignment_strategy=[assignor], enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=300)
        try:
            while not self._stop.is_set():
                consumer.poll(timeout_ms=100)
                self.owned = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()


class AiokafkaMember(GroupMember):
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[self.strategy]
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, group_id=self.group, client_id=self.name,
            partition_assignment_strategy=(assignor,), enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=300)
        await consumer.start()
        try:
            while not self._stop.is_set():
                await consumer.getmany(timeout_ms=100)
                self.owned = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            await consumer.stop()


def assert_members_healthy(members: list[GroupMember]) -> None:
    failures = {member.name: member.failure for member in members if member.failure is not None}
    assert not failures, failures


def group_as_broker_sees_it(bootstrap: str, group: str) -> tuple[str, dict[str, frozenset[int]]] | None:
    """(assignor, client id -> assigned partitions) from DescribeGroups, the assignments
    decoded by librdkafka; None while the group is not Stable."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [description] = [future.result(10) for future in admin.describe_consumer_groups([group]).values()]
    if description.state != ConsumerGroupState.STABLE:
        return None
    return description.partition_assignor, {
        member.client_id: frozenset(tp.partition for tp in member.assignment.topic_partitions)
        for member in description.members}


def is_balanced(members: list[GroupMember], partitions: int, bootstrap: str, group: str) -> bool:
    """Every member's own view: disjoint sets covering every partition, sizes within one;
    and the broker's Stable group holds the same assignment under the members' assignor."""
    assert_members_healthy(members)
    owned = [member.owned for member in members]
    covering = frozenset().union(*owned) == frozenset(range(partitions))
    disjoint = sum(map(len, owned)) == partitions
    if not (covering and disjoint and max(map(len, owned)) - min(map(len, owned)) <= 1):
        return False
    expected = (members[0].strategy, {member.name: member.owned for member in members})
    return group_as_broker_sees_it(bootstrap, group) == expected


def join_and_leave(bootstrap: str, plan: list[tuple[str, str]], partitions: int = 6) -> list[list[int]]:
    """Members join one at a time, then the two oldest leave one at a time; after each
    step the group must settle balanced. Returns the sorted set sizes after each step."""
    topic, group = unique("rebalance"), unique("rebalance-group")
    create_topic(bootstrap, topic, partitions)
    members: list[GroupMember] = []
    sizes: list[list[int]] = []

    def settle(step: str) -> None:
        wait_until(lambda: is_balanced(members, partitions, bootstrap, group),
                   lambda: f"{step}: {[(member.name, sorted(member.owned)) for member in members]}")
        sizes.append(sorted(len(member.owned) for member in members))

    try:
        for index, (client, strategy) in enumerate(plan):
            members.append(DRIVERS[client].member(bootstrap, group, topic, strategy, f"{client}-{index}"))
            settle(f"after {members[-1].name} joined")
        while len(members) > 1:
            leaving = members.pop(0)  # the oldest, the group leader at first
            leaving.leave()
            settle(f"after {leaving.name} left")
        return sizes
    finally:
        for member in members:
            member.leave()


# -- keys, headers, null values, codecs: written by one client, read by all three -----------------

@pytest.mark.parametrize("codec", CODECS)
def test_every_client_reads_every_clients_records_exactly(broker, codec):
    """Partition i is written by client i; each client then reads all three partitions and
    must see every key, value, header and timestamp byte for byte at the acknowledged offset."""
    topic = unique(f"cross-{codec}")
    create_topic(broker.bootstrap, topic, len(PYTHON_CLIENTS))
    expected: Stored = {}
    for partition, client in enumerate(PYTHON_CLIENTS):
        driver = DRIVERS[client]
        records = varied_records(24, partition, f"{client}-{codec}", null_header_values=driver.null_header_values,
                                 null_key_and_value=driver.null_key_and_value)
        positions = driver.produce(broker.bootstrap, topic, records, codec=codec)
        assert positions == [(partition, offset) for offset in range(len(records))], client
        expected.update(zip(positions, records))
    counts = {partition: 24 for partition in range(len(PYTHON_CLIENTS))}
    for client in PYTHON_CLIENTS:
        stored = DRIVERS[client].read(broker.bootstrap, topic, counts)
        mismatched = sorted(position for position in expected if stored.get(position) != expected[position])
        assert not mismatched and len(stored) == len(expected), f"{client} read differently: {mismatched[:5]}"


# -- consumer groups: three members joining and leaving -------------------------------------------

# confluent-kafka's own range and cooperative-sticky runs are in test_groups_clients.py;
# aiokafka has no cooperative assignor (its "sticky" is the eager KIP-54 one).
@pytest.mark.parametrize("client, strategy", [
    ("kafka-python", "range"), ("kafka-python", "cooperative-sticky"),
    ("aiokafka", "range"), ("aiokafka", "roundrobin")])
def test_three_member_group_rebalances_on_join_and_leave(broker, client, strategy):
    sizes = join_and_leave(broker.bootstrap, [(client, strategy)] * 3)
    assert sizes == [[6], [3, 3], [2, 2, 2], [3, 3], [6]]


@pytest.mark.parametrize("plan", [
    [("confluent", "range"), ("kafka-python", "range"), ("aiokafka", "range")],
    [("kafka-python", "cooperative-sticky"), ("confluent", "cooperative-sticky"),
     ("kafka-python", "cooperative-sticky")],
], ids=["range", "cooperative-sticky"])
def test_one_group_of_different_clients_rebalances(broker, plan):
    """Members from different clients in one group: whichever is leader assigns for the
    others, and the leader leaving first hands the role on (aiokafka cannot join a
    cooperative group)."""
    assert join_and_leave(broker.bootstrap, plan) == [[6], [3, 3], [2, 2, 2], [3, 3], [6]]


# -- kill -9: committed offsets and acknowledged data -----------------------------------------

def plain_records(count: int, partitions: int, tag: str) -> list[Record]:
    return [Record(index % partitions, f"key-{index}".encode(), f"{tag}-{index}".encode(),
                   (("index", str(index).encode()),), BASE_TIMESTAMP_MS + index) for index in range(count)]


@pytest.mark.parametrize("client", PYTHON_CLIENTS)
def test_committed_offsets_and_acknowledged_data_survive_kill_9(broker, client):
    driver = DRIVERS[client]
    topic, group = unique(f"kill-{client}"), unique(f"kill-group-{client}")
    create_topic(broker.bootstrap, topic, 2)
    records = plain_records(40, 2, client)
    positions = driver.produce(broker.bootstrap, topic, records)
    first = driver.group_consume(broker.bootstrap, topic, group, 15)
    committed = driver.committed(broker.bootstrap, topic, group, [0, 1])
    assert len(first) == 15 and sum(offset or 0 for offset in committed.values()) == 15, committed

    broker.kill()
    broker.start()

    assert driver.committed(broker.bootstrap, topic, group, [0, 1]) == committed
    assert driver.read(broker.bootstrap, topic, {0: 20, 1: 20}) == dict(zip(positions, records))
    # record i went to partition i % 2 (offset i // 2) stamped BASE + i: the first at or after
    # BASE + 11 is record 12 (offset 6) in partition 0 and record 11 (offset 5) in partition 1
    target = BASE_TIMESTAMP_MS + 11
    found = driver.offsets_for_times(broker.bootstrap, topic, {0: target, 1: target})
    assert {partition: entry[0] for partition, entry in found.items()} == {0: 6, 1: 5}
    rest = driver.group_consume(broker.bootstrap, topic, group, 25)
    assert sorted(first + rest) == sorted(record.value for record in records)


# -- idempotent producer: retries forced by lost responses ------------------------------------

@pytest.mark.parametrize("client", PYTHON_CLIENTS)
def test_idempotent_producer_retries_after_lost_responses_leave_no_duplicates(proxied_broker, client):
    """The proxy swallows the responses to the 2nd, 5th and 9th Produce requests after the
    broker appended them; the client retries those batches with the same sequence numbers
    and the broker must answer with the original offsets instead of appending again."""
    process, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    topic = unique(f"idempotent-{client}")
    create_topic(bootstrap, topic, 1)
    records = plain_records(200, 1, client)
    proxy.lose_produce_responses({2, 5, 9})
    try:
        positions = DRIVERS[client].produce(bootstrap, topic, records, idempotent=True, small_batches=True)
        lost = proxy.responses_lost
    finally:
        proxy.lose_produce_responses(set())
    assert lost == 3, f"only {lost} responses were lost: too few Produce requests to force retries"
    assert positions == [(0, offset) for offset in range(len(records))]
    stored = DRIVERS["confluent"].read(bootstrap, topic, {0: len(records)})
    assert [stored[(0, offset)].value for offset in range(len(records))] == [record.value for record in records]
    assert DRIVERS["confluent"].watermarks(bootstrap, topic, [0]) == {0: (0, len(records))}


@pytest.mark.parametrize("client", PYTHON_CLIENTS)
def test_idempotent_producer_across_a_kill_9_loses_and_duplicates_nothing(proxied_broker, client):
    """kill -9 while an idempotent producer has batches in flight (the proxy counts its
    Produce requests, so the kill lands mid-stream): after the restart the client resends
    them with their sequence numbers; those the broker had written before dying must be
    recognised (producer state rebuilt from the log), the rest appended once."""
    process, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    topic = unique(f"idempotent-kill-{client}")
    create_topic(bootstrap, topic, 1)
    records = plain_records(2000, 1, client)
    outcome: dict = {}

    def produce() -> None:
        try:
            outcome["positions"] = DRIVERS[client].produce(bootstrap, topic, records, idempotent=True,
                                                           small_batches=True)
        except BaseException as error:  # reported below
            outcome["error"] = error

    proxy.lose_produce_responses(set())  # counts from here
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    wait_until(lambda: proxy.produce_requests_seen >= 10, "the producer sending", interval_s=0.002)
    assert producer.is_alive(), "the producer finished before the kill"
    process.kill()
    process.start()
    producer.join(60)
    assert not producer.is_alive() and "error" not in outcome, outcome
    assert outcome["positions"] == [(0, offset) for offset in range(len(records))]
    stored = DRIVERS["confluent"].read(bootstrap, topic, {0: len(records)})
    assert [stored[(0, offset)].value for offset in range(len(records))] == [record.value for record in records]
    assert DRIVERS["confluent"].watermarks(bootstrap, topic, [0]) == {0: (0, len(records))}


# -- ListOffsets by time --------------------------------------------------------------------

# Timestamps (seconds after BASE) of offsets 0-7 in partition 0: two batches, the first
# gzip and the second zstd, out of order inside each, the maximum in the middle of the second.
TIMESTAMP_STEPS = [0, 10, 5, 20, 15, 50, 25, 40]
# target (seconds after BASE) -> the earliest offset whose timestamp is at or after it
EXPECTED_BY_TIME = {-1: 0, 0: 0, 5: 1, 10: 1, 11: 3, 15: 3, 20: 3, 21: 5, 45: 5, 50: 5, 51: None}


def timed_records() -> list[Record]:
    return [Record(0, f"k{offset}".encode(), f"v{offset}".encode(), (), BASE_TIMESTAMP_MS + step * 1000)
            for offset, step in enumerate(TIMESTAMP_STEPS)]


def produce_timed_topic(driver, bootstrap: str) -> str:
    topic = unique(f"times-{driver.name}")
    create_topic(bootstrap, topic, 2)
    records = timed_records()
    assert driver.produce(bootstrap, topic, records[:4], codec="gzip") == [(0, offset) for offset in range(4)]
    assert driver.produce(bootstrap, topic, records[4:], codec="zstd") == [(0, offset) for offset in range(4, 8)]
    return topic


@pytest.mark.parametrize("client", PYTHON_CLIENTS)
def test_list_offsets_by_time_inside_compressed_batches(broker, client):
    driver = DRIVERS[client]
    topic = produce_timed_topic(driver, broker.bootstrap)
    for step, expected_offset in EXPECTED_BY_TIME.items():
        found = driver.offsets_for_times(broker.bootstrap, topic, {0: BASE_TIMESTAMP_MS + step * 1000, 1: 0})
        assert found[1] is None, "partition 1 is empty"
        if expected_offset is None:
            assert found[0] is None, (step, found)
            continue
        offset, timestamp = found[0]
        assert offset == expected_offset, (step, found)
        assert timestamp in (None, BASE_TIMESTAMP_MS + TIMESTAMP_STEPS[offset] * 1000), (step, found)
    assert driver.watermarks(broker.bootstrap, topic, [0, 1]) == {0: (0, 8), 1: (0, 0)}


# aiokafka has no call for ListOffsets v7's max timestamp (-3).
@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_list_offsets_max_timestamp(broker, client):
    driver = DRIVERS[client]
    topic = produce_timed_topic(driver, broker.bootstrap)
    assert driver.max_timestamp(broker.bootstrap, topic, 0) == (5, BASE_TIMESTAMP_MS + 50_000)


# -- admin through aiokafka ------------------------------------------------------------------

DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG = 1, 5  # DescribeConfigs config_source values
TOPIC_ALREADY_EXISTS, INVALID_CONFIG = 36, 40


def test_aiokafka_admin_create_describe_alter_delete_and_create_partitions(broker):
    """AIOKafkaAdminClient: CreateTopics v3, DescribeConfigs v2, AlterConfigs (whole-set
    replace), CreatePartitions, DeleteTopics v3, Metadata for topics and the cluster."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
    from aiokafka.admin import NewTopic as AioNewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    name = unique("aiokafka-admin")

    def errors(response) -> list[int]:
        return [entry["error_code"] for entry in response.to_object()["topic_errors"]]

    async def configs(admin, *names: str) -> dict[str, tuple[str, int]]:
        wanted = dict.fromkeys(names) or None
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=wanted)])
        [resource] = response.to_object()["resources"]
        assert resource["error_code"] == 0, resource
        return {entry["config_names"]: (entry["config_value"], entry["config_source"])
                for entry in resource["config_entries"]}

    async def partition_count(admin) -> int:
        [topic] = await admin.describe_topics([name])
        return len(topic["partitions"])

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            assert errors(await admin.create_topics(
                [AioNewTopic(name, 2, 1, topic_configs={"retention.ms": "60000"})])) == [0]
            assert errors(await admin.create_topics([AioNewTopic(name, 2, 1)])) == [TOPIC_ALREADY_EXISTS]
            compact = AioNewTopic(unique("aiokafka-compact"), 1, 1, topic_configs={"cleanup.policy": "compact"})
            assert errors(await admin.create_topics([compact])) == [INVALID_CONFIG]
            assert await partition_count(admin) == 2
            described = await configs(admin)
            assert described["retention.ms"] == ("60000", DYNAMIC_TOPIC_CONFIG)
            assert described["cleanup.policy"] == ("delete", DEFAULT_CONFIG)

            [altered] = await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs={"segment.ms": "120000"})])
            assert [resource["error_code"] for resource in altered.to_object()["resources"]] == [0]
            after = await configs(admin, "segment.ms", "retention.ms")
            assert after["segment.ms"] == ("120000", DYNAMIC_TOPIC_CONFIG)
            assert after["retention.ms"][1] == DEFAULT_CONFIG  # AlterConfigs replaces the whole set

            assert errors(await admin.create_partitions({name: NewPartitions(4)})) == [0]
            assert await partition_count(admin) == 4
            cluster = await admin.describe_cluster()
            assert [node["node_id"] for node in cluster["brokers"]] == [0] and cluster["controller_id"] == 0
            deleted = (await admin.delete_topics([name])).to_object()["topic_error_codes"]
            assert [entry["error_code"] for entry in deleted] == [0]
            assert name not in await admin.list_topics()
        finally:
            await admin.close()

    run_async(scenario())


# -- kcat consumer groups (-G) ---------------------------------------------------------------

needs_kcat = pytest.mark.skipif(KCAT is None,
                                reason="kcat is not installed (./dev test installs it: apt-get install kcat)")


def kcat(bootstrap: str, *arguments: str, stdin: str | None = None) -> str:
    completed = subprocess.run([KCAT, "-b", bootstrap, *arguments], input=stdin, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def kcat_group_read(bootstrap: str, group: str, topic: str) -> list[dict]:
    """One balanced-consumer run to the end of every assigned partition. The start for
    partitions without a commit comes from auto.offset.reset: kcat's -o would override
    committed offsets too."""
    output = kcat(bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-J", topic)
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@needs_kcat
def test_kcat_group_commits_on_exit_and_the_next_run_resumes(broker):
    topic, group = unique("kcat-group"), unique("kcat-group")
    create_topic(broker.bootstrap, topic, 3)
    lines = "".join(f"key-{index}:value-{index}\n" for index in range(30))
    kcat(broker.bootstrap, "-P", "-t", topic, "-K", ":", "-H", "origin=kcat", stdin=lines)
    first = kcat_group_read(broker.bootstrap, group, topic)
    assert sorted((message["key"], message["payload"]) for message in first) == sorted(
        (f"key-{index}", f"value-{index}") for index in range(30))
    assert all(message["headers"] == ["origin", "kcat"] for message in first)

    kcat(broker.bootstrap, "-P", "-t", topic, "-K", ":", stdin="".join(f"late-{i}:more-{i}\n" for i in range(10)))
    second = kcat_group_read(broker.bootstrap, group, topic)
    assert sorted(message["payload"] for message in second) == sorted(f"more-{index}" for index in range(10))
    committed = DRIVERS["confluent"].committed(broker.bootstrap, topic, group, [0, 1, 2])
    assert sum(committed.values()) == 40, committed


class KcatMember:
    """A `kcat -G` balanced consumer running until SIGTERM; `owned` follows the
    "assigned:" / "revoked:" lines kcat prints on every rebalance."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.process = subprocess.Popen(
            [KCAT, "-b", bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
             "-X", "heartbeat.interval.ms=300", "-J", "-u", topic],  # -u: unbuffered output
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.owned: frozenset[int] = frozenset()
        self.messages: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._follow_rebalances, daemon=True).start()
        threading.Thread(target=self._collect_messages, daemon=True).start()

    def _follow_rebalances(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)
            if "rebalanced" in line and ": assigned: " in line:
                listed = line.split(": assigned: ", 1)[1]
                self.owned = frozenset(int(part.split("]")[0]) for part in listed.split("[")[1:])
            elif "rebalanced" in line and ": revoked: " in line:
                self.owned = frozenset()

    def _collect_messages(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                self.messages.append(json.loads(line))

    def leave(self) -> int:
        """SIGTERM: kcat closes its consumer (LeaveGroup) and exits."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


@needs_kcat
def test_kcat_group_members_split_partitions_and_take_them_back(broker):
    topic, group = unique("kcat-members"), unique("kcat-members")
    create_topic(broker.bootstrap, topic, 4)
    first = KcatMember(broker.bootstrap, group, topic)
    second = None
    try:
        wait_until(lambda: first.owned == frozenset(range(4)), lambda: f"first member alone: {first.stderr}")
        second = KcatMember(broker.bootstrap, group, topic)
        wait_until(lambda: len(first.owned) == len(second.owned) == 2
                   and first.owned | second.owned == frozenset(range(4)),
                   lambda: f"two members: {first.owned} {second.owned}")
        kcat(broker.bootstrap, "-P", "-t", topic, "-K", ":", stdin="".join(f"k{i}:v{i}\n" for i in range(40)))
        wait_until(lambda: len(first.messages) + len(second.messages) >= 40,
                   lambda: f"40 messages read, not {len(first.messages)} + {len(second.messages)}")
        assert {message["partition"] for message in first.messages} <= first.owned
        assert {message["partition"] for message in second.messages} <= second.owned
        assert sorted(message["payload"] for message in first.messages + second.messages) == sorted(
            f"v{index}" for index in range(40))
        assert second.leave() == 0
        wait_until(lambda: first.owned == frozenset(range(4)), lambda: f"after the second left: {first.owned}")
    finally:
        for member in (first, second):
            if member is not None:
                member.leave()


# -- kafkajs consumer group ---------------------------------------------------------------------

@pytest.mark.skipif(KAFKAJS_MISSING,
                    reason="node or kafkajs missing (./dev test installs them: cd tests/js && npm install)")
def test_kafkajs_two_member_group_splits_partitions_and_takes_them_back(broker):
    """tests/js/group_rebalance.js. Compression with kafkajs is covered for none and gzip in
    test_clients_kafkajs.py: gzip is the only codec kafkajs has built in (snappy, lz4 and
    zstd need npm codec plugins, which the suite does not install)."""
    partitions, count = 4, 40
    settings = {"brokers": [broker.bootstrap], "topic": unique("kafkajs-group"), "group": unique("kafkajs-group"),
                "partitions": partitions, "count": count}
    completed = subprocess.run([NODE, "group_rebalance.js", json.dumps(settings)], cwd=JS_DIRECTORY,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:] + "\nbroker log:\n" + broker.log_text()
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    everything = list(range(partitions))
    alone, together, after_leave = report["steps"]
    assert alone == {"first": everything} and after_leave == {"first": everything}
    assert sorted(together["first"] + together["second"]) == everything
    assert len(together["first"]) == len(together["second"]) == partitions // 2
    for member in ("first", "second"):
        assert {entry["partition"] for entry in report[member]["read"]} <= set(report[member]["owned"])
    read = report["first"]["read"] + report["second"]["read"]
    assert sorted(entry["value"] for entry in read) == sorted(f"value-{index}" for index in range(count))
