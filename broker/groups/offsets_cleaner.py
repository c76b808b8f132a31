"""Cleanup of __consumer_offsets: keeps each partition's log (and the replay at start)
proportional to its live state instead of to every commit ever made.

Kafka compacts that topic; Shoal rewrites it instead. When a partition's log has grown
past `log_bytes_min` and `growth_ratio` times the size of its live state, the cleanup:

1. closes the partition's append gate (offsets_log.AppendGate) and waits until no append
   is inside it, so memory holds every record in the log and nothing new lands;
2. takes the live state from the coordinator's memory (`live_records(partition)`: each
   group's last stored metadata record, byte for byte, and its committed offsets), which
   by the coordinator's ordering rule equals a replay of the log;
3. rolls the partition's active segment, appends the live state as a snapshot (batches of
   at most `snapshot_batch_bytes`) starting at the new segment, and opens the gate again;
4. once the snapshot is durable (flush), deletes every record before it
   (`PartitionLog.delete_records_before(snapshot offset)`, durable through the log's
   checkpoint); the older segments go whole.

A replay afterwards reads only the snapshot and what followed it: the same state. A crash
between 3 and 4 leaves the old records followed by the snapshot; every snapshot record
repeats what the records before it say, so that replay also gives the same state (and
the next check cleans again). Work per tick is bounded: one partition's size is checked
per `check_interval_ms`, at most one cleanup runs at a time (as a background task), and
the gate is closed only while the snapshot is built and appended.

An empty live state still moves the start: everything before the log end is obsolete.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from broker import limits
from broker.groups.offsets_log import LogRecord, OffsetsLog
from broker.ids import Offset

log = logging.getLogger("shoal.groups")

LiveRecords = Callable[[int], list[LogRecord]]
SnapshotHook = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class CleanupSettings:
    log_bytes_min: int = limits.group_log_cleanup_bytes_min
    growth_ratio: int = limits.group_log_cleanup_growth_ratio
    check_interval_ms: int = limits.group_log_cleanup_check_interval_ms
    snapshot_batch_bytes: int = limits.group_log_snapshot_batch_bytes


@dataclass(frozen=True)
class CleanupResult:
    partition: int
    snapshot_offset: int  # the new log start
    snapshot_records: int
    log_bytes_before: int
    snapshot_bytes: int


class OffsetsLogCleaner:
    def __init__(self, offsets_log: OffsetsLog, live_records: LiveRecords,
                 settings: CleanupSettings = CleanupSettings()) -> None:
        self._offsets_log = offsets_log
        self._live_records = live_records
        self.settings = settings
        self._next_partition = 0
        self._next_check_ms: int | None = None
        # snapshot size of each partition when last measured: the log must grow past
        # growth_ratio times this before the partition is looked at again
        self._live_bytes = [0] * offsets_log.partition_count
        self._one_at_a_time = asyncio.Lock()  # the tick's cleanup and a direct call never overlap
        # Fault point for tests (named, off by default): awaited after the snapshot is
        # durable and before the older records are deleted, with (partition, offset).
        self.after_snapshot_durable: SnapshotHook | None = None

    def log_bytes(self, partition: int) -> int:
        return sum(segment.size_bytes for segment in self._offsets_log.partition_log(partition).segments())

    def threshold_bytes(self, partition: int) -> int:
        return max(self.settings.log_bytes_min, self.settings.growth_ratio * self._live_bytes[partition])

    def due_partition(self, now_ms: int) -> int | None:
        """Called on ticks: the next partition in turn, if its check is due and its log has
        grown past its threshold. Looks at one partition per check interval."""
        if self._next_check_ms is not None and now_ms < self._next_check_ms:
            return None
        self._next_check_ms = now_ms + self.settings.check_interval_ms
        partition = self._next_partition
        self._next_partition = (partition + 1) % self._offsets_log.partition_count
        return partition if self.log_bytes(partition) >= self.threshold_bytes(partition) else None

    async def clean(self, partition: int, force: bool = False) -> CleanupResult | None:
        """Snapshot the partition's live state and delete what precedes it; None when the
        log turned out not to be large enough relative to its live state (unless force)."""
        async with self._one_at_a_time:
            return await self._clean(partition, force)

    async def _clean(self, partition: int, force: bool) -> CleanupResult | None:
        partition_log = self._offsets_log.partition_log(partition)
        log_bytes_before = self.log_bytes(partition)
        async with self._offsets_log.gate(partition).closed():
            records = self._live_records(partition)
            batches = self._snapshot_batches(records)
            snapshot_bytes = sum(len(batch) for batch in batches)
            self._live_bytes[partition] = snapshot_bytes
            if not force and log_bytes_before < max(self.settings.log_bytes_min,
                                                    self.settings.growth_ratio * snapshot_bytes):
                return None
            partition_log.roll()  # the snapshot starts a segment: everything before it goes whole
            snapshot_offset = int(partition_log.log_end_offset)
            if batches:
                snapshot_offset = await self._offsets_log.append_batches_while_closed(partition, batches)
        await partition_log.flush()  # durable in relaxed flush mode too, before anything is deleted
        if self.after_snapshot_durable is not None:
            await self.after_snapshot_durable(partition, snapshot_offset)
        await partition_log.delete_records_before(Offset(snapshot_offset))
        log.info("__consumer_offsets/%d cleaned: %d bytes -> snapshot of %d record(s), %d bytes, at offset %d",
                 partition, log_bytes_before, len(records), snapshot_bytes, snapshot_offset)
        return CleanupResult(partition, snapshot_offset, len(records), log_bytes_before, snapshot_bytes)

    def _snapshot_batches(self, records: Sequence[LogRecord]) -> list[bytearray]:
        """Records in batches of at most snapshot_batch_bytes of keys and values (a record
        larger than that goes alone: it was appended alone before, so it fits)."""
        batches: list[bytearray] = []
        pending: list[LogRecord] = []
        pending_bytes = 0
        for record in records:
            size = len(record.key) + len(record.value or b"")
            if pending and pending_bytes + size > self.settings.snapshot_batch_bytes:
                batches.append(self._offsets_log.build_batch(pending))
                pending, pending_bytes = [], 0
            pending.append(record)
            pending_bytes += size
        if pending:
            batches.append(self._offsets_log.build_batch(pending))
        return batches
