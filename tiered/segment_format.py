"""Kafka segment bytes as the cold tier needs them: batch headers, offset and time indexes.

Only the 61-byte record batch header (magic v2) is parsed, never records. The archiver
scans a sealed segment once while uploading it: every batch's CRC32C is checked (a corrupt
local segment is never archived) and a fresh sparse offset index and time index are
built in Kafka's own formats (the same as the local `.index` / `.timeindex` files):

    .index      8-byte entries: relative_offset u32 BE, position u32 BE
                (position of a batch; relative_offset is that batch's LAST offset - base)
    .timeindex 12-byte entries: max_timestamp i64 BE, relative_offset u32 BE
                (largest timestamp so far in the segment; last offset of the indexed batch)

Building them here keeps the remote copy independent of how the local log sized or
preallocated its own index files.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass

from broker import limits
from broker.invariant import invariant
from broker.records import (
    BATCH_HEADER_BYTES, BatchHeader, RecordBatchError, peek_batch_size, validate_batch,
)

_INDEX_ENTRY = struct.Struct(">II")
_TIME_INDEX_ENTRY = struct.Struct(">qI")


class CorruptSegment(Exception):
    """A batch in a segment failed its CRC or framing check."""


def checked_header(data: bytes | bytearray | memoryview, position: int) -> BatchHeader:
    """The header of the whole batch at `position`, after its lengths and CRC32C are checked."""
    try:
        return validate_batch(data, position)
    except RecordBatchError as error:
        raise CorruptSegment(f"batch at position {position}: {error}") from None


def batch_size_at(data: bytes | bytearray | memoryview, position: int) -> int:
    """Size of the batch starting at `position` from its first 12 bytes."""
    return peek_batch_size(data, position)


@dataclass
class SegmentSummary:
    base_offset: int = -1
    last_offset: int = -1
    base_timestamp_ms: int = -1
    max_timestamp_ms: int = -1
    max_leader_epoch: int = -1
    size_bytes: int = 0
    batch_count: int = 0


class SegmentScanner:
    """Fed a segment's bytes in order (any piece sizes), checks every batch and builds the
    offset and time indexes. `finish()` returns the summary and both index blobs."""

    def __init__(self, expected_base_offset: int, index_interval_bytes: int = limits.index_interval_bytes) -> None:
        self._expected_base = expected_base_offset
        self._interval = index_interval_bytes
        self._pending = bytearray()
        self._position = 0  # file position of _pending[0]
        self._bytes_since_entry = index_interval_bytes  # first batch always indexed
        self._index = bytearray()
        self._time_index = bytearray()
        self._last_time_indexed = -1
        self.summary = SegmentSummary(base_offset=expected_base_offset)

    def feed(self, piece: bytes) -> None:
        self._pending += piece
        consumed = 0
        while len(self._pending) - consumed >= BATCH_HEADER_BYTES:
            if len(self._pending) - consumed < batch_size_at(self._pending, consumed):
                break
            header = checked_header(self._pending, consumed)
            self._record(header, self._position + consumed)
            consumed += header.size
        del self._pending[:consumed]
        self._position += consumed

    def _record(self, header: BatchHeader, position: int) -> None:
        summary = self.summary
        invariant(header.base_offset > summary.last_offset, "offsets go backwards in segment",
                  header.base_offset, summary.last_offset)
        invariant(header.base_offset >= self._expected_base, "batch below segment base",
                  header.base_offset, self._expected_base)
        if summary.batch_count == 0:
            summary.base_timestamp_ms = header.base_timestamp
        summary.last_offset = header.last_offset
        summary.max_timestamp_ms = max(summary.max_timestamp_ms, header.max_timestamp)
        summary.max_leader_epoch = max(summary.max_leader_epoch, header.partition_leader_epoch)
        summary.size_bytes = position + header.size
        summary.batch_count += 1
        relative = header.last_offset - self._expected_base  # entries name the batch's last offset, as Kafka's
        if self._bytes_since_entry >= self._interval:
            self._index += _INDEX_ENTRY.pack(relative, position)
            self._bytes_since_entry = 0
            if summary.max_timestamp_ms > self._last_time_indexed:  # running max, as Kafka
                self._time_index += _TIME_INDEX_ENTRY.pack(summary.max_timestamp_ms, relative)
                self._last_time_indexed = summary.max_timestamp_ms
        self._bytes_since_entry += header.size

    def finish(self) -> tuple[SegmentSummary, bytes, bytes]:
        if self._pending:
            raise CorruptSegment(f"{len(self._pending)} trailing bytes after the last whole batch")
        return self.summary, bytes(self._index), bytes(self._time_index)


class OffsetIndex:
    """A parsed Kafka `.index` blob: floor lookups of an offset's file position."""

    def __init__(self, base_offset: int, blob: bytes) -> None:
        invariant(len(blob) % _INDEX_ENTRY.size == 0, "offset index size", len(blob))
        self.base_offset = base_offset
        entries = [_INDEX_ENTRY.unpack_from(blob, at) for at in range(0, len(blob), _INDEX_ENTRY.size)]
        self._offsets = [base_offset + relative for relative, _ in entries]
        self._positions = [position for _, position in entries]

    def floor_position(self, offset: int) -> int:
        """Where a forward header scan for `offset` starts: the position of the last indexed
        batch whose last offset is <= `offset` (0 if none)."""
        at = bisect_right(self._offsets, offset) - 1
        return self._positions[at] if at >= 0 else 0


class TimeIndex:
    """A parsed Kafka `.timeindex` blob: the first indexed offset whose max timestamp >= ts."""

    def __init__(self, base_offset: int, blob: bytes) -> None:
        invariant(len(blob) % _TIME_INDEX_ENTRY.size == 0, "time index size", len(blob))
        entries = [_TIME_INDEX_ENTRY.unpack_from(blob, at) for at in range(0, len(blob), _TIME_INDEX_ENTRY.size)]
        self._timestamps = [timestamp for timestamp, _ in entries]
        self._offsets = [base_offset + relative for _, relative in entries]
        self.base_offset = base_offset

    def floor_offset_before(self, timestamp_ms: int) -> int:
        """An offset from which a forward scan finds the first record with ts >= timestamp_ms:
        the offset of the last entry whose max timestamp is < timestamp_ms (base if none)."""
        at = bisect_right(self._timestamps, timestamp_ms - 1) - 1
        return self._offsets[at] if at >= 0 else self.base_offset
