"""Keys and values of the records in `__consumer_offsets`.

The layout is Kafka's own (non-flexible schemas OffsetCommitKey v1, OffsetCommitValue v3,
GroupMetadataKey v2, GroupMetadataValue v3), so Kafka tooling that decodes that topic reads
ours too. All integers big-endian; string = int16 length + UTF-8 (length -1 = null);
bytes = int32 length + bytes; array = int32 count + elements.

    key   int16 version
          version 0 or 1 (offset commit): group string, topic string, partition int32
          version 2 (group metadata):      group string
    offset commit value (null = tombstone: the offset was deleted)
          int16 version = 3, offset int64, leader_epoch int32 (-1 unknown),
          metadata string, commit_timestamp int64
    group metadata value (null = tombstone: the group was deleted)
          int16 version = 3, protocol_type string, generation int32,
          protocol nullable string, leader nullable string, state_timestamp int64,
          members array of: member_id string, group_instance_id nullable string,
          client_id string, client_host string, rebalance_timeout int32,
          session_timeout int32, subscription bytes, assignment bytes

Readers accept exactly these versions and refuse anything else loudly (a future Shoal that
writes a new version must keep reading these)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


class GroupRecordError(ValueError):
    """A __consumer_offsets record this version of Shoal cannot read."""


@dataclass(frozen=True)
class OffsetKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupKey:
    group_id: str


@dataclass(frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


@dataclass(frozen=True)
class StoredMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupValue:
    protocol_type: str
    generation_id: int
    protocol_name: str | None
    leader_id: str | None
    state_timestamp_ms: int
    members: tuple[StoredMember, ...]


# ---------------------------------------------------------------------------------------
# writing


class _Writer:
    def __init__(self) -> None:
        self.buffer = bytearray()

    def int16(self, value: int) -> "_Writer":
        self.buffer += _INT16.pack(value)
        return self

    def int32(self, value: int) -> "_Writer":
        self.buffer += _INT32.pack(value)
        return self

    def int64(self, value: int) -> "_Writer":
        self.buffer += _INT64.pack(value)
        return self

    def string(self, value: str | None) -> "_Writer":
        if value is None:
            return self.int16(-1)
        encoded = value.encode("utf-8")
        self.int16(len(encoded))
        self.buffer += encoded
        return self

    def bytes(self, value: bytes) -> "_Writer":
        self.int32(len(value))
        self.buffer += value
        return self


def encode_offset_key(key: OffsetKey) -> bytes:
    return bytes(_Writer().int16(OFFSET_KEY_VERSION).string(key.group_id)
                 .string(key.topic).int32(key.partition).buffer)


def encode_group_key(key: GroupKey) -> bytes:
    return bytes(_Writer().int16(GROUP_KEY_VERSION).string(key.group_id).buffer)


def encode_offset_value(value: OffsetValue) -> bytes:
    return bytes(_Writer().int16(OFFSET_VALUE_VERSION).int64(value.offset)
                 .int32(value.leader_epoch).string(value.metadata)
                 .int64(value.commit_timestamp_ms).buffer)


def encode_group_value(value: GroupValue) -> bytes:
    writer = (_Writer().int16(GROUP_VALUE_VERSION).string(value.protocol_type)
              .int32(value.generation_id).string(value.protocol_name).string(value.leader_id)
              .int64(value.state_timestamp_ms).int32(len(value.members)))
    for member in value.members:
        (writer.string(member.member_id).string(member.group_instance_id)
         .string(member.client_id).string(member.client_host)
         .int32(member.rebalance_timeout_ms).int32(member.session_timeout_ms)
         .bytes(member.subscription).bytes(member.assignment))
    return bytes(writer.buffer)


# ---------------------------------------------------------------------------------------
# reading


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def _take(self, layout: struct.Struct) -> int:
        if self.position + layout.size > len(self.data):
            raise GroupRecordError("record shorter than its fields")
        (value,) = layout.unpack_from(self.data, self.position)
        self.position += layout.size
        return value

    def int16(self) -> int:
        return self._take(_INT16)

    def int32(self) -> int:
        return self._take(_INT32)

    def int64(self) -> int:
        return self._take(_INT64)

    def _raw(self, length: int) -> bytes:
        if length < 0 or self.position + length > len(self.data):
            raise GroupRecordError(f"field length {length} runs past the record")
        value = self.data[self.position: self.position + length]
        self.position += length
        return value

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length == -1:
            return None
        return self._raw(length).decode("utf-8")

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise GroupRecordError("null where a string is required")
        return value

    def bytes(self) -> bytes:
        return bytes(self._raw(self.int32()))

    def array_count(self) -> int:
        count = self.int32()
        if count < 0 or count > len(self.data) - self.position:
            raise GroupRecordError(f"bad array count {count}")
        return count


def decode_key(data: bytes) -> OffsetKey | GroupKey:
    reader = _Reader(data)
    version = reader.int16()
    if version in (0, OFFSET_KEY_VERSION):
        return OffsetKey(reader.string(), reader.string(), reader.int32())
    if version == GROUP_KEY_VERSION:
        return GroupKey(reader.string())
    raise GroupRecordError(f"unknown __consumer_offsets key version {version}")


def decode_offset_value(data: bytes) -> OffsetValue:
    reader = _Reader(data)
    version = reader.int16()
    if version != OFFSET_VALUE_VERSION:
        raise GroupRecordError(f"unknown offset commit value version {version}")
    return OffsetValue(reader.int64(), reader.int32(), reader.string(), reader.int64())


def decode_group_value(data: bytes) -> GroupValue:
    reader = _Reader(data)
    version = reader.int16()
    if version != GROUP_VALUE_VERSION:
        raise GroupRecordError(f"unknown group metadata value version {version}")
    protocol_type = reader.string()
    generation_id = reader.int32()
    protocol_name = reader.nullable_string()
    leader_id = reader.nullable_string()
    state_timestamp_ms = reader.int64()
    members = tuple(_read_member(reader) for _ in range(reader.array_count()))
    return GroupValue(protocol_type, generation_id, protocol_name, leader_id, state_timestamp_ms, members)


def _read_member(reader: _Reader) -> StoredMember:
    return StoredMember(
        member_id=reader.string(), group_instance_id=reader.nullable_string(),
        client_id=reader.string(), client_host=reader.string(),
        rebalance_timeout_ms=reader.int32(), session_timeout_ms=reader.int32(),
        subscription=reader.bytes(), assignment=reader.bytes())
