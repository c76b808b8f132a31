"""Message formats of `shoal produce` (parsing input lines) and `shoal consume`
(rendering records), kcat-style: `%k` key, `%v` value, `%p` partition, `%o` offset,
`%T` timestamp (ms), `%t` topic, `%h` headers, `%K`/`%S` key/value length, `%%` a percent
sign; `\\n`, `\\t`, `\\r`, `\\\\` escapes. Pure functions over bytes: no Kafka client here.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

OUTPUT_FIELDS = {
    "t": "topic", "p": "partition", "o": "offset", "k": "key", "v": "value",
    "T": "timestamp", "h": "headers", "K": "key length", "S": "value length",
}
INPUT_FIELDS = {"k": "key", "v": "value", "p": "partition", "T": "timestamp"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}
TIMESTAMP_TYPE_NAMES = {1: "CreateTime", 2: "LogAppendTime"}


class FormatError(ValueError):
    """A format string that cannot be used; str() says why."""


Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


@dataclass(frozen=True)
class InputRecord:
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp_ms: int | None = None


# ---------------------------------------------------------------------------------------
# format strings


def unescape(text: str) -> str:
    """Turn the two-character escapes \\n \\t \\r \\0 \\\\ into their characters."""
    return re.sub(r"\\(.)", lambda match: _ESCAPES.get(match.group(1), match.group(0)), text)


def parse_format(text: str, fields: dict[str, str]) -> list[str | tuple[str]]:
    """Literal strings and one-element tuples naming a field, e.g. ['>', ('k',), '\\t', ('v',)]."""
    parts: list[str | tuple[str]] = []
    literal = ""
    characters = iter(unescape(text))
    for character in characters:
        if character != "%":
            literal += character
            continue
        token = next(characters, None)
        if token == "%":
            literal += "%"
            continue
        if token not in fields:
            known = ", ".join(f"%{name} ({meaning})" for name, meaning in fields.items())
            shown = "%" + (token or "")
            raise FormatError(f"unknown field {shown!r} in format {text!r}; known: {known}")
        if literal:
            parts.append(literal)
            literal = ""
        parts.append((token,))
    if literal:
        parts.append(literal)
    return parts


# ---------------------------------------------------------------------------------------
# produce: parsing input lines


class LineParser:
    """Splits one input line into key/value/partition/timestamp by a format. With
    `unmatched_is_value` a line that does not match is the value, with no key (kcat -K);
    otherwise it is refused."""

    def __init__(self, parts: list[str | tuple[str]], null_empty: bool = False,
                 unmatched_is_value: bool = False) -> None:
        field_names = [part[0] for part in parts if isinstance(part, tuple)]
        if "v" not in field_names:
            raise FormatError("an input format needs %v (the value)")
        repeated = {name for name in field_names if field_names.count(name) > 1}
        if repeated:
            raise FormatError(f"field %{sorted(repeated)[0]} appears more than once in the input format")
        self.field_names = field_names
        self.null_empty = null_empty
        self.unmatched_is_value = unmatched_is_value
        self.pattern = re.compile(self._regex(parts), re.DOTALL)

    @classmethod
    def from_format(cls, text: str, null_empty: bool = False) -> "LineParser":
        return cls(parse_format(text, INPUT_FIELDS), null_empty)

    @classmethod
    def from_key_separator(cls, separator: str, null_empty: bool = False) -> "LineParser":
        separator = unescape(separator)
        if not separator:
            raise FormatError("the key separator must not be empty")
        return cls([("k",), separator, ("v",)], null_empty, unmatched_is_value=True)

    @staticmethod
    def _regex(parts: list[str | tuple[str]]) -> bytes:
        pieces = []
        last_text_field = max(
            (index for index, part in enumerate(parts) if isinstance(part, tuple) and part[0] in "kv"),
            default=-1)
        for index, part in enumerate(parts):
            if isinstance(part, str):
                pieces.append(re.escape(part.encode()))
            elif part[0] in "pT":
                pieces.append(rb"(-?\d+)")
            else:
                pieces.append(rb"(.*)" if index == last_text_field else rb"(.*?)")
        return b"".join(pieces)

    def parse(self, line: bytes) -> InputRecord | None:
        """The record in `line`, or None when the line does not match the format."""
        match = self.pattern.fullmatch(line)
        if match is None:
            return InputRecord(value=self._bytes_or_null(line)) if self.unmatched_is_value else None
        found = dict(zip(self.field_names, match.groups()))
        return InputRecord(
            value=self._bytes_or_null(found["v"]),
            key=self._bytes_or_null(found["k"]) if "k" in found else None,
            partition=int(found["p"]) if "p" in found else None,
            timestamp_ms=int(found["T"]) if "T" in found else None,
        )

    def _bytes_or_null(self, data: bytes) -> bytes | None:
        return None if self.null_empty and not data else data


# ---------------------------------------------------------------------------------------
# consume: rendering records


def headers_text(headers: list[Header]) -> bytes:
    """k=v,k2=v2 (a header with a null value prints as its name alone)."""
    return b",".join(
        name.encode() if value is None else name.encode() + b"=" + value
        for name, value in headers)


def _length(data: bytes | None) -> bytes:
    return b"-1" if data is None else str(len(data)).encode()


def _field_bytes(name: str, record: ConsumedRecord) -> bytes:
    if name == "k":
        return record.key or b""
    if name == "v":
        return record.value or b""
    if name == "h":
        return headers_text(record.headers)
    if name == "K":
        return _length(record.key)
    if name == "S":
        return _length(record.value)
    numbers = {"p": record.partition, "o": record.offset,
               "T": -1 if record.timestamp_ms is None else record.timestamp_ms}
    if name in numbers:
        return str(numbers[name]).encode()
    return record.topic.encode()


class TemplateRenderer:
    """Renders a record with a %-format; a newline is added unless the format ends with one."""

    def __init__(self, text: str) -> None:
        parts = parse_format(text, OUTPUT_FIELDS)
        if not parts or not (isinstance(parts[-1], str) and parts[-1].endswith("\n")):
            parts.append("\n")
        self.parts = [part.encode() if isinstance(part, str) else part for part in parts]

    def render(self, record: ConsumedRecord) -> bytes:
        return b"".join(
            part if isinstance(part, bytes) else _field_bytes(part[0], record) for part in self.parts)


class TextRenderer:
    """The value, optionally preceded by the key and then the headers (the key first, as
    kcat -K prints it), tab-separated, one per line. A null key or value prints as nothing
    (use --format json to tell null from empty)."""

    def __init__(self, print_key: bool = False, print_headers: bool = False) -> None:
        self.print_key = print_key
        self.print_headers = print_headers

    def render(self, record: ConsumedRecord) -> bytes:
        columns = []
        if self.print_key:
            columns.append(record.key or b"")
        if self.print_headers:
            columns.append(headers_text(record.headers))
        columns.append(record.value or b"")
        return b"\t".join(columns) + b"\n"


def _json_data(data: bytes | None) -> tuple[str | None, str | None]:
    """(text, encoding): UTF-8 text as is, anything else base64 with encoding 'base64'."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


class JsonRenderer:
    """One JSON object per line; keys/values that are not UTF-8 are base64 with a marker."""

    def render(self, record: ConsumedRecord) -> bytes:
        document: dict[str, object] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp_ms,
            "timestamp_type": TIMESTAMP_TYPE_NAMES.get(record.timestamp_type),
        }
        for name, data in (("key", record.key), ("value", record.value)):
            text, encoding = _json_data(data)
            document[name] = text
            if encoding:
                document[f"{name}_encoding"] = encoding
        document["headers"] = [self._header(name, value) for name, value in record.headers]
        return json.dumps(document, ensure_ascii=False).encode() + b"\n"

    @staticmethod
    def _header(name: str, value: bytes | None) -> dict[str, str | None]:
        text, encoding = _json_data(value)
        header: dict[str, str | None] = {"key": name, "value": text}
        if encoding:
            header["value_encoding"] = encoding
        return header


def renderer_for(format_text: str, print_key: bool = False, print_headers: bool = False):
    """`text`, `json`, or a %-template."""
    if format_text == "text":
        return TextRenderer(print_key, print_headers)
    if format_text == "json":
        return JsonRenderer()
    if "%" not in format_text:
        raise FormatError(f"unknown format {format_text!r}: expected text, json or a template like '%k\\t%v'")
    return TemplateRenderer(format_text)
