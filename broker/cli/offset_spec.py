"""Where to start reading (`shoal consume -o`) and where to move a group
(`shoal group reset-offsets`): parsing the operator's words and turning them into an
offset once a partition's watermarks (and the offset at a timestamp) are known.
Pure functions: the commands fetch watermarks and timestamps, these decide.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass

EARLIEST_WORDS = ("earliest", "beginning", "start", "oldest")
LATEST_WORDS = ("latest", "end", "newest")


@dataclass(frozen=True)
class StartOffset:
    """kind is one of: earliest, latest, offset, from_end, timestamp."""
    kind: str
    value: int = 0

    def needs_watermarks(self) -> bool:
        return self.kind in ("offset", "from_end")


@dataclass(frozen=True)
class PartitionPosition:
    """What is known about one partition when choosing an offset."""
    topic: str
    partition: int
    low: int
    high: int
    committed: int | None = None
    offset_at_timestamp: int | None = None  # first offset with timestamp >= the one asked; None: none


def parse_start_offset(text: str) -> StartOffset:
    """earliest|latest|N|-N|@TIMESTAMP_MS (argparse type for -o)."""
    word = text.strip().lower()
    if word in EARLIEST_WORDS:
        return StartOffset("earliest")
    if word in LATEST_WORDS:
        return StartOffset("latest")
    try:
        if word.startswith("@"):
            return StartOffset("timestamp", _non_negative(int(word[1:])))
        number = int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected earliest, latest, an offset N, -N (N before the end) or @TIMESTAMP_MS, got {text!r}"
        ) from None
    if number < 0:
        return StartOffset("from_end", -number)
    return StartOffset("offset", number)


def _non_negative(number: int) -> int:
    if number < 0:
        raise ValueError(number)
    return number


def parse_datetime_ms(text: str) -> int:
    """Milliseconds since the epoch from ISO 8601 ('2024-05-01T12:00:00Z',
    '2024-05-01 12:00:00.250+02:00', '2024-05-01'); a time without a zone is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date-time like 2024-05-01T12:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def clamp(offset: int, position: PartitionPosition) -> int:
    return max(position.low, min(position.high, offset))


def start_offset(spec: StartOffset, position: PartitionPosition) -> int:
    """The concrete offset `shoal consume` assigns for this partition."""
    if spec.kind == "earliest":
        return position.low
    if spec.kind == "latest":
        return position.high
    if spec.kind == "offset":
        return clamp(spec.value, position)
    if spec.kind == "from_end":
        return max(position.low, position.high - spec.value)
    return timestamp_target(position)


def timestamp_target(position: PartitionPosition) -> int:
    """No message at or after the timestamp means: start at the end."""
    if position.offset_at_timestamp is None or position.offset_at_timestamp < 0:
        return position.high
    return clamp(position.offset_at_timestamp, position)


# ---------------------------------------------------------------------------------------
# group reset-offsets


@dataclass(frozen=True)
class ResetStrategy:
    """kind is one of: to-earliest, to-latest, to-offset, to-datetime, shift-by."""
    kind: str
    value: int = 0

    def describe(self) -> str:
        return self.kind if self.kind in ("to-earliest", "to-latest") else f"{self.kind} {self.value}"


class ResetError(ValueError):
    """A partition the strategy cannot be applied to; str() says which and why."""


def reset_target(strategy: ResetStrategy, position: PartitionPosition) -> int:
    if strategy.kind == "to-earliest":
        return position.low
    if strategy.kind == "to-latest":
        return position.high
    if strategy.kind == "to-offset":
        return clamp(strategy.value, position)
    if strategy.kind == "to-datetime":
        return timestamp_target(position)
    if position.committed is None:
        raise ResetError(
            f"cannot shift {position.topic}[{position.partition}]: the group has no committed offset there")
    return clamp(position.committed + strategy.value, position)
