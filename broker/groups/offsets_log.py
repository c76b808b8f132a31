"""The __consumer_offsets partitions: where committed offsets and group metadata become
durable, and where they are read back at start.

A group always writes to one partition (`partition_for`), so its records are totally
ordered and later records win on replay. Each write is one record batch (encoded by
broker/records.py, uncompressed) appended with the log's normal durable append: it
returns once the batch is fsynced (group commit), so a caller acknowledges only what
survives a kill -9. Record keys and values are described in codec.py.

Each partition has a gate for the log cleanup (offsets_cleaner.py): an append and the
memory change its caller makes (`on_appended`) run inside the gate; the cleanup closes it,
waits until no append is inside, and only then reads the coordinator's memory and appends
its snapshot, so the snapshot never misses a record already in the log."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator, Sequence

from broker import limits
from broker.clock import Clock
from broker.ids import LeaderEpoch, Offset
from broker.invariant import invariant
from broker.records import NewRecord, build_batch, iter_records, read_header
from broker.storage.api import PartitionLog

OFFSETS_TOPIC = "__consumer_offsets"

# Explicit configs of the internal topic: keep everything (the coordinator's own cleanup,
# offsets_cleaner.py, is what deletes old records; retention never may), never tier it.
OFFSETS_TOPIC_CONFIGS = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "remote.storage.enable": "false",
    "max.message.bytes": str(limits.group_log_batch_bytes_max),
}


@dataclass(frozen=True)
class LogRecord:
    key: bytes
    value: bytes | None  # None: tombstone


class AppendGate:
    """Appends to one partition pass freely until the cleanup closes the gate: then new ones
    wait, and the cleanup waits until the ones inside (append + memory change) are done."""

    def __init__(self) -> None:
        self._inside = 0
        self._open = asyncio.Event()
        self._open.set()
        self._empty = asyncio.Event()
        self._empty.set()

    @contextlib.asynccontextmanager
    async def entered(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._inside += 1
        self._empty.clear()
        try:
            yield
        finally:
            self._inside -= 1
            if self._inside == 0:
                self._empty.set()

    @contextlib.asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        """Only one holder at a time (the cleanup runs one partition at a time)."""
        invariant(self._open.is_set(), "the append gate is closed twice")
        self._open.clear()
        try:
            while self._inside:
                await self._empty.wait()
            yield
        finally:
            self._open.set()


class OffsetsLog:
    def __init__(self, partition_logs: Sequence[PartitionLog],
                 leader_epochs: Sequence[LeaderEpoch], clock: Clock) -> None:
        invariant(partition_logs and len(partition_logs) == len(leader_epochs),
                  "one leader epoch per __consumer_offsets partition")
        self._logs = list(partition_logs)
        self._epochs = list(leader_epochs)
        self._clock = clock
        self._gates = [AppendGate() for _ in self._logs]

    @property
    def partition_count(self) -> int:
        return len(self._logs)

    def partition_for(self, group_id: str) -> int:
        """Stable across restarts and Python versions (unlike hash())."""
        return zlib.crc32(group_id.encode("utf-8")) % len(self._logs)

    def partition_log(self, partition: int) -> PartitionLog:
        return self._logs[partition]

    def gate(self, partition: int) -> AppendGate:
        return self._gates[partition]

    async def append(self, group_id: str, records: Sequence[LogRecord],
                     on_appended: Callable[[int], None] | None = None) -> int:
        """Append `records` as one batch to the group's partition; returns the log offset
        of the first record (record i is at that + i) once durable. `on_appended(offset)`
        is the caller's memory change, made before a cleanup of the partition may read
        memory. Raises the log's errors (RecordBatchTooLarge, KafkaStorageError, ...)."""
        invariant(records, "an append to __consumer_offsets needs records")
        partition = self.partition_for(group_id)
        async with self._gates[partition].entered():
            batch = self.build_batch(records)
            result = await self._logs[partition].append(batch, leader_epoch=self._epochs[partition])
            if on_appended is not None:
                on_appended(int(result.base_offset))
            return int(result.base_offset)

    def build_batch(self, records: Sequence[LogRecord]) -> bytearray:
        now_ms = self._clock.now_ms()
        return build_batch(NewRecord(record.key, record.value, timestamp_ms=now_ms) for record in records)

    async def append_batches_while_closed(self, partition: int, batches: Sequence[bytearray]) -> int:
        """The cleanup's snapshot: append `batches` back to back (the caller holds the
        partition's gate closed, so nothing lands between them); returns the first offset
        once all are durable per the flush policy."""
        partition_log = self._logs[partition]
        first_offset = int(partition_log.log_end_offset)
        results = await asyncio.gather(*(partition_log.append(batch, leader_epoch=self._epochs[partition])
                                         for batch in batches), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        invariant(int(results[0].base_offset) == first_offset and all(
            int(later.base_offset) == int(earlier.last_offset) + 1 for earlier, later in zip(results, results[1:])),
            "snapshot batches are not contiguous", first_offset, [int(result.base_offset) for result in results])
        return first_offset

    async def replay(self, apply: Callable[[bytes, bytes | None, int], None]) -> int:
        """Call apply(key, value, log_offset) for every record of every partition, in log
        order per partition. Returns the number of records."""
        count = 0
        for partition_log in self._logs:
            for key, value, offset in _records_of(partition_log):
                if key is not None:
                    apply(key, value, offset)
                    count += 1
                if count % 1000 == 0:
                    await asyncio.sleep(0)  # a long replay must not starve the event loop
        return count


def _records_of(partition_log: PartitionLog) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    offset = partition_log.log_start_offset
    end = partition_log.high_watermark
    while offset < end:
        regions = partition_log.read(Offset(offset), limits.group_log_replay_read_bytes)
        next_offset = offset
        for region in regions:
            for batch in _batches(region.read_bytes()):
                for record in iter_records(batch):
                    if record.offset >= offset:
                        yield record.key, record.value, record.offset
                next_offset = max(next_offset, read_header(batch).last_offset + 1)
        if next_offset <= offset:
            break  # nothing readable below the high watermark: stop rather than spin
        offset = next_offset


def _batches(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    position = 0
    while position < len(view):
        size = read_header(view, position).size
        invariant(position + size <= len(view), "a FileRegion holds whole batches", position, size, len(view))
        yield view[position: position + size]
        position += size
