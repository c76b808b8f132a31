"""DiskPartitionLog: the local log of one partition (implements api.PartitionLog).

A list of segments, oldest first; the last one is active and takes appends. Appends are
two-phase: `write()` / `write_as_follower()` put batches in the file at once and return a
PendingAppend; they become durable through the group-commit flusher. The durable end is
the end of fsynced data (fsync mode) or of written data (relaxed mode); the high
watermark follows it (local commit) or is moved by the owner (external commit).
`truncate_to` removes a suffix (a follower's divergent tail). The leader epoch cache
(leader_epoch_cache.py) follows writes, truncations and log start moves.
Housekeeping (called on ticks with `now_ms`) rolls old active segments, runs the relaxed
mode fsync, applies retention and deletes retired segment files after a delay, so a
reader holding a FileRegion of a retired segment can still finish. `delete_records_before`
(Kafka's DeleteRecords) moves the log start offset forward durably through a checkpoint
file (start_checkpoint.py) that recovery honours.

Ownership: every method runs on the event loop that owns this partition; worker threads
only recover segment files before the log is published and fsync duplicated descriptors.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from broker import limits
from broker.clock import Clock
from broker.ids import NO_EPOCH, NO_OFFSET, LeaderEpoch, Offset
from broker.invariant import InvariantViolation, invariant
from broker.records import (
    BatchHeader, RecordBatchTooLarge, iter_records, patch_base_offset_and_leader_epoch,
    validate_batch,
)
from broker.storage.api import (
    AppendResult, AppendTruncated, BatchHeaderInfo, EpochEntry, FileRegion, KafkaStorageError,
    OffsetOutOfRange, PartitionLogConfig, PendingAppend, SegmentInfo, UnexpectedAppendOffset,
)
from broker.storage.flusher import GroupCommitFlusher, sync_data, sync_directory
from broker.storage.index import read_file_or_none, write_file_atomically
from broker.storage.leader_epoch_cache import (
    LeaderEpochCache, leader_epoch_path, parse_leader_epoch_checkpoint,
)
from broker.storage.probe import LogProbe
from broker.storage.segment import (
    INDEX_SUFFIX, TIMEINDEX_SUFFIX, Segment, parse_segment_base_offset,
)
from broker.storage.start_checkpoint import read_delete_records_offset, write_delete_records_offset

log = logging.getLogger("shoal.storage")


class DiskPartitionLog:
    def __init__(self, topic: str, partition: int, directory: Path, config: PartitionLogConfig,
                 clock: Clock, executor: Executor | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.probe = LogProbe()
        self._config = config
        self._clock = clock
        self._executor = executor
        self._segments: list[Segment] = []
        self._log_start_offset = 0
        self._delete_records_offset = 0  # persisted floor of the log start (DeleteRecords)
        self._structure_lock = asyncio.Lock()  # one delete_records_before / truncate_to at a time
        self._log_end_offset = 0
        self._durable_end_offset = 0
        self._high_watermark = 0
        self._epoch_cache = LeaderEpochCache()
        self._truncating = False  # truncate_to runs: writes and rolls wait for it
        self._truncations = 0  # suffix truncations so far; durable() re-checks its batch after one
        self._archived_offset: int = NO_OFFSET
        self._listeners: list[Callable[[], None]] = []  # high watermark moved
        self._durable_listeners: list[Callable[[], None]] = []  # durable end moved
        self._retired: list[tuple[int, Segment]] = []  # (delete at ms, segment)
        self._last_relaxed_flush_ms = clock.now_ms()
        self._flusher: GroupCommitFlusher | None = None
        self._closed = False

    @classmethod
    async def open(cls, topic: str, partition: int, directory: Path, config: PartitionLogConfig,
                   clock: Clock, executor: Executor | None = None,
                   start_offset: Offset = Offset(0)) -> "DiskPartitionLog":
        """Open (recovering) or create the log in `directory`. An empty log starts at
        start_offset (e.g. a topic restored from the cold tier)."""
        partition_log = cls(topic, partition, directory, config, clock, executor)
        recovered = await asyncio.get_running_loop().run_in_executor(
            executor, recover_segments, directory, start_offset, clock.now_ms())
        partition_log._install(recovered)
        return partition_log

    def _install(self, recovered: "RecoveredSegments") -> None:
        self._segments = recovered.segments
        self._delete_records_offset = recovered.delete_records_offset
        self._log_start_offset = recovered.log_start_offset
        self._log_end_offset = self._segments[-1].last_offset + 1
        self._durable_end_offset = self._log_end_offset  # recovery fsynced the tail
        self._high_watermark = self._log_end_offset
        if self._config.external_commit:
            self._high_watermark = self._committed_at_open()
        self._epoch_cache = recovered.epoch_cache
        self.probe.recovery_cut_bytes = recovered.cut_bytes
        self._flusher = GroupCommitFlusher(self.directory, self._log_end_offset, self.probe,
                                           self._executor, self._on_durable)
        for segment in recovered.resealed:
            self._flusher.note_sealed(segment)
        self._flusher.start_flush()

    def _committed_at_open(self) -> int:
        """External commit: what this replica alone knows is committed after a restart, its
        log start (deletions only happen below the high watermark), rounded up to the end of
        the batch holding it (DeleteRecords may start the log inside a batch; high
        watermarks are batch boundaries, replicas' log ends). The owner may raise it to a
        value it persisted, or learns it from the leader."""
        start = self._log_start_offset
        if start >= self._log_end_offset:
            return start
        found = self._segments[self._segment_index(start)].batch_containing(start)
        assert found is not None
        return start if found[1].base_offset == start else found[1].last_offset + 1

    # -- offsets ------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> Offset:
        return Offset(self._log_start_offset)

    @property
    def log_end_offset(self) -> Offset:
        return Offset(self._log_end_offset)

    @property
    def delete_records_offset(self) -> Offset:
        return Offset(self._delete_records_offset)

    @property
    def durable_end_offset(self) -> Offset:
        return Offset(self._durable_end_offset)

    @property
    def high_watermark(self) -> Offset:
        return Offset(self._high_watermark)

    @property
    def config(self) -> PartitionLogConfig:
        return self._config

    # -- append ---------------------------------------------------------------------------

    def write(self, batch: bytearray | memoryview, *, leader_epoch: LeaderEpoch,
              log_append_time_ms: int | None = None) -> PendingAppend:
        """Validate, assign offsets, patch, write; see api.PartitionLog.write."""
        flusher = self._flusher_for_writes()
        view = memoryview(batch)
        invariant(not view.readonly, "append needs a writable batch buffer to patch offsets")
        header = validate_batch(view)  # the CRC again: the bytes we store are the bytes we checked
        invariant(header.size == len(view), "append takes exactly one batch", header.size, len(view))
        if header.size > self._config.max_message_bytes:
            raise RecordBatchTooLarge(
                f"record batch of {header.size} bytes exceeds max.message.bytes {self._config.max_message_bytes}")
        self._check_epoch_order(leader_epoch, self._epoch_cache.latest_epoch)
        base_offset = self._log_end_offset
        patch_base_offset_and_leader_epoch(view, base_offset, leader_epoch)
        header = header._replace(base_offset=base_offset, partition_leader_epoch=leader_epoch)
        try:
            self._write_batch(flusher, view, header)
        finally:
            self._after_writes(flusher)
        return self._pending(base_offset, header, log_append_time_ms)

    async def append(self, batch: bytearray | memoryview, *, leader_epoch: LeaderEpoch,
                     log_append_time_ms: int | None = None) -> AppendResult:
        pending = self.write(batch, leader_epoch=leader_epoch, log_append_time_ms=log_append_time_ms)
        return await self._wait_durable(pending)  # = pending.durable(), one coroutine less

    def write_as_follower(self, records: bytes | bytearray | memoryview) -> PendingAppend:
        """Batches copied from the leader, kept as they are; see api.PartitionLog."""
        flusher = self._flusher_for_writes()
        batches = self._follower_batches(memoryview(records))
        try:
            for view, header in batches:
                self._write_batch(flusher, view, header)
        finally:
            self._after_writes(flusher)
        return self._pending(batches[0][1].base_offset, batches[-1][1], None)

    def _follower_batches(self, view: memoryview) -> list[tuple[memoryview, BatchHeader]]:
        """Every batch of `view`, checked (CRC, offsets following log_end_offset, epochs not
        going back) before any is written."""
        invariant(len(view) > 0, "write_as_follower needs at least one batch")
        batches: list[tuple[memoryview, BatchHeader]] = []
        expected_offset = self._log_end_offset
        latest_epoch = self._epoch_cache.latest_epoch
        position = 0
        while position < len(view):
            header = validate_batch(view, position)
            if header.base_offset != expected_offset:
                raise UnexpectedAppendOffset(
                    f"{self.topic}/{self.partition}: batch at offset {header.base_offset} where "
                    f"{expected_offset} was expected (log end {self._log_end_offset})")
            self._check_epoch_order(header.partition_leader_epoch, latest_epoch)
            latest_epoch = max(latest_epoch, header.partition_leader_epoch)
            batches.append((view[position: position + header.size], header))
            expected_offset = header.last_offset + 1
            position += header.size
        return batches

    def _check_epoch_order(self, leader_epoch: int, latest_epoch: int) -> None:
        if 0 <= leader_epoch < latest_epoch:
            raise InvariantViolation(
                f"{self.topic}/{self.partition}: a write's leader epoch {leader_epoch} is below the latest epoch "
                f"{latest_epoch} in the log (a stale leader, or a follower that did not truncate to the "
                f"divergence point)")

    def _flusher_for_writes(self) -> GroupCommitFlusher:
        flusher = self._writable_flusher()
        if self._truncating:
            raise KafkaStorageError(f"{self.topic}/{self.partition} is being truncated")  # retriable
        return flusher

    def _write_batch(self, flusher: GroupCommitFlusher, view: memoryview, header: BatchHeader) -> None:
        """Write one batch whose header holds its final base offset and leader epoch."""
        try:
            segment = self._segment_for(header, header.partition_leader_epoch)
            segment.append(view, header)
        except OSError as error:  # disk full, too many open files, I/O error
            raise KafkaStorageError(f"cannot append to {self.directory}: {error}") from error
        self._log_end_offset = header.last_offset + 1
        flusher.note_written(segment, self._log_end_offset, header.size)
        self.probe.appended_batches += 1
        self.probe.appended_bytes += header.size
        if self._epoch_cache.assign(header.partition_leader_epoch, header.base_offset):
            self._epoch_cache_changed()

    def _after_writes(self, flusher: GroupCommitFlusher) -> None:
        """fsync mode: start a round now (durable() waits for it; concurrent writes join it).
        Relaxed mode: written is durable; fsync early when too many bytes are unsynced."""
        if self._config.flush_fsync:
            flusher.start_flush()
            return
        self._note_durable_end()
        if flusher.pending_bytes >= limits.flush_pending_bytes_max:
            flusher.start_flush()

    def _pending(self, base_offset: int, last: BatchHeader, log_append_time_ms: int | None) -> PendingAppend:
        return PendingAppend(Offset(base_offset), Offset(last.last_offset), LeaderEpoch(last.partition_leader_epoch),
                             -1 if log_append_time_ms is None else log_append_time_ms, Offset(self._log_start_offset),
                             self._wait_durable, (last, self._truncations))

    async def _wait_durable(self, pending: PendingAppend) -> AppendResult:
        assert self._flusher is not None
        last, truncations = pending.log_token  # type: ignore[misc]
        if truncations != self._truncations:
            self._check_not_truncated(pending, last)
        if self._config.flush_fsync:
            await self._flusher.wait_durable(pending.last_offset + 1)
        return AppendResult(pending.base_offset, pending.last_offset, pending.log_append_time_ms,
                            Offset(self._log_start_offset))

    def _check_not_truncated(self, pending: PendingAppend, last: BatchHeader) -> None:
        """A truncation ran since the write: the written batches must still be in the log,
        the same last batch (offsets, epoch, CRC) at the same place. Offsets below the log
        start were committed before they were deleted, and committed data is never
        truncated."""
        if last.last_offset < self._log_start_offset:
            return
        found = None
        if last.last_offset < self._log_end_offset:
            found = self._segments[self._segment_index(last.base_offset)].batch_containing(last.base_offset)
        if found is None or not _same_batch(found[1], last):
            raise AppendTruncated(f"{self.topic}/{self.partition}: offsets {pending.base_offset}.."
                                  f"{pending.last_offset} were truncated before they became durable")

    def _writable_flusher(self) -> GroupCommitFlusher:
        if self._closed or self._flusher is None:
            raise KafkaStorageError(f"{self.topic}/{self.partition} is closed")  # retriable for clients
        if self._flusher.failure is not None:
            raise self._flusher.failure
        return self._flusher

    def _segment_for(self, header: BatchHeader, leader_epoch: int) -> Segment:
        """The active segment, rolled first when the batch does not fit or the leader epoch
        changed (each segment holds one epoch, which the archiver records)."""
        active = self._segments[-1]
        if not active.is_empty and (active.leader_epoch != leader_epoch or not active.can_hold(
                header, self._log_end_offset, self._config.segment_bytes)):
            self._roll_active()
        return self._segments[-1]

    def _roll_active(self) -> None:
        """Seal the active segment and open the next one (created first: if that fails the
        active segment stays open for appends)."""
        assert self._flusher is not None
        active = self._segments[-1]
        next_segment = Segment.create(self.directory, self._log_end_offset, self._clock.now_ms())
        active.seal()
        self._flusher.note_sealed(active)
        self._segments.append(next_segment)
        self._flusher.note_directory_changed()
        self._flusher.start_flush()
        self.probe.segments_rolled += 1

    def roll(self) -> None:
        if self._closed or self._truncating or self._segments[-1].is_empty:
            return
        try:
            self._roll_active()
        except OSError as error:
            raise KafkaStorageError(f"cannot roll {self.directory}: {error}") from error

    # -- durability and listeners -----------------------------------------------------------

    def _on_durable(self, durable_offset: int) -> None:
        self._note_durable_end()

    def _note_durable_end(self) -> None:
        """The durable end: fsynced (fsync mode) or written (relaxed mode) data. When it
        advances, durable listeners hear it and, in local commit mode, the high watermark
        follows."""
        assert self._flusher is not None
        end = self._log_end_offset
        if self._config.flush_fsync:
            end = min(self._flusher.durable_offset, end)
        if end <= self._durable_end_offset:
            return
        self._durable_end_offset = end
        self._notify(self._durable_listeners, "durable")
        if not self._config.external_commit:
            self._advance_high_watermark(end)

    def advance_high_watermark(self, offset: Offset) -> None:
        """External commit mode: the owner commits up to `offset`; see api.PartitionLog."""
        invariant(self._config.external_commit, "advance_high_watermark needs external commit mode",
                  self.topic, self.partition)
        invariant(offset <= self._durable_end_offset, "high watermark beyond the durable end",
                  self.topic, self.partition, offset, self._durable_end_offset)
        self._advance_high_watermark(offset)

    def _advance_high_watermark(self, offset: int) -> None:
        if offset <= self._high_watermark:
            return
        self._high_watermark = offset
        self._notify(self._listeners, "append")

    def _notify(self, listeners: list[Callable[[], None]], kind: str) -> None:
        for callback in list(listeners):
            try:
                callback()
            except InvariantViolation:
                raise
            except Exception:
                log.exception("%s listener of %s/%d failed", kind, self.topic, self.partition)

    def add_append_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def remove_append_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def add_durable_listener(self, callback: Callable[[], None]) -> None:
        self._durable_listeners.append(callback)

    def remove_durable_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._durable_listeners:
            self._durable_listeners.remove(callback)

    async def flush(self) -> None:
        """Make everything written so far durable now."""
        if self._flusher is not None:
            await self._flusher.flush()

    # -- read -----------------------------------------------------------------------------------

    def read(self, offset: Offset, max_bytes: int, *, upper_bound: Offset | None = None,
             min_one_batch: bool = True) -> list[FileRegion]:
        if offset < self._log_start_offset or offset > self._log_end_offset:
            raise OffsetOutOfRange(
                f"offset {offset} outside [{self._log_start_offset}, {self._log_end_offset}] "
                f"of {self.topic}/{self.partition}")
        bound = self._high_watermark if upper_bound is None else min(upper_bound, self._log_end_offset)
        regions: list[FileRegion] = []
        budget = _ReadBudget(max_bytes, min_one_batch)
        for segment in self._segments[self._segment_index(offset):]:
            if offset >= bound or budget.exhausted:
                break
            region = self._read_segment(segment, offset, bound, budget)
            if region is not None:
                regions.append(region)
            offset = Offset(segment.last_offset + 1)
        return regions

    def _read_segment(self, segment: Segment, offset: int, bound: int, budget: "_ReadBudget") -> FileRegion | None:
        found = segment.batch_range(offset, bound, budget.take)
        if found is None:
            return None
        start, end = found
        return FileRegion(segment.log_path, start, end - start)

    def _segment_index(self, offset: int) -> int:
        """Index of the segment holding `offset` (the first one for offsets before it)."""
        return max(0, bisect.bisect_right(self._segments, offset, key=_base_offset) - 1)

    def iter_batch_headers(self, from_offset: Offset) -> Iterator[BatchHeaderInfo]:
        from_offset = Offset(max(from_offset, self._log_start_offset))
        for segment in self._segments[self._segment_index(from_offset):]:
            for position, header in segment.scan_headers(segment.scan_start(from_offset)):
                if header.last_offset >= from_offset:
                    yield _header_info(header, position)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[Offset, int] | None:
        """Never an offset below the log start (a segment may straddle it after
        delete_records_before)."""
        for segment in self._segments:
            if segment.max_timestamp_ms < timestamp_ms or segment.last_offset < self._log_start_offset:
                continue
            relative = segment.time_index.last_offset_below(timestamp_ms)
            start = segment.scan_start(segment.base_offset + relative) if relative is not None else 0
            for position, header in segment.scan_headers(start):
                if header.last_offset >= self._high_watermark:
                    return None
                if header.max_timestamp >= timestamp_ms and header.last_offset >= self._log_start_offset:
                    found = _first_record_at_or_after(segment, position, header, timestamp_ms,
                                                      self._log_start_offset)
                    if found is not None:
                        return found
        return None

    def max_timestamp(self) -> tuple[Offset, int] | None:
        best: Segment | None = None
        for segment in self._segments:
            if segment.max_timestamp_ms >= 0 and (best is None or segment.max_timestamp_ms > best.max_timestamp_ms):
                best = segment
        if best is None:
            return None
        for position, header in best.scan_headers(best.scan_start(best.offset_of_max_timestamp)):
            if header.last_offset >= best.offset_of_max_timestamp:
                return _record_with_timestamp(best, position, header, best.max_timestamp_ms)
        raise InvariantViolation(f"batch of the max timestamp not found in {best.log_path}")

    def segments(self) -> list[SegmentInfo]:
        return [segment.info() for segment in self._segments]

    # -- leader epochs ---------------------------------------------------------------------

    @property
    def latest_epoch(self) -> LeaderEpoch:
        return self._epoch_cache.latest_epoch

    def end_offset_for(self, requested_epoch: LeaderEpoch) -> tuple[LeaderEpoch, Offset]:
        return self._epoch_cache.end_offset_for(requested_epoch, self._log_end_offset)

    def epoch_for_offset(self, offset: Offset) -> LeaderEpoch:
        if not self._log_start_offset <= offset < self._log_end_offset:
            return NO_EPOCH
        return self._epoch_cache.epoch_for_offset(offset)

    def leader_epoch_entries(self) -> list[EpochEntry]:
        return self._epoch_cache.entries

    def _epoch_cache_changed(self) -> None:
        """The next flush round writes the checkpoint file (in write order: after the data)."""
        assert self._flusher is not None
        self._flusher.note_epoch_checkpoint(leader_epoch_path(self.directory), self._epoch_cache.to_bytes())

    def _log_start_moved(self) -> None:
        assert self._flusher is not None
        if self._epoch_cache.truncate_from_start(self._log_start_offset):
            self._epoch_cache_changed()
            self._flusher.start_flush()

    # -- suffix truncation ------------------------------------------------------------------

    async def truncate_to(self, offset: Offset) -> Offset:
        """Remove every batch at or above `offset`; see api.PartitionLog.truncate_to."""
        async with self._structure_lock:
            flusher = self._writable_flusher()
            if offset >= self._log_end_offset:
                return self.log_end_offset
            self._check_truncation(offset, offset)
            self._truncating = True
            try:
                await flusher.wait_idle()  # no round holds descriptors or index bytes of what changes
                flusher = self._writable_flusher()
                target = self._batch_start(offset)
                self._check_truncation(offset, target)
                cut = self._truncate_in_memory(flusher, target)
                await self._truncate_files(flusher, cut)
            finally:
                self._truncating = False
        log.info("%s/%d: truncated to offset %d (asked %d)", self.topic, self.partition, target, offset)
        return self.log_end_offset

    def _check_truncation(self, requested: int, target: int) -> None:
        invariant(target >= self._high_watermark, "truncation below the high watermark would remove committed data",
                  self.topic, self.partition, requested, target, self._high_watermark)
        invariant(target > self._archived_offset, "truncation below the archived offset would remove data the "
                  "cold tier holds", self.topic, self.partition, requested, target, self._archived_offset)

    def _batch_start(self, offset: int) -> int:
        """Base offset of the batch holding `offset` (below the log end)."""
        found = self._segments[self._segment_index(offset)].batch_containing(offset)
        invariant(found is not None, "no batch holds an offset below the log end", self.topic, self.partition, offset)
        assert found is not None
        return found[1].base_offset

    def _truncate_in_memory(self, flusher: GroupCommitFlusher, target: int) -> "_Cut":
        """The log ends at `target` from now on (no await here: readers and writers see
        the old log or the new one). Files are changed afterwards by _truncate_files."""
        index = self._segment_index(target)
        kept = self._segments[index]
        removed = self._segments[index + 1:]
        del self._segments[index + 1:]
        for segment in removed:
            flusher.forget_segment(segment)
            segment.close()
        flusher.cancel_seal(kept)  # still dirty: a round may sync it before or after the cut
        position = kept.forget_from(target)
        self._log_end_offset = target
        self._durable_end_offset = min(self._durable_end_offset, target)
        flusher.truncate(target)
        self._truncations += 1
        if self._epoch_cache.truncate_from_end(target):
            self._epoch_cache_changed()
        return _Cut(kept, position, removed)

    async def _truncate_files(self, flusher: GroupCommitFlusher, cut: "_Cut") -> None:
        """Later segments go first, durably; then the kept segment is cut and synced; then
        the epoch checkpoint. A crash at any point leaves a prefix of the old log (recovery
        drops whatever does not follow), never old batches after new ones. A failure
        fails the partition: what the disk holds is unknown."""
        try:
            descriptor = os.dup(cut.kept.descriptor)
            await asyncio.get_running_loop().run_in_executor(
                self._executor, _cut_files, self.directory, cut, descriptor)
        except OSError as error:
            flusher.fail(error, "truncation")
            raise KafkaStorageError(f"cannot truncate {self.directory}: {error}") from error
        await flusher.flush()

    # -- housekeeping -------------------------------------------------------------------------------

    def set_archived_offset(self, offset: Offset) -> None:
        self._archived_offset = max(self._archived_offset, offset)

    @property
    def archived_offset(self) -> Offset:
        return Offset(self._archived_offset)

    def update_config(self, config: PartitionLogConfig) -> None:
        was_external = self._config.external_commit
        self._config = config
        self._note_durable_end()  # relaxed mode: everything written is durable
        if was_external and not config.external_commit:
            self._advance_high_watermark(self._durable_end_offset)

    async def housekeeping(self, now_ms: int) -> None:
        if self._closed:
            return
        self._roll_if_old(now_ms)
        self._flush_if_due(now_ms)
        self._apply_retention(now_ms)
        await self._delete_retired(now_ms)

    def _roll_if_old(self, now_ms: int) -> None:
        active = self._segments[-1]
        if not self._truncating and not active.is_empty and now_ms - active.created_ms >= self._config.segment_ms:
            self._roll_active()

    def _flush_if_due(self, now_ms: int) -> None:
        """Relaxed mode: start an fsync round every flush_interval_ms, without waiting for
        it (one tick serves every partition; their rounds run in parallel)."""
        assert self._flusher is not None
        if self._config.flush_fsync or not self._flusher.has_pending():
            return
        if now_ms - self._last_relaxed_flush_ms >= self._config.flush_interval_ms:
            self._last_relaxed_flush_ms = now_ms
            self._flusher.start_flush()

    def _retention_limits(self) -> tuple[int, int]:
        config = self._config
        if config.remote_storage_enable:
            return (_tighter(config.local_retention_bytes, config.retention_bytes),
                    _tighter(config.local_retention_ms, config.retention_ms))
        return config.retention_bytes, config.retention_ms

    def _apply_retention(self, now_ms: int) -> None:
        """Retire the oldest sealed segments while time or size retention says so (as Kafka:
        by size only while the rest still holds at least retention bytes), only segments
        wholly below the high watermark (Kafka's rule: never uncommitted data). A
        remote-enabled log retires only segments wholly at or below the archived offset."""
        limit_bytes, limit_ms = self._retention_limits()
        total_bytes = sum(segment.size_bytes for segment in self._segments)
        while len(self._segments) > 1:
            oldest = self._segments[0]
            if oldest.last_offset >= self._high_watermark:
                break
            if self._config.remote_storage_enable and oldest.last_offset > self._archived_offset:
                break
            expired = limit_ms >= 0 and now_ms - _newest_time_ms(oldest) > limit_ms
            oversized = limit_bytes >= 0 and total_bytes - oldest.size_bytes >= limit_bytes
            if not (expired or oversized):
                break
            self._retire(self._segments.pop(0), now_ms, "retention")
            total_bytes -= oldest.size_bytes

    def _retire(self, segment: Segment, now_ms: int, reason: str) -> None:
        assert self._flusher is not None
        invariant(segment.sealed, "only sealed segments are retired", segment.log_path)
        self._flusher.forget_segment(segment)
        self._retired.append((now_ms + limits.segment_delete_delay_ms, segment))
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        self._log_start_moved()
        self.probe.segments_deleted += 1
        log.info("%s/%d: %s removes segment %d..%d; log start offset now %d", self.topic, self.partition,
                 reason, segment.base_offset, segment.last_offset, self._log_start_offset)

    # -- delete records (Kafka's DeleteRecords) ---------------------------------------------

    async def delete_records_before(self, offset: Offset) -> Offset:
        """Make `offset` the log start offset for good; see api.PartitionLog."""
        self._writable_flusher()
        if offset > self._high_watermark:
            raise OffsetOutOfRange(f"cannot delete records before {offset}: above the high watermark "
                                   f"{self._high_watermark} of {self.topic}/{self.partition}")
        async with self._structure_lock:
            if offset <= self._delete_records_offset:
                return self.log_start_offset
            # Persisted even below the local start: a remote-enabled log's local start may
            # be far above it, and the cold tier reads its floor from delete_records_offset.
            await self._persist_delete_records_offset(offset)
            if self._closed:
                return Offset(offset)
            self._delete_records_offset = max(self._delete_records_offset, offset)
            self._log_start_offset = max(self._log_start_offset, offset)
            self._log_start_moved()
            self._retire_segments_below_start(self._clock.now_ms())
            log.info("%s/%d: records before %d deleted", self.topic, self.partition, offset)
        return self.log_start_offset

    async def _persist_delete_records_offset(self, offset: int) -> None:
        """The checkpoint first (a crash after it cannot bring the records back), and only
        once everything below the new start is durable (relaxed mode), so recovery never
        finds the checkpoint beyond data it was promised."""
        flusher = self._writable_flusher()
        if offset > flusher.durable_offset:
            await flusher.flush()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, write_delete_records_offset, self.directory, offset)
        except OSError as error:
            raise KafkaStorageError(f"cannot write the delete-records checkpoint of {self.directory}: {error}") from error

    def _retire_segments_below_start(self, now_ms: int) -> None:
        """Retire every segment wholly below the log start; an active segment wholly below it
        (the start is the log end) is rolled first, so no deleted batch stays readable on
        disk. A segment straddling the start stays; reads below the start are refused."""
        active = self._segments[-1]
        if not active.is_empty and active.last_offset < self._log_start_offset:
            try:
                self._roll_active()
            except OSError:
                log.warning("%s/%d: cannot roll after deleting records; the active segment keeps "
                            "them on disk (unreadable)", self.topic, self.partition, exc_info=True)
        while len(self._segments) > 1 and self._segments[0].last_offset < self._log_start_offset:
            self._retire(self._segments.pop(0), now_ms, "delete records")

    async def _delete_retired(self, now_ms: int) -> None:
        due = [segment for delete_at_ms, segment in self._retired if delete_at_ms <= now_ms]
        if not due:
            return
        self._retired = [(at, segment) for at, segment in self._retired if at > now_ms]
        await self._delete_segment_files(due)

    async def _delete_segment_files(self, segments: list[Segment]) -> None:
        assert self._flusher is not None
        if self._flusher.failure is None:
            await self._flusher.flush()  # no round may still be writing their index files
        for segment in segments:
            segment.close()
        await asyncio.get_running_loop().run_in_executor(self._executor, _delete_files, segments, self.directory)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._structure_lock:
            pass  # a truncation or deletion under way finishes first
        try:
            await self.flush()
        except KafkaStorageError:
            log.exception("%s/%d: closing with unsynced data", self.topic, self.partition)
        retired = [segment for _, segment in self._retired]
        self._retired = []
        if retired:
            await self._delete_segment_files(retired)
        for segment in self._segments:
            segment.close()


# ---------------------------------------------------------------------------------------
# recovery (runs in a worker thread before the log is published)


@dataclass
class RecoveredSegments:
    segments: list[Segment]
    resealed: list[Segment] = field(default_factory=list)  # sealed, index files to write
    cut_bytes: int = 0
    delete_records_offset: int = 0  # from the checkpoint; the log starts at or above it
    log_start_offset: int = 0
    epoch_cache: LeaderEpochCache = field(default_factory=LeaderEpochCache)


def recover_segments(directory: Path, start_offset: int, now_ms: int) -> RecoveredSegments:
    """Open every segment in `directory`: trusted sealed segments from their indexes, the
    rest by a full scan. A cut in the middle of the log (a torn batch in a segment that is
    not the last) drops every later segment: nothing after a torn batch was acknowledged.
    Segments wholly below the delete-records checkpoint are removed unread. The leader
    epoch cache comes from the segments' batch headers."""
    _ensure_directory(directory)
    delete_records_offset = read_delete_records_offset(directory)
    base_offsets = _drop_segments_below(directory, _list_segments(directory), delete_records_offset)
    recovered = RecoveredSegments(segments=[], delete_records_offset=delete_records_offset)
    for number, base_offset in enumerate(base_offsets):
        is_last = number == len(base_offsets) - 1
        segment = None if is_last else Segment.open_trusted(directory, base_offset, now_ms)
        cut_bytes = 0
        if segment is None:
            segment, cut_bytes = Segment.recover_by_scan(directory, base_offset, now_ms)
            recovered.cut_bytes += cut_bytes
            if segment.is_empty and not cut_bytes and not is_last:
                segment.close()  # an empty file between segments holds nothing: drop it
                _drop_segments(directory, [base_offset], "it is an empty file between segments")
                continue
        previous = recovered.segments[-1] if recovered.segments else None
        if previous is not None and segment.base_offset != previous.last_offset + 1:
            segment.close()
            _drop_segments(directory, base_offsets[number:], "offsets do not follow the previous segment")
            break
        recovered.segments.append(segment)
        if cut_bytes and not is_last:
            _drop_segments(directory, base_offsets[number + 1:], "an earlier segment was cut")
            break
    _finish_recovery(directory, recovered, max(start_offset, delete_records_offset), now_ms)
    if recovered.segments[-1].last_offset + 1 < delete_records_offset:
        _start_over_at(directory, recovered, delete_records_offset, now_ms)
    recovered.log_start_offset = max(recovered.segments[0].base_offset, delete_records_offset)
    recovered.epoch_cache = _recover_epoch_cache(directory, recovered.segments, recovered.log_start_offset)
    return recovered


def _recover_epoch_cache(directory: Path, segments: list[Segment], log_start_offset: int) -> LeaderEpochCache:
    """The cache as the batch headers say (each segment knows where its epochs start); the
    checkpoint file is rewritten when it is missing (and epochs are known), damaged, or
    stale (a crash came between a log change and the file write)."""
    cache = LeaderEpochCache()
    for segment in segments:
        for epoch, start_offset in segment.epoch_starts:
            if 0 <= epoch < cache.latest_epoch:
                log.error("%s: leader epoch %d at offset %d follows epoch %d; forgetting the later epochs "
                          "(Kafka's rule)", directory, epoch, start_offset, cache.latest_epoch)
                cache.forget_epochs_from(epoch)
            cache.assign(epoch, start_offset)
    cache.truncate_from_start(log_start_offset)
    path = leader_epoch_path(directory)
    data = read_file_or_none(path)
    stored = None if data is None else parse_leader_epoch_checkpoint(data)
    if data is not None and stored is None:
        log.warning("%s is damaged (%r); rebuilt from the batch headers", path, data[:64])
    elif data is not None and stored != cache.entries:
        log.info("%s is stale (%s); rebuilt from the batch headers %s", path, stored, cache.entries)
    if stored != cache.entries and (data is not None or cache.entries):
        write_file_atomically(path, cache.to_bytes())
        sync_directory(directory)
    return cache


def _drop_segments_below(directory: Path, base_offsets: list[int], delete_records_offset: int) -> list[int]:
    """Remove the files of segments whose successor starts at or below the checkpoint (left
    by a crash before their delayed deletion); returns the remaining base offsets."""
    wholly_below = [base for base, successor in zip(base_offsets, base_offsets[1:])
                    if successor <= delete_records_offset]
    for base_offset in wholly_below:
        for suffix in (".log", INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            (directory / f"{base_offset:020d}{suffix}").unlink(missing_ok=True)
    return base_offsets[len(wholly_below):]


def _start_over_at(directory: Path, recovered: RecoveredSegments, offset: int, now_ms: int) -> None:
    """Recovery found less data than the checkpoint covers. The checkpoint is written only
    after the data below it is durable, so only a damaged disk or files removed by hand get
    here; every offset below the checkpoint is deleted anyway, so drop what is left and
    continue from the checkpoint with an empty segment (offsets are never reused)."""
    log.warning("%s: every segment lies below the delete-records checkpoint %d; starting over there",
                directory, offset)
    for segment in recovered.segments:
        segment.close()
        segment.delete_files()
    recovered.resealed.clear()
    recovered.segments[:] = [Segment.create(directory, offset, now_ms)]
    sync_directory(directory)


def _finish_recovery(directory: Path, recovered: RecoveredSegments, start_offset: int, now_ms: int) -> None:
    segments = recovered.segments
    if not segments:
        segments.append(Segment.create(directory, start_offset, now_ms))
    elif segments[-1].sealed:  # the log was cut after a trusted sealed segment
        segments.append(Segment.create(directory, segments[-1].last_offset + 1, now_ms))
    for segment in segments[:-1]:
        if not segment.sealed:
            segment.seal()
            recovered.resealed.append(segment)
    active = segments[-1]
    for path in (active.index_path, active.timeindex_path):
        path.unlink(missing_ok=True)  # rewritten when the segment is sealed
    sync_directory(directory)


def _ensure_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    for parent in (directory.parent, directory.parent.parent):
        if parent.is_dir():
            sync_directory(parent)


def _list_segments(directory: Path) -> list[int]:
    base_offsets = []
    index_files = []
    for path in directory.iterdir():
        if path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)  # an index write cut short by a crash
            continue
        base_offset = parse_segment_base_offset(path.name)
        if base_offset is not None:
            base_offsets.append(base_offset)
        elif path.name.endswith((INDEX_SUFFIX, TIMEINDEX_SUFFIX)):
            index_files.append(path)
    known = {f"{base_offset:020d}" for base_offset in base_offsets}
    for path in index_files:
        if path.name.split(".")[0] not in known:
            path.unlink(missing_ok=True)  # index of a segment deleted before its index
    return sorted(base_offsets)


def _drop_segments(directory: Path, base_offsets: list[int], reason: str) -> None:
    for base_offset in base_offsets:
        log.error("%s: dropping segment %d: %s", directory, base_offset, reason)
        for suffix in (".log", INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            (directory / f"{base_offset:020d}{suffix}").unlink(missing_ok=True)


def _delete_files(segments: list[Segment], directory: Path) -> None:
    for segment in segments:
        segment.delete_files()
    sync_directory(directory)


@dataclass(frozen=True)
class _Cut:
    """A suffix truncation's file work: cut `kept` at `position`, delete `removed`."""

    kept: Segment
    position: int
    removed: list[Segment]


def _cut_files(directory: Path, cut: _Cut, descriptor: int) -> None:
    """In a worker thread, with a duplicate of the kept segment's descriptor (closed here).
    The removed segments (and the kept one's index files: it is active again) are
    unlinked and the directory synced before the kept segment is cut: a crash in between
    leaves the old kept segment as the last one, a prefix of the old log."""
    try:
        for segment in cut.removed:
            segment.delete_files()  # their descriptors were closed on the loop
        for path in (cut.kept.index_path, cut.kept.timeindex_path):
            path.unlink(missing_ok=True)
        sync_directory(directory)
        os.ftruncate(descriptor, cut.position)
        sync_data(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------
# small helpers


class _ReadBudget:
    """max_bytes of whole batches; the first batch always fits when min_one_batch."""

    def __init__(self, max_bytes: int, min_one_batch: bool) -> None:
        self.remaining = max_bytes
        self.min_one_batch = min_one_batch
        self.taken_any = False
        self.exhausted = False

    def take(self, size: int) -> bool:
        if size <= self.remaining or (self.min_one_batch and not self.taken_any):
            self.remaining -= size
            self.taken_any = True
            return True
        self.exhausted = True
        return False


def _base_offset(segment: Segment) -> int:
    return segment.base_offset


def _same_batch(first: BatchHeader, second: BatchHeader) -> bool:
    return (first.base_offset, first.last_offset_delta, first.partition_leader_epoch, first.crc) == (
        second.base_offset, second.last_offset_delta, second.partition_leader_epoch, second.crc)


def _tighter(first_limit: int, second_limit: int) -> int:
    """The smaller of two limits where -1 (or any negative) means unbounded."""
    limits_set = [value for value in (first_limit, second_limit) if value >= 0]
    return min(limits_set) if limits_set else -1


def _newest_time_ms(segment: Segment) -> int:
    """What time retention compares with: the newest record timestamp, or when the segment
    was created if no record carries a timestamp."""
    return segment.max_timestamp_ms if segment.max_timestamp_ms >= 0 else segment.created_ms


def _header_info(header: BatchHeader, position: int) -> BatchHeaderInfo:
    return BatchHeaderInfo(
        base_offset=Offset(header.base_offset),
        last_offset=Offset(header.last_offset),
        max_timestamp_ms=header.max_timestamp,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        record_count=header.record_count,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        position=position,
        size=header.size,
    )


def _first_record_at_or_after(segment: Segment, position: int, header: BatchHeader,
                              timestamp_ms: int, min_offset: int) -> tuple[Offset, int] | None:
    if header.is_log_append_time:
        return Offset(max(header.base_offset, min_offset)), header.max_timestamp
    for record in iter_records(segment.read_batch(position, header.size)):
        if record.timestamp >= timestamp_ms and record.offset >= min_offset:
            return Offset(record.offset), record.timestamp
    return None


def _record_with_timestamp(segment: Segment, position: int, header: BatchHeader,
                           timestamp_ms: int) -> tuple[Offset, int]:
    if header.is_log_append_time:
        return Offset(header.base_offset), header.max_timestamp
    for record in iter_records(segment.read_batch(position, header.size)):
        if record.timestamp == timestamp_ms:
            return Offset(record.offset), record.timestamp
    return Offset(header.last_offset), header.max_timestamp  # header claims a max no record has
