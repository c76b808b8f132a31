"""The hand-encoded FetchResponse is byte-for-byte what kio writes, for every version
4..12, including split record parts, file regions spliced in and the v12 partition tags
(DivergingEpoch, CurrentLeader)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from broker.protocol.fetch_response import (
    EpochEndOffset, LeaderIdAndEpoch, PartitionResponse, TopicResponse, encode_fetch_response)
from broker.protocol.kio_build import build, nested
from broker.protocol.messages import response_type
from broker.storage.api import FileRegion
from tests.wire_client import encode

FETCH = 1
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
error_codes = st.sampled_from([0, 1, 3, 6, 74, 75])

partitions = st.builds(
    PartitionResponse,
    partition_index=st.integers(0, 2**31 - 1),
    error_code=error_codes,
    high_watermark=int64,
    last_stable_offset=int64,
    log_start_offset=int64,
    aborted_transactions=st.none() | st.lists(st.tuples(int64, int64), max_size=3),
    preferred_read_replica=int32,
    records=st.lists(st.binary(max_size=300), max_size=3),
)
epochs_or_unset = st.just(-1) | int32
tagged_partitions = st.builds(
    PartitionResponse,
    partition_index=st.integers(0, 2**31 - 1),
    error_code=error_codes,
    high_watermark=int64,
    records=st.lists(st.binary(max_size=300), max_size=3),
    diverging_epoch=st.none() | st.builds(EpochEndOffset, epoch=epochs_or_unset, end_offset=st.just(-1) | int64),
    current_leader=st.none() | st.builds(LeaderIdAndEpoch, leader_id=epochs_or_unset, leader_epoch=epochs_or_unset),
)
topics = st.lists(st.builds(TopicResponse, topic=st.text(min_size=1, max_size=20),
                            partitions=st.lists(partitions, max_size=3)), max_size=3)
tagged_topics = st.lists(st.builds(TopicResponse, topic=st.text(min_size=1, max_size=20),
                                   partitions=st.lists(tagged_partitions, max_size=3)), max_size=3)


def kio_bytes(version: int, topic_responses: list[TopicResponse], session_id: int, error_code: int) -> bytes:
    response_class = response_type(FETCH, version)
    topic_class = nested(response_class, "FetchableTopicResponse")
    partition_class = nested(response_class, "PartitionData")
    aborted_class = nested(response_class, "AbortedTransaction")
    tags = _kio_tags(response_class)
    return encode(build(
        response_class, throttle_time=datetime.timedelta(0), error_code=ErrorCode(error_code), session_id=session_id,
        responses=tuple(build(topic_class, topic=topic.topic, partitions=tuple(
            build(partition_class, partition_index=partition.partition_index,
                  error_code=ErrorCode(partition.error_code), high_watermark=partition.high_watermark,
                  last_stable_offset=partition.last_stable_offset, log_start_offset=partition.log_start_offset,
                  aborted_transactions=None if partition.aborted_transactions is None else tuple(
                      aborted_class(producer_id=producer_id, first_offset=first_offset)
                      for producer_id, first_offset in partition.aborted_transactions),
                  preferred_read_replica=partition.preferred_read_replica,
                  records=b"".join(partition.records), **tags(partition))
            for partition in topic.partitions)) for topic in topic_responses)))


def _kio_tags(response_class: type):
    """The kio values of a partition's v12 tags (none before v12)."""
    if response_class.__version__ < 12:
        return lambda partition: {}
    epoch_end_offset_class = nested(response_class, "EpochEndOffset")
    leader_class = nested(response_class, "LeaderIdAndEpoch")

    def tags(partition: PartitionResponse) -> dict:
        values = {}
        if partition.diverging_epoch is not None:
            values["diverging_epoch"] = epoch_end_offset_class(
                epoch=partition.diverging_epoch.epoch, end_offset=partition.diverging_epoch.end_offset)
        if partition.current_leader is not None:
            values["current_leader"] = leader_class(
                leader_id=partition.current_leader.leader_id, leader_epoch=partition.current_leader.leader_epoch)
        return values

    return tags


def joined(parts: list) -> bytes:
    return b"".join(part.read_bytes() if isinstance(part, FileRegion) else bytes(part) for part in parts)


@settings(max_examples=60, deadline=None)
@given(version=st.integers(4, 12), topic_responses=topics, session_id=int32, error_code=error_codes)
def test_hand_encoding_matches_kio(version, topic_responses, session_id, error_code):
    if version < 7:
        session_id, error_code = 0, 0
    ours = joined(encode_fetch_response(version, topic_responses, error_code=error_code, session_id=session_id))
    assert ours == kio_bytes(version, topic_responses, session_id, error_code)


def test_file_regions_are_spliced_in_place(tmp_path):
    segment = tmp_path / "segment.log"
    segment.write_bytes(b"0123456789abcdefghij")
    region = FileRegion(segment, 5, 10)
    for version in range(4, 13):
        partition = PartitionResponse(0, high_watermark=10, last_stable_offset=10, log_start_offset=0,
                                      records=[region, b"tail"])
        parts = encode_fetch_response(version, [TopicResponse("topic", [partition])])
        assert region in parts  # sent as a region, never copied into the envelope
        expected = PartitionResponse(0, high_watermark=10, last_stable_offset=10, log_start_offset=0,
                                     records=[b"56789abcde", b"tail"])
        assert joined(parts) == kio_bytes(version, [TopicResponse("topic", [expected])], 0, 0)
        response, size = entity_reader(response_type(FETCH, version))(joined(parts), 0)
        assert response.responses[0].partitions[0].records == b"56789abcdetail"


@settings(max_examples=60, deadline=None)
@given(topic_responses=tagged_topics)
def test_v12_partition_tags_match_kio(topic_responses):
    ours = joined(encode_fetch_response(12, topic_responses))
    assert ours == kio_bytes(12, topic_responses, 0, 0)


def test_v12_diverging_epoch_and_current_leader_bytes():
    """Known bytes: tag 0 is 13 bytes (int32, int64, empty tags), tag 1 is 9 bytes; a tag
    at its default (-1, -1) is left out, as kio and Kafka leave it out."""
    plain = PartitionResponse(3, high_watermark=10, last_stable_offset=10, log_start_offset=0)
    both = PartitionResponse(3, high_watermark=10, last_stable_offset=10, log_start_offset=0,
                             diverging_epoch=EpochEndOffset(4, 120), current_leader=LeaderIdAndEpoch(0, 7))
    unset = PartitionResponse(3, high_watermark=10, last_stable_offset=10, log_start_offset=0,
                              diverging_epoch=EpochEndOffset(-1, -1), current_leader=LeaderIdAndEpoch(-1, -1))
    plain_bytes = joined(encode_fetch_response(12, [TopicResponse("t", [plain])]))
    both_bytes = joined(encode_fetch_response(12, [TopicResponse("t", [both])]))
    assert joined(encode_fetch_response(12, [TopicResponse("t", [unset])])) == plain_bytes
    tags = (b"\x02" + b"\x00\x0d" + (4).to_bytes(4, "big") + (120).to_bytes(8, "big") + b"\x00"
            + b"\x01\x09" + (0).to_bytes(4, "big") + (7).to_bytes(4, "big") + b"\x00")
    # the partition's section is followed by the topic's and the response's (empty) sections
    assert plain_bytes.endswith(b"\x01" + b"\x00" + b"\x00\x00")  # empty records (uvarint 1), no tags
    assert both_bytes == plain_bytes[:-3] + tags + b"\x00\x00"
    for expected in (plain, both, unset):
        assert joined(encode_fetch_response(12, [TopicResponse("t", [expected])])) == kio_bytes(
            12, [TopicResponse("t", [expected])], 0, 0)
    response, _ = entity_reader(response_type(FETCH, 12))(both_bytes, 0)
    decoded = response.responses[0].partitions[0]
    assert (decoded.diverging_epoch.epoch, decoded.diverging_epoch.end_offset) == (4, 120)
    assert (decoded.current_leader.leader_id, decoded.current_leader.leader_epoch) == (0, 7)


@pytest.mark.parametrize("version", range(4, 12))
def test_tags_before_v12_are_refused(version):
    partition = PartitionResponse(0, diverging_epoch=EpochEndOffset(1, 5))
    with pytest.raises(ValueError):
        encode_fetch_response(version, [TopicResponse("t", [partition])])
