"""Partition and topic manifests: the cold tier's source of truth.

A partition manifest lists the partition's remote segments in offset order. It is one
JSON object (format in docs/tiered-storage.md) replaced atomically with a conditional put:
If-None-Match: * when creating, If-Match: <etag of the version we read> when updating.
A writer that loses the race (another node, or our own retry whose first attempt did land)
gets PreconditionFailed, re-reads and decides again; nothing is ever half-written.

Every manifest is checked before upload and after download (offsets ascending, keys
present, known format version); a future Shoal must keep reading format_version 1.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, replace

from broker import limits
from broker.invariant import invariant
from tiered.layout import partition_manifest_key, topic_manifest_key
from tiered.object_store import ObjectNotFound, ObjectStore

MANIFEST_FORMAT_VERSION = 1


class ManifestFormatError(Exception):
    """A manifest in the bucket is not one this Shoal can read."""


@dataclass(frozen=True)
class RemoteSegment:
    base_offset: int
    last_offset: int
    base_timestamp_ms: int
    max_timestamp_ms: int
    size_bytes: int  # bytes of record batches (uncompressed segment file size)
    leader_epoch: int
    data_key: str
    index_key: str
    timeindex_key: str
    compression: str = "none"  # none | zstd | lz4
    stored_bytes: int = 0  # size of the data object in the bucket
    frames_key: str | None = None  # compressed only: table of frame positions
    frame_bytes: int = 0  # compressed only: uncompressed bytes per frame
    uploaded_ms: int = 0

    def object_keys(self) -> list[str]:
        return [key for key in (self.data_key, self.index_key, self.timeindex_key, self.frames_key) if key]


@dataclass
class PartitionManifest:
    topic: str
    partition: int
    revision: int = 0  # +1 on every successful write
    start_offset: int = 0  # first offset readable from the cold tier
    last_offset: int = -1  # last offset ever archived (kept when retention empties the list)
    segments: list[RemoteSegment] = field(default_factory=list)
    # Objects already dropped from `segments` whose delete may not have happened yet.
    pending_deletes: list[str] = field(default_factory=list)
    format_version: int = MANIFEST_FORMAT_VERSION

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self.segments)

    @property
    def stored_bytes(self) -> int:
        return sum(segment.stored_bytes for segment in self.segments)

    def referenced_keys(self) -> set[str]:
        keys = {key for segment in self.segments for key in segment.object_keys()}
        return keys | set(self.pending_deletes)

    def segment_for(self, offset: int) -> RemoteSegment | None:
        """The segment holding `offset`, or the first one after it (a gap); None past the end."""
        if offset < self.start_offset:
            return None
        at = bisect_right(self.segments, offset, key=_base_offset) - 1
        if at >= 0 and self.segments[at].last_offset >= offset:
            return self.segments[at]
        return self.segments[at + 1] if at + 1 < len(self.segments) else None

    def segment_after(self, segment: RemoteSegment) -> RemoteSegment | None:
        at = bisect_right(self.segments, segment.base_offset, key=_base_offset)
        return self.segments[at] if at < len(self.segments) else None

    def with_appended(self, added: list[RemoteSegment]) -> PartitionManifest:
        """Add uploaded segments; any wholly below start_offset (records deleted while it
        was uploading) goes straight to pending_deletes."""
        invariant(added, "appending no segments")
        last = max([self.last_offset] + [segment.last_offset for segment in added])
        below_start = [segment for segment in added if segment.last_offset < self.start_offset]
        segments = self.segments + [segment for segment in added if segment.last_offset >= self.start_offset]
        start = self.start_offset
        if not self.segments and segments:
            start = max(self.start_offset, segments[0].base_offset)
        pending = self.pending_deletes + [key for segment in below_start for key in segment.object_keys()]
        return replace(self, segments=segments, last_offset=last, start_offset=start, pending_deletes=pending)

    def with_removed_prefix(self, count: int) -> PartitionManifest:
        """Drop the `count` oldest segments (retention); their keys become pending deletes."""
        removed, kept = self.segments[:count], self.segments[count:]
        start = kept[0].base_offset if kept else self.last_offset + 1
        pending = self.pending_deletes + [key for segment in removed for key in segment.object_keys()]
        return replace(self, segments=kept, start_offset=max(self.start_offset, start),
                       pending_deletes=pending)

    def with_start_offset(self, offset: int) -> PartitionManifest:
        """Kafka's DeleteRecords: nothing below `offset` is readable any more. Segments
        wholly below it become pending deletes; one straddling it stays (reads below the
        start are refused). Never moves the start backwards. Offsets below it count as
        archived (last_offset >= offset - 1): they are gone in both tiers, so a recovery
        from the bucket continues after them and never hands them out again."""
        if offset <= self.start_offset:
            return self
        expired = 0
        while expired < len(self.segments) and self.segments[expired].last_offset < offset:
            expired += 1
        trimmed = self.with_removed_prefix(expired)
        return replace(trimmed, start_offset=max(offset, trimmed.start_offset),
                       last_offset=max(trimmed.last_offset, offset - 1))

    def validate(self) -> None:
        if self.format_version != MANIFEST_FORMAT_VERSION:
            raise ManifestFormatError(f"manifest format_version {self.format_version} is not "
                                      f"{MANIFEST_FORMAT_VERSION}")
        invariant(len(self.segments) <= limits.manifest_segments_max, "manifest too large",
                  self.topic, self.partition, len(self.segments))
        previous_base = -1
        for segment in self.segments:
            invariant(segment.base_offset > previous_base, "manifest segments not ascending",
                      self.topic, self.partition, segment.base_offset, previous_base)
            invariant(segment.last_offset >= segment.base_offset, "segment last < base", segment)
            invariant(segment.last_offset <= self.last_offset, "segment past manifest end", segment)
            invariant(segment.data_key and segment.index_key and segment.timeindex_key,
                      "segment without keys", segment)
            previous_base = segment.base_offset
        if self.segments:
            invariant(self.start_offset <= self.segments[0].last_offset, "start past first segment",
                      self.start_offset, self.segments[0])

    def to_json(self) -> bytes:
        document = asdict(self)
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PartitionManifest:
        try:
            document = json.loads(data)
            version = document.get("format_version")
            if version != MANIFEST_FORMAT_VERSION:
                raise ManifestFormatError(f"unknown manifest format_version {version!r}")
            segments = [RemoteSegment(**entry) for entry in document.pop("segments")]
            manifest = cls(segments=segments, **document)
        except (ValueError, TypeError, KeyError) as error:
            raise ManifestFormatError(f"unreadable manifest: {error}") from error
        manifest.validate()
        return manifest


@dataclass(frozen=True)
class TopicManifest:
    topic: str
    partition_count: int
    format_version: int = MANIFEST_FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TopicManifest:
        try:
            document = json.loads(data)
            if document.get("format_version") != MANIFEST_FORMAT_VERSION:
                raise ManifestFormatError(f"unknown topic manifest format {document.get('format_version')!r}")
            return cls(**document)
        except (ValueError, TypeError) as error:
            raise ManifestFormatError(f"unreadable topic manifest: {error}") from error


def _base_offset(segment: RemoteSegment) -> int:
    return segment.base_offset


class ManifestStore:
    """Reads and conditionally writes manifests through an ObjectStore."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def load(self, topic: str, partition: int) -> tuple[PartitionManifest, str | None]:
        """(manifest, etag); a new empty manifest and None when the partition has none yet."""
        try:
            data, etag = await self.store.get_with_etag(partition_manifest_key(topic, partition))
        except ObjectNotFound:
            return PartitionManifest(topic=topic, partition=partition), None
        manifest = PartitionManifest.from_json(data)
        invariant(manifest.topic == topic and manifest.partition == partition,
                  "manifest names another partition", manifest.topic, manifest.partition)
        return manifest, etag

    async def save(self, manifest: PartitionManifest, etag: str | None) -> tuple[PartitionManifest, str]:
        """Write revision+1 iff the bucket still holds the version read with `etag`.
        Raises PreconditionFailed when someone else wrote in between."""
        written = replace(manifest, revision=manifest.revision + 1)
        written.validate()
        key = partition_manifest_key(manifest.topic, manifest.partition)
        data = written.to_json()
        if etag is None:
            new_etag = await self.store.put_if_absent(key, data)
        else:
            new_etag = await self.store.put_if_match(key, data, etag)
        return written, new_etag

    async def load_topic(self, topic: str) -> TopicManifest | None:
        try:
            return TopicManifest.from_json(await self.store.get(topic_manifest_key(topic)))
        except ObjectNotFound:
            return None

    async def save_topic(self, manifest: TopicManifest) -> None:
        await self.store.put(topic_manifest_key(manifest.topic), manifest.to_json())
