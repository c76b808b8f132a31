"""Pure units of the client CLI: message formats, offset choices, tables."""

from __future__ import annotations

import argparse
import json

import pytest

from broker.cli.message_format import (
    ConsumedRecord, FormatError, InputRecord, JsonRenderer, LineParser, TemplateRenderer, TextRenderer,
    renderer_for, unescape,
)
from broker.cli.offset_spec import (
    PartitionPosition, ResetError, ResetStrategy, StartOffset, parse_datetime_ms, parse_start_offset,
    reset_target, start_offset,
)
from broker.cli.output import fields, table

RECORD = ConsumedRecord(
    topic="orders", partition=2, offset=41, timestamp_ms=1714564800123, timestamp_type=1,
    key=b"customer-7", value=b"hello\tworld", headers=[("source", b"web"), ("flag", None)])
NULL_RECORD = ConsumedRecord(
    topic="orders", partition=0, offset=5, timestamp_ms=None, timestamp_type=0,
    key=None, value=None, headers=[])


# --- produce: input lines ----------------------------------------------------------------


def test_line_format_splits_key_and_value_at_the_first_tab():
    parser = LineParser.from_format("%k\\t%v")
    assert parser.parse(b"k1\tvalue\twith tab") == InputRecord(value=b"value\twith tab", key=b"k1")


def test_line_format_with_partition_timestamp_and_literal_text():
    parser = LineParser.from_format("[%p] %T %k=%v")
    assert parser.parse(b"[3] 1714564800000 a=b=c") == InputRecord(
        value=b"b=c", key=b"a", partition=3, timestamp_ms=1714564800000)


def test_line_that_does_not_match_the_format_gives_none():
    assert LineParser.from_format("%k\\t%v").parse(b"no tab here") is None
    assert LineParser.from_format("%p:%v").parse(b"x:value") is None


def test_key_separator_is_taken_literally_even_with_regex_or_percent_characters():
    parser = LineParser.from_key_separator("%.*")
    assert parser.parse(b"key%.*value%.*more") == InputRecord(value=b"value%.*more", key=b"key")


def test_null_empty_turns_empty_key_and_value_into_null():
    parser = LineParser.from_key_separator(":", null_empty=True)
    assert parser.parse(b":") == InputRecord(value=None, key=None)
    assert LineParser.from_key_separator(":").parse(b":") == InputRecord(value=b"", key=b"")


def test_input_format_needs_a_value_and_no_repeats_and_known_fields():
    with pytest.raises(FormatError, match="needs %v"):
        LineParser.from_format("%k")
    with pytest.raises(FormatError, match="more than once"):
        LineParser.from_format("%k %v %k")
    with pytest.raises(FormatError, match="unknown field '%o'"):
        LineParser.from_format("%o %v")
    with pytest.raises(FormatError, match="must not be empty"):
        LineParser.from_key_separator("")


def test_unescape_knows_tab_newline_backslash_and_leaves_others():
    assert unescape("a\\tb\\nc\\\\d\\q") == "a\tb\nc\\d\\q"


# --- consume: rendering ------------------------------------------------------------------


def test_template_renders_every_field_and_appends_a_newline():
    renderer = TemplateRenderer("%t/%p@%o %T %k=%v [%h] %K %S %%")
    assert renderer.render(RECORD) == (
        b"orders/2@41 1714564800123 customer-7=hello\tworld [source=web,flag] 10 11 %\n")


def test_template_ending_with_newline_gets_no_second_one():
    assert TemplateRenderer("%v\\n").render(RECORD) == b"hello\tworld\n"


def test_template_renders_null_key_and_value_as_empty_with_length_minus_one():
    assert TemplateRenderer("[%k][%v] %K %S %T").render(NULL_RECORD) == b"[][] -1 -1 -1\n"


def test_text_renderer_prints_value_with_optional_headers_and_key():
    assert TextRenderer().render(RECORD) == b"hello\tworld\n"
    assert TextRenderer(print_key=True, print_headers=True).render(RECORD) == (
        b"customer-7\tsource=web,flag\thello\tworld\n")


def test_json_renderer_keeps_null_apart_from_empty_and_base64s_binary():
    document = json.loads(JsonRenderer().render(RECORD))
    assert document == {
        "topic": "orders", "partition": 2, "offset": 41, "timestamp": 1714564800123,
        "timestamp_type": "CreateTime", "key": "customer-7", "value": "hello\tworld",
        "headers": [{"key": "source", "value": "web"}, {"key": "flag", "value": None}]}
    binary = ConsumedRecord("t", 0, 0, 1, 2, key=b"", value=b"\xff\x00", headers=[("h", b"\xfe")])
    document = json.loads(JsonRenderer().render(binary))
    assert document["key"] == "" and document["value"] == "/wA=" and document["value_encoding"] == "base64"
    assert document["headers"] == [{"key": "h", "value": "/g==", "value_encoding": "base64"}]
    assert document["timestamp_type"] == "LogAppendTime"
    assert json.loads(JsonRenderer().render(NULL_RECORD))["value"] is None


def test_renderer_for_refuses_an_unknown_format_word():
    assert isinstance(renderer_for("json"), JsonRenderer)
    assert isinstance(renderer_for("%v"), TemplateRenderer)
    with pytest.raises(FormatError, match="expected text, json or a template"):
        renderer_for("yaml")


# --- offsets -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("earliest", StartOffset("earliest")), ("beginning", StartOffset("earliest")),
    ("latest", StartOffset("latest")), ("END", StartOffset("latest")),
    ("42", StartOffset("offset", 42)), ("0", StartOffset("offset", 0)),
    ("-10", StartOffset("from_end", 10)), ("@1714564800000", StartOffset("timestamp", 1714564800000)),
])
def test_parse_start_offset(text, expected):
    assert parse_start_offset(text) == expected


@pytest.mark.parametrize("text", ["soon", "@", "@-5", "1.5", ""])
def test_parse_start_offset_refuses_nonsense(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected earliest, latest"):
        parse_start_offset(text)


def test_parse_datetime_accepts_zones_and_treats_naive_as_utc():
    assert parse_datetime_ms("2024-05-01T12:00:00Z") == 1714564800000
    assert parse_datetime_ms("2024-05-01T12:00:00") == 1714564800000
    assert parse_datetime_ms("2024-05-01T14:00:00.250+02:00") == 1714564800250
    assert parse_datetime_ms("2024-05-01") == 1714521600000
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        parse_datetime_ms("yesterday")


POSITION = PartitionPosition("orders", 0, low=100, high=200, committed=150, offset_at_timestamp=120)


@pytest.mark.parametrize("spec, expected", [
    (StartOffset("earliest"), 100), (StartOffset("latest"), 200),
    (StartOffset("offset", 150), 150), (StartOffset("offset", 5), 100), (StartOffset("offset", 999), 200),
    (StartOffset("from_end", 10), 190), (StartOffset("from_end", 500), 100),
    (StartOffset("timestamp", 1), 120),
])
def test_start_offset_is_resolved_within_the_watermarks(spec, expected):
    assert start_offset(spec, POSITION) == expected


def test_timestamp_after_the_last_message_starts_at_the_end():
    for missing in (None, -1):
        position = PartitionPosition("orders", 0, low=0, high=7, offset_at_timestamp=missing)
        assert start_offset(StartOffset("timestamp", 1), position) == 7


@pytest.mark.parametrize("strategy, expected", [
    (ResetStrategy("to-earliest"), 100), (ResetStrategy("to-latest"), 200),
    (ResetStrategy("to-offset", 180), 180), (ResetStrategy("to-offset", 1), 100),
    (ResetStrategy("to-datetime", 5), 120),
    (ResetStrategy("shift-by", -20), 130), (ResetStrategy("shift-by", 100), 200),
    (ResetStrategy("shift-by", -100), 100),
])
def test_reset_target(strategy, expected):
    assert reset_target(strategy, POSITION) == expected


def test_shift_by_without_a_committed_offset_is_refused():
    position = PartitionPosition("orders", 3, low=0, high=10)
    with pytest.raises(ResetError, match=r"orders\[3\].*no committed offset"):
        reset_target(ResetStrategy("shift-by", 1), position)


# --- tables --------------------------------------------------------------------------------


def test_table_aligns_columns_and_shows_missing_values_as_dash():
    assert table(("NAME", "P"), [("orders", 3), ("a", None), ("lists", [0, 1])]) == (
        "NAME    P\n"
        "orders  3\n"
        "a       -\n"
        "lists   0,1")


def test_fields_align_names():
    assert fields((("GROUP", "g"), ("TOTAL LAG", 0))) == "GROUP      g\nTOTAL LAG  0"
