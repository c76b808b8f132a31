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

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from kio.schema.errors import ErrorCode

from broker import limits
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


@dataclass(frozen=True)
class _Appended:
    base_offset: Offset
    last_offset: Offset
    log_append_time_ms: int
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
        # broker.replication.replica.PartitionReplica in a cluster (leader, epoch, commit),
        # None on a single node (the log commits what is durable, this node always leads).
        self.replica: Any = None
        self._commit_waiters: list[tuple[int, int, asyncio.Future]] = []  # (end offset, epoch, future)
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
        if self.replica is not None:
            return LeaderEpoch(self.replica.epoch)
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
        if self.replica is None:
            return 1  # this node's own log
        return len(self.replica.in_sync_replicas())

    def epoch_error(self, requested_epoch: int) -> ErrorCode | None:
        return leader_epoch_error(requested_epoch, self.leader_epoch)

    def leadership_error(self) -> ErrorCode | None:
        """None when this node serves Kafka clients for the partition: it leads it and its
        epoch's first batch is committed (a new leader's older tail may not be)."""
        if self.replica is None:
            return None
        from broker.replication.replica import Role

        if self.replica.role is not Role.LEADER or not self.replica.ready:
            return ErrorCode.not_leader_or_follower
        return None

    def follower_fetch_error(self, node_id: int) -> ErrorCode | None:
        """None when `node_id` may fetch this partition as a follower: this node leads it
        (ready or not: followers must fetch the new epoch's first batch to commit it)."""
        from broker.replication.replica import Role

        if self.replica is None or self.replica.role is not Role.LEADER:
            return ErrorCode.not_leader_or_follower
        if node_id not in self.replica.replicas:
            return ErrorCode.not_leader_or_follower
        return None

    def leader_hint(self) -> tuple[int, int]:
        """(leader id, epoch) as this node knows them, for NOT_LEADER answers."""
        if self.replica is None:
            return -1, int(self.leader_epoch)
        return self.replica.leader_id, self.replica.epoch

    # -- produce ------------------------------------------------------------------------------

    def check_produce(self, acks: int, *, internal_writer: bool = False) -> None:
        """Refusals that do not depend on the batch: only the leader takes writes, internal
        topics are written by the broker only, acks=all needs min.insync.replicas in sync."""
        leadership = self.leadership_error()
        if leadership is not None:
            raise ProduceRefused(leadership, f"this node does not lead {self.topic}-{self.index}")
        entry = self._topic_entry()
        if internal_writer:
            return
        if entry is not None and entry.internal:
            raise ProduceRefused(ErrorCode.invalid_topic_exception, f"cannot append to internal topic {self.topic}")
        required = int(self.configs.get("min.insync.replicas", "1"))
        if acks == -1 and required > self.in_sync_replicas():
            raise ProduceRefused(ErrorCode.not_enough_replicas,
                                 f"min.insync.replicas={required} but {self.in_sync_replicas()} replica(s) in sync")

    async def produce(self, batch: bytearray, header: BatchHeader, *, log_append_time_ms: int | None,
                      on_ordered: Callable[[], None], acks: int = 1,
                      timeout_ms: int = limits.produce_commit_wait_ms_default) -> ProduceResult:
        """`append`, then for acks=all in a cluster the wait until a majority of replicas
        holds the batch durably (the high watermark passes it) in this leader's epoch."""
        epoch = self.replica.epoch if self.replica is not None else -1
        result = await self.append(batch, header, log_append_time_ms=log_append_time_ms, on_ordered=on_ordered)
        if self.replica is not None and acks == -1:
            await self.wait_committed(int(result.last_offset) + 1, epoch, timeout_ms)
        return ProduceResult(result.base_offset, result.log_append_time_ms, result.log_start_offset)

    async def append(self, batch: bytearray, header: BatchHeader, *, log_append_time_ms: int | None,
                     on_ordered: Callable[[], None]) -> "_Appended":
        """Append one validated batch (idempotent batches through the sequence check) and
        return once it is durable on this node per the topic's policy.

        Two phases: everything up to the log write (sequence check, offset assignment,
        the write itself) happens synchronously within this call, in call order, and then
        `on_ordered()` is called; only then does it wait for durability. So requests of one
        connection keep their order and still share one group-commit fsync."""
        if header.producer_id < 0:
            pending = self.log.write(batch, leader_epoch=self.leader_epoch, log_append_time_ms=log_append_time_ms)
            on_ordered()
            await pending.durable()
            return _Appended(pending.base_offset, pending.last_offset, pending.log_append_time_ms,
                             pending.log_start_offset)
        verdict = self.producers.check(header.producer_id, header.producer_epoch, header.base_sequence,
                                       header.record_count)
        if verdict.error != ErrorCode.none:
            raise ProduceRefused(verdict.error, verdict.message or verdict.error.name)
        if verdict.duplicate is not None:
            original = verdict.duplicate
            on_ordered()
            if original.last_offset >= self.log.durable_end_offset:
                await self.log.flush()  # the original may still await its fsync
            return _Appended(Offset(original.base_offset), Offset(original.last_offset),
                             original.log_append_time_ms, self.log.log_start_offset)
        expected_base = int(self.log.log_end_offset)
        previous = self.producers.record(
            header.producer_id, header.producer_epoch, header.base_sequence, header.record_count,
            expected_base, expected_base + header.record_count - 1,
            -1 if log_append_time_ms is None else log_append_time_ms, self._clock.now_ms())
        try:
            pending = self.log.write(batch, leader_epoch=self.leader_epoch, log_append_time_ms=log_append_time_ms)
        except BaseException:
            self.producers.restore(header.producer_id, previous)
            raise
        invariant(pending.base_offset == expected_base, "log assigned an offset other than its end offset",
                  self.topic, self.index, expected_base, pending.base_offset)
        on_ordered()
        await pending.durable()  # a failed fsync fails the log: no later write reuses the state
        return _Appended(pending.base_offset, pending.last_offset, pending.log_append_time_ms,
                         pending.log_start_offset)

    # -- replication: the commit wait and what followers derive from the log -----------------

    async def wait_committed(self, end_offset: int, epoch: int, timeout_ms: int) -> None:
        """Return once the high watermark reaches `end_offset` while this node still leads
        in `epoch` (a write is acknowledged only if it committed in the epoch it was written
        in). Raises ProduceRefused: NOT_LEADER_OR_FOLLOWER when leadership was lost (the
        write may survive or not: the client retries, idempotence keeps one copy),
        REQUEST_TIMED_OUT when no majority took it in time."""
        if int(self.log.high_watermark) >= end_offset and self._leads_in(epoch):
            return
        future = asyncio.get_running_loop().create_future()
        waiter = (end_offset, epoch, future)
        self._commit_waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise ProduceRefused(ErrorCode.request_timed_out,
                                 f"{self.topic}-{self.index}: not replicated to a majority within {timeout_ms} ms") from None
        finally:
            if waiter in self._commit_waiters:
                self._commit_waiters.remove(waiter)

    def _leads_in(self, epoch: int) -> bool:
        from broker.replication.replica import Role

        return self.replica is not None and self.replica.role is Role.LEADER and self.replica.epoch == epoch

    def commit_moved(self) -> None:
        """The high watermark moved (append listener) or leadership changed: answer the
        writes waiting for their commit."""
        if not self._commit_waiters:
            return
        high_watermark = int(self.log.high_watermark)
        still_waiting = []
        for end_offset, epoch, future in self._commit_waiters:
            if future.done():
                continue
            if not self._leads_in(epoch):
                future.set_exception(ProduceRefused(ErrorCode.not_leader_or_follower,
                                                    f"leadership of {self.topic}-{self.index} moved before the "
                                                    "write was replicated to a majority"))
            elif high_watermark >= end_offset:
                future.set_result(None)
            else:
                still_waiting.append((end_offset, epoch, future))
        self._commit_waiters = still_waiting

    def follower_wrote(self, from_offset: int) -> None:
        """Batches copied from the leader from `from_offset` on: idempotent producers' state
        follows them, so a new leader knows every producer's last sequences."""
        for header in self.log.iter_batch_headers(Offset(from_offset)):
            if header.producer_id < 0 or header.is_control or header.base_offset < from_offset:
                continue
            self.producers.record(header.producer_id, header.producer_epoch, header.base_sequence,
                                  header.record_count, header.base_offset, header.last_offset, -1,
                                  self._clock.now_ms())

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
