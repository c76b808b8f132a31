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
v12 is flexible: compact arrays/strings/bytes and a tagged-field section at the end of
every struct. A partition's section may carry DivergingEpoch (tag 0: epoch int32,
end_offset int64) and CurrentLeader (tag 1: leader_id int32, leader_epoch int32), each a
struct with its own (empty) tagged-field section; like Kafka's and kio's writers, a tag is
left out when its value is the schema default (-1, -1), so a reader cannot tell the two
apart. SnapshotId (tag 2) is never sent: Shoal has no snapshots.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

from broker.protocol.tagged_fields import write_uvarint

MIN_VERSION = 4
MAX_VERSION = 12
FIRST_FLEXIBLE_VERSION = 12

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_PARTITION_FIXED = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_INT64 = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")
_EPOCH_END_OFFSET = struct.Struct(">iqB")  # epoch, end_offset, empty tagged-field section
_LEADER_ID_AND_EPOCH = struct.Struct(">iiB")  # leader_id, leader_epoch, empty tagged-field section
_NO_TAGS = b"\x00"
_DIVERGING_EPOCH_TAG = 0
_CURRENT_LEADER_TAG = 1


class EpochEndOffset(NamedTuple):
    """DivergingEpoch (v12+): the largest epoch of the leader's log not above the
    fetcher's last fetched epoch, and where it ends; records past it diverge."""

    epoch: int
    end_offset: int


class LeaderIdAndEpoch(NamedTuple):
    """CurrentLeader (v12+): who leads the partition and in which epoch."""

    leader_id: int
    leader_epoch: int


_UNSET_EPOCH_END_OFFSET = EpochEndOffset(-1, -1)
_UNSET_LEADER = LeaderIdAndEpoch(-1, -1)


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
    diverging_epoch: EpochEndOffset | None = None  # v12+ tag 0; None: not written
    current_leader: LeaderIdAndEpoch | None = None  # v12+ tag 1; None: not written

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
    if not flexible and (partition.diverging_epoch is not None or partition.current_leader is not None):
        raise ValueError(f"FetchResponse v{version} has no diverging_epoch / current_leader (v12+)")
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
        _write_partition_tags(out.buffer, partition)


def _write_partition_tags(buffer: bytearray, partition: PartitionResponse) -> None:
    """The partition's tagged-field section: count, then (tag, size, value) by tag order."""
    tags: list[tuple[int, bytes]] = []
    diverging = partition.diverging_epoch
    if diverging is not None and diverging != _UNSET_EPOCH_END_OFFSET:
        tags.append((_DIVERGING_EPOCH_TAG, _EPOCH_END_OFFSET.pack(diverging.epoch, diverging.end_offset, 0)))
    leader = partition.current_leader
    if leader is not None and leader != _UNSET_LEADER:
        tags.append((_CURRENT_LEADER_TAG, _LEADER_ID_AND_EPOCH.pack(leader.leader_id, leader.leader_epoch, 0)))
    write_uvarint(buffer, len(tags))
    for tag, value in tags:
        write_uvarint(buffer, tag)
        write_uvarint(buffer, len(value))
        buffer += value


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
