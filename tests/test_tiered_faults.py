"""S3 frozen (moto_server SIGSTOPped) or failing: appends never stall, nothing unarchived
is deleted, and archiving catches up once the endpoint is back."""

import asyncio
import time

from broker import limits
from broker.clock import SystemClock
from tests.tiered_support import FileSegmentLog, frozen_safe_moto, node_config  # noqa: F401
from tiered.manifest import PartitionManifest
from tiered.layout import partition_manifest_key
from tiered.service import TieredStorage
from tiered.settings import TopicTieredSettings

SETTINGS = TopicTieredSettings(remote_storage_enable=True, retention_bytes=-1, retention_ms=-1,
                               local_retention_bytes=8192, local_retention_ms=-1, partition_count=1)


def bucket_manifest(server, bucket) -> PartitionManifest:
    body = server.client().get_object(Bucket=bucket, Key="p/" + partition_manifest_key("t", 0))["Body"].read()
    return PartitionManifest.from_json(body)


def test_frozen_s3_never_stalls_appends_and_never_loses_unarchived_data(tmp_path, frozen_safe_moto, monkeypatch):
    monkeypatch.setattr(limits, "object_connect_timeout_ms", 500)
    monkeypatch.setattr(limits, "object_read_timeout_ms", 1000)
    monkeypatch.setattr(limits, "object_request_deadline_ms", 1500)
    monkeypatch.setattr(limits, "upload_retry_backoff_ms_max", 500)
    server = frozen_safe_moto
    bucket = server.new_bucket()
    clock = SystemClock()
    cloud = server.cloud_config(bucket, prefix="p", upload_interval_ms=500, cache_dir=str(tmp_path / "cache"))
    log = FileSegmentLog(tmp_path / "logs", "t", 0, clock, segment_bytes=2048, local_retention_bytes=8192)
    tiered = TieredStorage(node_config(tmp_path, cloud), lambda: [log], lambda topic: SETTINGS, clock=clock)

    async def run_for(seconds: float) -> float:
        """Append, tick and apply local retention; returns the slowest loop turn in seconds."""
        slowest = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            log.append_records(5, 100)
            await tiered.tick(clock.now_ms())
            log.apply_local_retention()
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.02)
        return slowest

    async def scenario():
        await run_for(1.5)
        archived_before_freeze = log.archived_offset
        assert archived_before_freeze > 0
        server.freeze()
        try:
            slowest = await run_for(4.0)
        finally:
            server.thaw()
        # a turn that waited for S3 would take >= the 1.5 s request deadline; under a loaded
        # CI machine ordinary turns stay far below that
        assert slowest < 1.0, f"an append turn took {slowest:.3f}s while S3 was frozen"
        frozen_progress = log.archived_offset
        # while frozen nothing new can have been confirmed, so nothing newer was deleted
        deleted_during = [base for base in log.deleted_segments if base > frozen_progress]
        assert deleted_during == []
        assert sum(segment.size_bytes for segment in log.segments()) > 8192 * 2  # local grew instead
        await run_for(2.0)
        sealed_last = max(int(s.last_offset) for s in log.segments() if s.sealed)
        deadline = time.monotonic() + 30
        while log.archived_offset < sealed_last:  # no more appends: just ticks
            assert time.monotonic() < deadline, "archiving did not catch up"
            await tiered.tick(clock.now_ms())
            await asyncio.sleep(0.05)
        await tiered.drain()
        manifest = bucket_manifest(server, bucket)
        assert manifest.last_offset >= log.archived_offset
        assert [s.base_offset for s in manifest.segments] == sorted({s.base_offset for s in manifest.segments})
        for earlier, later in zip(manifest.segments, manifest.segments[1:]):
            assert later.base_offset == earlier.last_offset + 1
        assert tiered.store.metrics.errors, "the freeze should have produced failed requests"
        await tiered.close()
    asyncio.run(scenario())


def test_failing_s3_keeps_segments_until_it_recovers(tmp_path, frozen_safe_moto):
    """An endpoint that answers errors (bucket gone) rather than hanging."""
    server = frozen_safe_moto
    bucket = server.new_bucket()
    clock = SystemClock()
    cloud = server.cloud_config(bucket, prefix="p", cache_dir=str(tmp_path / "cache"))
    log = FileSegmentLog(tmp_path / "logs", "t", 0, clock, segment_bytes=2048, local_retention_bytes=4096)
    tiered = TieredStorage(node_config(tmp_path, cloud), lambda: [log], lambda topic: SETTINGS, clock=clock)
    client = server.client()
    client.delete_bucket(Bucket=bucket)

    async def scenario():
        for _ in range(30):
            log.append_records(5, 100)
        for _ in range(5):
            await tiered.tick(clock.now_ms())
            await tiered.drain()
            log.apply_local_retention()
        assert log.archived_offset == -1 and log.deleted_segments == []
        assert tiered.status()["partitions"][0]["last_error"]
        client.create_bucket(Bucket=bucket)
        deadline = time.monotonic() + 10
        while log.archived_offset < max(int(s.last_offset) for s in log.segments() if s.sealed):
            assert time.monotonic() < deadline, "archiving did not resume"
            await asyncio.sleep(0.1)
            await tiered.tick(clock.now_ms())
            await tiered.drain()
        log.apply_local_retention()
        assert log.deleted_segments
        await tiered.close()
    asyncio.run(scenario())
