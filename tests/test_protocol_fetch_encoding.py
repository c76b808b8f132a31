"""The hand-encoded FetchResponse is byte-for-byte what kio writes, for every version
4..12, including split record parts and file regions spliced in."""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from broker.protocol.fetch_response import PartitionResponse, TopicResponse, encode_fetch_response
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
topics = st.lists(st.builds(TopicResponse, topic=st.text(min_size=1, max_size=20),
                            partitions=st.lists(partitions, max_size=3)), max_size=3)


def kio_bytes(version: int, topic_responses: list[TopicResponse], session_id: int, error_code: int) -> bytes:
    response_class = response_type(FETCH, version)
    topic_class = nested(response_class, "FetchableTopicResponse")
    partition_class = nested(response_class, "PartitionData")
    aborted_class = nested(response_class, "AbortedTransaction")
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
                  records=b"".join(partition.records))
            for partition in topic.partitions)) for topic in topic_responses)))


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
