"""Sparse offset and time indexes of one segment, in Kafka's file format.

    .index      8-byte entries: relative_offset u32 BE, file position u32 BE
    .timeindex  12-byte entries: timestamp i64 BE, relative_offset u32 BE

An offset entry points at the start of a batch and names that batch's *last* offset (as
Kafka's does). A time entry names the largest timestamp seen so far in the segment and the
(last) offset of the batch that holds it. The one lookup rule for readers: take the last
offset entry whose relative offset is <= the target, and scan batch headers forward from
its position. Both indexes live in memory while the segment is open; their files are
written whole (tmp file, fsync, rename) when the segment is sealed.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from pathlib import Path

from broker.invariant import invariant

OFFSET_ENTRY = struct.Struct(">II")
TIME_ENTRY = struct.Struct(">qI")
UINT32_MAX = 2**32 - 1
invariant(array("I").itemsize == 4 and array("q").itemsize == 8, "array type sizes differ from the index format")


class OffsetIndex:
    def __init__(self) -> None:
        self.relative_offsets = array("I")  # compact: ~8 bytes per entry in memory
        self.positions = array("I")

    def __len__(self) -> int:
        return len(self.relative_offsets)

    def append(self, relative_offset: int, position: int) -> None:
        invariant(0 <= relative_offset <= UINT32_MAX and 0 <= position <= UINT32_MAX,
                  "offset index entry out of u32 range", relative_offset, position)
        if self.relative_offsets:
            invariant(relative_offset > self.relative_offsets[-1] and position > self.positions[-1],
                      "offset index entries must increase", relative_offset, position,
                      self.relative_offsets[-1], self.positions[-1])
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def last(self) -> tuple[int, int] | None:
        if not self.relative_offsets:
            return None
        return self.relative_offsets[-1], self.positions[-1]

    def keep_first(self, count: int) -> None:
        """Drop every entry after the first `count` (a segment cut short)."""
        del self.relative_offsets[count:]
        del self.positions[count:]

    def floor_position(self, relative_offset: int) -> int:
        """Position to start a header scan for `relative_offset` (0 when before every entry)."""
        slot = bisect.bisect_right(self.relative_offsets, relative_offset) - 1
        return self.positions[slot] if slot >= 0 else 0

    def to_bytes(self) -> bytes:
        return b"".join(OFFSET_ENTRY.pack(relative, position)
                        for relative, position in zip(self.relative_offsets, self.positions))

    @classmethod
    def from_bytes(cls, data: bytes, log_size: int) -> "OffsetIndex | None":
        """The index in `data`, or None when it is not sane (torn, not increasing, or
        pointing past the log)."""
        if len(data) % OFFSET_ENTRY.size:
            return None
        index = cls()
        for relative, position in OFFSET_ENTRY.iter_unpack(data):
            if index.relative_offsets and (relative <= index.relative_offsets[-1]
                                           or position <= index.positions[-1]):
                return None
            if position >= log_size:
                return None
            index.relative_offsets.append(relative)
            index.positions.append(position)
        return index


class TimeIndex:
    def __init__(self) -> None:
        self.timestamps = array("q")
        self.relative_offsets = array("I")

    def __len__(self) -> int:
        return len(self.timestamps)

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        """Add an entry when `timestamp` is larger than the last one (Kafka's rule)."""
        if timestamp < 0 or (self.timestamps and timestamp <= self.timestamps[-1]):
            return
        invariant(0 <= relative_offset <= UINT32_MAX, "time index offset out of u32 range", relative_offset)
        if self.relative_offsets:
            invariant(relative_offset >= self.relative_offsets[-1], "time index offsets must not decrease",
                      relative_offset, self.relative_offsets[-1])
        self.timestamps.append(timestamp)
        self.relative_offsets.append(relative_offset)

    def last(self) -> tuple[int, int] | None:
        if not self.timestamps:
            return None
        return self.timestamps[-1], self.relative_offsets[-1]

    def keep_below(self, relative_offset: int) -> None:
        """Drop the entries naming `relative_offset` or later (a segment cut short)."""
        count = bisect.bisect_left(self.relative_offsets, relative_offset)
        del self.timestamps[count:]
        del self.relative_offsets[count:]

    def last_offset_below(self, timestamp: int) -> int | None:
        """Relative offset of the last entry whose timestamp is < `timestamp`: every record
        at or before it has a smaller timestamp. None when no entry qualifies."""
        slot = bisect.bisect_left(self.timestamps, timestamp) - 1
        return self.relative_offsets[slot] if slot >= 0 else None

    def to_bytes(self) -> bytes:
        return b"".join(TIME_ENTRY.pack(timestamp, relative)
                        for timestamp, relative in zip(self.timestamps, self.relative_offsets))

    @classmethod
    def from_bytes(cls, data: bytes) -> "TimeIndex | None":
        if len(data) % TIME_ENTRY.size:
            return None
        index = cls()
        for timestamp, relative in TIME_ENTRY.iter_unpack(data):
            if timestamp < 0 or (index.timestamps and (timestamp <= index.timestamps[-1]
                                                       or relative < index.relative_offsets[-1])):
                return None
            index.timestamps.append(timestamp)
            index.relative_offsets.append(relative)
        return index


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file, fsync it, and rename it over `path`: a reader
    (or a recovery after a crash) sees the old file, no file, or the whole new one."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def read_file_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
