"""Hypothesis: corrupted batches never crash broker.records with anything but a
RecordBatchError (which the produce handler turns into a Kafka error code)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.records import (
    Compression, NewRecord, RecordBatchError, build_batch, iter_records, read_header,
    rewrite_crc, split_batches,
)

FUZZ_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

record_strategy = st.builds(
    NewRecord,
    key=st.one_of(st.none(), st.binary(max_size=20)),
    value=st.one_of(st.none(), st.binary(max_size=200)),
    headers=st.lists(st.tuples(st.text(alphabet="abcé-_🐟", max_size=5), st.one_of(st.none(), st.binary(max_size=10))),
                     max_size=3),
    timestamp_ms=st.integers(min_value=0, max_value=2**41),
)
codec_strategy = st.sampled_from(list(Compression))


@st.composite
def valid_batches(draw):
    records = draw(st.lists(record_strategy, min_size=1, max_size=8))
    return build_batch(records, compression=draw(codec_strategy)), records


@FUZZ_SETTINGS
@given(valid_batches())
def test_built_batches_round_trip(batch_and_records):
    batch, records = batch_and_records
    [view] = split_batches(batch)
    decoded = list(iter_records(view.data))
    assert [(record.key, record.value, record.timestamp) for record in decoded] == \
        [(record.key, record.value, record.timestamp_ms) for record in records]
    assert [record.headers for record in decoded] == [tuple(record.headers) for record in records]


@FUZZ_SETTINGS
@given(valid_batches(), st.lists(st.tuples(st.integers(min_value=0, max_value=60), st.integers(1, 255)),
                                 min_size=1, max_size=6))
def test_header_corruption_raises_only_the_typed_error(batch_and_records, flips):
    batch = bytearray(batch_and_records[0])
    for position, mask in flips:
        batch[position] ^= mask
    try:
        split_batches(batch)
    except RecordBatchError:
        pass


@FUZZ_SETTINGS
@given(valid_batches(), st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_body_corruption_with_a_fixed_up_crc_fails_only_with_the_typed_error(batch_and_records, position, garbage):
    """The CRC is recomputed, so validation passes and record decoding meets the damage."""
    batch = bytearray(batch_and_records[0])
    start = 61 + position % max(1, len(batch) - 61)
    batch[start: start + len(garbage)] = garbage
    try:
        header = read_header(batch)
        if header.size != len(batch):
            batch[8:12] = (len(batch) - 12).to_bytes(4, "big")
        rewrite_crc(batch)
        for view in split_batches(batch):
            list(iter_records(view.data))
    except RecordBatchError:
        pass


@FUZZ_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_typed_error(blob):
    try:
        split_batches(blob)
    except RecordBatchError:
        pass
