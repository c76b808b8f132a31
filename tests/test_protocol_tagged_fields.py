"""Unknown tagged fields (KIP-482) are skipped: kio alone raises KeyError on them."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader
from kio.static.primitive import Records

from broker.protocol.kio_build import build
from broker.protocol.messages import MalformedRequest, decode_request, parse_request_header
from broker.protocol.tagged_fields import strip_unknown_tagged_fields
from tests.support import BrokerProcess
from tests.wire_client import WireClient, encode, ms, request_class, request_header

st.register_type_strategy(Records, st.binary(max_size=64))

UNKNOWN_TAG = b"\x63\x03xyz"  # tag 99, 3 bytes


def flexible_request_types() -> list[type]:
    found = []
    for api_key, name in sorted(api_key_map.items()):
        for version in sorted(schema_name_map[name]):
            try:
                request_type = load_request_schema(api_key, version)
            except Exception:
                continue
            if request_type.__flexible__:
                found.append(request_type)
    return found


FLEXIBLE_REQUEST_TYPES = flexible_request_types()


def has_top_level_tags(request) -> bool:
    """True when kio writes some known tagged field of the message itself."""
    return any(field.metadata.get("tag") is not None and getattr(request, field.name) != field.default
               for field in dataclasses.fields(request))


def with_unknown_top_level_tag(data: bytes) -> bytes:
    """The message ends with its top-level tagged-field section; when it is empty (one 0
    byte) replace it with a section holding one unknown tag."""
    assert data[-1] == 0
    return data[:-1] + b"\x01" + UNKNOWN_TAG


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FLEXIBLE_REQUEST_TYPES).flatmap(st.from_type))
def test_every_flexible_request_survives_an_unknown_tag(request):
    request_type = type(request)
    try:
        data = encode(request)
    except (ValueError, OverflowError):
        reject()  # kio's own strategies can draw values its writer refuses (huge timedeltas)
    assert strip_unknown_tagged_fields(request_type, data) == data  # nothing unknown: unchanged
    if has_top_level_tags(request):
        return  # the last byte is not an empty tag section; see the targeted tests below
    tagged = with_unknown_top_level_tag(data)
    with pytest.raises(KeyError):
        entity_reader(request_type)(tagged, 0)
    assert strip_unknown_tagged_fields(request_type, tagged) == data


def fetch_v12_bytes(partition_max_bytes: int = 0x0A0B0C0D) -> tuple[type, bytes]:
    partition_class = request_class(1, 12, "FetchPartition")
    topic_class = request_class(1, 12, "FetchTopic")
    request = build(request_class(1, 12), cluster_id=None, replica_id=-1, max_wait=ms(0), min_bytes=1,
                    max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
                    forgotten_topics_data=(), rack_id="",
                    topics=(topic_class(topic="tagged", partitions=(build(
                        partition_class, partition=0, current_leader_epoch=-1, fetch_offset=0,
                        last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=partition_max_bytes),)),))
    return type(request), encode(request)


def with_nested_unknown_tags(data: bytes) -> bytes:
    """Unknown tags in the FetchPartition and the FetchTopic (the two empty sections right
    after partition_max_bytes) and at the top level."""
    marker = struct.pack(">i", 0x0A0B0C0D)
    at = data.index(marker) + len(marker)
    assert data[at: at + 2] == b"\x00\x00"
    nested = data[:at] + b"\x01" + UNKNOWN_TAG + b"\x02" + UNKNOWN_TAG + b"\x64\x00" + data[at + 2:]
    return with_unknown_top_level_tag(nested)


def test_nested_unknown_tags_are_stripped_and_known_ones_kept():
    request_type, data = fetch_v12_bytes()
    tagged = with_nested_unknown_tags(data)
    with pytest.raises(KeyError):
        entity_reader(request_type)(tagged, 0)
    assert strip_unknown_tagged_fields(request_type, tagged) == data
    # A known tag (cluster_id, tag 0) next to an unknown one: the known one survives.
    known_and_unknown = data[:-1] + b"\x02\x00\x04\x04abc" + UNKNOWN_TAG
    request, _ = entity_reader(request_type)(strip_unknown_tagged_fields(request_type, known_and_unknown), 0)
    assert request.cluster_id == "abc"


def test_decode_request_skips_unknown_tags_and_refuses_garbage():
    request_type, data = fetch_v12_bytes()
    frame = request_header(1, 12, 5) + with_nested_unknown_tags(data)
    request = decode_request(parse_request_header(frame), frame)
    assert request.topics[0].partitions[0].partition_max_bytes == 0x0A0B0C0D
    broken = request_header(1, 12, 5) + data[:-1] + b"\x01\x63\x40xyz"  # tag claims 64 bytes
    with pytest.raises(MalformedRequest):
        decode_request(parse_request_header(broken), broken)


def test_live_broker_answers_requests_with_unknown_tags(tmp_path):
    broker = BrokerProcess(tmp_path / "node0").start()
    try:
        with WireClient(broker.kafka_port) as client:
            metadata_topic = request_class(3, 12, "MetadataRequestTopic")
            metadata = build(request_class(3, 12), topics=(metadata_topic(topic_id=None, name="tagged"),),
                             allow_auto_topic_creation=True, include_topic_authorized_operations=False)
            response = client.call_raw(3, 12, with_unknown_top_level_tag(encode(metadata)))
            assert b"tagged" in response
            _, data = fetch_v12_bytes()
            body = client.call_raw(1, 12, with_nested_unknown_tags(data))
            fetch_response, _ = entity_reader(load_response_schema(1, 12))(body, 0)
            assert fetch_response.responses[0].partitions[0].error_code.value == 0
    finally:
        broker.close()
