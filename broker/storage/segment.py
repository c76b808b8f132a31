"""One segment of a partition log: `<base_offset:020d>.log` plus its `.index` and
`.timeindex` (see index.py for their format).

The log file holds whole magic-v2 batches back to back, exactly as appended. The segment
keeps its indexes in memory and knows its size, last offset, max timestamp and leader
epoch. A segment is opened in one of two ways after a restart:

- `open_trusted`: a sealed segment whose index files are present and sane (entry sizes,
  monotonic entries, the last entry naming the last batch that ends the file) is taken as
  is, reading only two batch headers;
- `recover_by_scan`: otherwise (and always for the last segment) every batch is read and
  checked (header, lengths, CRC32C, contiguous offsets); the file is cut at the first bad
  or torn batch and the indexes are rebuilt.

A segment holds the batches of one leader epoch (the log rolls on a new epoch); a trusted
segment whose first and last batches disagree on it is scanned instead. `epoch_starts`
lists where each epoch starts inside the segment, for the log's leader epoch cache.
`forget_from(offset)` drops a suffix from memory and reopens the segment for appends (the
log's suffix truncation cuts the file itself).

All methods run on the partition's owner (the event loop), except the `*_files` helpers
and the constructors used by recovery, which touch only this segment's files.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from pathlib import Path
from typing import Callable, Iterator

from broker import limits
from broker.ids import LeaderEpoch, Offset
from broker.invariant import InvariantViolation, invariant
from broker.records import (
    BATCH_HEADER_BYTES, BatchHeader, RecordBatchError, check_header, check_magic, read_header,
    verify_crc,
)
from broker.storage.api import SegmentInfo
from broker.storage.index import (
    UINT32_MAX, OffsetIndex, TimeIndex, read_file_or_none, write_file_atomically,
)

log = logging.getLogger("shoal.storage")

# The header fields a fetch needs, in one unpack: baseOffset, batchLength, magic,
# lastOffsetDelta (skipping leader epoch, crc and attributes).
_EXTENT = struct.Struct(">qi4xb4x2xi")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    return directory / f"{base_offset:020d}{suffix}"


def parse_segment_base_offset(file_name: str) -> int | None:
    """Base offset of a `<20 digits>.log` file name, None for anything else."""
    stem, dot, suffix = file_name.partition(".")
    if dot and "." + suffix == LOG_SUFFIX and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


class FileWindow:
    """Positional reads through a buffer, so scanning many small batches costs few
    syscalls. Views it returns stay valid until the next call."""

    def __init__(self, descriptor: int, end: int, chunk_bytes: int) -> None:
        self._descriptor = descriptor
        self._end = end
        self._chunk_bytes = chunk_bytes
        self._start = 0
        self._buffer = b""

    def get(self, position: int, length: int) -> memoryview | None:
        """`length` bytes at `position`, or None when the file (up to `end`) is shorter."""
        if position + length > self._end:
            return None
        offset_in_buffer = position - self._start
        if offset_in_buffer < 0 or offset_in_buffer + length > len(self._buffer):
            wanted = min(max(length, self._chunk_bytes), self._end - position)
            self._buffer = os.pread(self._descriptor, wanted, position)
            self._start = position
            offset_in_buffer = 0
            if len(self._buffer) < length:
                return None
        return memoryview(self._buffer)[offset_in_buffer: offset_in_buffer + length]


class Segment:
    def __init__(self, directory: Path, base_offset: int, descriptor: int, created_ms: int) -> None:
        self.base_offset = base_offset
        self.log_path = segment_path(directory, base_offset, LOG_SUFFIX)
        self.index_path = segment_path(directory, base_offset, INDEX_SUFFIX)
        self.timeindex_path = segment_path(directory, base_offset, TIMEINDEX_SUFFIX)
        self.descriptor = descriptor
        # segment.ms counts wall-clock time from when this process opened the segment, like
        # Kafka's LogSegment.created: record timestamps are the producer's and may be old,
        # and counting from them would roll (and let retention expire) a restarted
        # partition's active segment at the first tick.
        self.created_ms = created_ms
        self.size_bytes = 0
        self.last_offset = base_offset - 1
        self.base_timestamp_ms = -1
        self.max_timestamp_ms = -1
        self.offset_of_max_timestamp = -1  # last offset of the first batch holding the max
        self.leader_epoch = -1
        self.epoch_starts: list[tuple[int, int]] = []  # (leader epoch, first offset), one per epoch change
        self.last_batch_position = -1
        self.sealed = False
        self.files_durable = False  # sealed, and log + index files fsynced: safe to archive
        self.offset_index = OffsetIndex()
        self.time_index = TimeIndex()
        self._bytes_since_index_entry = 0

    # -- creation and recovery -----------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, created_ms: int) -> "Segment":
        path = segment_path(directory, base_offset, LOG_SUFFIX)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        return cls(directory, base_offset, descriptor, created_ms)

    @classmethod
    def open_trusted(cls, directory: Path, base_offset: int, now_ms: int) -> "Segment | None":
        """A sealed segment from its index files, or None when they are missing or not
        sane (the caller then recovers it by scanning)."""
        descriptor = os.open(segment_path(directory, base_offset, LOG_SUFFIX), os.O_RDWR)
        segment = cls(directory, base_offset, descriptor, now_ms)
        if segment._load_indexes():
            segment.sealed = True
            segment.files_durable = True
            return segment
        segment.close()
        return None

    @classmethod
    def recover_by_scan(cls, directory: Path, base_offset: int, now_ms: int) -> tuple["Segment", int]:
        """Scan every batch; cut the file after the last good one. Returns the segment and
        the number of bytes cut."""
        descriptor = os.open(segment_path(directory, base_offset, LOG_SUFFIX), os.O_RDWR)
        segment = cls(directory, base_offset, descriptor, now_ms)
        file_size = os.fstat(descriptor).st_size
        for position, header in segment._scan_valid_batches(file_size):
            segment._account(header, position)
        cut_bytes = file_size - segment.size_bytes
        if cut_bytes:
            log.warning("%s: cutting %d bytes of torn or corrupt data after offset %d",
                        segment.log_path, cut_bytes, segment.last_offset)
            os.ftruncate(descriptor, segment.size_bytes)
        os.fsync(descriptor)  # what a crash of the process left only in the page cache
        return segment, cut_bytes

    def _scan_valid_batches(self, file_size: int) -> Iterator[tuple[int, BatchHeader]]:
        window = FileWindow(self.descriptor, file_size, limits.recovery_read_chunk_bytes)
        position = 0
        expected_offset = self.base_offset
        while position < file_size:
            header = _valid_batch_at(window, position, file_size)
            if header is None or header.base_offset != expected_offset:
                return
            yield position, header
            position += header.size
            expected_offset = header.last_offset + 1

    def _load_indexes(self) -> bool:
        file_size = os.fstat(self.descriptor).st_size
        offset_data = read_file_or_none(self.index_path)
        time_data = read_file_or_none(self.timeindex_path)
        if offset_data is None or time_data is None or file_size == 0:
            return False
        offset_index = OffsetIndex.from_bytes(offset_data, file_size)
        time_index = TimeIndex.from_bytes(time_data)
        last_entry = offset_index.last() if offset_index is not None else None
        if offset_index is None or time_index is None or last_entry is None:
            return False
        last_relative, last_position = last_entry
        window = FileWindow(self.descriptor, file_size, BATCH_HEADER_BYTES)
        last_header = _header_at(window, last_position, file_size)
        first_header = _header_at(window, 0, file_size)
        if (last_header is None or first_header is None
                or first_header.base_offset != self.base_offset
                or last_header.last_offset != self.base_offset + last_relative
                or last_position + last_header.size != file_size
                or first_header.partition_leader_epoch != last_header.partition_leader_epoch):
            return False
        time_last = time_index.last()
        if time_last is not None and time_last[1] > last_relative:
            return False
        self.offset_index, self.time_index = offset_index, time_index
        self.size_bytes = file_size
        self.last_offset = last_header.last_offset
        self.last_batch_position = last_position
        self.leader_epoch = last_header.partition_leader_epoch
        self.epoch_starts = [(self.leader_epoch, self.base_offset)]
        self.base_timestamp_ms = first_header.base_timestamp
        if time_last is not None:
            self.max_timestamp_ms = time_last[0]
            self.offset_of_max_timestamp = self.base_offset + time_last[1]
        return True

    # -- append ----------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return self.size_bytes == 0

    def can_hold(self, header: BatchHeader, next_offset: int, segment_bytes: int) -> bool:
        """Whether a batch of this size, starting at next_offset, may go into this segment."""
        if self.is_empty:
            return True
        return (self.size_bytes + header.size <= min(segment_bytes, UINT32_MAX)
                and next_offset + header.last_offset_delta - self.base_offset <= limits.segment_relative_offset_max)

    def append(self, batch: memoryview, header: BatchHeader) -> int:
        """Write one batch (already patched) at the end; returns its position."""
        invariant(not self.sealed, "append to a sealed segment", self.log_path)
        invariant(header.base_offset == self.last_offset + 1, "appended offsets must be contiguous",
                  header.base_offset, self.last_offset)
        position = self.size_bytes
        written = 0
        try:
            while written < len(batch):
                written += os.pwrite(self.descriptor, batch[written:], position + written)
        except OSError:
            _cut_quietly(self.descriptor, position)
            raise
        self._account(header, position)
        return position

    def _account(self, header: BatchHeader, position: int) -> None:
        if self.is_empty or header.partition_leader_epoch != self.leader_epoch:
            self.epoch_starts.append((header.partition_leader_epoch, header.base_offset))
        if self.is_empty:
            self.base_timestamp_ms = header.base_timestamp
        if header.max_timestamp > self.max_timestamp_ms:
            self.max_timestamp_ms = header.max_timestamp
            self.offset_of_max_timestamp = header.last_offset
        if not self.offset_index or self._bytes_since_index_entry >= limits.index_interval_bytes:
            self._add_index_entries(header.last_offset, position)
        self._bytes_since_index_entry += header.size
        self.size_bytes = position + header.size
        self.last_batch_position = position
        self.last_offset = header.last_offset
        self.leader_epoch = header.partition_leader_epoch

    def _add_index_entries(self, last_offset: int, position: int) -> None:
        self.offset_index.append(last_offset - self.base_offset, position)
        if self.offset_of_max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp - self.base_offset)
        self._bytes_since_index_entry = 0

    def seal(self) -> None:
        """No more appends. Adds final index entries for the last batch and the max
        timestamp, so a reopened segment knows both from its index files alone."""
        invariant(not self.is_empty, "only a non-empty segment is sealed", self.log_path)
        last = self.offset_index.last()
        if last is None or last[0] != self.last_offset - self.base_offset:
            self.offset_index.append(self.last_offset - self.base_offset, self.last_batch_position)
        if self.offset_of_max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp - self.base_offset)
        self.sealed = True

    def forget_from(self, offset: int) -> int:
        """Drop the batches from `offset` (a batch's base offset, or the end) on from memory
        and reopen the segment for appends; returns the file position the caller must cut
        the file at. The in-memory state becomes exactly what a scan of the cut file would
        build: it is restored as it was before the last kept index entry's batch and those
        few batches (at most index_interval_bytes) are accounted again."""
        found = self.batch_containing(offset)
        cut = self.size_bytes if found is None else found[0]
        invariant(found is None or found[1].base_offset == offset, "a segment is cut at a batch boundary",
                  self.log_path, offset)
        kept_entries = bisect.bisect_left(self.offset_index.positions, cut)
        restart = self.offset_index.positions[kept_entries - 1] if kept_entries else 0
        headers = list(self.scan_headers(restart, cut))
        first_offset = headers[0][1].base_offset if headers else offset
        self.offset_index.keep_first(max(0, kept_entries - 1))
        self.time_index.keep_below(first_offset - self.base_offset)
        self.epoch_starts = [(epoch, start) for epoch, start in self.epoch_starts if start < first_offset]
        last_time = self.time_index.last()
        self.max_timestamp_ms = last_time[0] if last_time else -1
        self.offset_of_max_timestamp = self.base_offset + last_time[1] if last_time else -1
        self.leader_epoch = self.epoch_starts[-1][0] if self.epoch_starts else -1
        self.size_bytes = restart
        self.last_offset = first_offset - 1
        self.last_batch_position = -1
        if restart == 0:
            self.base_timestamp_ms = -1
        self._bytes_since_index_entry = limits.index_interval_bytes if headers else 0  # the kept entry is made again
        for position, header in headers:
            self._account(header, position)
        self.sealed = False
        self.files_durable = False
        return cut

    def index_files_snapshot(self) -> tuple[Path, bytes, Path, bytes]:
        return (self.index_path, self.offset_index.to_bytes(),
                self.timeindex_path, self.time_index.to_bytes())

    # -- read --------------------------------------------------------------------------------

    def scan_start(self, offset: int) -> int:
        """Position from which a header scan reaches the batch holding `offset`."""
        return self.offset_index.floor_position(max(0, offset - self.base_offset))

    def scan_headers(self, start_position: int, end_position: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from start_position up to end_position (default:
        the current end). A malformed header here means the log changed under us: a bug or
        a damaged disk, and the broker stops rather than serve it."""
        end = self.size_bytes if end_position is None else end_position
        window = FileWindow(self.descriptor, end, limits.header_scan_chunk_bytes)
        position = start_position
        previous_last_offset: int | None = None
        while position < end:
            view = window.get(position, BATCH_HEADER_BYTES)
            if view is None:
                raise InvariantViolation(f"segment {self.log_path} ends inside a batch header at {position}")
            header = read_header(view)
            invariant(header.magic == 2 and header.size >= BATCH_HEADER_BYTES and position + header.size <= end,
                      "malformed batch header in segment", self.log_path, position, header)
            invariant(previous_last_offset is None or header.base_offset == previous_last_offset + 1,
                      "batch offsets are not contiguous in segment", self.log_path, position)
            yield position, header
            previous_last_offset = header.last_offset
            position += header.size

    def batch_containing(self, offset: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the batch holding `offset`; None past the last batch."""
        for position, header in self.scan_headers(self.scan_start(offset)):
            if header.last_offset >= offset:
                return position, header
        return None

    def batch_range(self, offset: int, bound: int, take: Callable[[int], bool]) -> tuple[int, int] | None:
        """(start, end) positions of the run of whole batches that a fetch from `offset`
        gets from this segment: from the batch holding `offset`, stopping before a batch
        reaching `bound` or refused by `take(size)`. The fetch hot path: one small unpack
        per batch header, no objects."""
        end_of_data = self.size_bytes
        position = self.scan_start(offset)
        buffer, buffer_start = b"", position
        start = end = -1
        previous_last_offset = None
        while position < end_of_data:
            in_buffer = position - buffer_start
            if in_buffer + _EXTENT.size > len(buffer):
                buffer = os.pread(self.descriptor, min(limits.header_scan_chunk_bytes, end_of_data - position), position)
                buffer_start, in_buffer = position, 0
                invariant(len(buffer) >= _EXTENT.size, "segment ends inside a batch header", self.log_path, position)
            base_offset, batch_length, magic, last_offset_delta = _EXTENT.unpack_from(buffer, in_buffer)
            size = batch_length + 12
            invariant(magic == 2 and size >= BATCH_HEADER_BYTES and position + size <= end_of_data
                      and (previous_last_offset is None or base_offset == previous_last_offset + 1),
                      "malformed batch header in segment", self.log_path, position)
            previous_last_offset = base_offset + last_offset_delta
            if previous_last_offset >= offset:
                if previous_last_offset >= bound or not take(size):
                    break
                start = position if start < 0 else start
                end = position + size
            position += size
        return None if start < 0 else (start, end)

    def read_batch(self, position: int, size: int) -> bytes:
        data = os.pread(self.descriptor, size, position)
        invariant(len(data) == size, "short read of a batch", self.log_path, position, size)
        return data

    def info(self) -> SegmentInfo:
        return SegmentInfo(
            base_offset=Offset(self.base_offset),
            last_offset=Offset(self.last_offset),
            base_timestamp_ms=self.base_timestamp_ms,
            max_timestamp_ms=self.max_timestamp_ms,
            size_bytes=self.size_bytes,
            leader_epoch=LeaderEpoch(self.leader_epoch),
            log_path=self.log_path,
            index_path=self.index_path,
            timeindex_path=self.timeindex_path,
            sealed=self.sealed and self.files_durable,
            created_ms=self.created_ms,
        )

    # -- end of life ---------------------------------------------------------------------------

    def close(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1

    def delete_files(self) -> None:
        """Unlink the log and index files (any thread; the descriptor is closed first)."""
        for path in (self.log_path, self.index_path, self.timeindex_path):
            path.unlink(missing_ok=True)


def write_index_files(index_path: Path, index_bytes: bytes, timeindex_path: Path, timeindex_bytes: bytes) -> None:
    write_file_atomically(index_path, index_bytes)
    write_file_atomically(timeindex_path, timeindex_bytes)


def _header_at(window: FileWindow, position: int, file_size: int) -> BatchHeader | None:
    view = window.get(position, BATCH_HEADER_BYTES)
    if view is None:
        return None
    try:
        check_magic(view)
        header = read_header(view)
        check_header(header, file_size - position)
    except RecordBatchError:
        return None
    return header


def _valid_batch_at(window: FileWindow, position: int, file_size: int) -> BatchHeader | None:
    """The header of the batch at `position` if the whole batch is present and its CRC
    holds, else None."""
    header = _header_at(window, position, file_size)
    if header is None:
        return None
    batch = window.get(position, header.size)
    if batch is None:
        return None
    try:
        verify_crc(batch, 0, header)
    except RecordBatchError:
        return None
    return header


def _cut_quietly(descriptor: int, size: int) -> None:
    try:
        os.ftruncate(descriptor, size)
    except OSError:
        log.exception("could not cut a partly written batch; recovery will")
