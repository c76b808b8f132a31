"""The remote read path: whole batches from the bucket, byte-identical to the local log."""

import asyncio

import pytest

from broker import limits
from broker.storage.api import KafkaStorageError, OffsetOutOfRange
from shadow_indexing.cache import ChunkCache
from shadow_indexing.predicate import may_read_from_cloud
from tests.test_tiered_archiver import Node, fill, settings
from tests.tiered_support import decode_offsets, frozen_safe_moto, local_cloud, moto_s3  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def cloud(request, tmp_path):
    if request.param == "local":
        return local_cloud(tmp_path, chunk_size_bytes=2048)
    server = request.getfixturevalue("moto_s3")
    return server.cloud_config(server.new_bucket(), chunk_size_bytes=2048,
                               cache_dir=str(tmp_path / "cache"))


def test_predicate_is_offset_below_local_start():
    assert may_read_from_cloud(5, 10)
    assert not may_read_from_cloud(10, 10)
    assert not may_read_from_cloud(5, 10, remote_storage_enable=False)


async def archived_node(tmp_path, cloud, batches=40, topic_settings=None, segment_bytes=4096):
    node = Node(tmp_path, cloud, topic_settings=topic_settings)
    log = node.create_log("history", 0, segment_bytes=segment_bytes)
    fill(log, batches, records=7, value_bytes=90)
    await node.settle()
    return node, log


def test_reads_match_local_bytes_at_every_offset(tmp_path, cloud):
    async def scenario():
        node, log = await archived_node(tmp_path, cloud)
        reader = node.tiered.reader
        archived = log.archived_offset
        for offset in range(0, archived + 1, 3):
            for max_bytes in (1, 1500, 9000):
                remote = await reader.read("history", 0, offset, max_bytes)
                local = log.read_local(offset, max_bytes)
                if len(local) > len(remote):  # local may run past the archived end
                    local = local[:len(remote)]
                assert remote == local, (offset, max_bytes)
                records = decode_offsets(remote)
                assert records[0][0] <= offset <= records[-1][0] or records[0][0] == offset
        assert await reader.read("history", 0, archived + 1, 1000) == b""
        await node.tiered.close()
    asyncio.run(scenario())


def test_sequential_scan_returns_every_record_once_and_uses_the_cache(tmp_path, cloud):
    async def scenario():
        node, log = await archived_node(tmp_path, cloud)
        reader = node.tiered.reader
        offset, seen = 0, []
        while offset <= log.archived_offset:
            data = await reader.read("history", 0, offset, 3000)
            records = [record for record in decode_offsets(data) if record[0] >= offset]
            seen.extend(records)
            offset = records[-1][0] + 1
        assert [record[0] for record in seen] == list(range(log.archived_offset + 1))
        first_pass_requests = node.tiered.store.metrics.requests["get_range"]
        manifest = node.tiered._archivers[("history", 0)].manifest
        chunk = node.tiered.reader.chunk_size_bytes
        chunk_count = sum(-(-segment.size_bytes // chunk) for segment in manifest.segments)
        assert first_pass_requests <= chunk_count  # no chunk fetched twice (prefetch shared)
        assert node.tiered.reader.metrics.chunks_fetched == chunk_count
        await asyncio.sleep(0.1)  # let prefetches land
        offset = 0
        hits_before = node.tiered.cache.metrics.hits
        while offset <= log.archived_offset:
            data = await reader.read("history", 0, offset, 3000)
            offset = decode_offsets(data)[-1][0] + 1
        assert node.tiered.store.metrics.requests["get_range"] == first_pass_requests
        assert node.tiered.cache.metrics.hits > hits_before
        assert reader.metrics.prefetches > 0
        await node.tiered.close()
    asyncio.run(scenario())


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_segments_read_back_identically(tmp_path, codec):
    async def scenario():
        node = Node(tmp_path, local_cloud(tmp_path, chunk_size_bytes=4096),
                    topic_settings=lambda topic: settings(upload_compression=codec))
        log = node.create_log("history", 0, segment_bytes=1300 * 1024)
        fill(log, 320, records=50, value_bytes=90)
        await node.settle()
        manifest = node.tiered._archivers[("history", 0)].manifest
        first = manifest.segments[0]
        assert first.frames_key and first.size_bytes > 1024 * 1024 > first.stored_bytes
        reader = node.tiered.reader
        for offset in (0, 500, 9000, 11_000, log.archived_offset):
            remote = await reader.read("history", 0, offset, 300_000)
            assert remote and remote == log.read_local(offset, 300_000)[:len(remote)]
        await node.tiered.close()
    asyncio.run(scenario())


def test_offsets_below_remote_start_are_out_of_range(tmp_path):
    async def scenario():
        node, log = await archived_node(tmp_path, local_cloud(tmp_path))
        archiver = node.tiered._archivers[("history", 0)]
        node.topic_settings = lambda topic: settings(retention_bytes=1)
        await node.settle()
        start = archiver.manifest.start_offset
        assert start > 0
        with pytest.raises(OffsetOutOfRange):
            await node.tiered.reader.read("history", 0, start - 1, 1000)
        assert node.tiered.remote_start_offset("history", 0) == (start if archiver.manifest.segments else None)
        await node.tiered.close()
    asyncio.run(scenario())


def test_offset_for_timestamp_searches_remote_time_indexes(tmp_path, cloud):
    async def scenario():
        node = Node(tmp_path, cloud)
        log = node.create_log("timed", 0)
        base_time = node.clock.now_ms() - 100_000
        for batch in range(40):
            log.append_records(5, 80, timestamp_ms=base_time + batch * 10)
        await node.settle()
        tiered = node.tiered
        assert await tiered.offset_for_timestamp("timed", 0, base_time - 5) == (0, base_time)
        assert await tiered.offset_for_timestamp("timed", 0, base_time + 101) == (55, base_time + 110)
        assert await tiered.offset_for_timestamp("timed", 0, base_time + 10_000) is None
        await tiered.close()
    asyncio.run(scenario())


def test_chunk_cache_is_bounded_lru_and_survives_restart(tmp_path):
    async def scenario():
        cache = ChunkCache(tmp_path / "cache", capacity_bytes=10_000)
        for index in range(5):
            await cache.put(f"chunk-{index}", bytes([index]) * 3000)
        assert cache.size_bytes <= 10_000 and cache.metrics.evictions == 2
        assert await cache.get("chunk-0") is None
        assert await cache.get("chunk-4") == bytes([4]) * 3000
        reopened = ChunkCache(tmp_path / "cache", capacity_bytes=10_000)
        assert reopened.size_bytes == cache.size_bytes
        assert await reopened.get("chunk-3") == bytes([3]) * 3000
        on_disk = sum(path.stat().st_size for path in (tmp_path / "cache").glob("*/*"))
        assert on_disk == reopened.size_bytes
    asyncio.run(scenario())


def test_an_unreadable_bucket_is_a_storage_error_not_a_crash(tmp_path):
    async def scenario():
        node, log = await archived_node(tmp_path, local_cloud(tmp_path))
        manifest = node.tiered._archivers[("history", 0)].manifest
        for segment in manifest.segments:
            (tmp_path / "bucket" / segment.index_key).unlink()
        with pytest.raises(KafkaStorageError):
            await node.tiered.reader.read("history", 0, 0, 1000)
        await node.tiered.close()
    asyncio.run(scenario())


def test_frozen_bucket_read_gives_up_at_the_deadline_for_every_sharer(tmp_path, frozen_safe_moto, monkeypatch):
    """A read waiting on a frozen bucket becomes a storage error after
    limits.remote_read_deadline_ms; a second reader sharing its ranged GET gets a storage
    error too (never a stray cancellation)."""
    monkeypatch.setattr(limits, "remote_read_deadline_ms", 1000)
    monkeypatch.setattr(limits, "object_request_deadline_ms", 10_000)
    server = frozen_safe_moto
    cloud = server.cloud_config(server.new_bucket(), chunk_size_bytes=2048, cache_dir=str(tmp_path / "cache"))

    async def scenario():
        node, log = await archived_node(tmp_path, cloud)
        reader = node.tiered.reader
        reader.prefetch_chunks = 0  # the GET below must be the first reader's own
        await reader.read("history", 0, 0, 100)  # offset index of the first segment now cached
        server.freeze()
        try:
            started = asyncio.get_running_loop().time()

            async def late_reader():
                await asyncio.sleep(0.5)  # joins the first reader's GET in flight
                return await reader.read("history", 0, 20, 5000)

            outcomes = await asyncio.gather(reader.read("history", 0, 20, 5000), late_reader(),
                                            return_exceptions=True)
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            server.thaw()
        assert all(isinstance(outcome, KafkaStorageError) for outcome in outcomes), outcomes
        assert elapsed < 3.0
        assert decode_offsets(await reader.read("history", 0, 20, 5000))[0][0] <= 20  # back once thawed
        await node.tiered.close()
    asyncio.run(scenario())
