"""Hand-encoded FetchResponse v4-v12 (the hot path), byte-for-byte what kio writes.

kio's writer is pure Python and needs the records as one bytes object; this encoder
writes the envelope itself and leaves each partition's records as a list of parts (bytes
or storage FileRegions), so the server can send segment bytes with sendfile, never copying
them through Python. tests/test_protocol_fetch_encoding.py checks every version against
kio's encoder.

Layout (Kafka's FetchResponse.json): throttle_time_ms, error_code + session_id (v7+),
responses[topic, partitions[partition_index, error_code, high_watermark,
last_stable_offset, log_start_offset (v5+), aborted_transactions (nullable)
[producer_id, first_offset], preferred_read_replica (v11+), records (nullable)]].
v12 is flexible: compact arrays/strings/bytes and an empty tagged-field section at the end
of every struct. Shoal never sends the v12 tagged fields (diverging epoch, current leader,
snapshot id): it has no followers and no snapshots.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

from broker.protocol.tagged_fields import write_uvarint

MIN_VERSION = 4
MAX_VERSION = 12
FIRST_FLEXIBLE_VERSION = 12

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_PARTITION_FIXED = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_INT64 = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")
_NO_TAGS = b"\x00"


@dataclass
class PartitionResponse:
    partition_index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: Sequence[tuple[int, int]] | None = None  # (producer_id, first_offset)
    preferred_read_replica: int = -1
    records: list[Any] = field(default_factory=list)  # bytes / memoryview / FileRegion parts

    @property
    def records_size(self) -> int:
        return sum(_part_size(part) for part in self.records)


@dataclass
class TopicResponse:
    topic: str
    partitions: list[PartitionResponse]


def _part_size(part: Any) -> int:
    return part.length if hasattr(part, "length") else len(part)


class _Parts:
    """Accumulates small envelope bytes and large record parts in order."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data

    @property
    def buffer(self) -> bytearray:
        return self._pending

    def splice(self, part: Any) -> None:
        if self._pending:
            self.parts.append(bytes(self._pending))
            self._pending = bytearray()
        self.parts.append(part)

    def finish(self) -> list[Any]:
        if self._pending:
            self.parts.append(bytes(self._pending))
            self._pending = bytearray()
        return self.parts


def encode_fetch_response(version: int, topics: Sequence[TopicResponse], *, throttle_time_ms: int = 0,
                          error_code: int = 0, session_id: int = 0) -> list[Any]:
    """The response body (no response header) as a list of parts."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"FetchResponse v{version} is not hand-encoded")
    flexible = version >= FIRST_FLEXIBLE_VERSION
    out = _Parts()
    out.write(_INT32.pack(throttle_time_ms))
    if version >= 7:
        out.write(_INT16.pack(error_code) + _INT32.pack(session_id))
    _write_count(out.buffer, len(topics), flexible)
    for topic in topics:
        _write_string(out.buffer, topic.topic, flexible)
        _write_count(out.buffer, len(topic.partitions), flexible)
        for partition in topic.partitions:
            _write_partition(out, partition, version, flexible)
        if flexible:
            out.write(_NO_TAGS)
    if flexible:
        out.write(_NO_TAGS)
    return out.finish()


def _write_partition(out: _Parts, partition: PartitionResponse, version: int, flexible: bool) -> None:
    buffer = out.buffer
    buffer += _PARTITION_FIXED.pack(partition.partition_index, partition.error_code,
                                    partition.high_watermark, partition.last_stable_offset)
    if version >= 5:
        buffer += _INT64.pack(partition.log_start_offset)
    aborted = partition.aborted_transactions
    if aborted is None:
        buffer += b"\x00" if flexible else _INT32.pack(-1)
    else:
        _write_count(buffer, len(aborted), flexible)
        for producer_id, first_offset in aborted:
            buffer += _ABORTED.pack(producer_id, first_offset)
            if flexible:
                buffer += _NO_TAGS
    if version >= 11:
        buffer += _INT32.pack(partition.preferred_read_replica)
    size = partition.records_size
    if flexible:
        write_uvarint(buffer, size + 1)
    else:
        buffer += _INT32.pack(size)
    for part in partition.records:
        if _part_size(part):
            out.splice(part)
    if flexible:
        out.write(_NO_TAGS)


def _write_count(buffer: bytearray, count: int, flexible: bool) -> None:
    if flexible:
        write_uvarint(buffer, count + 1)
    else:
        buffer += _INT32.pack(count)


def _write_string(buffer: bytearray, value: str, flexible: bool) -> None:
    encoded = value.encode("utf-8")
    if flexible:
        write_uvarint(buffer, len(encoded) + 1)
    else:
        buffer += _INT16.pack(len(encoded))
    buffer += encoded
