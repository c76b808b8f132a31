"""A tiny blocking Kafka protocol client for tests: kio request objects in, kio response
objects out, over one socket. Lets tests speak any API version byte-exactly (including
things real clients never send: duplicate batches, stale epochs, extra tagged fields)."""

from __future__ import annotations

import datetime
import io
import socket
import struct
import sys
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from broker.protocol.messages import is_flexible_request

API_VERSIONS = 18


def encode(entity: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def nested(entity_type: type, name: str) -> type:
    """The class `name` defined beside a kio entity (its nested request/response parts)."""
    return getattr(sys.modules[entity_type.__module__], name)


def request_class(api_key: int, version: int, name: str | None = None) -> type:
    """The request class (or a nested class `name` of it) of one API version."""
    request_type = load_request_schema(api_key, version)
    return request_type if name is None else nested(request_type, name)


def ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


def request_header(api_key: int, version: int, correlation_id: int, client_id: str | None = "wire-test") -> bytes:
    header = struct.pack(">hhi", api_key, version, correlation_id)
    if client_id is None:
        header += struct.pack(">h", -1)
    else:
        encoded = client_id.encode()
        header += struct.pack(">h", len(encoded)) + encoded
    if is_flexible_request(api_key, version):
        header += b"\x00"
    return header


class WireClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 15.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self._correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def send_raw(self, api_key: int, version: int, body: bytes) -> int:
        self._correlation_id += 1
        payload = request_header(api_key, version, self._correlation_id) + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        return self._correlation_id

    def receive_raw(self) -> bytes:
        size = struct.unpack(">i", self._exactly(4))[0]
        return self._exactly(size)

    def _exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return bytes(data)

    def call_raw(self, api_key: int, version: int, body: bytes) -> bytes:
        """Send a body, return the response body (response header stripped)."""
        correlation_id = self.send_raw(api_key, version, body)
        payload = self.receive_raw()
        (received_id,) = struct.unpack(">i", payload[:4])
        assert received_id == correlation_id, (received_id, correlation_id)
        offset = 4
        if api_key != API_VERSIONS and is_flexible_request(api_key, version):
            assert payload[offset] == 0, "response header tagged fields"
            offset += 1
        return payload[offset:]

    def call(self, request: Any) -> Any:
        api_key = int(request.__api_key__)
        version = int(request.__version__)
        body = self.call_raw(api_key, version, encode(request))
        response_type = load_response_schema(api_key, version)
        response, size = entity_reader(response_type)(body, 0)
        assert size == len(body), f"{size} of {len(body)} response bytes decoded"
        return response
