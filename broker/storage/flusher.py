"""Group commit for one partition log.

Appends write to the segment file at once (page cache) and tell the flusher. The flusher
runs at most one flush round at a time; a round takes everything pending when it starts
(every dirty segment file, index files of newly sealed segments, the directory when a
segment file was created) and fsyncs it in a worker thread, so the event loop never waits
on the disk. Appends that arrive while a round is running are covered by the next round:
under load one fsync makes many appends durable.

In fsync mode write() starts a round and PendingAppend.durable() awaits
`wait_durable(end_offset)` (in any order: durable() may be awaited late); in relaxed mode
nobody waits and the partition log calls `flush()` every flush_interval_ms from
housekeeping (or earlier, when too many bytes are unsynced).

A round also writes the leader epoch checkpoint when the cache changed (after the log
data, so an append that started a new epoch is acknowledged with its checkpoint on disk).
Suffix truncation waits until no round runs (`wait_idle`), then `truncate` lowers the
offsets and fails the waiters of truncated appends with AppendTruncated.

An fsync that fails leaves the page cache in an unknown state, so the flusher fails for
good: every waiter and every later append gets KafkaStorageError until a restart
recovers the log from what is really on disk.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from broker.invariant import invariant
from broker.storage.api import AppendTruncated, KafkaStorageError
from broker.storage.index import write_file_atomically
from broker.storage.probe import LogProbe
from broker.storage.segment import Segment, write_index_files

_sync_data = getattr(os, "fdatasync", os.fsync)  # data and size; no need for mtime


@dataclass
class _FlushWork:
    """What one round makes durable; executed in a worker thread."""

    target_offset: int
    descriptors: list[int] = field(default_factory=list)  # duplicates, closed after use
    index_files: list[tuple[Path, bytes, Path, bytes]] = field(default_factory=list)
    sealed_segments: list[Segment] = field(default_factory=list)
    epoch_checkpoint: tuple[Path, bytes] | None = None
    directory: Path | None = None

    def execute(self) -> None:
        try:
            for descriptor in self.descriptors:
                _sync_data(descriptor)
        finally:
            for descriptor in self.descriptors:
                os.close(descriptor)
        for files in self.index_files:
            write_index_files(*files)
        if self.epoch_checkpoint is not None:
            write_file_atomically(*self.epoch_checkpoint)
        if self.directory is not None:
            sync_directory(self.directory)


def sync_data(descriptor: int) -> None:
    """fdatasync (fsync where missing) of a segment file descriptor."""
    _sync_data(descriptor)


def sync_directory(directory: Path) -> None:
    """Make file creations, renames and deletions inside `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class GroupCommitFlusher:
    def __init__(self, directory: Path, durable_offset: int, probe: LogProbe,
                 executor: Executor | None, on_durable: Callable[[int], None]) -> None:
        self._directory = directory
        self._probe = probe
        self._executor = executor
        self._on_durable = on_durable
        self._written_offset = durable_offset
        self._durable_offset = durable_offset
        self._dirty_segments: dict[int, Segment] = {}
        self._sealed_segments: list[Segment] = []
        self._directory_changed = False
        self._epoch_checkpoint: tuple[Path, bytes] | None = None
        self._pending_bytes = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (end offset, appender)
        self._round_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # (round, flush())
        self._rounds_started = 0
        self._rounds_completed = 0
        self._task: asyncio.Task[None] | None = None
        self.failure: KafkaStorageError | None = None

    @property
    def durable_offset(self) -> int:
        return self._durable_offset

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def has_pending(self) -> bool:
        return bool(self._dirty_segments or self._sealed_segments or self._directory_changed
                    or self._epoch_checkpoint is not None or self._written_offset > self._durable_offset)

    # -- what the partition log reports --------------------------------------------------

    def note_written(self, segment: Segment, end_offset: int, size: int) -> None:
        self._dirty_segments[id(segment)] = segment
        self._written_offset = end_offset
        self._pending_bytes += size

    def note_sealed(self, segment: Segment) -> None:
        """Write the sealed segment's index files in the next round (after its data)."""
        self._sealed_segments.append(segment)

    def note_directory_changed(self) -> None:
        self._directory_changed = True

    def note_epoch_checkpoint(self, path: Path, data: bytes) -> None:
        """Write the leader epoch checkpoint in the next round (the latest bytes win)."""
        self._epoch_checkpoint = (path, data)

    def forget_segment(self, segment: Segment) -> None:
        """The segment is being deleted: nothing of it needs to be durable any more."""
        self._dirty_segments.pop(id(segment), None)
        self.cancel_seal(segment)

    def cancel_seal(self, segment: Segment) -> None:
        """The segment was reopened for appends (truncation): no index files to write."""
        if segment in self._sealed_segments:
            self._sealed_segments.remove(segment)

    def truncate(self, end_offset: int) -> None:
        """The log was cut at end_offset (no round may be running: see wait_idle). Appends
        waiting for offsets beyond it fail with AppendTruncated: their data is gone, and
        later appends must not satisfy them."""
        invariant(self._task is None, "log truncated while a flush round runs", self._directory)
        self._written_offset = min(self._written_offset, end_offset)
        self._durable_offset = min(self._durable_offset, end_offset)
        truncated = [future for waited_end, future in self._waiters if waited_end > end_offset]
        self._waiters = [(waited_end, future) for waited_end, future in self._waiters if waited_end <= end_offset]
        for future in truncated:
            if not future.done():
                future.set_exception(AppendTruncated(f"{self._directory} was truncated to {end_offset}"))

    async def wait_idle(self) -> None:
        """Return when no round is running (one may start right after)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    # -- waiting -----------------------------------------------------------------------

    async def wait_durable(self, end_offset: int) -> None:
        """Return once every offset below end_offset is fsynced (starting a round if none
        is running); raise KafkaStorageError if the disk failed."""
        if self.failure is not None:
            raise self.failure
        if self._durable_offset >= end_offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((end_offset, future))
        self.start_flush()
        await future

    def start_flush(self) -> None:
        if self._task is None and self.failure is None and self.has_pending():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"flush {self._directory}")

    async def flush(self) -> None:
        """Make everything written so far durable (relaxed mode timer, seal, deletion,
        close). Waits for the round that takes what is pending now, not for later appends,
        so it returns under a steady stream of appends too."""
        if self.failure is not None:
            raise self.failure
        target_round = self._rounds_started + (1 if self.has_pending() else 0)
        if self._rounds_completed >= target_round:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._round_waiters.append((target_round, future))
        self.start_flush()
        await future

    # -- the round -------------------------------------------------------------------------

    async def _run(self) -> None:
        """Rounds back to back while someone waits for one; the first round always runs
        (relaxed mode starts one without waiting when too many bytes are unsynced)."""
        loop = asyncio.get_running_loop()
        first_round = True
        try:
            while self.failure is None and self.has_pending() and (first_round or self._round_wanted()):
                first_round = False
                work = self._take_work()
                try:
                    await loop.run_in_executor(self._executor, work.execute)
                except OSError as error:
                    self.fail(error)
                    return
                self._complete(work)
            if self.failure is None and not self.has_pending():
                self._release_round_waiters()  # what they waited for was dropped (retired segment)
        finally:
            self._task = None

    def _release_round_waiters(self) -> None:
        while self._round_waiters:
            _, future = self._round_waiters.popleft()
            if not future.done():
                future.set_result(None)

    def _round_wanted(self) -> bool:
        return bool(self._waiters or self._round_waiters or self._sealed_segments or self._directory_changed
                    or self._epoch_checkpoint is not None)

    def _take_work(self) -> _FlushWork:
        self._rounds_started += 1
        work = _FlushWork(target_offset=self._written_offset)
        for segment in self._dirty_segments.values():
            invariant(segment.descriptor >= 0, "dirty segment was closed before its flush", segment.log_path)
            work.descriptors.append(os.dup(segment.descriptor))
        work.sealed_segments = self._sealed_segments
        work.index_files = [segment.index_files_snapshot() for segment in work.sealed_segments]
        work.epoch_checkpoint = self._epoch_checkpoint
        if self._directory_changed or work.index_files or work.epoch_checkpoint:
            work.directory = self._directory
        self._dirty_segments = {}
        self._sealed_segments = []
        self._directory_changed = False
        self._epoch_checkpoint = None
        self._pending_bytes = 0
        return work

    def _complete(self, work: _FlushWork) -> None:
        self._rounds_completed += 1
        self._probe.flush_rounds += 1
        self._probe.file_syncs += len(work.descriptors)
        for segment in work.sealed_segments:
            segment.files_durable = True
        if work.target_offset > self._durable_offset:
            self._durable_offset = work.target_offset
        durable = [future for end_offset, future in self._waiters if end_offset <= self._durable_offset]
        self._waiters = [(end_offset, future) for end_offset, future in self._waiters
                         if end_offset > self._durable_offset]
        for future in durable:
            if not future.done():
                future.set_result(None)
        while self._round_waiters and self._round_waiters[0][0] <= self._rounds_completed:
            _, future = self._round_waiters.popleft()
            if not future.done():
                future.set_result(None)
        self._on_durable(self._durable_offset)

    def fail(self, error: OSError, operation: str = "fsync") -> None:
        """The disk failed under a round or a truncation: fail every waiter, now and later."""
        self._probe.flush_failures += 1
        self.failure = KafkaStorageError(f"{operation} failed in {self._directory}: {error}")
        waiters = [future for _, future in self._waiters] + [future for _, future in self._round_waiters]
        self._waiters = []
        self._round_waiters.clear()
        for future in waiters:
            if not future.done():
                future.set_exception(self.failure)
