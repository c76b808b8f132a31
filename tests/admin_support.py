"""Helpers for tests/test_admin_*.py: a minimal blocking Kafka client that speaks any
version of any API through kio (requests encoded, responses decoded by kio, so each test
also round-trips the broker's encoding), a module-scoped broker process, and HTTP GETs."""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
import urllib.error
import urllib.request
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from broker.protocol.kio_build import build  # noqa: F401 (re-exported for the tests)


def request_class(api_key: int, version: int) -> type:
    return load_request_schema(api_key, version)


def nested(entity_type: type, name: str) -> type:
    return getattr(sys.modules[entity_type.__module__], name)


class KioClient:
    """One connection; `call(request)` sends a kio request of any version and returns the
    kio response, decoded exactly as a client would."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self._correlation_id = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "KioClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, request: Any) -> Any:
        api_key, version = int(request.__api_key__), int(request.__version__)
        self._correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self._correlation_id, 4) + b"test"
        if request.__flexible__:
            header += b"\x00"  # request header v2: no tagged fields
        body = io.BytesIO()
        entity_writer(type(request))(body, request)
        payload = header + body.getvalue()
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", self._receive(4))[0]
        frame = self._receive(size)
        (correlation_id,) = struct.unpack_from(">i", frame, 0)
        if correlation_id != self._correlation_id:
            raise AssertionError(f"correlation id {correlation_id}, expected {self._correlation_id}")
        offset = 4
        response_class = load_response_schema(api_key, version)
        if response_class.__flexible__ and api_key != 18:
            offset += 1  # response header v1: empty tagged fields (the broker never sends any)
        response, consumed = entity_reader(response_class)(memoryview(frame)[offset:], 0)
        if offset + consumed != len(frame):
            raise AssertionError(f"{len(frame) - offset - consumed} bytes left after the response")
        return response

    def _receive(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return bytes(data)


def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str, Any]:
    """(status, content type, body as JSON when it is JSON else text) of one request."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, content_type, raw = response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers.get("Content-Type", ""), error.read()
    text = raw.decode()
    return status, content_type, json.loads(text) if content_type.startswith("application/json") else text
