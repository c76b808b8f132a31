"""Strip unknown tagged fields (KIP-482) from a flexible request so kio can read it, and
check any request is well formed before kio sees it.

kio's native reader raises KeyError on a tag it does not know, but KIP-482 says a reader
skips tags it does not understand, and newer clients add tags to existing versions. This
walks the kio dataclass schema of the message (fields in wire order, nested entities and
arrays, nullable structs, the tagged-field section of every flexible entity) and copies
the bytes, dropping tags the schema does not declare. Known tags are kept; when a known
tag holds a struct, unknown tags inside it are stripped too and its size is rewritten.

Sans-io: bytes in, bytes out. Malformed input raises MalformedTaggedFields.
"""

from __future__ import annotations

import dataclasses
import struct
from functools import cache
from typing import Callable

from kio.serial._introspect import (
    EntityField, EntityTupleField, PrimitiveField, PrimitiveTupleField, classify_field,
    get_field_tag, get_schema_field_type, is_optional)


class MalformedTaggedFields(ValueError):
    """The bytes do not match the schema they claim to follow."""


_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

# Wire sizes of the fixed-width kio kafka_types.
_FIXED_BYTES = {
    "bool": 1, "int8": 1, "uint8": 1,
    "int16": 2, "uint16": 2, "error_code": 2,
    "int32": 4, "uint32": 4, "timedelta_i32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8, "datetime_i64": 8,
    "uuid": 16,
}


class _Cursor:
    """Reads `source` from `position` and, when `copying`, copies what it reads into
    `output` (not copying: only checks the message is well formed)."""

    def __init__(self, source: bytes | memoryview, position: int = 0, copying: bool = True) -> None:
        self.source = memoryview(source)
        self.position = position
        self.copying = copying
        self.output = bytearray()

    def take(self, size: int) -> memoryview:
        if size < 0 or self.position + size > len(self.source):
            raise MalformedTaggedFields(
                f"need {size} bytes at {self.position}, only {len(self.source) - self.position} left")
        chunk = self.source[self.position: self.position + size]
        self.position += size
        return chunk

    def copy(self, size: int) -> None:
        if self.copying:
            self.output += self.take(size)
        elif size < 0 or self.position + size > len(self.source):
            self.take(size)  # raises
        else:
            self.position += size

    def read_uvarint(self) -> int:
        value = shift = 0
        while True:
            if shift > 63:
                raise MalformedTaggedFields("unsigned varint longer than 10 bytes")
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def copy_uvarint(self) -> int:
        start = self.position
        value = self.read_uvarint()
        if self.copying:
            self.output += self.source[start: self.position]
        return value

    def copy_int16(self) -> int:
        (value,) = _INT16.unpack(self.take(2))
        if self.copying:
            self.output += _INT16.pack(value)
        return value

    def copy_int32(self) -> int:
        (value,) = _INT32.unpack(self.take(4))
        if self.copying:
            self.output += _INT32.pack(value)
        return value


def write_uvarint(output: bytearray, value: int) -> None:
    while value >= 0x80:
        output.append((value & 0x7F) | 0x80)
        value >>= 7
    output.append(value)


Copier = Callable[[_Cursor], None]


def _primitive_copier(kafka_type: str, flexible: bool) -> Copier:
    if kafka_type in _FIXED_BYTES:
        size = _FIXED_BYTES[kafka_type]
        return lambda cursor: cursor.copy(size)
    if kafka_type not in ("string", "bytes", "records"):
        raise MalformedTaggedFields(f"unknown kafka type {kafka_type!r}")
    if flexible:
        def copy_compact(cursor: _Cursor) -> None:
            length_plus_one = cursor.copy_uvarint()
            if length_plus_one:
                cursor.copy(length_plus_one - 1)
        return copy_compact
    if kafka_type == "string":
        def copy_legacy_string(cursor: _Cursor) -> None:
            length = cursor.copy_int16()
            if length > 0:
                cursor.copy(length)
        return copy_legacy_string

    def copy_legacy_bytes(cursor: _Cursor) -> None:
        length = cursor.copy_int32()
        if length > 0:
            cursor.copy(length)
    return copy_legacy_bytes


def _array_copier(item: Copier, flexible: bool) -> Copier:
    def copy_array(cursor: _Cursor) -> None:
        if flexible:
            count = cursor.copy_uvarint() - 1
        else:
            count = cursor.copy_int32()
        # Each item takes at least one byte: a count beyond the bytes left is malformed.
        if count > len(cursor.source) - cursor.position:
            raise MalformedTaggedFields(f"array of {count} items runs past the message")
        for _ in range(max(count, 0)):
            item(cursor)
    return copy_array


def _nullable_struct_copier(entity: Copier) -> Copier:
    def copy_nullable(cursor: _Cursor) -> None:
        marker = cursor.take(1)[0]
        if cursor.copying:
            cursor.output.append(marker)
        if marker == 0xFF:  # -1: null (KIP-893)
            return
        if marker != 1:
            raise MalformedTaggedFields(f"bad nullable struct marker {marker}")
        entity(cursor)
    return copy_nullable


def _field_copier(field: dataclasses.Field, flexible: bool, is_tag: bool) -> Copier:
    field_class = classify_field(field)
    match field_class:
        case PrimitiveField() | PrimitiveTupleField():
            copier = _primitive_copier(get_schema_field_type(field), flexible)
        case EntityField(entity_type):
            copier = entity_copier(entity_type)
            if is_optional(field) and not is_tag:
                copier = _nullable_struct_copier(copier)
        case EntityTupleField(entity_type):
            copier = entity_copier(entity_type)
    if field_class.is_array:
        return _array_copier(copier, flexible)
    return copier


@cache
def entity_copier(entity_type: type) -> Copier:
    """A function copying one `entity_type` from a cursor, unknown tags left out."""
    flexible = bool(entity_type.__flexible__)
    plain: list[Copier] = []
    tagged: dict[int, Copier] = {}
    for field in dataclasses.fields(entity_type):
        tag = get_field_tag(field)
        if tag is None:
            plain.append(_field_copier(field, flexible, is_tag=False))
        else:
            tagged[int(tag)] = _field_copier(field, flexible, is_tag=True)

    def copy_entity(cursor: _Cursor) -> None:
        for copier in plain:
            copier(cursor)
        if flexible:
            _copy_known_tags(cursor, tagged)

    return copy_entity


def _copy_known_tags(cursor: _Cursor, known: dict[int, Copier]) -> None:
    count = cursor.read_uvarint()
    if count > len(cursor.source) - cursor.position:
        raise MalformedTaggedFields(f"{count} tagged fields run past the message")
    kept: list[tuple[int, bytearray]] = []
    for _ in range(count):
        tag = cursor.read_uvarint()
        size = cursor.read_uvarint()
        end = cursor.position + size
        if end > len(cursor.source):
            raise MalformedTaggedFields(f"tagged field {tag} runs past the message")
        copier = known.get(tag)
        if copier is None:
            cursor.position = end  # unknown: skip (KIP-482)
            continue
        inner = _Cursor(cursor.source[:end], cursor.position, cursor.copying)
        copier(inner)
        if inner.position != end:
            raise MalformedTaggedFields(f"tagged field {tag}: {end - inner.position} bytes left over")
        kept.append((tag, inner.output))
        cursor.position = end
    if not cursor.copying:
        return
    write_uvarint(cursor.output, len(kept))
    for tag, value in kept:
        write_uvarint(cursor.output, tag)
        write_uvarint(cursor.output, len(value))
        cursor.output += value


def strip_unknown_tagged_fields(request_type: type, body: bytes | memoryview) -> bytes:
    """The body with every tagged field unknown to `request_type`'s schema removed.
    Bytes after the message (there should be none) are kept as they are."""
    cursor = _Cursor(body)
    entity_copier(request_type)(cursor)
    return bytes(cursor.output) + bytes(cursor.source[cursor.position:])


def check_wellformed(request_type: type, body: bytes | memoryview) -> None:
    """Walk the message without copying; raise MalformedTaggedFields when a length or
    count runs past the bytes there are.

    kio's native reader trusts declared array counts and allocates for them up front: a
    20-byte frame claiming 10^10 items aborts the whole process (a Rust allocation
    failure, not an exception). Every request is walked by this check first, so a
    count is only ever believed when the bytes for it are really there."""
    entity_copier(request_type)(_Cursor(body, copying=False))
