"""The archiver against real segment files, on the local backend and on moto S3."""

import asyncio
import json
import time

import pytest

from broker import limits
from broker.clock import ManualClock
from tests.tiered_support import (  # noqa: F401  (moto_s3 is a fixture)
    FileSegmentLog, local_cloud, moto_s3, node_config,
)
from tiered.layout import parse_segment_key, partition_manifest_key
from tiered.manifest import ManifestStore
from tiered.service import TieredStorage
from tiered.settings import TopicTieredSettings


def settings(**overrides):
    values = dict(remote_storage_enable=True, retention_bytes=-1, retention_ms=-1,
                  local_retention_bytes=-1, local_retention_ms=-1, partition_count=1)
    values.update(overrides)
    return TopicTieredSettings(**values)


class Node:
    """A TieredStorage over FileSegmentLogs, driven by a manual clock."""

    def __init__(self, tmp_path, cloud, topic_settings=None, logs=None, **tiered_options):
        self.clock = ManualClock()
        self.config = node_config(tmp_path, cloud)
        self.logs = logs if logs is not None else {}
        self.topic_settings = topic_settings or (lambda topic: settings())
        self.tiered = TieredStorage(self.config, lambda: list(self.logs.values()),
                                    lambda topic: self.topic_settings(topic), clock=self.clock,
                                    create_log=self.create_log, **tiered_options)
        self.tmp_path = tmp_path

    def create_log(self, topic, partition, start_offset=0, **options):
        log = FileSegmentLog(self.tmp_path / "logs", topic, partition, self.clock,
                             start_offset=start_offset, **options)
        self.logs[(topic, partition)] = log
        return log

    async def settle(self, ticks=3, advance_ms=1000):
        for _ in range(ticks):
            await self.tiered.tick(self.clock.now_ms())
            await self.tiered.drain()
            self.clock.advance_ms(advance_ms)


@pytest.fixture(params=["local", "s3"])
def cloud(request, tmp_path):
    if request.param == "local":
        return local_cloud(tmp_path, upload_interval_ms=10_000)
    server = request.getfixturevalue("moto_s3")
    return server.cloud_config(server.new_bucket(), upload_interval_ms=10_000,
                               cache_dir=str(tmp_path / "cache"))


def fill(log, batches, records=10, value_bytes=100):
    for _ in range(batches):
        log.append_records(records, value_bytes)


def test_sealed_segments_are_archived_and_reported(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("orders", 0)
        fill(log, 30)
        sealed = [segment for segment in log.segments() if segment.sealed]
        assert len(sealed) >= 5
        await node.settle()
        manifest = node.tiered._archivers[("orders", 0)].manifest
        assert [segment.base_offset for segment in manifest.segments] == [int(s.base_offset) for s in sealed]
        assert manifest.last_offset == sealed[-1].last_offset
        assert log.archived_offset == sealed[-1].last_offset
        status = node.tiered.status()["partitions"][0]
        assert status["archived_offset"] == sealed[-1].last_offset
        assert status["upload_lag_bytes"] == log.segments()[-1].size_bytes
        metrics = node.tiered.render_prometheus()
        assert 'shoal_tiered_archived_offset{partition="0",topic="orders"}' in metrics
        assert "shoal_cloud_storage_requests_total" in metrics
        await node.tiered.close()
    asyncio.run(scenario())


def test_a_backlog_drains_in_rounds_within_one_tick(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("backlog", 0, segment_bytes=1024)
        fill(log, 3 * limits.upload_segments_per_tick_max, records=5)
        sealed = [segment for segment in log.segments() if segment.sealed]
        assert len(sealed) > 2 * limits.upload_segments_per_tick_max
        await node.settle(ticks=1)
        archiver = node.tiered._archivers[("backlog", 0)]
        assert log.archived_offset == sealed[-1].last_offset
        assert archiver.stats.manifest_writes == -(-len(sealed) // limits.upload_segments_per_tick_max)
        await node.tiered.close()
    asyncio.run(scenario())


def test_quiet_partition_is_sealed_after_upload_interval(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("quiet", 0, segment_bytes=1 << 20)
        fill(log, 3)
        await node.settle(ticks=3, advance_ms=1000)
        assert log.roll_count == 0 and log.archived_offset == -1
        await node.settle(ticks=12, advance_ms=1000)
        assert log.roll_count == 1
        assert log.archived_offset == log.log_end_offset - 1
        await node.tiered.close()
    asyncio.run(scenario())


def test_only_data_below_high_watermark_is_uploaded(tmp_path, cloud):
    class LaggingLog(FileSegmentLog):
        visible = 0

        @property
        def high_watermark(self):
            return self.visible

    async def scenario():
        node = Node(tmp_path, cloud)
        log = LaggingLog(tmp_path / "logs", "hw", 0, node.clock)
        node.logs[("hw", 0)] = log
        fill(log, 20)
        sealed = [segment for segment in log.segments() if segment.sealed]
        log.visible = int(sealed[1].last_offset)  # segment 1 not wholly below the HWM
        await node.settle()
        assert log.archived_offset == sealed[0].last_offset
        log.visible = log.log_end_offset
        await node.settle()
        assert log.archived_offset == sealed[-1].last_offset
        await node.tiered.close()
    asyncio.run(scenario())


def test_local_retention_never_deletes_unarchived_segments(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("bounded", 0, local_retention_bytes=8192)
        fill(log, 40)
        log.apply_local_retention()
        assert log.deleted_segments == []  # nothing archived yet
        await node.settle()
        log.apply_local_retention()
        assert log.deleted_segments
        assert all(base <= log.archived_offset for base in log.deleted_segments)
        assert sum(segment.size_bytes for segment in log.segments()) < 8192 + 4096
        await node.tiered.close()
    asyncio.run(scenario())


def test_remote_retention_by_bytes_removes_manifest_entries_then_objects(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("retained", 0)
        fill(log, 40)
        await node.settle()
        archiver = node.tiered._archivers[("retained", 0)]
        before = list(archiver.manifest.segments)
        local_unarchived = sum(s.size_bytes for s in log.segments() if s.last_offset > archiver.manifest.last_offset)
        total = sum(segment.size_bytes for segment in before) + local_unarchived
        limit = total - before[0].size_bytes - before[1].size_bytes
        # Kafka's rule: drop the oldest while what remains still holds retention.bytes
        expected_drop = 0
        remaining = total
        for segment in before:
            if remaining - segment.size_bytes >= limit:
                remaining -= segment.size_bytes
                expected_drop += 1
            else:
                break
        assert expected_drop == 2
        node.topic_settings = lambda topic: settings(retention_bytes=limit)
        await node.settle()
        after = archiver.manifest
        assert after.segments == before[expected_drop:]
        assert after.start_offset == before[expected_drop].base_offset
        assert after.last_offset == before[-1].last_offset
        assert log.log_start_offset == after.start_offset  # the local log follows the remote start
        keys = {info.key async for info in node.tiered.store.list("")}
        for segment in before[:expected_drop]:
            assert not set(segment.object_keys()) & keys
        for segment in after.segments:
            assert set(segment.object_keys()) <= keys
        await node.tiered.close()
    asyncio.run(scenario())


def test_remote_retention_by_time(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("aged", 0)
        old_time = node.clock.now_ms() - 10 * 3_600_000
        for batch in range(10):
            log.append_records(10, 100, timestamp_ms=old_time + batch)
        log.roll()
        fill(log, 12)
        await node.settle()
        archiver = node.tiered._archivers[("aged", 0)]
        old_segments = [s for s in archiver.manifest.segments if s.max_timestamp_ms < old_time + 100]
        assert old_segments
        node.topic_settings = lambda topic: settings(retention_ms=3_600_000)
        await node.settle()
        assert all(s.max_timestamp_ms >= old_time + 100 for s in archiver.manifest.segments)
        assert archiver.manifest.segments
        assert archiver.manifest.start_offset == old_segments[-1].last_offset + 1
        await node.tiered.close()
    asyncio.run(scenario())


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_uploads_are_smaller(tmp_path, codec):
    async def scenario():
        node = Node(tmp_path, local_cloud(tmp_path),
                    topic_settings=lambda topic: settings(upload_compression=codec))
        log = node.create_log("packed", 0, segment_bytes=64 * 1024)
        fill(log, 60, records=20, value_bytes=200)
        await node.settle()
        manifest = node.tiered._archivers[("packed", 0)].manifest
        assert manifest.segments
        for segment in manifest.segments:
            assert segment.compression == codec and segment.frames_key
            assert segment.stored_bytes < segment.size_bytes / 2
        await node.tiered.close()
    asyncio.run(scenario())


def test_restart_mid_upload_leaves_no_duplicate_and_sweep_removes_orphans(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud, orphan_grace_ms=0)
        log = node.create_log("crashy", 0)
        fill(log, 30)
        archiver_store = node.tiered.store
        real_save = ManifestStore.save
        calls = {"n": 0}

        async def crash_on_save(self, manifest, etag):  # data uploaded, manifest not written
            calls["n"] += 1
            raise asyncio.CancelledError()

        ManifestStore.save = crash_on_save
        try:
            await node.tiered.tick(node.clock.now_ms())
            await node.tiered.drain()
        finally:
            ManifestStore.save = real_save
        assert calls["n"] == 1
        keys_before = {info.key async for info in archiver_store.list("")}
        assert any(parse_segment_key(key) for key in keys_before)
        assert log.archived_offset == -1
        await node.tiered.close()

        restarted = Node(tmp_path, cloud, logs=node.logs, orphan_grace_ms=0)
        await restarted.settle()
        manifest = restarted.tiered._archivers[("crashy", 0)].manifest
        keys_after = {info.key async for info in restarted.tiered.store.list("")}
        referenced = manifest.referenced_keys()
        segment_objects = {key for key in keys_after if parse_segment_key(key)}
        assert segment_objects == referenced  # every object referenced once, no duplicates
        bases = [segment.base_offset for segment in manifest.segments]
        assert len(bases) == len(set(bases))
        assert log.archived_offset == manifest.last_offset

        # an unreferenced object (e.g. from an old leader epoch) is swept
        stray = manifest.segments[0].data_key.replace("-e1.", "-e0.")
        await restarted.tiered.store.put(stray, b"junk")
        wall_clock_now = int(time.time() * 1000) + 1000  # object ages are wall-clock ages
        assert await restarted.tiered.sweep_orphans(wall_clock_now) == 1
        assert stray not in {info.key async for info in restarted.tiered.store.list("")}
        await restarted.tiered.close()
    asyncio.run(scenario())


def test_manifest_is_documented_json_and_conditional(tmp_path):
    async def scenario():
        cloud = local_cloud(tmp_path)
        node = Node(tmp_path, cloud)
        log = node.create_log("doc", 3)
        fill(log, 12)
        await node.settle()
        raw = (tmp_path / "bucket" / partition_manifest_key("doc", 3)).read_bytes()
        document = json.loads(raw)
        assert document["format_version"] == 1 and document["topic"] == "doc"
        assert document["partition"] == 3 and document["revision"] >= 1
        first = document["segments"][0]
        assert (tmp_path / "bucket" / first["data_key"]).stat().st_size == first["size_bytes"]
        await node.tiered.close()
    asyncio.run(scenario())
