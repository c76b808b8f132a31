"""Fuzzing the sans-io wire layer: frames in, never anything but frames, kio requests,
FrameError or MalformedRequest out. And garbage on live sockets never takes the broker
down: other connections keep being served."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from kio.index import load_request_schema
from kio.static.primitive import Records

from broker.handlers import registry
from broker.protocol.framing import FrameDecoder, FrameError
from broker.protocol.messages import MalformedRequest, decode_request, parse_request_header
from broker.records import NewRecord, build_batch
from tests.support import api_versions_ok, module_broker
from tests.test_protocol_broker import create, decoded_values, fetch, produce
from tests.wire_client import WireClient, encode, request_header

st.register_type_strategy(Records, st.binary(max_size=64))

SERVED = [(api_key, version) for api_key, low, high in registry.supported_versions()
          for version in range(low, high + 1)]
SERVED_REQUEST_TYPES = [load_request_schema(api_key, version) for api_key, version in SERVED]


def decode_frame(frame: bytes) -> object:
    header = parse_request_header(frame)
    if registry.handler_for(header.api_key, header.api_version) is None:
        return None
    return decode_request(header, frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_frame_decoder_only_yields_frames_or_frame_error(chunks):
    decoder = FrameDecoder(frame_bytes_max=1 << 16)
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (frame := decoder.next_frame()) is not None:
                assert len(frame) >= 8
    except FrameError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SERVED), st.binary(max_size=200), st.integers(-1, 40))
def test_random_bodies_for_served_apis_are_requests_or_malformed(api, body, client_id_length):
    api_key, version = api
    frame = struct.pack(">hhih", api_key, version, 7, client_id_length) + body
    try:
        decode_frame(frame)
    except MalformedRequest:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SERVED_REQUEST_TYPES).flatmap(st.from_type), st.randoms(use_true_random=False))
def test_mutated_valid_requests_are_requests_or_malformed(request, rng):
    """Byte flips and truncations of real requests: 20 mutants per drawn request."""
    api_key, version = int(request.__api_key__), int(request.__version__)
    try:
        body = encode(request)
    except (ValueError, OverflowError):
        reject()  # kio's own strategies can draw values its writer refuses (huge timedeltas)
    valid = request_header(api_key, version, 9) + body
    try:
        decoded = decode_frame(valid)
    except MalformedRequest as error:
        if isinstance(error.__cause__, (ValueError, OverflowError)):
            reject()  # a value kio writes but cannot read back (a timedelta near 2**63 ms)
        raise
    assert decoded is not None  # the valid frame decodes
    for _ in range(20):
        frame = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        try:
            decode_frame(bytes(frame[: rng.randint(10, len(frame))]))
        except MalformedRequest:
            pass


def absurd_array_frames() -> list[bytes]:
    """Tiny frames whose arrays claim billions of items. kio's native reader allocates for
    the claimed count up front; without the well-formedness walk first, this aborts the
    process (a Rust allocation failure, which no `except` can catch)."""
    legacy = request_header(0, 3, 1) + struct.pack(">hhii", -1, 1, 1000, 0x7FFFFFFF) + b"\x00" * 8
    flexible = request_header(0, 9, 1) + b"\x00" + struct.pack(">hi", 1, 1000) + b"\xff\xff\xff\xff\x7f" + b"\x00" * 8
    return [legacy, flexible]


@pytest.mark.parametrize("frame", absurd_array_frames())
def test_absurd_array_counts_are_malformed_not_fatal(frame):
    with pytest.raises(MalformedRequest):
        decode_frame(frame)


broker = module_broker("fuzz")


GARBAGE = [
    b"\xff\xff\xff\xff",                                   # negative frame size
    b"\x7f\xff\xff\xff" + b"x" * 100,                      # frame far larger than allowed
    b"\x00\x00\x00\x03abc",                                # frame shorter than a header
    struct.pack(">i", 12) + struct.pack(">hhih", 3, 12, 1, 200) + b"ab",  # client id past the end
    struct.pack(">i", 14) + struct.pack(">hhih", 0, 9, 1, -1) + b"\xff\xff\xff\xff",  # produce body garbage
    struct.pack(">i", 12) + struct.pack(">hhih", 1, 12, 1, -1) + b"\x80\x80",  # bad varint in a flexible body
    struct.pack(">i", 10) + struct.pack(">hhih", 999, 0, 1, -1),  # unknown API key
] + [struct.pack(">i", len(frame)) + frame for frame in absurd_array_frames()]


def test_garbage_and_half_frames_never_stop_other_connections(broker):
    with WireClient(broker.kafka_port) as healthy:
        assert healthy.call_raw(18, 0, b"")[:2] == b"\x00\x00"
        half_open = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5)
        half_open.sendall(struct.pack(">i", 1000) + b"only part of the frame")  # and then silence
        try:
            for garbage in GARBAGE:
                with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as sock:
                    sock.sendall(garbage)
                    sock.settimeout(5)
                    try:
                        while sock.recv(4096):  # the broker closes it (after an answer at most)
                            pass
                    except OSError:
                        pass
                assert healthy.call_raw(18, 0, b"")[:2] == b"\x00\x00"
            with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as sock:
                sock.sendall(struct.pack(">i", 100) + b"half a frame, then the peer goes away")
            batch = bytes(build_batch([NewRecord(b"k", b"still serving", (), 1)]))
            create(healthy, "after-garbage")
            assert produce(healthy, "after-garbage", batch).error_code == 0
            assert decoded_values(fetch(healthy, "after-garbage", 0)[1].records) == [(0, b"still serving")]
        finally:
            half_open.close()
    assert api_versions_ok("127.0.0.1", broker.kafka_port)
