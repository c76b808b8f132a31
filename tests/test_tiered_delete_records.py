"""DeleteRecords on a remote-enabled partition: the cold tier honours the new start offset
(manifest first, then the objects wholly below it; nothing below it is read, listed or
found by timestamp), whether the offset lies in the bucket only or in the local log too."""

import asyncio
import time

import pytest

from broker import limits
from broker.clock import SystemClock
from broker.storage.api import KafkaStorageError, OffsetOutOfRange
from tests.test_tiered_archiver import Node, settings
from tests.tiered_support import (  # noqa: F401  (fixtures)
    FileSegmentLog, decode_offsets, frozen_safe_moto, local_cloud, moto_s3, node_config,
)
from tiered.service import TieredStorage


@pytest.fixture(params=["local", "s3"])
def cloud(request, tmp_path):
    if request.param == "local":
        return local_cloud(tmp_path, chunk_size_bytes=2048, upload_interval_ms=10_000)
    server = request.getfixturevalue("moto_s3")
    return server.cloud_config(server.new_bucket(), chunk_size_bytes=2048, upload_interval_ms=10_000,
                               cache_dir=str(tmp_path / "cache"))


async def bucket_keys(node) -> set[str]:
    return {info.key async for info in node.tiered.store.list("")}


async def timed_history(node, topic: str, batches: int = 80, local_retention_bytes: int = 8192):
    """A partition whose first part lives only in the bucket; record i has timestamp base + i."""
    log = node.create_log(topic, 0, local_retention_bytes=local_retention_bytes)
    base_time = node.clock.now_ms() - 100_000
    for _ in range(batches):
        offset = int(log.log_end_offset)
        log.append_records(5, 90, timestamp_ms=base_time + offset)
    await node.settle()
    log.apply_local_retention()
    return log, base_time


def test_offset_in_the_bucket_only_moves_the_remote_start(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log, base_time = await timed_history(node, "gone")
        archiver = node.tiered._archivers[("gone", 0)]
        before = list(archiver.manifest.segments)
        assert len(before) >= 6 and int(log.log_start_offset) > before[3].last_offset
        cut = before[2].base_offset + 3  # inside the third remote segment, below the local start
        assert await log.delete_records_before(cut) == int(log.log_start_offset)  # local: a no-op
        assert await node.tiered.delete_records_before("gone", 0, cut) == cut
        manifest = archiver.manifest
        assert manifest.start_offset == cut
        assert manifest.segments == before[2:]  # the straddling segment stays, no more goes
        keys = await bucket_keys(node)
        for segment in before[:2]:
            assert not set(segment.object_keys()) & keys, "objects wholly below the cut remain"
        for segment in before[2:]:
            assert set(segment.object_keys()) <= keys
        reader = node.tiered.reader
        with pytest.raises(OffsetOutOfRange):
            await reader.read("gone", 0, cut - 1, 10_000)
        first = [record for record in decode_offsets(await reader.read("gone", 0, cut, 10_000))
                 if record[0] >= cut][0]
        assert first[0] == cut
        assert await reader.start_offset("gone", 0) == cut
        assert await reader.offset_for_timestamp("gone", 0, base_time) == (cut, first[1])
        await node.settle()  # later ticks keep the start; dropped keys wait in pending_deletes
        assert archiver.manifest.start_offset == cut  # (until the next manifest write) and are gone
        assert set(archiver.manifest.pending_deletes) <= {key for s in before[:2] for key in s.object_keys()}
        assert not set(archiver.manifest.pending_deletes) & await bucket_keys(node)
        assert await node.tiered.delete_records_before("gone", 0, cut - 2) == cut  # never backwards
        await node.tiered.close()
    asyncio.run(scenario())


def test_offset_past_the_archive_drops_everything_below_and_uploads_nothing_below(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log, _ = await timed_history(node, "cut", local_retention_bytes=-1)
        for _ in range(20):  # unarchived local data
            log.append_records(5, 90)
        archived_last = node.tiered._archivers[("cut", 0)].manifest.last_offset
        sealed = [segment for segment in log.segments() if segment.sealed and segment.last_offset > archived_last]
        cut = int(sealed[-1].base_offset) + 2  # inside the last sealed, unarchived segment
        assert await log.delete_records_before(cut) == cut  # local: whole segments below go, archived or not
        assert await node.tiered.delete_records_before("cut", 0, cut) is None  # nothing readable remains
        archiver = node.tiered._archivers[("cut", 0)]
        assert archiver.manifest.segments == [] and archiver.manifest.start_offset == cut
        assert archiver.manifest.next_offset == cut  # a recovery from the bucket continues there
        await node.settle()
        manifest = archiver.manifest
        assert manifest.start_offset == cut
        assert [segment.base_offset for segment in manifest.segments] == [int(sealed[-1].base_offset)]
        assert all(segment.last_offset >= cut for segment in manifest.segments)
        keys = await bucket_keys(node)
        referenced = {key for segment in manifest.segments for key in segment.object_keys()}
        assert {key for key in keys if not key.endswith("manifest.json")} == referenced
        with pytest.raises(OffsetOutOfRange):
            await node.tiered.reader.read("cut", 0, cut - 1, 1000)
        await node.tiered.close()
    asyncio.run(scenario())


def test_floor_persisted_by_the_local_log_is_applied_by_the_archiver(tmp_path, cloud):
    """A node that died between the local checkpoint and the manifest write: the archiver's
    next tick takes the log's delete_records_offset into the manifest."""
    async def scenario():
        node = Node(tmp_path, cloud)
        log, _ = await timed_history(node, "late", local_retention_bytes=-1)
        archiver = node.tiered._archivers[("late", 0)]
        cut = archiver.manifest.segments[3].base_offset
        await log.delete_records_before(cut)  # the handler never reached the cold tier
        with pytest.raises(OffsetOutOfRange):
            await node.tiered.reader.read("late", 0, cut - 1, 1000)  # refused before the manifest moves
        await node.settle(ticks=1)
        assert archiver.manifest.start_offset == cut
        assert archiver.manifest.segments[0].base_offset == cut
        await node.tiered.close()
    asyncio.run(scenario())


def test_frozen_bucket_fails_delete_records_in_bounded_time_then_catches_up(tmp_path, frozen_safe_moto, monkeypatch):
    monkeypatch.setattr(limits, "remote_delete_records_wait_ms", 1000)
    monkeypatch.setattr(limits, "remote_read_deadline_ms", 1000)
    monkeypatch.setattr(limits, "object_request_deadline_ms", 3000)
    monkeypatch.setattr(limits, "upload_retry_backoff_ms_max", 300)
    server = frozen_safe_moto
    bucket = server.new_bucket()
    clock = SystemClock()
    cloud = server.cloud_config(bucket, prefix="p", chunk_size_bytes=2048, cache_dir=str(tmp_path / "cache"))
    log = FileSegmentLog(tmp_path / "logs", "t", 0, clock, segment_bytes=2048, local_retention_bytes=4096)
    tiered = TieredStorage(node_config(tmp_path, cloud), lambda: [log], lambda topic: settings(), clock=clock)

    async def scenario():
        for _ in range(30):
            log.append_records(5, 100)
        log.roll()
        for _ in range(3):
            await tiered.tick(clock.now_ms())
            await tiered.drain()
        log.apply_local_retention()
        archiver = tiered._archivers[("t", 0)]
        cut = archiver.manifest.segments[2].base_offset
        assert cut < log.log_start_offset
        server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(KafkaStorageError):
                await tiered.delete_records_before("t", 0, cut)
            with pytest.raises(OffsetOutOfRange):  # refused at once, bucket or not
                await tiered.reader.read("t", 0, cut - 1, 1000)
            with pytest.raises(KafkaStorageError):  # a read that needs the bucket gives up in time
                await tiered.reader.read("t", 0, cut, 1000)
            assert time.monotonic() - started < 6
        finally:
            server.thaw()
        deadline = time.monotonic() + 20
        while archiver.manifest is None or archiver.manifest.start_offset != cut:
            assert time.monotonic() < deadline, "the archiver never wrote the new start offset"
            await asyncio.sleep(0.1)
            await tiered.tick(clock.now_ms())
        records = decode_offsets(await tiered.reader.read("t", 0, cut, 1000))
        assert records[0][0] == cut
        await tiered.close()
    asyncio.run(scenario())
