"""Length-prefixed Kafka frames, sans-io (h11 style): feed bytes, pull frames."""

from __future__ import annotations

import struct

from broker import limits


class FrameError(Exception):
    """The peer sent something that is not a Kafka frame; close that connection."""


_SIZE = struct.Struct(">i")


class FrameDecoder:
    """`receive_data(bytes)` then `next_frame()` until it returns None."""

    def __init__(self, frame_bytes_max: int = limits.request_frame_bytes_max) -> None:
        self._buffer = bytearray()
        self._frame_bytes_max = frame_bytes_max

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        if len(self._buffer) < 4:
            return None
        (size,) = _SIZE.unpack_from(self._buffer, 0)
        if size < 8 or size > self._frame_bytes_max:
            # 8 = the smallest request header (api key, version, correlation id)
            raise FrameError(f"frame size {size} outside 8..{self._frame_bytes_max}")
        if len(self._buffer) < 4 + size:
            return None
        frame = bytes(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return frame


def frame(payload: bytes) -> bytes:
    return _SIZE.pack(len(payload)) + payload
