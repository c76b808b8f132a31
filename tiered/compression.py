"""Optional compression of segment objects, in independent frames so ranged reads work.

A compressed data object is the concatenation of frames; frame i holds the uncompressed
segment bytes [i * frame_bytes, (i + 1) * frame_bytes) compressed on its own (one zstd
frame or one LZ4 frame). Its `.frames` object lists where each frame starts in the data
object: (frame_count + 1) unsigned 64-bit big-endian positions, the last one being the
object's size. A reader wanting uncompressed bytes [a, b) fetches only the frames that
cover them with one ranged GET. Uncompressed segments need no table: frame i is simply
bytes [i * chunk, (i + 1) * chunk) of the object.
"""

from __future__ import annotations

import struct

import lz4.frame
import zstandard

from broker import limits
from broker.invariant import invariant

CODECS = ("none", "zstd", "lz4")
_POSITION = struct.Struct(">Q")
_ZSTD_LEVEL = 3  # zstd's default: ~3x on typical JSON-ish payloads at hundreds of MB/s


def compress_frame(codec: str, data: bytes) -> bytes:
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)
    if codec == "lz4":
        return lz4.frame.compress(data)
    invariant(codec == "none", "unknown upload compression", codec)
    return data


def decompress_frame(codec: str, data: bytes, expected_bytes: int) -> bytes:
    if codec == "zstd":
        output = zstandard.ZstdDecompressor().decompress(
            data, max_output_size=limits.compression_frame_bytes)
    elif codec == "lz4":
        output = lz4.frame.decompress(data)
    else:
        output = data
    invariant(len(output) == expected_bytes, "decompressed frame size", len(output), expected_bytes)
    return output


def encode_frame_table(positions: list[int]) -> bytes:
    return b"".join(_POSITION.pack(position) for position in positions)


def decode_frame_table(blob: bytes) -> list[int]:
    invariant(len(blob) % _POSITION.size == 0 and len(blob) >= 2 * _POSITION.size,
              "frame table size", len(blob))
    return [_POSITION.unpack_from(blob, at)[0] for at in range(0, len(blob), _POSITION.size)]
