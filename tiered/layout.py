"""Object key layout in the bucket: the one place keys are made (docs/tiered-storage.md).

    <h8>/meta/<topic>/topic_manifest.json                      h8 = hash("<topic>")
    <h8>/meta/<topic>/<partition>/manifest.json                h8 = hash("<topic>/<partition>")
    <h8>/<topic>/<partition>/<base:020d>-<last:020d>-e<epoch>.log[.zst|.lz4]
    <same stem>.index  <same stem>.timeindex  [<same stem>.frames]
                                                               h8 = hash("<topic>/<partition>/<base>")

h8 is the first 8 hex digits of SHA-256 of the quoted string. The leading hash spreads
keys over S3's internal partitions (as Redpanda does); everything after it is readable,
so an operator who knows topic, partition and offsets can name any object by hand. A
segment's key depends only on what it holds (topic, partition, offsets, leader epoch and
compression), so uploading the same segment twice writes the same key: a retry after a
crash overwrites, it never duplicates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

COMPRESSION_SUFFIXES = {"none": "", "zstd": ".zst", "lz4": ".lz4"}
_SEGMENT_KEY = re.compile(
    r"^(?P<hash>[0-9a-f]{8})/(?P<topic>[A-Za-z0-9._-]+)/(?P<partition>\d+)/"
    r"(?P<base>\d{20})-(?P<last>\d{20})-e(?P<epoch>-?\d+)\.(?P<kind>log(\.zst|\.lz4)?|index|timeindex|frames)$")


def key_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def topic_manifest_key(topic: str) -> str:
    return f"{key_hash(topic)}/meta/{topic}/topic_manifest.json"


def partition_manifest_key(topic: str, partition: int) -> str:
    return f"{key_hash(f'{topic}/{partition}')}/meta/{topic}/{partition}/manifest.json"


@dataclass(frozen=True)
class SegmentKeys:
    data: str
    index: str
    timeindex: str
    frames: str | None  # frame table of a compressed data object; None when uncompressed

    def all(self) -> list[str]:
        return [key for key in (self.data, self.index, self.timeindex, self.frames) if key]


def segment_keys(topic: str, partition: int, base_offset: int, last_offset: int,
                 leader_epoch: int, compression: str) -> SegmentKeys:
    stem = (f"{key_hash(f'{topic}/{partition}/{base_offset}')}/{topic}/{partition}/"
            f"{base_offset:020d}-{last_offset:020d}-e{leader_epoch}")
    suffix = COMPRESSION_SUFFIXES[compression]
    return SegmentKeys(data=f"{stem}.log{suffix}", index=f"{stem}.index",
                       timeindex=f"{stem}.timeindex",
                       frames=f"{stem}.frames" if suffix else None)


@dataclass(frozen=True)
class ParsedSegmentKey:
    topic: str
    partition: int
    base_offset: int
    last_offset: int


def parse_segment_key(key: str) -> ParsedSegmentKey | None:
    """The partition and offsets a segment-family key names; None for any other key."""
    match = _SEGMENT_KEY.match(key)
    if not match:
        return None
    return ParsedSegmentKey(match["topic"], int(match["partition"]), int(match["base"]),
                            int(match["last"]))
