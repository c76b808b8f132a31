"""The listener answers ApiVersions (incl. the v0 fallback), survives garbage, and
shuts down cleanly on SIGTERM."""

import socket
import struct

from tests.support import api_versions_ok


def _request(sock, payload):
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", sock.recv(4))[0]
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_api_versions_v0_lists_itself(broker):
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as sock:
        data = _request(sock, struct.pack(">hhih", 18, 0, 42, 4) + b"test")
    correlation_id, error_code, count = struct.unpack(">ihi", data[:10])
    assert (correlation_id, error_code) == (42, 0)
    ranges = [struct.unpack(">hhh", data[10 + 6 * i: 16 + 6 * i]) for i in range(count)]
    assert (18, 0, 4) in ranges


def test_unknown_api_versions_version_gets_error_35_as_v0(broker):
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as sock:
        data = _request(sock, struct.pack(">hhih", 18, 99, 7, 4) + b"test")
    correlation_id, error_code, count = struct.unpack(">ihi", data[:10])
    assert (correlation_id, error_code) == (7, 35)
    assert count >= 1


def test_garbage_closes_only_that_connection(broker):
    for garbage in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc", b"\x7f\x00\x00\x00" + b"x" * 100):
        with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            try:
                sock.recv(100)
            except OSError:
                pass
    assert api_versions_ok("127.0.0.1", broker.kafka_port)


def test_sigterm_exits_zero(broker):
    assert broker.stop() == 0
