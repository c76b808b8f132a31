"""Idempotent producers: producer id allocation and per-partition sequence checks.

What a Kafka broker guarantees an idempotent producer, kept here:
- InitProducerId hands out producer ids that are never reused, even across kill -9: ids
  come from blocks whose end is persisted (write, fsync, rename, fsync dir) before the
  first id of the block is handed out.
- Per partition and producer: the epoch and the last `producer_inflight_batches_max` (5)
  batches (first/last sequence, offsets). A retried batch (same epoch, same sequences as
  a remembered one) gets the original offsets back and is not appended again. A gap or a
  replay of an older sequence gets OUT_OF_ORDER_SEQUENCE_NUMBER (45). An epoch lower than
  the one seen gets INVALID_PRODUCER_EPOCH (47), as Kafka >= 2.7 sends on Produce for all
  versions (KIP-588). A new epoch must start at sequence 0.
- A producer the partition does not know (new, expired, or its batches deleted by
  retention) is accepted at any sequence, as Kafka does since KIP-360: the client then
  carries on without resetting its sequences.
- On start the state is rebuilt from the stored batch headers (iter_batch_headers): the
  log is the only source of truth, nothing else is persisted. Idle time counts from the
  broker's clock (append time, or the restart), never from producers' batch timestamps.

Sans-io: no asyncio here except the per-partition lock the produce path holds from the
sequence check to recording the appended batch, so checks and appends stay in order.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from kio.schema.errors import ErrorCode

from broker import limits
from broker.ids import ProducerId
from broker.invariant import invariant

SEQUENCE_MODULUS = 2**31  # sequences are non-negative int32 and wrap to 0
NO_PRODUCER_EPOCH = -1


def last_sequence_of(base_sequence: int, record_count: int) -> int:
    return (base_sequence + record_count - 1) % SEQUENCE_MODULUS


def follows(previous_last_sequence: int, next_first_sequence: int) -> bool:
    return next_first_sequence == (previous_last_sequence + 1) % SEQUENCE_MODULUS


@dataclass(frozen=True)
class AppendedBatch:
    """One remembered batch of a producer on a partition."""

    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    log_append_time_ms: int


@dataclass
class ProducerEntry:
    producer_epoch: int
    last_seen_ms: int
    batches: deque[AppendedBatch] = field(
        default_factory=lambda: deque(maxlen=limits.producer_inflight_batches_max))

    def duplicate_of(self, producer_epoch: int, first_sequence: int, last_sequence: int) -> AppendedBatch | None:
        if producer_epoch != self.producer_epoch:
            return None
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None


def copy_entry(entry: ProducerEntry) -> ProducerEntry:
    return ProducerEntry(entry.producer_epoch, entry.last_seen_ms,
                         deque(entry.batches, maxlen=limits.producer_inflight_batches_max))


@dataclass(frozen=True)
class SequenceVerdict:
    """`append`, or `duplicate` (with the original batch), or an error code + message."""

    error: ErrorCode = ErrorCode.none
    message: str | None = None
    duplicate: AppendedBatch | None = None

    @property
    def should_append(self) -> bool:
        return self.error == ErrorCode.none and self.duplicate is None


APPEND = SequenceVerdict()


class PartitionProducers:
    """Producer entries of one partition, least recently active first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = asyncio.Lock()
        self._entries: OrderedDict[int, ProducerEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._entries.get(producer_id)

    def check(self, producer_id: int, producer_epoch: int, base_sequence: int,
              record_count: int) -> SequenceVerdict:
        """What to do with a batch from an idempotent producer (no state change)."""
        entry = self._entries.get(producer_id)
        if entry is None:
            return APPEND  # unknown producer: accepted at any sequence (KIP-360)
        last_sequence = last_sequence_of(base_sequence, record_count)
        duplicate = entry.duplicate_of(producer_epoch, base_sequence, last_sequence)
        if duplicate is not None:
            return SequenceVerdict(duplicate=duplicate)
        if producer_epoch < entry.producer_epoch:
            return SequenceVerdict(
                ErrorCode.invalid_producer_epoch,
                f"producer {producer_id} epoch {producer_epoch} is older than the current "
                f"epoch {entry.producer_epoch} on {self.name}")
        if producer_epoch > entry.producer_epoch:
            if base_sequence != 0:
                return SequenceVerdict(
                    ErrorCode.out_of_order_sequence_number,
                    f"producer {producer_id} new epoch {producer_epoch} must start at sequence 0, "
                    f"got {base_sequence} on {self.name}")
            return APPEND
        if not entry.batches or follows(entry.batches[-1].last_sequence, base_sequence):
            return APPEND
        return SequenceVerdict(
            ErrorCode.out_of_order_sequence_number,
            f"producer {producer_id} epoch {producer_epoch}: expected sequence "
            f"{(entry.batches[-1].last_sequence + 1) % SEQUENCE_MODULUS}, got {base_sequence} on {self.name}")

    def record(self, producer_id: int, producer_epoch: int, base_sequence: int, record_count: int,
               base_offset: int, last_offset: int, log_append_time_ms: int,
               now_ms: int) -> ProducerEntry | None:
        """Remember an appended batch (just before its append, or while rebuilding).
        Returns a copy of the producer's previous entry, for `restore` if the append fails."""
        entry = self._entries.pop(producer_id, None)
        previous = None if entry is None else copy_entry(entry)
        if entry is None or entry.producer_epoch != producer_epoch:
            entry = ProducerEntry(producer_epoch, now_ms)
        entry.last_seen_ms = max(entry.last_seen_ms, now_ms)
        entry.batches.append(AppendedBatch(
            base_sequence, last_sequence_of(base_sequence, record_count), base_offset, last_offset,
            log_append_time_ms))
        self._entries[producer_id] = entry  # most recently active last
        while len(self._entries) > limits.producers_per_partition_max:
            self._entries.popitem(last=False)
        return previous

    def restore(self, producer_id: int, previous: ProducerEntry | None) -> None:
        """Undo `record` after a failed append."""
        self._entries.pop(producer_id, None)
        if previous is not None:
            self._entries[producer_id] = previous

    def expire(self, now_ms: int, expiration_ms: int = limits.producer_state_expiration_ms) -> int:
        expired = [producer_id for producer_id, entry in self._entries.items()
                   if now_ms - entry.last_seen_ms >= expiration_ms]
        for producer_id in expired:
            del self._entries[producer_id]
        return len(expired)

    def highest_producer_id(self) -> int:
        return max(self._entries, default=-1)


class ProducerIdAllocator:
    """Hands out producer ids from persisted blocks: <data_dir>/controller/producer_ids.json
    holds the first id not yet reserved; it moves before any id of a new block is used."""

    FORMAT_VERSION = 1

    def __init__(self, data_dir: Path, block_size: int = limits.producer_id_block_size) -> None:
        self._path = Path(data_dir) / "controller" / "producer_ids.json"
        self._block_size = block_size
        reserved_end = self._load()
        self._next_id = reserved_end
        self._reserved_end = reserved_end  # ids below this are reserved on disk

    def allocate(self) -> ProducerId:
        if self._next_id >= self._reserved_end:
            self._reserve(self._next_id + self._block_size)
        producer_id = self._next_id
        self._next_id += 1
        invariant(producer_id < self._reserved_end, "producer id handed out before being reserved", producer_id)
        return ProducerId(producer_id)

    def ensure_above(self, producer_id: int) -> None:
        """Never hand out `producer_id` or anything below it (ids seen in the logs)."""
        if producer_id >= self._next_id:
            self._next_id = producer_id + 1

    def _reserve(self, reserved_end: int) -> None:
        payload = json.dumps({"format_version": self.FORMAT_VERSION, "reserved_end": reserved_end}).encode()
        write_durably(self._path, payload)
        self._reserved_end = reserved_end

    def _load(self) -> int:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return 0
        invariant(data.get("format_version") == self.FORMAT_VERSION, "unknown producer id file format", data)
        return int(data["reserved_end"])


def write_durably(path: Path, payload: bytes) -> None:
    """Write, fsync, rename over `path`, fsync the directory: after a crash the old or
    the new content, never a mix, and a returned call is on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class ProducerStateManager:
    """Producer ids for InitProducerId and the sequence state of every partition."""

    def __init__(self, data_dir: Path) -> None:
        self.allocator = ProducerIdAllocator(data_dir)
        self._partitions: dict[tuple[str, int], PartitionProducers] = {}

    def partition(self, topic: str, partition: int) -> PartitionProducers:
        key = (topic, partition)
        state = self._partitions.get(key)
        if state is None:
            state = self._partitions[key] = PartitionProducers(f"{topic}-{partition}")
        return state

    def rebuild(self, topic: str, partition: int, headers: Iterable, now_ms: int) -> PartitionProducers:
        """State of one partition from its stored batch headers (BatchHeaderInfo), oldest
        first. Expiry counts from `now_ms`, not from the batches' timestamps: those are the
        producers' clocks (CreateTime), and forgetting a producer at restart because its
        clock is off would let its retries through as duplicates."""
        state = PartitionProducers(f"{topic}-{partition}")
        for header in headers:
            if header.producer_id < 0 or header.is_control:
                continue
            record_count = header.last_offset - header.base_offset + 1
            state.record(header.producer_id, header.producer_epoch, header.base_sequence,
                         record_count, header.base_offset, header.last_offset, -1, now_ms)
        self._partitions[(topic, partition)] = state
        self.allocator.ensure_above(state.highest_producer_id())
        return state

    def forget_topic(self, topic: str) -> None:
        for key in [key for key in self._partitions if key[0] == topic]:
            del self._partitions[key]

    def expire(self, now_ms: int) -> int:
        return sum(state.expire(now_ms) for state in self._partitions.values())
