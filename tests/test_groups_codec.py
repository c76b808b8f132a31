"""The __consumer_offsets record format (codec.py) and the subscription peek."""

from __future__ import annotations

import pytest

from broker.groups import codec
from broker.groups.subscription import subscribed_topics
from tests.groups_support import subscription


def test_offset_records_round_trip():
    key = codec.OffsetKey("group-ü", "orders", 17)
    value = codec.OffsetValue(offset=2**40, leader_epoch=-1, metadata="", commit_timestamp_ms=1_700_000_000_123)
    assert codec.decode_key(codec.encode_offset_key(key)) == key
    assert codec.decode_offset_value(codec.encode_offset_value(value)) == value


def test_group_records_round_trip():
    members = (
        codec.StoredMember("m-1", None, "client", "/10.0.0.1", 300_000, 45_000, b"sub", b""),
        codec.StoredMember("m-2", "instance-2", "client", "/10.0.0.2", 60_000, 10_000, b"", b"\x00\x01assigned"))
    value = codec.GroupValue("consumer", 7, "cooperative-sticky", "m-1", 1_700_000_000_000, members)
    empty = codec.GroupValue("consumer", 8, None, None, 1_700_000_000_001, ())
    assert codec.decode_key(codec.encode_group_key(codec.GroupKey("g"))) == codec.GroupKey("g")
    assert codec.decode_group_value(codec.encode_group_value(value)) == value
    assert codec.decode_group_value(codec.encode_group_value(empty)) == empty


def test_the_layout_is_kafkas():
    """OffsetCommitKey v1 / OffsetCommitValue v3 bytes, as Kafka's own tooling reads them."""
    assert codec.encode_offset_key(codec.OffsetKey("g", "t", 1)) == (
        b"\x00\x01" b"\x00\x01g" b"\x00\x01t" b"\x00\x00\x00\x01")
    assert codec.encode_offset_value(codec.OffsetValue(5, 2, "m", 9)) == (
        b"\x00\x03" + (5).to_bytes(8, "big") + (2).to_bytes(4, "big") + b"\x00\x01m" + (9).to_bytes(8, "big"))


@pytest.mark.parametrize("data", [b"", b"\x00\x07abc", b"\x00\x01\x00\x05ab", b"\x00\x02\xff\xfe"])
def test_unreadable_keys_are_refused(data):
    with pytest.raises(codec.GroupRecordError):
        codec.decode_key(data)


def test_unknown_value_versions_are_refused():
    with pytest.raises(codec.GroupRecordError):
        codec.decode_offset_value(b"\x00\x09" + bytes(30))
    with pytest.raises(codec.GroupRecordError):
        codec.decode_group_value(b"\x00\x02" + bytes(30))


def test_subscribed_topics_of_consumer_metadata():
    assert subscribed_topics(subscription("a", "b", owned=(("a", (0, 1)),))) == {"a", "b"}
    assert subscribed_topics(b"") is None
    assert subscribed_topics(b"\xff\xff") is None
    assert subscribed_topics(b"\x00\x00\x00\x00\x00\x05\x00\x01") is None  # truncated
