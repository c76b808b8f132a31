"""A partition as this node serves it: the one object that owns its local log, its
idempotent producer state, its leader epoch and high watermark, and the choice between the
local log and the cold tier for every read.

Handlers reach a partition only through `PartitionManager.get` / `wait_for` and ask it,
never its log, for offsets and data: Produce (`produce`), Fetch (`read`), ListOffsets
(`earliest_offset`, `latest_offset`, `offset_for_timestamp`, `max_timestamp`),
DeleteRecords (`delete_records_before`), OffsetForLeaderEpoch (`end_offset_for`), the
Fetch v12+ divergence check (`diverging_epoch`). This object is what replication and,
later, a shard process own; on one node it is the leader of every partition it serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kio.schema.errors import ErrorCode

from broker.clock import Clock
from broker.ids import NO_EPOCH, NO_OFFSET, LeaderEpoch, Offset
from broker.invariant import invariant
from broker.producer_state import PartitionProducers
from broker.records import BatchHeader
from broker.storage.api import FileRegion, OffsetOutOfRange, PartitionLogConfig
from broker.topic_table import Topic
from shadow_indexing.predicate import may_read_from_cloud


class ProduceRefused(Exception):
    """One partition's batch is refused with a Kafka error code."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class ProduceResult:
    base_offset: Offset
    log_append_time_ms: int  # -1 unless LogAppendTime
    log_start_offset: Offset


@dataclass
class ColdTier:
    """The node's cold tier as partitions see it: `reader` serves offsets below the local
    log start (shadow_indexing.RemoteReader), `storage` takes DeleteRecords into the
    bucket (tiered.TieredStorage). Both None when the node has no cold tier."""

    reader: Any = None
    storage: Any = None


def leader_epoch_error(requested_epoch: int, current_epoch: int) -> ErrorCode | None:
    """KIP-320: a client's current_leader_epoch older than ours is fenced, newer unknown;
    -1 skips the check."""
    if requested_epoch < 0 or requested_epoch == current_epoch:
        return None
    if requested_epoch < current_epoch:
        return ErrorCode.fenced_leader_epoch
    return ErrorCode.unknown_leader_epoch


class Partition:
    def __init__(self, topic: str, index: int, log: Any, producers: PartitionProducers,
                 topic_entry: Callable[[], Topic | None], cold_tier: ColdTier, clock: Clock) -> None:
        self.topic = topic
        self.index = index
        self.log = log  # broker.storage.api.PartitionLog: only this object appends to it
        self.producers = producers
        self._topic_entry = topic_entry
        self._cold_tier = cold_tier
        self._clock = clock
        self._last_leader_epoch = LeaderEpoch(0)
        self._last_leader_epoch = self.leader_epoch

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.index})"

    # -- state ------------------------------------------------------------------------------

    @property
    def configs(self) -> dict[str, str]:
        entry = self._topic_entry()
        return entry.configs if entry is not None else {}

    @property
    def log_config(self) -> PartitionLogConfig:
        return self.log.config

    @property
    def leader_epoch(self) -> LeaderEpoch:
        entry = self._topic_entry()
        if entry is not None and self.index < entry.partitions:
            self._last_leader_epoch = entry.leader_epoch(self.index)
        return self._last_leader_epoch  # a request still holding a just-deleted partition

    @property
    def high_watermark(self) -> Offset:
        return self.log.high_watermark

    @property
    def last_stable_offset(self) -> Offset:
        return self.log.high_watermark  # no transactions: nothing below it is undecided

    @property
    def log_start_offset(self) -> Offset:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> Offset:
        return self.log.log_end_offset

    def in_sync_replicas(self) -> int:
        return 1  # this node's own log; replication raises it

    def epoch_error(self, requested_epoch: int) -> ErrorCode | None:
        return leader_epoch_error(requested_epoch, self.leader_epoch)

    # -- produce ------------------------------------------------------------------------------

    def check_produce(self, acks: int) -> None:
        """Refusals that do not depend on the batch: internal topics are written by the
        broker only, acks=all needs min.insync.replicas in sync."""
        entry = self._topic_entry()
        if entry is not None and entry.internal:
            raise ProduceRefused(ErrorCode.invalid_topic_exception, f"cannot append to internal topic {self.topic}")
        required = int(self.configs.get("min.insync.replicas", "1"))
        if acks == -1 and required > self.in_sync_replicas():
            raise ProduceRefused(ErrorCode.not_enough_replicas,
                                 f"min.insync.replicas={required} but {self.in_sync_replicas()} replica(s) in sync")

    async def produce(self, batch: bytearray, header: BatchHeader, *, log_append_time_ms: int | None,
                      on_ordered: Callable[[], None]) -> ProduceResult:
        """Append one validated batch (idempotent batches through the sequence check) and
        return once it is durable per the topic's policy.

        Two phases: everything up to the log write (sequence check, offset assignment,
        the write itself) happens synchronously within this call, in call order, and then
        `on_ordered()` is called; only then does it wait for durability. So requests of one
        connection keep their order and still share one group-commit fsync."""
        if header.producer_id >= 0:
            return await self._produce_idempotent(batch, header, log_append_time_ms, on_ordered)
        on_ordered()
        result = await self.log.append(batch, leader_epoch=self.leader_epoch, log_append_time_ms=log_append_time_ms)
        return ProduceResult(result.base_offset, result.log_append_time_ms, result.log_start_offset)

    async def _produce_idempotent(self, batch: bytearray, header: BatchHeader, log_append_time_ms: int | None,
                                  on_ordered: Callable[[], None]) -> ProduceResult:
        verdict = self.producers.check(header.producer_id, header.producer_epoch, header.base_sequence,
                                       header.record_count)
        if verdict.error != ErrorCode.none:
            raise ProduceRefused(verdict.error, verdict.message or verdict.error.name)
        if verdict.duplicate is not None:
            original = verdict.duplicate
            on_ordered()
            if original.last_offset >= self.log.high_watermark:
                await self.log.flush()  # the original may still await its fsync
            return ProduceResult(Offset(original.base_offset), original.log_append_time_ms, self.log.log_start_offset)
        expected_base = int(self.log.log_end_offset)
        previous = self.producers.record(
            header.producer_id, header.producer_epoch, header.base_sequence, header.record_count,
            expected_base, expected_base + header.record_count - 1,
            -1 if log_append_time_ms is None else log_append_time_ms, self._clock.now_ms())
        on_ordered()
        try:
            result = await self.log.append(batch, leader_epoch=self.leader_epoch, log_append_time_ms=log_append_time_ms)
        except BaseException:
            self.producers.restore(header.producer_id, previous)
            raise
        invariant(result.base_offset == expected_base, "log assigned an offset other than its end offset",
                  self.topic, self.index, expected_base, result.base_offset)
        return ProduceResult(result.base_offset, result.log_append_time_ms, result.log_start_offset)

    # -- leader epochs: OffsetForLeaderEpoch and Fetch divergence (KIP-101/279/320) --------------

    def end_offset_for(self, requested_epoch: int) -> tuple[LeaderEpoch, Offset]:
        """(largest epoch <= requested_epoch, the offset where it ends), by the log's leader
        epoch cache (PartitionLog.end_offset_for, Kafka's endOffsetFor), answered as the
        leader: Kafka's leader adds its epoch to the cache at the log end when elected, so
        our epoch counts from the log end even before it wrote a batch. (-1, -1) for -1 and
        for an epoch above ours."""
        leader_epoch = int(self.leader_epoch)
        latest_in_log = int(self.log.latest_epoch)
        if requested_epoch < 0 or requested_epoch <= latest_in_log or leader_epoch <= latest_in_log:
            return self.log.end_offset_for(LeaderEpoch(requested_epoch))
        if requested_epoch > leader_epoch:
            return NO_EPOCH, NO_OFFSET
        if requested_epoch == leader_epoch or latest_in_log < 0:
            return LeaderEpoch(requested_epoch), self.log.log_end_offset
        return LeaderEpoch(latest_in_log), self.log.log_end_offset

    def diverging_epoch(self, last_fetched_epoch: int, fetch_offset: int) -> tuple[LeaderEpoch, Offset] | None:
        """Fetch v12+ (Kafka's Partition.readRecords): when the fetcher's log, whose last
        batch before `fetch_offset` has `last_fetched_epoch`, diverges from ours, the
        (epoch, end offset) to send as DivergingEpoch instead of records; None when it may
        read on (also for -1: no epoch to check). Raises OffsetOutOfRange when the epoch's
        end is unknown, or when `fetch_offset` is below the log start whatever the epochs
        say (the cold tier checks its own offsets)."""
        if last_fetched_epoch < 0:
            return None
        epoch, end_offset = self.end_offset_for(last_fetched_epoch)
        if epoch < 0 or end_offset < 0:
            raise OffsetOutOfRange(f"{self}: no end offset for leader epoch {last_fetched_epoch}")
        if fetch_offset < self.log.log_start_offset and not self.reads_from_cold_tier(fetch_offset):
            raise OffsetOutOfRange(f"{self}: offset {fetch_offset} is below the log start {self.log.log_start_offset}")
        if epoch < last_fetched_epoch or end_offset < fetch_offset:
            return epoch, end_offset
        return None

    # -- reads: the one local-or-cold choice ---------------------------------------------------

    def reads_from_cold_tier(self, offset: int) -> bool:
        """True when `offset` is served from the bucket (below the local log start of a
        remote-storage topic on a node with a cold tier), else from the local log."""
        return self._cold_tier.reader is not None and may_read_from_cloud(
            offset, self.log.log_start_offset, self.log.config.remote_storage_enable)

    def _cold_reader(self) -> Any:
        """The cold tier's reader when this topic has remote storage, else None."""
        if self._cold_tier.reader is None or not self.log.config.remote_storage_enable:
            return None
        return self._cold_tier.reader

    async def read(self, offset: int, max_bytes: int, *, upper_bound: int,
                   min_one_batch: bool) -> list[FileRegion | bytes]:
        """Whole batches from `offset`: FileRegions of the local log, or bytes from the cold
        tier. Raises OffsetOutOfRange / KafkaStorageError."""
        if self.reads_from_cold_tier(offset):
            data = await self._cold_tier.reader.read(self.topic, self.index, offset, max(max_bytes, 1))
            return [data] if data else []
        return self.log.read(Offset(offset), max_bytes, upper_bound=Offset(upper_bound), min_one_batch=min_one_batch)

    def latest_offset(self) -> int:
        return int(self.last_stable_offset)

    async def earliest_offset(self) -> int:
        """The first offset of the partition across both tiers."""
        local_start = int(self.log.log_start_offset)
        reader = self._cold_reader()
        if reader is None:
            return local_start
        remote_start = await reader.start_offset(self.topic, self.index)
        return local_start if remote_start is None or remote_start < 0 else min(local_start, int(remote_start))

    async def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp_ms`: the cold
        tier's match below the local log start first, then the local log's."""
        reader = self._cold_reader()
        if reader is not None:
            local_start = int(self.log.log_start_offset)
            found = await reader.offset_for_timestamp(self.topic, self.index, timestamp_ms, below_offset=local_start)
            if found is not None and found[0] < local_start:
                return int(found[0]), int(found[1])
        found = self.log.offset_for_timestamp(timestamp_ms)
        return (int(found[0]), int(found[1])) if found is not None else None

    def max_timestamp(self) -> tuple[int, int] | None:
        found = self.log.max_timestamp()
        return (int(found[0]), int(found[1])) if found is not None else None

    # -- DeleteRecords -------------------------------------------------------------------------

    async def delete_records_before(self, offset: int) -> int:
        """Move the log start to `offset` in both tiers; returns the new low watermark.
        Raises OffsetOutOfRange / KafkaStorageError."""
        low_watermark = int(await self.log.delete_records_before(Offset(offset)))
        storage = self._cold_tier.storage
        if storage is None or not self.log.config.remote_storage_enable:
            return low_watermark
        remote_start = await storage.delete_records_before(self.topic, self.index, Offset(offset))
        return low_watermark if remote_start is None else min(low_watermark, int(remote_start))
