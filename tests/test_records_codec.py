"""broker.records: header codec, validation errors, in-place patches, codecs, and interop
with kafka-python's own record batch builder and reader."""

from __future__ import annotations

import struct

import cramjam
import pytest
from kafka.codec import snappy_encode
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from broker.records import (
    ATTRIBUTE_CONTROL, ATTRIBUTE_LOG_APPEND_TIME, BATCH_HEADER_BYTES, Compression,
    CorruptRecordBatch, InvalidRecordBatch, NewRecord, RecordBatchTooLarge,
    UnsupportedMessageFormat, build_batch, compress, decompress, iter_records,
    patch_base_offset_and_leader_epoch, read_header, recompress_batch, rewrite_crc,
    set_log_append_time, split_batches, validate_batch,
)

BASE_TIME_MS = 1_700_000_000_000
ALL_CODECS = list(Compression)


def sample_records(count: int = 20) -> list[NewRecord]:
    return [NewRecord(key=b"key-%d" % index, value=b"value %d " % index * 40,
                      headers=[("trace", b"t%d" % index), ("empty", None)],
                      timestamp_ms=BASE_TIME_MS + index * 7) for index in range(count)]


def kafka_python_batch(codec: int, count: int = 20, producer_id: int = -1) -> bytearray:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                                        base_sequence=0 if producer_id >= 0 else -1, batch_size=1 << 20)
    for index in range(count):
        builder.append(index, timestamp=BASE_TIME_MS + index, key=b"k%d" % index,
                       value=b"payload %d " % index * 30, headers=[("h", b"v%d" % index)])
    return builder.build()


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda codec: codec.name)
def test_kafka_python_batches_parse_validate_and_decode(codec):
    batch = kafka_python_batch(codec)
    header = validate_batch(batch)
    assert header.compression == codec  # payload is compressible, so kafka-python kept the codec
    assert (header.record_count, header.last_offset_delta, header.size) == (20, 19, len(batch))
    assert (header.base_timestamp, header.max_timestamp) == (BASE_TIME_MS, BASE_TIME_MS + 19)
    records = list(iter_records(batch))
    assert [record.offset for record in records] == list(range(20))
    assert records[5].key == b"k5" and records[5].value == b"payload 5 " * 30
    assert records[5].timestamp == BASE_TIME_MS + 5 and records[5].headers == (("h", b"v5"),)


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda codec: codec.name)
def test_our_batches_are_read_by_kafka_python(codec):
    batch = build_batch(sample_records(), compression=codec, base_offset=100, partition_leader_epoch=3)
    theirs = DefaultRecordBatch(bytes(batch))
    assert theirs.validate_crc()
    assert (theirs.base_offset, theirs.leader_epoch, theirs.compression_type) == (100, 3, codec)
    decoded = list(theirs)
    assert [record.offset for record in decoded] == list(range(100, 120))
    assert decoded[3].key == b"key-3" and decoded[3].value == b"value 3 " * 40
    assert decoded[3].timestamp == BASE_TIME_MS + 21
    assert decoded[3].headers == [("trace", b"t3"), ("empty", None)]


def test_header_fields_and_flags():
    batch = build_batch(sample_records(3), producer_id=42, producer_epoch=2, base_sequence=7,
                        is_transactional=True, partition_leader_epoch=5, base_offset=9)
    header = read_header(batch)
    assert len(batch) == header.size and BATCH_HEADER_BYTES == 61
    assert (header.base_offset, header.last_offset, header.partition_leader_epoch) == (9, 11, 5)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 2, 7)
    assert header.is_transactional and not header.is_control and not header.is_log_append_time


def test_split_batches_returns_each_batch_of_a_produce_blob():
    first = build_batch(sample_records(2))
    second = kafka_python_batch(Compression.LZ4, count=5)
    blob = bytearray(first + second)
    batches = split_batches(blob)
    assert [view.header.record_count for view in batches] == [2, 5]
    assert bytes(batches[1].data) == bytes(second)
    patch_base_offset_and_leader_epoch(batches[1].data, 77, 4)  # views are writable slices
    assert read_header(blob, len(first))[:3] == (77, len(second) - 12, 4)


def test_patch_base_offset_and_leader_epoch_keeps_crc_valid():
    batch = build_batch(sample_records(4))
    patch_base_offset_and_leader_epoch(batch, 123_456_789_012, 17)
    header = validate_batch(batch)
    assert (header.base_offset, header.partition_leader_epoch) == (123_456_789_012, 17)
    assert [record.offset for record in iter_records(batch)] == [123_456_789_012 + index for index in range(4)]


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda codec: codec.name)
def test_log_append_time_sets_type_bit_and_max_timestamp_only(codec):
    batch = build_batch(sample_records(5), compression=codec)
    before = read_header(batch)
    set_log_append_time(batch, BASE_TIME_MS + 99_999)
    after = validate_batch(batch)
    assert after.is_log_append_time and after.attributes & ATTRIBUTE_LOG_APPEND_TIME
    assert after.max_timestamp == BASE_TIME_MS + 99_999 and after.base_timestamp == before.base_timestamp
    assert after.compression == codec
    assert {record.timestamp for record in iter_records(batch)} == {BASE_TIME_MS + 99_999}
    theirs = list(DefaultRecordBatch(bytes(batch)))
    assert {record.timestamp for record in theirs} == {BASE_TIME_MS + 99_999}


@pytest.mark.parametrize("source", ALL_CODECS, ids=lambda codec: codec.name)
@pytest.mark.parametrize("target", ALL_CODECS, ids=lambda codec: codec.name)
def test_recompress_between_every_pair_of_codecs(source, target):
    batch = build_batch(sample_records(), compression=source, producer_id=5, producer_epoch=1, base_sequence=10)
    converted = recompress_batch(batch, target)
    header = validate_batch(converted)
    assert header.compression == target
    assert read_header(converted)._replace(batch_length=0, crc=0, attributes=0) == \
        read_header(batch)._replace(batch_length=0, crc=0, attributes=0)
    assert list(iter_records(converted)) == list(iter_records(batch))
    assert [record.value for record in DefaultRecordBatch(bytes(converted))] == \
        [record.value for record in sample_records()]


def test_snappy_reads_xerial_framing_and_raw_blocks_and_writes_xerial():
    payload = b"some records section " * 5000
    xerial = snappy_encode(payload, xerial_compatible=True, xerial_blocksize=4096)  # Java style
    raw = bytes(cramjam.snappy.compress_raw(payload))  # librdkafka style
    assert decompress(Compression.SNAPPY, xerial) == payload
    assert decompress(Compression.SNAPPY, raw) == payload
    ours = compress(Compression.SNAPPY, payload)
    assert ours.startswith(b"\x82SNAPPY\x00") and decompress(Compression.SNAPPY, ours) == payload


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD],
                         ids=lambda codec: codec.name)
def test_decompression_is_bounded(codec):
    bomb = compress(codec, bytes(1_000_000))
    assert decompress(codec, bomb, max_bytes=1_000_000) == bytes(1_000_000)
    with pytest.raises(CorruptRecordBatch):
        decompress(codec, bomb, max_bytes=999_999)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD],
                         ids=lambda codec: codec.name)
def test_garbage_compressed_payload_is_corrupt(codec):
    with pytest.raises(CorruptRecordBatch):
        decompress(codec, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x09garbage!!" if codec == Compression.SNAPPY else b"definitely not compressed data")


# --- validation errors and their Kafka codes ------------------------------------------


def corrupt(batch: bytearray, position: int, value: int) -> bytearray:
    copy = bytearray(batch)
    copy[position] ^= value
    return copy


def test_crc_mismatch_is_corrupt_message():
    batch = build_batch(sample_records(3))
    with pytest.raises(CorruptRecordBatch) as raised:
        split_batches(corrupt(batch, len(batch) - 1, 0x01))
    assert raised.value.error_code == 2


def test_truncated_batch_and_trailing_bytes_are_corrupt():
    batch = build_batch(sample_records(3))
    for blob in (batch[:-1], batch[:30], batch + b"\x00\x00\x00"):
        with pytest.raises(CorruptRecordBatch):
            split_batches(bytearray(blob))


def test_old_message_formats_are_unsupported():
    batch = build_batch(sample_records(1))
    for magic in (0, 1):
        old = bytearray(batch)
        old[16] = magic
        with pytest.raises(UnsupportedMessageFormat) as raised:
            split_batches(old)
        assert raised.value.error_code == 43


def test_unknown_magic_is_corrupt():
    old = bytearray(build_batch(sample_records(1)))
    old[16] = 3
    with pytest.raises(CorruptRecordBatch):
        split_batches(old)


def test_record_count_inconsistent_with_last_offset_delta_is_invalid_record():
    batch = build_batch(sample_records(3))
    struct.pack_into(">i", batch, 57, 4)  # recordCount 4, lastOffsetDelta 2
    rewrite_crc(batch)
    with pytest.raises(InvalidRecordBatch) as raised:
        split_batches(batch)
    assert raised.value.error_code == 87


def test_client_rules_refuse_control_batches_and_bad_sequences():
    control = build_batch(sample_records(1), is_control=True, producer_id=1, producer_epoch=0, base_sequence=0)
    assert read_header(control).attributes & ATTRIBUTE_CONTROL
    with pytest.raises(InvalidRecordBatch):
        split_batches(control)
    assert split_batches(control, from_client=False)[0].header.is_control
    no_sequence = build_batch(sample_records(1), producer_id=1, producer_epoch=0)
    with pytest.raises(InvalidRecordBatch):
        split_batches(no_sequence)
    with pytest.raises(InvalidRecordBatch):
        split_batches(b"")


def test_oversized_batch_is_message_too_large():
    batch = build_batch(sample_records(10))
    assert split_batches(batch, max_batch_bytes=len(batch))
    with pytest.raises(RecordBatchTooLarge) as raised:
        split_batches(batch, max_batch_bytes=len(batch) - 1)
    assert raised.value.error_code == 10


def test_compression_type_topic_config_names():
    assert Compression.from_topic_config("producer") is None
    assert Compression.from_topic_config("uncompressed") == Compression.NONE
    assert Compression.from_topic_config("zstd") == Compression.ZSTD


def test_null_key_value_and_negative_timestamp_deltas_round_trip():
    records = [NewRecord(None, None, (), BASE_TIME_MS), NewRecord(b"", b"", (), BASE_TIME_MS - 5000)]
    batch = build_batch(records)
    decoded = list(iter_records(batch))
    assert [(record.key, record.value, record.timestamp) for record in decoded] == [
        (None, None, BASE_TIME_MS), (b"", b"", BASE_TIME_MS - 5000)]
    assert read_header(batch).max_timestamp == BASE_TIME_MS
    assert [(record.key, record.value) for record in DefaultRecordBatch(bytes(batch))] == [(None, None), (b"", b"")]
