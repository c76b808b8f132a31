"""Request header parsing, request body decoding and response encoding with kio.

Header versions follow the API version: flexible versions use request header v2 and
response header v1, others v1/v0; ApiVersions responses always use header v0 (KIP-511).
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map
from kio.serial import entity_reader, entity_writer
from kio.serial.readers import read_legacy_string  # noqa: F401 (re-exported for tests)

from broker.protocol.tagged_fields import check_wellformed, strip_unknown_tagged_fields

API_VERSIONS_KEY = 18

# Distinct (api_key, version) pairs a process keeps schema lookups for: every Kafka API's
# versions fit many times over, and garbage headers cannot grow the cache without bound.
_SCHEMA_CACHE_ENTRIES_MAX = 4096

_HEADER_PREFIX = struct.Struct(">hhi")
_NULLABLE_STRING_LENGTH = struct.Struct(">h")


class MalformedRequest(Exception):
    """The frame cannot be decoded as the request it claims to be."""


@dataclass(frozen=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # where the body starts in the frame

    @property
    def api_name(self) -> str:
        return api_key_map.get(self.api_key, f"unknown_{self.api_key}")


def parse_request_header(frame: bytes) -> RequestHeader:
    """Parse api key/version/correlation id/client id, and skip the v2 header's tagged
    fields when the API version is flexible. Unknown keys/versions still yield a header
    (so the server can answer UNSUPPORTED_VERSION with the right correlation id)."""
    if len(frame) < 10:
        raise MalformedRequest("request header shorter than 10 bytes")
    api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(frame, 0)
    (client_id_length,) = _NULLABLE_STRING_LENGTH.unpack_from(frame, 8)
    offset = 10
    client_id: str | None = None
    if client_id_length >= 0:
        end = offset + client_id_length
        if end > len(frame):
            raise MalformedRequest("client id runs past the end of the frame")
        client_id = frame[offset:end].decode("utf-8", errors="replace")
        offset = end
    elif client_id_length != -1:
        raise MalformedRequest(f"bad client id length {client_id_length}")
    if is_flexible_request(api_key, api_version):
        offset = _skip_tagged_fields(frame, offset)
    return RequestHeader(api_key, api_version, correlation_id, client_id, offset)


@functools.lru_cache(maxsize=_SCHEMA_CACHE_ENTRIES_MAX)
def request_type(api_key: int, api_version: int) -> type:
    """kio's request class; cached because kio resolves it through the import system
    (pkgutil.resolve_name) on every call, several times per request."""
    return load_request_schema(api_key, api_version)


@functools.lru_cache(maxsize=_SCHEMA_CACHE_ENTRIES_MAX)
def response_type(api_key: int, api_version: int) -> type:
    """kio's response class (cached like request_type)."""
    return load_response_schema(api_key, api_version)


@functools.lru_cache(maxsize=_SCHEMA_CACHE_ENTRIES_MAX)
def is_flexible_request(api_key: int, api_version: int) -> bool:
    try:
        return bool(request_type(api_key, api_version).__flexible__)
    except Exception:
        return False


def _read_uvarint(frame: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(frame) or shift > 28:
            raise MalformedRequest("bad unsigned varint")
        byte = frame[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _skip_tagged_fields(frame: bytes, offset: int) -> int:
    count, offset = _read_uvarint(frame, offset)
    for _ in range(count):
        _tag, offset = _read_uvarint(frame, offset)
        size, offset = _read_uvarint(frame, offset)
        offset += size
        if offset > len(frame):
            raise MalformedRequest("tagged field runs past the end of the frame")
    return offset


def decode_request(header: RequestHeader, frame: bytes) -> Any:
    """The kio request object for this header's API and version."""
    schema = request_type(header.api_key, header.api_version)
    body = memoryview(frame)[header.body_offset :]
    try:
        check_wellformed(schema, body)  # kio aborts the process on absurd array counts
        request, size = entity_reader(schema)(body, 0)
    except KeyError:
        # kio rejects unknown tagged fields; KIP-482 says skip them.
        try:
            cleaned = strip_unknown_tagged_fields(schema, body)
            request, size = entity_reader(schema)(cleaned, 0)
        except Exception as error:
            raise MalformedRequest(f"{header.api_name} v{header.api_version}: {error}") from error
    except Exception as error:
        raise MalformedRequest(f"{header.api_name} v{header.api_version}: {error}") from error
    return request


def encode_response_header(api_key: int, api_version: int, correlation_id: int) -> bytes:
    header = struct.pack(">i", correlation_id)
    if api_key != API_VERSIONS_KEY and is_flexible_request(api_key, api_version):
        header += b"\x00"  # response header v1: empty tagged fields
    return header


def encode_response_body(response: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(response))(buffer, response)
    return buffer.getvalue()


def encode_response(api_key: int, api_version: int, correlation_id: int, response: Any) -> bytes:
    """Header + body, without the size prefix."""
    return encode_response_header(api_key, api_version, correlation_id) + encode_response_body(response)
