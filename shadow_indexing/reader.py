"""RemoteReader: serves reads below the local log start from the bucket.

read(topic, partition, offset, max_bytes) returns whole record batches starting with the
batch that holds `offset`, like the local log's read (at least one batch, then as many as
fit in max_bytes, continuing into following remote segments). The way there:

  manifest -> remote segment holding the offset -> its offset index (one GET, cached)
  -> floor position -> walk batch headers to the batch -> whole batches up to max_bytes

Bytes come in chunks (cloud_storage.chunk_size_bytes of the segment, or one compression
frame of a compressed segment) through the on-disk LRU ChunkCache; missing consecutive
chunks are fetched with ONE ranged GET. A reader that continues where its previous read
ended is sequential: the next chunks are prefetched in the background (bounded). Every
returned batch's CRC is checked.

The readable start is the manifest's start_offset raised to `start_floor(topic, partition)`
(DeleteRecords not yet, or never, written to the manifest): nothing below it is served,
listed or found by timestamp. Every public call gives up after
limits.remote_read_deadline_ms with RemoteStorageUnavailable, so a frozen bucket costs a
client one retriable error, never a request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable

from broker import limits
from broker.ids import Offset
from broker.invariant import invariant
from broker.records import check_magic, iter_records, read_header
from broker.storage.api import KafkaStorageError, OffsetOutOfRange
from shadow_indexing.cache import ChunkCache
from tiered.compression import decode_frame_table, decompress_frame
from tiered.manifest import PartitionManifest, RemoteSegment
from tiered.object_store import ObjectStore, ObjectStoreError
from tiered.segment_format import (
    BATCH_HEADER_BYTES, OffsetIndex, TimeIndex, batch_size_at, checked_header,
)

log = logging.getLogger("shoal.shadow_indexing")

ManifestSource = Callable[[str, int], Awaitable[PartitionManifest | None]]
StartFloor = Callable[[str, int], int]  # (topic, partition) -> no offset below it is readable
_PARSED_INDEXES_MAX = 512  # parsed offset/time indexes and frame tables kept in memory


class RemoteStorageUnavailable(KafkaStorageError):
    """The bucket could not be read (down, frozen, refusing): Kafka's KAFKA_STORAGE_ERROR
    for this partition only; clients retry. Nothing else about the partition is affected."""


@dataclass
class ReaderMetrics:
    reads: int = 0
    bytes_read: int = 0
    chunks_fetched: int = 0
    range_requests: int = 0
    prefetches: int = 0


class _SegmentBytes:
    """Chunks of one remote segment loaded during one read call."""

    def __init__(self, reader: "RemoteReader", segment: RemoteSegment) -> None:
        self.reader = reader
        self.segment = segment
        self.chunk_bytes = reader.chunk_bytes_of(segment)
        self.chunks: dict[int, bytes] = {}

    async def load(self, start: int, length: int) -> None:
        first = start // self.chunk_bytes
        last = (start + length - 1) // self.chunk_bytes
        wanted = [index for index in range(first, last + 1) if index not in self.chunks]
        if wanted:
            self.chunks.update(await self.reader.chunks(self.segment, wanted[0], wanted[-1]))

    async def slice(self, start: int, length: int) -> bytes:
        end = min(start + length, self.segment.size_bytes)
        if end <= start:
            return b""
        await self.load(start, end - start)
        pieces = []
        position = start
        while position < end:
            index, within = divmod(position, self.chunk_bytes)
            piece = self.chunks[index][within: within + (end - position)]
            invariant(piece, "remote chunk shorter than expected", self.segment.data_key, index)
            pieces.append(piece)
            position += len(piece)
        return b"".join(pieces)


class RemoteReader:
    def __init__(self, store: ObjectStore, manifests: ManifestSource, cache: ChunkCache,
                 chunk_size_bytes: int = limits.remote_chunk_bytes_default,
                 prefetch_chunks: int = limits.remote_prefetch_chunks_default,
                 start_floor: StartFloor | None = None) -> None:
        self.store = store
        self._manifests = manifests
        self._start_floor = start_floor or _no_floor
        self.cache = cache
        self.chunk_size_bytes = chunk_size_bytes
        self.prefetch_chunks = prefetch_chunks
        self.metrics = ReaderMetrics()
        self._parsed: OrderedDict[str, object] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self._last_read_end: dict[tuple[str, int], tuple[int, int]] = {}  # -> (segment base, position)
        self._prefetch_tasks: set[asyncio.Task] = set()
        self._prefetch_slots = asyncio.Semaphore(limits.remote_prefetch_inflight_max)

    # --- public API ---------------------------------------------------------------------

    async def read(self, topic: str, partition: int, offset: Offset | int, max_bytes: int) -> bytes:
        """Whole batches from the batch holding `offset`; b"" past the remote end.
        Raises OffsetOutOfRange below the remote start offset, RemoteStorageUnavailable
        when the bucket cannot be read or does not answer in time."""
        async with _bucket_answer(f"{topic}/{partition} offset {offset}"):
            return await self._read(topic, partition, offset, max_bytes)

    async def _read(self, topic: str, partition: int, offset: Offset | int, max_bytes: int) -> bytes:
        manifest = await self._manifest_or_empty(topic, partition)
        readable_start = self._readable_start(manifest)
        if offset < readable_start:
            raise OffsetOutOfRange(f"{topic}/{partition}: offset {offset} is below the remote "
                                   f"start offset {readable_start}")
        segment = manifest.segment_for(int(offset))
        output = bytearray()
        wanted_offset = int(offset)
        for _ in range(limits.remote_read_segments_max):
            if segment is None or len(output) >= max_bytes:
                break
            next_segment = manifest.segment_after(segment)
            data, reached_end = await self._read_segment(
                topic, partition, segment, wanted_offset, max_bytes - len(output),
                must_return_one=not output, next_segment=next_segment)
            output += data
            if not reached_end:
                break
            segment = next_segment
            wanted_offset = segment.base_offset if segment else wanted_offset
        self.metrics.reads += 1
        self.metrics.bytes_read += len(output)
        return bytes(output)

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp_ms: int,
                                   below_offset: int | None = None) -> tuple[Offset, int] | None:
        """First (offset, timestamp) in the cold tier with timestamp >= timestamp_ms, at or
        above the readable start. With `below_offset` (the local log start) only segments
        starting below it are searched: the rest is local too, and the bucket is not asked."""
        async with _bucket_answer(f"{topic}/{partition} timestamp {timestamp_ms}"):
            manifest = await self._manifest_or_empty(topic, partition)
            readable_start = self._readable_start(manifest)
            for segment in manifest.segments:
                if below_offset is not None and segment.base_offset >= below_offset:
                    break
                if segment.max_timestamp_ms >= timestamp_ms and segment.last_offset >= readable_start:
                    found = await self._find_timestamp_in(segment, timestamp_ms, readable_start)
                    if found is not None:
                        return found
            return None

    async def start_offset(self, topic: str, partition: int) -> Offset | None:
        """First offset readable from the cold tier; None when it holds nothing readable."""
        async with _bucket_answer(f"{topic}/{partition}"):
            manifest = await self._manifests(topic, partition)
        if manifest is None or not manifest.segments:
            return None
        readable_start = self._readable_start(manifest)
        if readable_start > manifest.segments[-1].last_offset:
            return None
        return Offset(readable_start)

    def _readable_start(self, manifest: PartitionManifest) -> int:
        return max(manifest.start_offset, int(self._start_floor(manifest.topic, manifest.partition)))

    async def close(self) -> None:
        for task in list(self._prefetch_tasks):
            task.cancel()
        await asyncio.gather(*self._prefetch_tasks, return_exceptions=True)

    # --- reading one segment -------------------------------------------------------------

    async def _read_segment(self, topic: str, partition: int, segment: RemoteSegment, offset: int,
                            budget: int, must_return_one: bool,
                            next_segment: RemoteSegment | None) -> tuple[bytes, bool]:
        """(whole batches of `segment` from the one holding `offset`, reached segment end)."""
        source = _SegmentBytes(self, segment)
        start = await self._position_of(source, offset)
        if start < segment.size_bytes:
            await source.load(start, min(max(budget, 1), segment.size_bytes - start))  # one GET for the run
        end = start
        while end < segment.size_bytes:
            size = batch_size_at(await source.slice(end, BATCH_HEADER_BYTES), 0)
            if end + size - start > budget and (end > start or not must_return_one):
                break
            end += size
        data = await source.slice(start, end - start)
        self._check_batches(data, segment)
        self._note_read(topic, partition, segment, start, end, next_segment)
        return data, end >= segment.size_bytes

    async def _position_of(self, source: _SegmentBytes, offset: int) -> int:
        """Position of the batch holding `offset` (or the first batch after it)."""
        segment = source.segment
        index = await self._offset_index(segment)
        position = index.floor_position(offset)
        while position < segment.size_bytes:
            header_bytes = await source.slice(position, BATCH_HEADER_BYTES)
            header = checked_header_prefix(header_bytes)
            if header[1] >= offset:
                return position
            position += header[2]
        return position

    @staticmethod
    def _check_batches(data: bytes, segment: RemoteSegment) -> None:
        position = 0
        while position < len(data):
            header = checked_header(data, position)
            invariant(segment.base_offset <= header.base_offset and header.last_offset <= segment.last_offset,
                      "remote batch outside its segment", segment.data_key, header.base_offset)
            position += header.size

    async def _find_timestamp_in(self, segment: RemoteSegment, timestamp_ms: int,
                                 min_offset: int) -> tuple[Offset, int] | None:
        time_index = await self._time_index(segment)
        source = _SegmentBytes(self, segment)
        position = await self._position_of(source, max(time_index.floor_offset_before(timestamp_ms), min_offset))
        while position < segment.size_bytes:
            size = batch_size_at(await source.slice(position, BATCH_HEADER_BYTES), 0)
            batch = await source.slice(position, size)
            header = checked_header(batch, 0)
            if header.max_timestamp >= timestamp_ms:
                for record in iter_records(batch):
                    if record.timestamp >= timestamp_ms and record.offset >= min_offset:
                        return Offset(record.offset), record.timestamp
            position += size
        return None

    # --- sequential detection and prefetch -------------------------------------------------

    def _note_read(self, topic: str, partition: int, segment: RemoteSegment, start: int, end: int,
                   next_segment: RemoteSegment | None) -> None:
        key = (topic, partition)
        previous = self._last_read_end.get(key)
        self._last_read_end[key] = (segment.base_offset, end)
        sequential = previous == (segment.base_offset, start) or start == 0
        if not sequential or self.prefetch_chunks <= 0:
            return
        if end < segment.size_bytes:
            chunk_bytes = self.chunk_bytes_of(segment)
            first = -(-end // chunk_bytes)  # the first chunk not already needed by this read
            last = min(first + self.prefetch_chunks - 1, (segment.size_bytes - 1) // chunk_bytes)
            if first <= last:
                self._start_prefetch(segment, first, last)
        elif next_segment is not None:
            last = min(self.prefetch_chunks - 1, (next_segment.size_bytes - 1) // self.chunk_bytes_of(next_segment))
            self._start_prefetch(next_segment, 0, last)

    def _start_prefetch(self, segment: RemoteSegment, first: int, last: int) -> None:
        if self._prefetch_slots.locked():
            return  # enough read-ahead in flight already; never queue unboundedly
        names = [self._chunk_name(segment, index) for index in range(first, last + 1)]
        if all(name in self.cache or name in self._inflight for name in names):
            return  # nothing to read ahead
        task = asyncio.get_running_loop().create_task(self._prefetch(segment, first, last))
        self._prefetch_tasks.add(task)
        task.add_done_callback(self._prefetch_tasks.discard)

    async def _prefetch(self, segment: RemoteSegment, first: int, last: int) -> None:
        async with self._prefetch_slots:
            try:
                await self.chunks(segment, first, last)
                self.metrics.prefetches += 1
            except ObjectStoreError as error:
                log.info("prefetch of %s failed: %s", segment.data_key, error)

    # --- chunks ---------------------------------------------------------------------

    def chunk_bytes_of(self, segment: RemoteSegment) -> int:
        return segment.frame_bytes if segment.frames_key else self.chunk_size_bytes

    def _chunk_name(self, segment: RemoteSegment, index: int) -> str:
        return f"{segment.data_key}#{self.chunk_bytes_of(segment)}#{index}"

    async def chunks(self, segment: RemoteSegment, first: int, last: int) -> dict[int, bytes]:
        """Chunks first..last of a segment: from the cache, else from a fetch already in
        flight for that chunk (a prefetch), else with one ranged GET per missing run."""
        found: dict[int, bytes] = {}
        in_flight: dict[int, asyncio.Future] = {}
        missing: list[int] = []
        for index in range(first, last + 1):
            name = self._chunk_name(segment, index)
            if name in self._inflight:
                in_flight[index] = self._inflight[name]
                continue
            data = await self.cache.get(name)
            if data is not None:
                found[index] = data
            elif name in self._inflight:  # started while we looked in the cache
                in_flight[index] = self._inflight[name]
            else:
                missing.append(index)
        for run in _consecutive_runs(missing):
            found.update(await self._fetch_registered(segment, run[0], run[-1]))
        for index, future in in_flight.items():
            found[index] = await asyncio.shield(future)
        return found

    async def _fetch_registered(self, segment: RemoteSegment, first: int, last: int) -> dict[int, bytes]:
        """Fetch a run of chunks, publishing one future per chunk so concurrent readers of
        any of them wait for this GET instead of issuing their own."""
        loop = asyncio.get_running_loop()
        futures = {index: loop.create_future() for index in range(first, last + 1)}
        names = {index: self._chunk_name(segment, index) for index in futures}
        for index, future in futures.items():
            self._inflight[names[index]] = future
        try:
            result = await self._fetch_run(segment, first, last)
            for index, future in futures.items():
                future.set_result(result[index])
            return result
        except BaseException as error:
            # Readers sharing this GET see a store error even when it was our deadline or
            # cancellation that stopped it: their own task was not cancelled.
            shared = error if isinstance(error, Exception) else ObjectStoreError(
                f"ranged GET of {segment.data_key} abandoned by the reader that issued it")
            for future in futures.values():
                future.set_exception(shared)
                future.exception()  # retrieved: an unshared failure is not "never retrieved"
            raise
        finally:
            for name in names.values():
                self._inflight.pop(name, None)

    async def _fetch_run(self, segment: RemoteSegment, first: int, last: int) -> dict[int, bytes]:
        chunk_bytes = self.chunk_bytes_of(segment)
        self.metrics.range_requests += 1
        if segment.frames_key:
            positions = await self._frame_table(segment)
            blob = await self.store.get_range(segment.data_key, positions[first],
                                              positions[last + 1] - positions[first])
            chunks = {}
            for index in range(first, last + 1):
                compressed = blob[positions[index] - positions[first]: positions[index + 1] - positions[first]]
                expected = min(chunk_bytes, segment.size_bytes - index * chunk_bytes)
                chunks[index] = decompress_frame(segment.compression, compressed, expected)
        else:
            start = first * chunk_bytes
            length = min((last + 1) * chunk_bytes, segment.size_bytes) - start
            blob = await self.store.get_range(segment.data_key, start, length)
            invariant(len(blob) == length, "short ranged read", segment.data_key, len(blob), length)
            chunks = {index: blob[(index - first) * chunk_bytes: (index - first + 1) * chunk_bytes]
                      for index in range(first, last + 1)}
        for index, data in chunks.items():
            await self.cache.put(self._chunk_name(segment, index), data)
        self.metrics.chunks_fetched += len(chunks)
        return chunks

    # --- small whole objects: indexes and frame tables --------------------------------

    async def _whole_object(self, key: str) -> bytes:
        name = f"{key}#whole"
        data = await self.cache.get(name)
        if data is None:
            data = await self.store.get(key)
            await self.cache.put(name, data)
        return data

    async def _parsed_object(self, key: str, parse: Callable[[bytes], object]):
        if key in self._parsed:
            self._parsed.move_to_end(key)
            return self._parsed[key]
        parsed = parse(await self._whole_object(key))
        self._parsed[key] = parsed
        while len(self._parsed) > _PARSED_INDEXES_MAX:
            self._parsed.popitem(last=False)
        return parsed

    async def _offset_index(self, segment: RemoteSegment) -> OffsetIndex:
        return await self._parsed_object(segment.index_key,
                                         lambda blob: OffsetIndex(segment.base_offset, blob))

    async def _time_index(self, segment: RemoteSegment) -> TimeIndex:
        return await self._parsed_object(segment.timeindex_key,
                                         lambda blob: TimeIndex(segment.base_offset, blob))

    async def _frame_table(self, segment: RemoteSegment) -> list[int]:
        positions = await self._parsed_object(segment.frames_key, decode_frame_table)
        invariant(positions[-1] == segment.stored_bytes, "frame table does not match object size",
                  segment.frames_key, positions[-1], segment.stored_bytes)
        return positions

    async def _manifest_or_empty(self, topic: str, partition: int) -> PartitionManifest:
        manifest = await self._manifests(topic, partition)
        if manifest is None or not manifest.segments:
            start = manifest.start_offset if manifest else 0
            return manifest or PartitionManifest(topic=topic, partition=partition, start_offset=start)
        return manifest


def _no_floor(topic: str, partition: int) -> int:
    return 0


@contextlib.asynccontextmanager
async def _bucket_answer(what: str):
    """Object-store failures and a missed limits.remote_read_deadline_ms become
    RemoteStorageUnavailable (Kafka's KAFKA_STORAGE_ERROR for one partition)."""
    try:
        async with asyncio.timeout(limits.remote_read_deadline_ms / 1000):
            yield
    except ObjectStoreError as error:
        raise RemoteStorageUnavailable(f"{what}: {error}") from error
    except TimeoutError as error:
        raise RemoteStorageUnavailable(f"{what}: no answer from the bucket within "
                                       f"{limits.remote_read_deadline_ms} ms") from error


def _consecutive_runs(indexes: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def checked_header_prefix(header_bytes: bytes) -> tuple[int, int, int]:
    """(base_offset, last_offset, size) of the batch whose header starts header_bytes."""
    invariant(len(header_bytes) >= BATCH_HEADER_BYTES, "truncated remote batch header", len(header_bytes))
    check_magic(header_bytes)
    header = read_header(header_bytes)
    return header.base_offset, header.last_offset, header.size
