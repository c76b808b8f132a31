"""PartitionArchiver: moves one partition's sealed segments to the bucket, on ticks.

Each `tick(now_ms)` does, in order, whatever is due:
  1. load the partition manifest (once; again after a lost conditional write);
  2. seal the active segment when it has held unarchived data for upload_interval_ms, so a
     quiet partition still reaches the bucket;
  3. upload up to limits.upload_segments_per_tick_max sealed segments wholly below the high
     watermark (concurrently, within the node's upload concurrency and bandwidth), then
     commit the uploaded prefix with ONE conditional manifest write; while a backlog
     remains, another such round follows at once (up to limits.upload_rounds_per_tick_max);
  4. tell the log `set_archived_offset(manifest.last_offset)`: only now may local retention
     delete those segments, so an unarchived segment is never deleted;
  5. raise the manifest's start offset to the partition's start floor (Kafka's
     DeleteRecords, `start_floor()`), then apply remote retention (retention.bytes /
     retention.ms over both tiers): manifest first, then the objects (their keys wait in
     `pending_deletes` until deleted).

A failure anywhere (S3 down, frozen, refusing) ends the tick and schedules the next attempt
after an exponential backoff; the log is never blocked, so producers never stall. Uploads
are idempotent (same segment -> same keys), so a restart mid-upload overwrites, never
duplicates. The archiver holds `lock` during a tick; the orphan sweep takes it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Callable

from broker import limits
from broker.ids import Offset
from broker.invariant import invariant
from broker.storage.api import KafkaStorageError, OffsetOutOfRange, PartitionLog, SegmentInfo
from tiered.manifest import ManifestStore, PartitionManifest, RemoteSegment
from tiered.object_store import ObjectStoreError, PreconditionFailed
from tiered.segment_format import CorruptSegment
from tiered.settings import TopicTieredSettings
from tiered.uploader import UploadContext, upload_segment

log = logging.getLogger("shoal.tiered.archiver")


@dataclass
class ArchiverStats:
    segments_uploaded: int = 0
    bytes_uploaded: int = 0  # segment bytes (before compression)
    manifest_writes: int = 0
    segments_expired: int = 0
    upload_failures: int = 0
    last_upload_ms: int = -1
    last_error: str = ""


class PartitionArchiver:
    def __init__(self, log_: PartitionLog, manifests: ManifestStore, uploads: UploadContext,
                 settings: Callable[[], TopicTieredSettings], upload_interval_ms: int,
                 start_floor: Callable[[], int] = lambda: 0) -> None:
        self.log = log_
        self.topic = log_.topic
        self.partition = log_.partition
        self._manifests = manifests
        self._uploads = uploads
        self._settings = settings
        self._upload_interval_ms = upload_interval_ms
        self._start_floor = start_floor
        self.manifest: PartitionManifest | None = None
        self._etag: str | None = None
        self._deleted_keys: set[str] = set()
        self._next_attempt_ms = 0
        self._backoff_ms = 0
        self._active_dirty_since: tuple[int, int] | None = None  # (segment base, first seen ms)
        self.lock = asyncio.Lock()
        self.stats = ArchiverStats()

    # --- the tick ---------------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        if now_ms < self._next_attempt_ms or not self._settings().remote_storage_enable:
            return
        async with self.lock:
            try:
                await self._tick_steps(now_ms)
            except PreconditionFailed as error:
                self.manifest, self._etag = None, None  # someone wrote: re-read, decide again
                self._schedule_retry(now_ms, error)
            except (ObjectStoreError, CorruptSegment) as error:
                self._schedule_retry(now_ms, error)
            else:
                self._backoff_ms = 0

    async def _tick_steps(self, now_ms: int) -> None:
        if self.manifest is None:
            self.manifest, self._etag = await self._manifests.load(self.topic, self.partition)
        self._publish_archived_offset()
        self._seal_quiet_active_segment(now_ms)
        for _ in range(limits.upload_rounds_per_tick_max):  # a backlog drains without waiting for ticks
            uploaded = await self._upload_pending_segments()
            self._publish_archived_offset()
            if uploaded < limits.upload_segments_per_tick_max:
                break
        await self._apply_start_floor()
        await self._apply_remote_retention(now_ms)
        await self._local_log_follows_remote_start()
        await self._delete_pending_objects()

    def _schedule_retry(self, now_ms: int, error: Exception) -> None:
        self._backoff_ms = min(max(self._backoff_ms * 2, limits.upload_retry_backoff_ms_min),
                               limits.upload_retry_backoff_ms_max)
        self._next_attempt_ms = now_ms + self._backoff_ms
        self.stats.upload_failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"[:500]
        log.warning("archiver %s/%d: %s; retry in %d ms", self.topic, self.partition,
                    self.stats.last_error, self._backoff_ms)

    # --- steps --------------------------------------------------------------------------

    def _publish_archived_offset(self) -> None:
        if self.manifest is not None and self.manifest.last_offset >= 0:
            self.log.set_archived_offset(Offset(self.manifest.last_offset))

    def _seal_quiet_active_segment(self, now_ms: int) -> None:
        segments = self.log.segments()
        if not segments or segments[-1].sealed or segments[-1].size_bytes == 0:
            self._active_dirty_since = None
            return
        active = segments[-1]
        if self._active_dirty_since is None or self._active_dirty_since[0] != active.base_offset:
            self._active_dirty_since = (int(active.base_offset), now_ms)
        if now_ms - self._active_dirty_since[1] >= self._upload_interval_ms:
            self.log.roll()
            self._active_dirty_since = None

    def pending_segments(self) -> list[SegmentInfo]:
        """Sealed, non-empty local segments past the manifest, wholly below the HWM and not
        wholly below the start floor (deleted records are never uploaded)."""
        archived_last = self.manifest.last_offset if self.manifest else -1
        last_remote_base = self.manifest.segments[-1].base_offset if self.manifest and self.manifest.segments else -1
        high_watermark = self.log.high_watermark
        floor = int(self._start_floor())
        return [segment for segment in self.log.segments()
                if segment.sealed and segment.size_bytes > 0
                and segment.last_offset > archived_last and segment.last_offset >= floor
                and segment.base_offset > last_remote_base
                and segment.last_offset < high_watermark]

    async def _upload_pending_segments(self) -> int:
        """One upload round; returns how many segments it committed."""
        candidates = self.pending_segments()[: limits.upload_segments_per_tick_max]
        if not candidates:
            return 0
        compression = self._settings().upload_compression
        results = await asyncio.gather(
            *(upload_segment(self._uploads, self.topic, self.partition, segment, compression)
              for segment in candidates), return_exceptions=True)
        uploaded: list[RemoteSegment] = []
        for result in results:  # commit only the contiguous prefix that made it
            if isinstance(result, BaseException):
                break
            uploaded.append(result)
        if uploaded:
            await self._commit(self.manifest.with_appended(uploaded))
            self.stats.segments_uploaded += len(uploaded)
            self.stats.bytes_uploaded += sum(segment.size_bytes for segment in uploaded)
            self.stats.last_upload_ms = self._uploads.clock.now_ms()
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in failures:
            if not isinstance(failure, (ObjectStoreError, CorruptSegment)):
                raise failure  # a bug: never hide it
        if failures:
            raise failures[0]
        return len(uploaded)

    async def _commit(self, manifest: PartitionManifest) -> None:
        manifest = replace(manifest, pending_deletes=[
            key for key in manifest.pending_deletes if key not in self._deleted_keys])
        self.manifest, self._etag = await self._manifests.save(manifest, self._etag)
        self._deleted_keys.clear()
        self.stats.manifest_writes += 1

    async def _apply_start_floor(self) -> None:
        """DeleteRecords: the manifest's start offset follows the partition's start floor
        (segments wholly below it become pending deletes)."""
        floor = int(self._start_floor())
        if floor <= self.manifest.start_offset or self.manifest.last_offset < 0:
            return  # nothing to raise, or nothing archived yet (uploads skip what is below)
        await self._commit(self.manifest.with_start_offset(floor))
        log.info("%s/%d: remote start offset now %d (records deleted)", self.topic, self.partition,
                 self.manifest.start_offset)

    async def honour_start_floor(self) -> PartitionManifest:
        """Write the start floor into the manifest now, out of turn (DeleteRecords waits for
        it), then delete the objects it dropped if the bucket lets us (else the next tick
        does). Raises ObjectStoreError when the manifest cannot be written."""
        async with self.lock:
            for attempt in range(2):
                try:
                    if self.manifest is None:
                        self.manifest, self._etag = await self._manifests.load(self.topic, self.partition)
                    await self._apply_start_floor()
                    break
                except PreconditionFailed:
                    self.manifest, self._etag = None, None  # someone wrote: re-read once
                    if attempt > 0:
                        raise
            try:
                await self._delete_pending_objects()
            except ObjectStoreError as error:
                log.info("%s/%d: deleting objects below the start offset later: %s",
                         self.topic, self.partition, error)
            return self.manifest

    async def _apply_remote_retention(self, now_ms: int) -> None:
        expired = self.expired_segment_count(now_ms)
        if expired == 0:
            return
        await self._commit(self.manifest.with_removed_prefix(expired))
        self.stats.segments_expired += expired

    async def _local_log_follows_remote_start(self) -> None:
        """Remote retention moved the partition's start past the local log start (retention
        counts both tiers, the local log only its own bytes): the local log start follows,
        as Kafka moves its log start offset, so no tier serves what retention removed. Only
        archived data lies below the remote start, so nothing unarchived is touched."""
        start = self.manifest.start_offset
        if not self.log.log_start_offset < start <= self.log.high_watermark:
            return
        try:
            await self.log.delete_records_before(Offset(start))
        except (KafkaStorageError, OffsetOutOfRange) as error:
            log.warning("%s/%d: local log start not moved to the remote start %d yet: %s",
                        self.topic, self.partition, start, error)

    def expired_segment_count(self, now_ms: int) -> int:
        """How many of the oldest remote segments total retention removes (Kafka's rule: a
        segment goes when the rest still holds retention.bytes, or when its newest record
        is older than retention.ms)."""
        settings = self._settings()
        manifest = self.manifest
        total_bytes = manifest.size_bytes + self._local_bytes_not_archived()
        expired = 0
        for segment in manifest.segments:
            newest_ms = segment.max_timestamp_ms if segment.max_timestamp_ms >= 0 else segment.uploaded_ms
            by_time = settings.retention_ms >= 0 and now_ms - newest_ms > settings.retention_ms
            by_size = settings.retention_bytes >= 0 and total_bytes - segment.size_bytes >= settings.retention_bytes
            if not (by_time or by_size):
                break
            total_bytes -= segment.size_bytes
            expired += 1
        return expired

    def _local_bytes_not_archived(self) -> int:
        archived_last = self.manifest.last_offset if self.manifest else -1
        return sum(segment.size_bytes for segment in self.log.segments()
                   if segment.base_offset > archived_last)

    async def _delete_pending_objects(self) -> None:
        pending = [key for key in self.manifest.pending_deletes if key not in self._deleted_keys]
        if not pending:
            return
        await self._uploads.store.delete_many(pending)
        self._deleted_keys.update(pending)

    # --- status ---------------------------------------------------------------------

    def status(self, now_ms: int) -> dict:
        manifest = self.manifest
        pending = self.pending_segments() if manifest is not None else []
        local_segments = self.log.segments()
        archived_last = manifest.last_offset if manifest else -1
        unarchived = [segment for segment in local_segments if segment.last_offset > archived_last
                      and segment.size_bytes > 0]
        oldest_unarchived_ms = min((segment.created_ms for segment in unarchived), default=now_ms)
        return {
            "topic": self.topic,
            "partition": self.partition,
            "archived_offset": archived_last,
            "remote_start_offset": manifest.start_offset if manifest else -1,
            "remote_segments": len(manifest.segments) if manifest else 0,
            "bytes_remote": manifest.stored_bytes if manifest else 0,
            "bytes_local": sum(segment.size_bytes for segment in local_segments),
            "local_start_offset": int(self.log.log_start_offset),
            "high_watermark": int(self.log.high_watermark),
            "upload_lag_bytes": sum(segment.size_bytes for segment in unarchived),
            "upload_lag_ms": max(0, now_ms - oldest_unarchived_ms) if unarchived else 0,
            "segments_waiting": len(pending),
            "manifest_revision": manifest.revision if manifest else -1,
            "segments_uploaded": self.stats.segments_uploaded,
            "upload_failures": self.stats.upload_failures,
            "last_error": self.stats.last_error,
            "next_attempt_ms": self._next_attempt_ms,
        }


def check_archived_contiguous(manifest: PartitionManifest) -> None:
    """Debug helper for tests: consecutive segments leave no gap and never overlap."""
    for earlier, later in zip(manifest.segments, manifest.segments[1:]):
        invariant(later.base_offset == earlier.last_offset + 1, "gap or overlap in manifest",
                  earlier.last_offset, later.base_offset)
