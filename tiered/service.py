"""TieredStorage: the cold tier as the broker sees it.

Wiring (broker/app.py):

    tiered = TieredStorage(config, logs=lambda: log_manager.all_logs(),
                           settings_for=lambda topic: resolve_topic_settings(config, topic, configs_of(topic), partitions_of(topic)),
                           clock=clock, create_log=lambda topic, partition, start_offset: ...)
    await tiered.start()
    ... every ~tick_interval_ms:  await tiered.tick(clock.now_ms())
    ... reads:  if may_read_from_cloud(offset, log.log_start_offset, settings.remote_storage_enable):
                    data = await tiered.reader.read(topic, partition, offset, max_bytes)
    ... ListOffsets earliest: tiered.remote_start_offset(topic, partition) (None -> local start)
    ... DeleteRecords: low = await tiered.delete_records_before(topic, partition, offset)
    ... /metrics: tiered.render_prometheus()  (or register tiered.collector)
    ... admin + `shoal tier status`: tiered.status()
    await tiered.close()

`tick` never waits for S3: it starts each partition's archiver tick as a task (at most one
per partition at a time) and returns; `drain()` waits for the ticks in flight (tests).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from broker import limits
from broker.clock import SYSTEM_CLOCK, Clock
from broker.config import CloudStorageConfig, NodeConfig
from broker.ids import Offset
from broker.invariant import InvariantViolation
from broker.storage.api import PartitionLog
from shadow_indexing.cache import ChunkCache
from shadow_indexing.predicate import may_read_from_cloud
from shadow_indexing.reader import RemoteReader, RemoteStorageUnavailable
from tiered.archiver import PartitionArchiver
from tiered.bandwidth import BandwidthLimiter
from tiered.layout import parse_segment_key, partition_manifest_key, segment_keys, topic_manifest_key
from tiered.manifest import ManifestStore, PartitionManifest, TopicManifest
from tiered.object_store import ObjectStore, ObjectStoreError, open_object_store
from tiered.settings import TopicTieredSettings
from tiered.uploader import UploadContext

log = logging.getLogger("shoal.tiered")

PartitionKey = tuple[str, int]
CreateLog = Callable[[str, int, Offset], Any]  # may return an awaitable
ProgressCallback = Callable[["RecoveryProgress"], Any]


@dataclass(frozen=True)
class RecoveryProgress:
    topic: str
    partition: int
    partitions_done: int
    partitions_total: int
    next_offset: int  # where the recovered local log starts
    remote_start_offset: int
    remote_segments: int
    remote_bytes: int


class TieredStorage:
    def __init__(self, config: NodeConfig, logs: Callable[[], Iterable[PartitionLog]],
                 settings_for: Callable[[str], TopicTieredSettings], clock: Clock = SYSTEM_CLOCK,
                 create_log: CreateLog | None = None, store: ObjectStore | None = None,
                 orphan_grace_ms: int = limits.orphan_grace_ms_default,
                 orphan_sweep_interval_ms: int = limits.orphan_sweep_interval_ms_default) -> None:
        self.config = config
        self.cloud: CloudStorageConfig = config.cloud_storage or CloudStorageConfig(
            url="file://" + str(Path(config.data_dir) / "cloud"))
        self._logs = logs
        self._settings_for = settings_for
        self.clock = clock
        self._create_log = create_log
        self.store: ObjectStore = store or open_object_store(self.cloud)
        self.manifests = ManifestStore(self.store)
        self._orphan_grace_ms = orphan_grace_ms
        self._orphan_sweep_interval_ms = orphan_sweep_interval_ms
        self._next_sweep_ms = 0  # first tick sweeps (orphans come from restarts)
        self._archivers: dict[PartitionKey, PartitionArchiver] = {}
        self._running: dict[Any, asyncio.Task] = {}
        self._known_manifests: dict[PartitionKey, tuple[int, PartitionManifest]] = {}
        self._topic_manifests_written: dict[str, int] = {}
        self._deleting_topics: set[str] = set()
        self._start_floors: dict[PartitionKey, int] = {}  # DeleteRecords offsets asked of this node
        self._job_numbers = itertools.count()
        self._uploads = UploadContext(
            store=self.store, bandwidth=BandwidthLimiter(self.cloud.upload_bandwidth_bytes, clock),
            concurrency=asyncio.Semaphore(max(1, self.cloud.upload_concurrency)), clock=clock)
        cache_dir = Path(self.cloud.cache_dir) if self.cloud.cache_dir else Path(config.data_dir) / "cloud-cache"
        self.cache = ChunkCache(cache_dir, self.cloud.cache_size_bytes)
        self.reader = RemoteReader(self.store, self.manifest_for, self.cache,
                                   chunk_size_bytes=self.cloud.chunk_size_bytes, start_floor=self.start_floor)
        self.orphans_deleted = 0
        self._fatal: InvariantViolation | None = None
        self.collector = _TieredCollector(self)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        log.info("tiered storage on %s (cache %s, %d bytes)", self.store.description,
                 self.cache.directory, self.cache.capacity_bytes)

    async def tick(self, now_ms: int) -> None:
        """Start due background work; never waits for the object store."""
        if self._fatal is not None:
            raise self._fatal
        self._sync_archivers()
        for key, archiver in self._archivers.items():
            self._start_once(("archive", key), archiver.tick(now_ms))
        self._write_topic_manifests()
        if now_ms >= self._next_sweep_ms:
            self._next_sweep_ms = now_ms + self._orphan_sweep_interval_ms
            self._start_once("sweep", self.sweep_orphans(now_ms))

    async def drain(self) -> None:
        """Wait until every tick task in flight has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        await self.reader.close()
        await self.store.close()

    def _start_once(self, name: Any, work: Awaitable[None]) -> None:
        if name in self._running:
            work.close()  # the previous run of this job is still going
            return
        task = asyncio.get_running_loop().create_task(work)
        self._running[name] = task
        task.add_done_callback(lambda done, name=name: self._finished(name, done))

    def _finished(self, name: Any, task: asyncio.Task) -> None:
        self._running.pop(name, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("tiered job %s failed", name, exc_info=task.exception())
            if isinstance(task.exception(), InvariantViolation):
                self._fatal = task.exception()  # re-raised by the next tick: stop the node

    def _sync_archivers(self) -> None:
        present: set[PartitionKey] = set()
        for partition_log in self._logs():
            if partition_log.topic in self._deleting_topics:
                continue
            key = (partition_log.topic, partition_log.partition)
            present.add(key)
            archiver = self._archivers.get(key)
            if archiver is None or archiver.log is not partition_log:
                self._archivers[key] = PartitionArchiver(
                    partition_log, self.manifests, self._uploads,
                    lambda topic=partition_log.topic: self._settings_for(topic),
                    self.cloud.upload_interval_ms, start_floor=lambda key=key: self.start_floor(*key))
        for key in set(self._archivers) - present:
            del self._archivers[key]

    # --- the read side ------------------------------------------------------------------

    def may_read_from_cloud(self, topic: str, offset: Offset | int, local_log_start_offset: Offset | int) -> bool:
        return may_read_from_cloud(offset, local_log_start_offset,
                                   self._settings_for(topic).remote_storage_enable)

    async def manifest_for(self, topic: str, partition: int) -> PartitionManifest | None:
        """The freshest manifest we know: the archiver's, else one read from the bucket
        (kept a few seconds, for partitions this node does not archive)."""
        archiver = self._archivers.get((topic, partition))
        if archiver is not None and archiver.manifest is not None:
            return archiver.manifest
        known = self._known_manifests.get((topic, partition))
        now = self.clock.monotonic_ms()
        if known is not None and now - known[0] < 5_000:
            return known[1]
        manifest, etag = await self.manifests.load(topic, partition)
        self._known_manifests[(topic, partition)] = (now, manifest)
        return manifest if etag is not None else None

    def remote_start_offset(self, topic: str, partition: int) -> Offset | None:
        """First offset readable from the bucket, if this node has loaded the partition's
        manifest and it holds data (ListOffsets earliest answers it instead of the local start)."""
        archiver = self._archivers.get((topic, partition))
        manifest = archiver.manifest if archiver is not None else None
        if manifest is None:
            known = self._known_manifests.get((topic, partition))
            manifest = known[1] if known else None
        if manifest is None or not manifest.segments:
            return None
        readable_start = max(manifest.start_offset, self.start_floor(topic, partition))
        return Offset(readable_start) if readable_start <= manifest.segments[-1].last_offset else None

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp_ms: int,
                                   below_offset: int | None = None):
        return await self.reader.offset_for_timestamp(topic, partition, timestamp_ms, below_offset)

    # --- DeleteRecords ------------------------------------------------------------------

    def start_floor(self, topic: str, partition: int) -> int:
        """No offset below this is readable from the bucket: the highest DeleteRecords offset
        asked of this node, or persisted by the local log (`delete_records_offset`), even
        before the manifest says so."""
        floor = self._start_floors.get((topic, partition), 0)
        archiver = self._archivers.get((topic, partition))
        if archiver is not None:
            floor = max(floor, int(getattr(archiver.log, "delete_records_offset", 0)))
        return floor

    async def delete_records_before(self, topic: str, partition: int, offset: Offset | int) -> Offset | None:
        """Kafka's DeleteRecords on the cold tier (the DeleteRecords handler calls this after
        the local log's delete_records_before). Reads below `offset` are refused at once;
        the partition manifest takes `offset` as its start offset (segments wholly below
        it are dropped, then their objects deleted) before this returns. Returns the first
        offset still readable from the bucket (None when it holds nothing readable, or the
        topic is not remote-enabled). Raises RemoteStorageUnavailable (KAFKA_STORAGE_ERROR)
        when the manifest cannot be written within limits.remote_delete_records_wait_ms;
        the archiver keeps trying on its ticks."""
        if not self._settings_for(topic).remote_storage_enable:
            return None
        key = (topic, partition)
        self._start_floors[key] = max(self._start_floors.get(key, 0), int(offset))
        self._sync_archivers()
        archiver = self._archivers.get(key)
        if archiver is None:
            return None  # not archived by this node: reads are refused through start_floor
        job = self._start_tracked(("delete-records", key, next(self._job_numbers)), archiver.honour_start_floor())
        try:
            async with asyncio.timeout(limits.remote_delete_records_wait_ms / 1000):
                await asyncio.shield(job)
        except (ObjectStoreError, TimeoutError) as error:
            raise RemoteStorageUnavailable(f"{topic}/{partition}: the bucket did not take the new start "
                                           f"offset {offset}: {error or 'no answer in time'}") from error
        return self.remote_start_offset(topic, partition)

    def _start_tracked(self, name: Any, work: Awaitable[Any]) -> asyncio.Task:
        """A job that close() cancels and drain() waits for; its outcome goes to the caller."""
        task = asyncio.get_running_loop().create_task(work)
        self._running[name] = task
        task.add_done_callback(lambda done, name=name: self._tracked_finished(name, done))
        return task

    def _tracked_finished(self, name: Any, task: asyncio.Task) -> None:
        self._running.pop(name, None)
        if not task.cancelled() and task.exception() is not None:  # retrieved here even if the caller gave up
            log.info("tiered job %s failed: %s", name, task.exception())

    # --- recovery ---------------------------------------------------------------------

    async def remote_partition_count(self, topic: str) -> int | None:
        manifest = await self.manifests.load_topic(topic)
        return manifest.partition_count if manifest else None

    async def recovery_start_offset(self, topic: str, partition: int) -> Offset:
        """Where a recovered partition's new local log must start: right after the last
        offset in the bucket (0 when the bucket has nothing for it)."""
        manifest, _ = await self.manifests.load(topic, partition)
        self._known_manifests[(topic, partition)] = (self.clock.monotonic_ms(), manifest)
        return Offset(manifest.next_offset)

    async def recover_topic(self, topic: Any, partitions: int | None = None,
                            progress_callback: ProgressCallback | None = None) -> list[RecoveryProgress]:
        """Make a topic's history in the bucket readable on this (empty) node: each
        partition's local log is created starting right after the last archived offset
        (through `create_log`), and reads below it go to the bucket. Offsets and timestamps
        are the original ones because the data is the original bytes. `topic` is a name or
        a topic-table entry (with .name and .partitions)."""
        if not isinstance(topic, str):
            topic, partitions = topic.name, topic.partitions if partitions is None else partitions
        if partitions is None:
            partitions = await self.remote_partition_count(topic)
            if partitions is None:
                raise LookupError(f"no topic manifest for {topic!r} in {self.store.description}")
        report = []
        for partition in range(partitions):
            manifest, _ = await self.manifests.load(topic, partition)
            self._known_manifests[(topic, partition)] = (self.clock.monotonic_ms(), manifest)
            if self._create_log is not None:
                created = self._create_log(topic, partition, Offset(manifest.next_offset))
                if inspect.isawaitable(created):
                    await created
            progress = RecoveryProgress(topic, partition, partition + 1, partitions, manifest.next_offset,
                                        manifest.start_offset, len(manifest.segments), manifest.size_bytes)
            report.append(progress)
            if progress_callback is not None:
                result = progress_callback(progress)
                if inspect.isawaitable(result):
                    await result
        self._sync_archivers()
        for partition in range(partitions):
            archiver = self._archivers.get((topic, partition))
            if archiver is not None and archiver.manifest is None:
                archiver.manifest, archiver._etag = await self.manifests.load(topic, partition)
        return report

    # --- topic deletion ----------------------------------------------------------------

    def delete_topic(self, topic: str, partitions: int) -> None:
        """The topic was deleted (as in Kafka, its history goes too): stop archiving it and
        delete its bucket data in the background: each partition manifest first, then its
        objects, then the topic manifest. Until that is done a re-created topic of the same
        name is not archived, so it can never adopt the old manifest."""
        self._deleting_topics.add(topic)
        for key in [key for key in self._archivers if key[0] == topic]:
            del self._archivers[key]
        for key in [key for key in self._known_manifests if key[0] == topic]:
            del self._known_manifests[key]
        for key in [key for key in self._start_floors if key[0] == topic]:
            del self._start_floors[key]
        self._topic_manifests_written.pop(topic, None)
        self._start_once(("delete-topic", topic), self._delete_remote_topic(topic, partitions))

    async def _delete_remote_topic(self, topic: str, partitions: int) -> None:
        backoff_ms = limits.upload_retry_backoff_ms_min
        while True:  # ends on success, or when close() cancels it
            try:
                for partition in range(partitions):
                    manifest, etag = await self.manifests.load(topic, partition)
                    if etag is not None:
                        await self.store.delete(partition_manifest_key(topic, partition))
                        await self.store.delete_many(sorted(manifest.referenced_keys()))
                await self.store.delete(topic_manifest_key(topic))
                self._deleting_topics.discard(topic)
                log.info("deleted %s from %s", topic, self.store.description)
                return
            except ObjectStoreError as error:
                log.warning("deleting %s from the bucket: %s; retry in %d ms", topic, error, backoff_ms)
                await self.clock.sleep_ms(backoff_ms)
                backoff_ms = min(backoff_ms * 2, limits.upload_retry_backoff_ms_max)

    # --- topic manifests and orphans -------------------------------------------------------

    def _write_topic_manifests(self) -> None:
        topics = {topic for topic, _ in self._archivers}
        for topic in topics:
            settings = self._settings_for(topic)
            if not settings.remote_storage_enable or settings.partition_count <= 0:
                continue
            if self._topic_manifests_written.get(topic) == settings.partition_count:
                continue
            self._start_once(("topic-manifest", topic),
                             self._write_topic_manifest(topic, settings.partition_count))

    async def _write_topic_manifest(self, topic: str, partition_count: int) -> None:
        try:
            await self.manifests.save_topic(TopicManifest(topic, partition_count))
            self._topic_manifests_written[topic] = partition_count
        except ObjectStoreError as error:
            log.warning("topic manifest for %s not written yet: %s", topic, error)

    async def sweep_orphans(self, now_ms: int) -> int:
        """Delete segment objects that no manifest references, older than the grace
        period, for partitions this node archives. Returns how many were deleted."""
        candidates: dict[PartitionKey, list[str]] = {}
        try:
            async for info in self.store.list(""):
                parsed = parse_segment_key(info.key)
                if parsed is None or now_ms - info.last_modified_ms < self._orphan_grace_ms:
                    continue
                candidates.setdefault((parsed.topic, parsed.partition), []).append(info.key)
        except ObjectStoreError as error:
            log.warning("orphan sweep: listing failed: %s", error)
            self._next_sweep_ms = now_ms + limits.upload_retry_backoff_ms_max
            return 0
        deleted = 0
        for key, keys in candidates.items():
            archiver = self._archivers.get(key)
            if archiver is not None:
                deleted += await self._sweep_partition(archiver, keys)
        self.orphans_deleted += deleted
        return deleted

    async def _sweep_partition(self, archiver: PartitionArchiver, keys: list[str]) -> int:
        async with archiver.lock:  # no upload of this partition runs meanwhile
            try:
                if archiver.manifest is None:
                    archiver.manifest, archiver._etag = await self.manifests.load(archiver.topic, archiver.partition)
                referenced = archiver.manifest.referenced_keys()
                compression = self._settings_for(archiver.topic).upload_compression
                about_to_upload = {object_key for segment in archiver.pending_segments()
                                   for object_key in segment_keys(
                                       archiver.topic, archiver.partition, int(segment.base_offset),
                                       int(segment.last_offset), int(segment.leader_epoch), compression).all()}
                orphans = [key for key in keys if key not in referenced and key not in about_to_upload]
                if orphans:
                    await self.store.delete_many(orphans)
                    log.info("orphan sweep %s/%d: deleted %d objects", archiver.topic,
                             archiver.partition, len(orphans))
                return len(orphans)
            except ObjectStoreError as error:
                log.warning("orphan sweep %s/%d failed: %s", archiver.topic, archiver.partition, error)
                return 0

    # --- observability ----------------------------------------------------------------

    def status(self) -> dict:
        now = self.clock.now_ms()
        partitions = [archiver.status(now) for _, archiver in sorted(self._archivers.items())
                      if self._settings_for(archiver.topic).remote_storage_enable]
        return {
            "store": self.store.description,
            "requests": dict(self.store.metrics.requests),
            "request_errors": dict(self.store.metrics.errors),
            "bytes_uploaded": self.store.metrics.bytes_uploaded,
            "bytes_downloaded": self.store.metrics.bytes_downloaded,
            "cache": {"size_bytes": self.cache.size_bytes, "capacity_bytes": self.cache.capacity_bytes,
                      "hits": self.cache.metrics.hits, "misses": self.cache.metrics.misses,
                      "evictions": self.cache.metrics.evictions},
            "orphans_deleted": self.orphans_deleted,
            "partitions": partitions,
        }

    def render_prometheus(self) -> str:
        return generate_latest(self.registry).decode()


class _TieredCollector:
    """prometheus_client collector reading TieredStorage's state at scrape time."""

    def __init__(self, tiered: TieredStorage) -> None:
        self._tiered = tiered

    def collect(self):
        tiered = self._tiered
        labels = ["topic", "partition"]
        gauges = {name: GaugeMetricFamily(f"shoal_tiered_{name}", text, labels=labels) for name, text in (
            ("upload_lag_bytes", "Bytes in local segments not yet archived"),
            ("upload_lag_seconds", "Age of the oldest local data not yet archived"),
            ("local_bytes", "Bytes in the hot tier (local segments)"),
            ("remote_bytes", "Bytes of this partition's objects in the bucket"),
            ("archived_offset", "Last offset safely in the bucket"),
            ("remote_start_offset", "First offset readable from the bucket"),
        )}
        for status in tiered.status()["partitions"]:
            values = [status["topic"], str(status["partition"])]
            gauges["upload_lag_bytes"].add_metric(values, status["upload_lag_bytes"])
            gauges["upload_lag_seconds"].add_metric(values, status["upload_lag_ms"] / 1000)
            gauges["local_bytes"].add_metric(values, status["bytes_local"])
            gauges["remote_bytes"].add_metric(values, status["bytes_remote"])
            gauges["archived_offset"].add_metric(values, status["archived_offset"])
            gauges["remote_start_offset"].add_metric(values, status["remote_start_offset"])
        yield from gauges.values()
        requests = CounterMetricFamily("shoal_cloud_storage_requests", "Object store requests", labels=["operation"])
        errors = CounterMetricFamily("shoal_cloud_storage_request_errors", "Failed object store requests", labels=["operation"])
        for operation, count in sorted(tiered.store.metrics.requests.items()):
            requests.add_metric([operation], count)
        for operation, count in sorted(tiered.store.metrics.errors.items()):
            errors.add_metric([operation], count)
        yield requests
        yield errors
        yield CounterMetricFamily("shoal_cloud_storage_uploaded_bytes", "Bytes sent to the object store",
                                  value=tiered.store.metrics.bytes_uploaded)
        yield CounterMetricFamily("shoal_cloud_storage_downloaded_bytes", "Bytes read from the object store",
                                  value=tiered.store.metrics.bytes_downloaded)
        cache = tiered.cache
        yield CounterMetricFamily("shoal_cloud_cache_hits", "Remote chunk cache hits", value=cache.metrics.hits)
        yield CounterMetricFamily("shoal_cloud_cache_misses", "Remote chunk cache misses", value=cache.metrics.misses)
        yield CounterMetricFamily("shoal_cloud_cache_evictions", "Remote chunk cache evictions", value=cache.metrics.evictions)
        yield GaugeMetricFamily("shoal_cloud_cache_bytes", "Bytes in the remote chunk cache", value=cache.size_bytes)
        yield CounterMetricFamily("shoal_cloud_orphans_deleted", "Unreferenced objects removed by the sweep",
                                  value=tiered.orphans_deleted)
