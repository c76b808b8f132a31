"""The __consumer_offsets partitions: where committed offsets and group metadata become
durable, and where they are read back at start.

A group always writes to one partition (`partition_for`), so its records are totally
ordered and later records win on replay. Each write is one record batch (encoded by
broker/records.py, uncompressed) appended with the log's normal durable append: it
returns once the batch is fsynced (group commit), so a caller acknowledges only what
survives a kill -9. Record keys and values are described in codec.py."""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from broker import limits
from broker.clock import Clock
from broker.ids import LeaderEpoch, Offset
from broker.invariant import invariant
from broker.records import NewRecord, build_batch, iter_records, read_header
from broker.storage.api import PartitionLog

OFFSETS_TOPIC = "__consumer_offsets"

# Explicit configs of the internal topic: keep everything (compaction does not exist yet,
# so the coordinator's records must never be deleted by retention), never tier it.
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


class OffsetsLog:
    def __init__(self, partition_logs: Sequence[PartitionLog],
                 leader_epochs: Sequence[LeaderEpoch], clock: Clock) -> None:
        invariant(partition_logs and len(partition_logs) == len(leader_epochs),
                  "one leader epoch per __consumer_offsets partition")
        self._logs = list(partition_logs)
        self._epochs = list(leader_epochs)
        self._clock = clock

    @property
    def partition_count(self) -> int:
        return len(self._logs)

    def partition_for(self, group_id: str) -> int:
        """Stable across restarts and Python versions (unlike hash())."""
        return zlib.crc32(group_id.encode("utf-8")) % len(self._logs)

    async def append(self, group_id: str, records: Sequence[LogRecord]) -> int:
        """Append `records` as one batch to the group's partition; returns the log offset
        of the first record (record i is at that + i) once durable. Raises the log's
        errors (RecordBatchTooLarge, KafkaStorageError, ...)."""
        invariant(records, "an append to __consumer_offsets needs records")
        now_ms = self._clock.now_ms()
        batch = build_batch(NewRecord(record.key, record.value, timestamp_ms=now_ms) for record in records)
        partition = self.partition_for(group_id)
        result = await self._logs[partition].append(batch, leader_epoch=self._epochs[partition])
        return int(result.base_offset)

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
