"""Kafka record batches (magic v2): the 61-byte header codec used on the hot path, and the
few helpers that really have to look inside a batch.

Hot path (produce, log append, recovery, fetch): parse and check the header, verify the
CRC32C, split a produce `records` blob into batches, patch base offset and partition leader
epoch in place. None of these decode records or create per-record objects.

Off the hot path (LogAppendTime, broker-side recompression, ListOffsets by timestamp inside
a batch, group coordinator replay, tests, CLI): decompress/recompress the records section,
iterate records, build a batch from records.

Batch layout (all big-endian), see Kafka's "Record Batch" documentation:

    offset  size  field
         0     8  baseOffset
         8     4  batchLength            bytes after this field
        12     4  partitionLeaderEpoch
        16     1  magic                  2
        17     4  crc                    CRC32C of bytes 21..end (attributes onward)
        21     2  attributes             bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control
        23     4  lastOffsetDelta
        27     8  baseTimestamp
        35     8  maxTimestamp
        43     8  producerId
        51     2  producerEpoch
        53     4  baseSequence
        57     4  recordCount
        61     -  records (compressed as one block when the codec is not none)

The varint record codec is written here rather than borrowed: `kio.records` neither
decompresses nor keeps millisecond timestamps, and kafka-python is only a test dependency.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib
from typing import ClassVar, Iterable, Iterator, NamedTuple, Sequence

import cramjam
import crc32c
import lz4.frame
import zstandard

from broker import limits
from broker.invariant import invariant

# ---------------------------------------------------------------------------------------
# layout

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_BYTES = HEADER_STRUCT.size  # 61
LOG_OVERHEAD_BYTES = 12  # baseOffset + batchLength: batch size = batchLength + 12
MAGIC_POSITION = 16
CRC_POSITION = 17
ATTRIBUTES_POSITION = 21
MAX_TIMESTAMP_POSITION = 35
CURRENT_MAGIC = 2

_BASE_OFFSET_AND_LENGTH = struct.Struct(">qi")
_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_ATTRIBUTES = struct.Struct(">h")
_TIMESTAMP = struct.Struct(">q")
_BLOCK_LENGTH = struct.Struct(">i")

ATTRIBUTE_COMPRESSION_MASK = 0x07
ATTRIBUTE_LOG_APPEND_TIME = 0x08
ATTRIBUTE_TRANSACTIONAL = 0x10
ATTRIBUTE_CONTROL = 0x20

NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1
NO_SEQUENCE = -1


class Compression(enum.IntEnum):
    """Codec ids of the attributes' low three bits (and of Kafka's compression.type)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def from_topic_config(cls, value: str) -> "Compression | None":
        """compression.type -> codec; None for 'producer' (keep what the client sent)."""
        if value == "producer":
            return None
        return {"uncompressed": cls.NONE, "none": cls.NONE, "gzip": cls.GZIP,
                "snappy": cls.SNAPPY, "lz4": cls.LZ4, "zstd": cls.ZSTD}[value]


# ---------------------------------------------------------------------------------------
# errors: each maps to the Kafka error code a Kafka broker answers with


class RecordBatchError(ValueError):
    """A record batch a Kafka broker would reject; `error_code` is the Kafka error code."""

    error_code: ClassVar[int] = -1


class CorruptRecordBatch(RecordBatchError):
    error_code = 2  # CORRUPT_MESSAGE: CRC mismatch, truncated or inconsistent lengths


class InvalidRecordBatch(RecordBatchError):
    error_code = 87  # INVALID_RECORD: well-formed bytes that break a batch rule


class UnsupportedMessageFormat(RecordBatchError):
    error_code = 43  # UNSUPPORTED_FOR_MESSAGE_FORMAT: magic 0/1 message sets


class RecordBatchTooLarge(RecordBatchError):
    error_code = 10  # MESSAGE_TOO_LARGE: larger than max.message.bytes


# ---------------------------------------------------------------------------------------
# header


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes of the whole batch, header included."""
        return self.batch_length + LOG_OVERHEAD_BYTES

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & ATTRIBUTE_COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & ATTRIBUTE_LOG_APPEND_TIME)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTRIBUTE_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTRIBUTE_CONTROL)


class BatchView(NamedTuple):
    """One batch found in a larger buffer: its header and a view of its bytes (writable
    when the buffer is, so the log can patch it in place)."""

    header: BatchHeader
    data: memoryview


def read_header(buffer: bytes | bytearray | memoryview, position: int = 0) -> BatchHeader:
    """Unpack the 61 header bytes at `position` without checking them."""
    if len(buffer) - position < BATCH_HEADER_BYTES:
        raise CorruptRecordBatch(
            f"record batch header needs {BATCH_HEADER_BYTES} bytes, "
            f"{max(0, len(buffer) - position)} available")
    return BatchHeader._make(HEADER_STRUCT.unpack_from(buffer, position))


def peek_batch_size(buffer: bytes | bytearray | memoryview, position: int = 0) -> int:
    """Size of the batch at `position` from its first 12 bytes (no other check)."""
    _, batch_length = _BASE_OFFSET_AND_LENGTH.unpack_from(buffer, position)
    return batch_length + LOG_OVERHEAD_BYTES


def check_magic(buffer: bytes | bytearray | memoryview, position: int = 0) -> None:
    """Magic 0/1 message sets are refused as a format, anything else unknown as corrupt."""
    if len(buffer) - position <= MAGIC_POSITION:
        raise CorruptRecordBatch("record batch shorter than its magic byte")
    magic = struct.unpack_from(">b", buffer, position + MAGIC_POSITION)[0]
    if magic in (0, 1):
        raise UnsupportedMessageFormat(f"message format v{magic} is not supported; use v2 (Kafka >= 0.11 clients)")
    if magic != CURRENT_MAGIC:
        raise CorruptRecordBatch(f"unknown record batch magic {magic}")


def check_header(header: BatchHeader, available_bytes: int, *,
                 max_batch_bytes: int | None = None) -> None:
    """Structural checks of a parsed header against the bytes that follow it."""
    if header.magic != CURRENT_MAGIC:
        if header.magic in (0, 1):
            raise UnsupportedMessageFormat(f"message format v{header.magic} is not supported")
        raise CorruptRecordBatch(f"unknown record batch magic {header.magic}")
    if header.size < BATCH_HEADER_BYTES:
        raise CorruptRecordBatch(f"batch length {header.batch_length} is shorter than a header")
    if max_batch_bytes is not None and header.size > max_batch_bytes:
        raise RecordBatchTooLarge(
            f"record batch of {header.size} bytes exceeds max.message.bytes {max_batch_bytes}")
    if header.size > available_bytes:
        raise CorruptRecordBatch(
            f"batch length {header.batch_length} runs past the {available_bytes} bytes available")
    if header.record_count < 1 or header.last_offset_delta != header.record_count - 1:
        raise InvalidRecordBatch(
            f"inconsistent record batch: {header.record_count} records, "
            f"last offset delta {header.last_offset_delta}")
    if header.compression > Compression.ZSTD:
        raise InvalidRecordBatch(f"unknown compression codec {header.compression}")


def compute_crc(buffer: bytes | bytearray | memoryview, position: int, size: int) -> int:
    """CRC32C of a batch's bytes from attributes to its end."""
    with memoryview(buffer) as view:
        return crc32c.crc32c(view[position + ATTRIBUTES_POSITION: position + size])


def verify_crc(buffer: bytes | bytearray | memoryview, position: int, header: BatchHeader) -> None:
    actual = compute_crc(buffer, position, header.size)
    if actual != header.crc:
        raise CorruptRecordBatch(f"record batch CRC32C {actual:#010x} does not match header {header.crc:#010x}")


def validate_batch(buffer: bytes | bytearray | memoryview, position: int = 0, *,
                   end: int | None = None, max_batch_bytes: int | None = None) -> BatchHeader:
    """Header, lengths and CRC of the batch at `position` (bytes up to `end` available)."""
    end = len(buffer) if end is None else end
    check_magic(buffer, position)
    header = read_header(buffer, position)
    check_header(header, end - position, max_batch_bytes=max_batch_bytes)
    verify_crc(buffer, position, header)
    return header


def check_client_batch_rules(header: BatchHeader) -> None:
    """What a broker refuses from producers even in a well-formed batch (Kafka LogValidator)."""
    if header.is_control:
        raise InvalidRecordBatch("clients may not write control batches")
    if header.is_transactional and header.producer_id < 0:
        raise InvalidRecordBatch("transactional batch without a producer id")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidRecordBatch(f"producer {header.producer_id} batch has invalid sequence {header.base_sequence}")


def split_batches(records: bytes | bytearray | memoryview, *,
                  max_batch_bytes: int | None = None,
                  from_client: bool = True) -> list[BatchView]:
    """Every batch of a produce `records` blob, each validated (header, lengths, CRC and,
    from clients, the client rules). Trailing bytes that are not a whole batch are corrupt.
    Raises a RecordBatchError subclass; never decodes records."""
    view = memoryview(records)
    batches: list[BatchView] = []
    position = 0
    if len(view) == 0:
        raise InvalidRecordBatch("produce requests v3+ need at least one record batch per partition")
    while position < len(view):
        header = validate_batch(view, position, max_batch_bytes=max_batch_bytes)
        if from_client:
            check_client_batch_rules(header)
        batches.append(BatchView(header, view[position: position + header.size]))
        position += header.size
    return batches


# ---------------------------------------------------------------------------------------
# in-place patches


def patch_base_offset_and_leader_epoch(buffer: bytearray | memoryview, base_offset: int,
                                       leader_epoch: int, position: int = 0) -> None:
    """Set the two fields the CRC does not cover, so no new CRC is needed."""
    _BASE_OFFSET.pack_into(buffer, position, base_offset)
    _LEADER_EPOCH.pack_into(buffer, position + 12, leader_epoch)


def rewrite_crc(buffer: bytearray | memoryview, position: int = 0) -> None:
    size = peek_batch_size(buffer, position)
    _CRC.pack_into(buffer, position + CRC_POSITION, compute_crc(buffer, position, size))


def set_log_append_time(buffer: bytearray | memoryview, append_time_ms: int, position: int = 0) -> None:
    """What a Kafka broker does for message.timestamp.type=LogAppendTime: set the timestamp
    type bit and maxTimestamp to the append time, leave baseTimestamp and the record
    deltas alone (readers then use maxTimestamp for every record), and recompute the CRC."""
    attributes = _ATTRIBUTES.unpack_from(buffer, position + ATTRIBUTES_POSITION)[0]
    _ATTRIBUTES.pack_into(buffer, position + ATTRIBUTES_POSITION, attributes | ATTRIBUTE_LOG_APPEND_TIME)
    _TIMESTAMP.pack_into(buffer, position + MAX_TIMESTAMP_POSITION, append_time_ms)
    rewrite_crc(buffer, position)


# ---------------------------------------------------------------------------------------
# codecs (off the hot path)

# Kafka's Java clients and brokers write snappy in xerial-snappy's stream framing
# (SnappyOutputStream); librdkafka writes a raw snappy block. Readers must take both. We
# write the xerial framing, like a Kafka broker, which every client reads.
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_BYTES = 32 * 1024  # SnappyOutputStream's default block size


def compress(compression: int, data: bytes | bytearray | memoryview) -> bytes:
    """Compress a records section the way a Kafka broker would."""
    if compression == Compression.NONE:
        return bytes(data)
    if compression == Compression.GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if compression == Compression.SNAPPY:
        return _xerial_snappy_compress(memoryview(data))
    if compression == Compression.LZ4:
        # Kafka reads only independent blocks; no content size, like its LZ4 output stream.
        return lz4.frame.compress(bytes(data), block_linked=False, content_checksum=False)
    if compression == Compression.ZSTD:
        return zstandard.ZstdCompressor().compress(bytes(data))
    raise InvalidRecordBatch(f"unknown compression codec {compression}")


def decompress(compression: int, data: bytes | bytearray | memoryview, *,
               max_bytes: int = limits.decompressed_batch_bytes_max) -> bytes:
    """Decompress a records section; more than `max_bytes` of output is refused (a batch
    that inflates beyond it is treated as corrupt)."""
    try:
        if compression == Compression.NONE:
            return bytes(data)
        if compression == Compression.GZIP:
            return _gzip_decompress(bytes(data), max_bytes)
        if compression == Compression.SNAPPY:
            return _snappy_decompress(bytes(data), max_bytes)
        if compression == Compression.LZ4:
            return _bounded(lz4.frame.LZ4FrameDecompressor().decompress(bytes(data), max_length=max_bytes + 1), max_bytes)
        if compression == Compression.ZSTD:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(data)), read_across_frames=True)
            return _bounded(reader.read(max_bytes + 1), max_bytes)
    except RecordBatchError:
        raise
    except (zlib.error, cramjam.DecompressionError, zstandard.ZstdError, RuntimeError,
            ValueError, struct.error, EOFError) as error:
        raise CorruptRecordBatch(f"cannot decompress {Compression(compression).name} records: {error}") from None
    raise InvalidRecordBatch(f"unknown compression codec {compression}")


def _bounded(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise CorruptRecordBatch(f"records inflate beyond {max_bytes} bytes")
    return data


def _gzip_decompress(data: bytes, max_bytes: int) -> bytes:
    output = bytearray()
    remaining = data
    while remaining:  # a gzip stream may hold several members
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        output += decompressor.decompress(remaining, max_bytes + 1 - len(output))
        if decompressor.unconsumed_tail or len(output) > max_bytes:
            raise CorruptRecordBatch(f"records inflate beyond {max_bytes} bytes")
        if not decompressor.eof:
            raise CorruptRecordBatch("truncated gzip records")
        remaining = decompressor.unused_data
    return bytes(output)


def _xerial_snappy_compress(data: memoryview) -> bytes:
    parts = [_XERIAL_HEADER]
    for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
        block = bytes(cramjam.snappy.compress_raw(data[start: start + _XERIAL_BLOCK_BYTES]))
        parts.append(_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: bytes, max_bytes: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_raw_block(data, max_bytes)
    output = bytearray()
    position = len(_XERIAL_HEADER)
    while position < len(data):
        if position + 4 > len(data):
            raise CorruptRecordBatch("truncated xerial snappy block length")
        (block_length,) = _BLOCK_LENGTH.unpack_from(data, position)
        position += 4
        if block_length < 0 or position + block_length > len(data):
            raise CorruptRecordBatch("xerial snappy block runs past the records")
        output += _snappy_raw_block(data[position: position + block_length], max_bytes - len(output))
        position += block_length
    return bytes(output)


def _snappy_raw_block(block: bytes, max_bytes: int) -> bytes:
    if cramjam.snappy.decompress_raw_len(block) > max_bytes:
        raise CorruptRecordBatch(f"records inflate beyond {max_bytes} bytes")
    return bytes(cramjam.snappy.decompress_raw(block))


def records_section(batch: bytes | bytearray | memoryview) -> bytes:
    """The uncompressed records bytes of a batch."""
    header = read_header(batch)
    return decompress(header.compression, memoryview(batch)[BATCH_HEADER_BYTES: header.size])


def recompress_batch(batch: bytes | bytearray | memoryview, target: int) -> bytearray:
    """A copy of the batch whose records section uses codec `target`, with batchLength,
    attributes and CRC rewritten (every other header field unchanged)."""
    header = read_header(batch)
    records = records_section(batch)
    return _assemble(header, compress(target, records), target)


def _assemble(header: BatchHeader, records_payload: bytes, codec: int) -> bytearray:
    attributes = (header.attributes & ~ATTRIBUTE_COMPRESSION_MASK) | codec
    output = bytearray(BATCH_HEADER_BYTES + len(records_payload))
    HEADER_STRUCT.pack_into(
        output, 0, header.base_offset, len(output) - LOG_OVERHEAD_BYTES,
        header.partition_leader_epoch, CURRENT_MAGIC, 0, attributes, header.last_offset_delta,
        header.base_timestamp, header.max_timestamp, header.producer_id, header.producer_epoch,
        header.base_sequence, header.record_count)
    output[BATCH_HEADER_BYTES:] = records_payload
    rewrite_crc(output)
    return output


# ---------------------------------------------------------------------------------------
# records (off the hot path)

Headers = Sequence[tuple[str, "bytes | None"]]


class Record(NamedTuple):
    """One decoded record; timestamp already resolved (LogAppendTime -> maxTimestamp)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class NewRecord(NamedTuple):
    """A record to encode with build_batch."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = NO_TIMESTAMP


def iter_records(batch: bytes | bytearray | memoryview) -> Iterator[Record]:
    """Decode every record of one batch (decompressing it if needed). Only for the off-hot
    paths listed in the module docstring; raises CorruptRecordBatch on malformed records."""
    header = read_header(batch)
    check_header(header, len(batch))
    reader = _VarintReader(records_section(batch))
    for _ in range(header.record_count):
        yield _read_record(reader, header)
    if not reader.at_end():
        raise CorruptRecordBatch("bytes left after the last record")


def _read_record(reader: "_VarintReader", header: BatchHeader) -> Record:
    length = reader.varint()
    end = reader.position + length
    if length < 0 or end > reader.size:
        raise CorruptRecordBatch(f"record length {length} runs past the batch")
    reader.byte()  # record attributes: unused by Kafka
    timestamp_delta = reader.varint()
    offset_delta = reader.varint()
    key = reader.optional_bytes()
    value = reader.optional_bytes()
    header_count = reader.varint()
    if header_count < 0 or header_count > end - reader.position:
        raise CorruptRecordBatch(f"invalid record header count {header_count}")
    headers = tuple(_read_record_header(reader) for _ in range(header_count))
    if reader.position != end:
        raise CorruptRecordBatch("record length does not match its fields")
    timestamp = header.max_timestamp if header.is_log_append_time else header.base_timestamp + timestamp_delta
    return Record(header.base_offset + offset_delta, timestamp, key, value, headers)


def _read_record_header(reader: "_VarintReader") -> tuple[str, bytes | None]:
    name = reader.optional_bytes()
    if name is None:
        raise CorruptRecordBatch("record header without a key")
    try:
        return name.decode("utf-8"), reader.optional_bytes()
    except UnicodeDecodeError:
        raise CorruptRecordBatch("record header key is not UTF-8") from None


class _VarintReader:
    """Zig-zag varints and length-prefixed bytes over one records section."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.position = 0

    def at_end(self) -> bool:
        return self.position == self.size

    def byte(self) -> int:
        if self.position >= self.size:
            raise CorruptRecordBatch("record runs past the batch")
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        unsigned = 0
        for shift in range(0, 70, 7):
            byte = self.byte()
            unsigned |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (unsigned >> 1) ^ -(unsigned & 1)
        raise CorruptRecordBatch("varint longer than 10 bytes")

    def optional_bytes(self) -> bytes | None:
        length = self.varint()
        if length == -1:
            return None
        if length < 0 or self.position + length > self.size:
            raise CorruptRecordBatch(f"field length {length} runs past the batch")
        value = self.data[self.position: self.position + length]
        self.position += length
        return value


def _write_varint(output: bytearray, value: int) -> None:
    unsigned = (value << 1) ^ (value >> 63)
    while unsigned >= 0x80:
        output.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    output.append(unsigned)


def _write_optional_bytes(output: bytearray, value: bytes | None) -> None:
    if value is None:
        _write_varint(output, -1)
        return
    _write_varint(output, len(value))
    output += value


def _encode_record(offset_delta: int, timestamp_delta: int, record: NewRecord) -> bytearray:
    body = bytearray(b"\x00")  # attributes
    _write_varint(body, timestamp_delta)
    _write_varint(body, offset_delta)
    _write_optional_bytes(body, record.key)
    _write_optional_bytes(body, record.value)
    _write_varint(body, len(record.headers))
    for name, value in record.headers:
        _write_optional_bytes(body, name.encode("utf-8"))
        _write_optional_bytes(body, value)
    encoded = bytearray()
    _write_varint(encoded, len(body))
    return encoded + body


def build_batch(records: Iterable[NewRecord], *, compression: int = Compression.NONE,
                base_offset: int = 0, partition_leader_epoch: int = -1,
                producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1,
                base_sequence: int = NO_SEQUENCE, is_transactional: bool = False,
                is_control: bool = False, log_append_time_ms: int | None = None) -> bytearray:
    """Encode one magic-v2 batch (used by the group coordinator's log and by tests)."""
    records = list(records)
    invariant(records, "a record batch holds at least one record")
    base_timestamp = records[0].timestamp_ms
    body = bytearray()
    for offset_delta, record in enumerate(records):
        body += _encode_record(offset_delta, record.timestamp_ms - base_timestamp, record)
    attributes = (ATTRIBUTE_TRANSACTIONAL if is_transactional else 0) | (ATTRIBUTE_CONTROL if is_control else 0)
    max_timestamp = max(record.timestamp_ms for record in records)
    if log_append_time_ms is not None:
        attributes |= ATTRIBUTE_LOG_APPEND_TIME
        max_timestamp = log_append_time_ms
    header = BatchHeader(base_offset, 0, partition_leader_epoch, CURRENT_MAGIC, 0, attributes,
                         len(records) - 1, base_timestamp, max_timestamp, producer_id,
                         producer_epoch, base_sequence, len(records))
    return _assemble(header, compress(compression, body), compression)
