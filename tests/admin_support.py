"""Helpers for tests/test_admin_*.py: the kio request client of tests/wire_client.py under
the names the admin tests use (requests encoded, responses decoded by kio, so each test
also round-trips the broker's encoding), and HTTP GETs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from broker.protocol.kio_build import build  # noqa: F401 (re-exported for the tests)
from tests.wire_client import WireClient as KioClient  # noqa: F401 (re-exported for the tests)
from tests.wire_client import nested, request_class  # noqa: F401 (re-exported for the tests)


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
