"""Manifest format, key layout, conditional updates and per-topic settings."""

import asyncio
import json

import pytest

from broker.clock import ManualClock
from broker.config import CloudStorageConfig, NodeConfig, TierConfig
from broker.invariant import InvariantViolation
from tiered.bandwidth import BandwidthLimiter
from tiered.layout import parse_segment_key, partition_manifest_key, segment_keys, topic_manifest_key
from tiered.manifest import ManifestFormatError, ManifestStore, PartitionManifest, RemoteSegment
from tiered.object_store import LocalObjectStore, PreconditionFailed
from tiered.settings import recovery_requested, resolve_topic_settings


def remote_segment(base, last, epoch=1, compression="none"):
    keys = segment_keys("t", 0, base, last, epoch, compression)
    return RemoteSegment(base_offset=base, last_offset=last, base_timestamp_ms=1000 + base,
                         max_timestamp_ms=1000 + last, size_bytes=100 * (last - base + 1), leader_epoch=epoch,
                         data_key=keys.data, index_key=keys.index, timeindex_key=keys.timeindex,
                         compression=compression, stored_bytes=100 * (last - base + 1), frames_key=keys.frames,
                         frame_bytes=1 << 20 if keys.frames else 0)


def test_keys_are_deterministic_readable_and_hash_spread():
    first = segment_keys("orders", 3, 1000, 1999, 7, "none")
    assert first == segment_keys("orders", 3, 1000, 1999, 7, "none")  # retry -> same key
    assert first.data.endswith("/orders/3/00000000000000001000-00000000000000001999-e7.log")
    assert first.frames is None
    assert segment_keys("orders", 3, 1000, 1999, 7, "zstd").data.endswith("-e7.log.zst")
    parsed = parse_segment_key(first.index)
    assert (parsed.topic, parsed.partition, parsed.base_offset, parsed.last_offset) == ("orders", 3, 1000, 1999)
    prefixes = {segment_keys("orders", 3, base, base + 9, 1, "none").data[:8] for base in range(0, 1000, 10)}
    assert len(prefixes) > 90  # leading hash spreads consecutive segments
    assert partition_manifest_key("orders", 3).endswith("/meta/orders/3/manifest.json")
    assert topic_manifest_key("orders").endswith("/meta/orders/topic_manifest.json")
    assert parse_segment_key(partition_manifest_key("orders", 3)) is None


def test_manifest_round_trip_and_lookup():
    manifest = PartitionManifest("t", 0).with_appended([remote_segment(0, 9), remote_segment(10, 19)])
    manifest = manifest.with_appended([remote_segment(30, 39)])  # a gap (data deleted before archiving)
    restored = PartitionManifest.from_json(manifest.to_json())
    assert restored == manifest
    assert restored.segment_for(5).base_offset == 0
    assert restored.segment_for(25).base_offset == 30  # in the gap: the next segment
    assert restored.segment_for(40) is None
    trimmed = restored.with_removed_prefix(2)
    assert trimmed.start_offset == 30 and trimmed.last_offset == 39
    assert set(trimmed.pending_deletes) == set(restored.segments[0].object_keys() + restored.segments[1].object_keys())
    emptied = trimmed.with_removed_prefix(1)
    assert emptied.segments == [] and emptied.start_offset == 40 and emptied.next_offset == 40


def test_start_offset_moves_forward_only_and_drops_whole_segments_below():
    manifest = PartitionManifest("t", 0).with_appended([remote_segment(0, 9), remote_segment(10, 19),
                                                        remote_segment(20, 29)])
    moved = manifest.with_start_offset(15)  # inside the second segment: it stays
    assert moved.start_offset == 15 and [s.base_offset for s in moved.segments] == [10, 20]
    assert set(moved.pending_deletes) == set(manifest.segments[0].object_keys())
    assert moved.with_start_offset(12) is moved  # never backwards
    moved.validate()
    past_end = moved.with_start_offset(45)  # beyond everything archived
    assert past_end.segments == [] and past_end.start_offset == 45 and past_end.next_offset == 45
    appended = past_end.with_appended([remote_segment(40, 49), remote_segment(50, 59)])
    assert appended.start_offset == 45 and [s.base_offset for s in appended.segments] == [40, 50]
    stale = moved.with_appended([remote_segment(30, 34)]).with_start_offset(40)
    late = stale.with_appended([remote_segment(35, 39)])  # uploaded while records were deleted
    assert late.segments == [] and set(remote_segment(35, 39).object_keys()) <= set(late.pending_deletes)
    late.validate()


def test_manifest_validation_refuses_bad_documents():
    bad_order = PartitionManifest("t", 0, last_offset=19, segments=[remote_segment(10, 19), remote_segment(0, 9)])
    with pytest.raises(InvariantViolation):
        bad_order.validate()
    document = json.loads(PartitionManifest("t", 0).with_appended([remote_segment(0, 9)]).to_json())
    document["format_version"] = 99
    with pytest.raises(ManifestFormatError):
        PartitionManifest.from_json(json.dumps(document).encode())
    with pytest.raises(ManifestFormatError):
        PartitionManifest.from_json(b"{not json")


def test_concurrent_writers_cannot_both_win(tmp_path):
    async def scenario():
        manifests = ManifestStore(LocalObjectStore(tmp_path))
        empty, etag = await manifests.load("t", 0)
        assert etag is None
        first, first_etag = await manifests.save(empty.with_appended([remote_segment(0, 9)]), etag)
        with pytest.raises(PreconditionFailed):  # a second creator
            await manifests.save(empty.with_appended([remote_segment(0, 4)]), None)
        await manifests.save(first.with_appended([remote_segment(10, 19)]), first_etag)
        with pytest.raises(PreconditionFailed):  # a stale writer
            await manifests.save(first.with_appended([remote_segment(10, 29)]), first_etag)
        latest, _ = await manifests.load("t", 0)
        assert latest.revision == 2 and latest.last_offset == 19
    asyncio.run(scenario())


def test_topic_settings_follow_tiers_configs_and_aliases():
    config = NodeConfig(cloud_storage=CloudStorageConfig(url="file:///tmp/x"),
                        tiers={"default": TierConfig("default"),
                               "archive": TierConfig("archive", local_retention_ms=3_600_000,
                                                     retention_ms=-1, upload_compression="zstd")},
                        topic_tiers=(("audit.*", "archive"),))
    audit = resolve_topic_settings(config, "audit.logins", {})
    assert (audit.tier_name, audit.local_retention_ms, audit.retention_ms, audit.upload_compression) == \
        ("archive", 3_600_000, -1, "zstd")
    assert audit.remote_storage_enable
    explicit = resolve_topic_settings(config, "audit.x", {"shoal.tier": "default", "retention.local.target.bytes": "4096",
                                                          "redpanda.remote.write": "false"})
    assert (explicit.tier_name, explicit.local_retention_bytes, explicit.remote_storage_enable) == ("default", 4096, False)
    same_as_total = resolve_topic_settings(config, "t", {"retention.bytes": "5000", "local.retention.bytes": "-2"})
    assert same_as_total.local_retention_bytes == 5000
    assert recovery_requested({"redpanda.remote.recovery": "true"})
    assert not recovery_requested({})
    no_cloud = resolve_topic_settings(NodeConfig(cloud_storage=None), "t", {"remote.storage.enable": "true"})
    assert not no_cloud.remote_storage_enable


def test_bandwidth_limiter_paces_uploads():
    async def scenario():
        clock = ManualClock()
        limiter = BandwidthLimiter(1_000_000, clock)
        started = clock.monotonic_ms()
        for _ in range(5):
            await limiter.acquire(1_000_000)
        assert clock.monotonic_ms() - started >= 3_900  # 5 MB at 1 MB/s after a 1 s burst
        unlimited = BandwidthLimiter(-1, clock)
        before = clock.monotonic_ms()
        await unlimited.acquire(10**9)
        assert clock.monotonic_ms() == before
    asyncio.run(scenario())
