"""Upload one sealed local segment: data object, offset index, time index (and, when
compressed, the frame table), streaming the file in frames so memory stays bounded.

The segment is scanned while it streams: every batch's CRC is checked and the remote
indexes are built from the bytes actually uploaded. Keys come from tiered.layout, so a
retry of the same segment writes the same keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from broker import limits
from broker.clock import Clock
from broker.invariant import invariant
from broker.storage.api import SegmentInfo
from tiered.bandwidth import BandwidthLimiter
from tiered.compression import compress_frame, encode_frame_table
from tiered.layout import segment_keys
from tiered.manifest import RemoteSegment
from tiered.object_store import ObjectStore
from tiered.segment_format import SegmentScanner


@dataclass(frozen=True)
class UploadContext:
    store: ObjectStore
    bandwidth: BandwidthLimiter
    concurrency: asyncio.Semaphore
    clock: Clock


async def upload_segment(context: UploadContext, topic: str, partition: int,
                         segment: SegmentInfo, compression: str) -> RemoteSegment:
    """Upload `segment` and return its manifest entry (not yet committed to the manifest)."""
    keys = segment_keys(topic, partition, int(segment.base_offset), int(segment.last_offset),
                        int(segment.leader_epoch), compression)
    scanner = SegmentScanner(int(segment.base_offset))
    frame_positions = [0]
    async with context.concurrency:
        stored_bytes = await context.store.put_stream(
            keys.data, _frames(context, segment.log_path, segment.size_bytes, scanner,
                               compression, frame_positions))
        summary, index_blob, time_index_blob = scanner.finish()
        invariant(summary.last_offset == segment.last_offset, "segment last offset differs from its info",
                  segment.log_path, summary.last_offset, segment.last_offset)
        invariant(summary.size_bytes == segment.size_bytes, "segment size differs from its info",
                  segment.log_path, summary.size_bytes, segment.size_bytes)
        await context.store.put(keys.index, index_blob)
        await context.store.put(keys.timeindex, time_index_blob)
        if keys.frames:
            await context.store.put(keys.frames, encode_frame_table(frame_positions))
    return RemoteSegment(
        base_offset=int(segment.base_offset), last_offset=summary.last_offset,
        base_timestamp_ms=summary.base_timestamp_ms, max_timestamp_ms=summary.max_timestamp_ms,
        size_bytes=summary.size_bytes, leader_epoch=int(segment.leader_epoch),
        data_key=keys.data, index_key=keys.index, timeindex_key=keys.timeindex,
        compression=compression, stored_bytes=stored_bytes, frames_key=keys.frames,
        frame_bytes=limits.compression_frame_bytes if keys.frames else 0,
        uploaded_ms=context.clock.now_ms())


async def _frames(context: UploadContext, path: Path, size_bytes: int, scanner: SegmentScanner,
                  compression: str, frame_positions: list[int]) -> AsyncIterator[bytes]:
    """The segment's first size_bytes, frame by frame, scanned and (maybe) compressed."""
    frame_bytes = limits.compression_frame_bytes
    with open(path, "rb") as file:
        remaining = size_bytes
        while remaining > 0:
            frame = await asyncio.to_thread(file.read, min(frame_bytes, remaining))
            invariant(frame, "segment file shorter than its size", path, size_bytes)
            remaining -= len(frame)
            scanner.feed(frame)
            if compression != "none":
                frame = await asyncio.to_thread(compress_frame, compression, frame)
            frame_positions.append(frame_positions[-1] + len(frame))
            await context.bandwidth.acquire(len(frame))
            yield frame
