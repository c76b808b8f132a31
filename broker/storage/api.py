"""The storage seam: what the rest of the broker may ask of a partition's local log.

`broker.storage` implements it (one PartitionLog per partition, owned by one shard);
handlers, the group coordinator, the archiver (`tiered/`) and the remote read path
(`shadow_indexing/`) use only what is declared here.

On-disk layout (also what the archiver uploads), Kafka's own format:
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.log        record batches (magic v2), as produced, offsets patched
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.index      sparse offset index: 8-byte entries (relative_offset u32 BE, file position u32 BE)
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.timeindex  sparse time index: 12-byte entries (max_timestamp i64 BE, relative_offset u32 BE)
    <data_dir>/topics/<topic>/<partition>/leader-epoch-checkpoint       text: "0", count, then "<epoch> <start_offset>" lines

Offsets a replication layer needs, lowest to highest:
    log_start_offset <= high_watermark <= durable_end_offset <= log_end_offset
- log_end_offset: the next offset to write (written, maybe not yet fsynced);
- durable_end_offset: the end of the data the flush policy counts as durable: fsynced
  (flush_fsync) or written (relaxed mode); a fact of this log alone;
- high_watermark: the end of committed data, what consumers may read. Local commit (the
  default, one node): the log moves it to the durable end itself. External commit
  (`PartitionLogConfig.external_commit`): only its owner moves it, with
  `advance_high_watermark`, e.g. to the offset a majority of replicas holds durably.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterator, NamedTuple, Protocol

from broker.ids import LeaderEpoch, Offset


@dataclass(frozen=True)
class PartitionLogConfig:
    """Per-partition settings resolved from topic configs + node config.
    -1 means unbounded for every retention value."""

    segment_bytes: int
    segment_ms: int
    retention_bytes: int  # total (local + remote) when remote_storage_enable, else local
    retention_ms: int
    local_retention_bytes: int  # only used when remote_storage_enable
    local_retention_ms: int
    remote_storage_enable: bool
    max_message_bytes: int
    flush_fsync: bool  # True: append() returns after fsync (group commit); False: relaxed
    flush_interval_ms: int  # relaxed mode background fsync period
    # False (local commit, one node): the high watermark follows the durable end. True: the
    # owner (replication) moves it with advance_high_watermark; a log opened this way starts
    # with its high watermark at its log start offset (up to a batch boundary), never at its
    # recovered end.
    external_commit: bool = False


@dataclass(frozen=True)
class AppendResult:
    base_offset: Offset
    last_offset: Offset
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: Offset


class PendingAppend:
    """What write() / write_as_follower() return: the batches are in the log with their
    offsets (visible to log_end_offset and to reads bounded by it), not yet durable.
    `await durable()` returns the AppendResult once they are durable per the flush policy
    (fsynced, group commit; at once in relaxed mode) and raises KafkaStorageError if the
    fsync failed, AppendTruncated if a suffix truncation removed them first. Durable is
    not committed: in external commit mode the owner decides when the high watermark
    passes `end_offset`. (A plain class with slots: one is made per append.)"""

    __slots__ = ("base_offset", "last_offset", "leader_epoch", "log_append_time_ms", "log_start_offset",
                 "_wait_durable", "log_token")

    def __init__(self, base_offset: Offset, last_offset: Offset, leader_epoch: LeaderEpoch,
                 log_append_time_ms: int, log_start_offset: Offset,
                 wait_durable: "Callable[[PendingAppend], Awaitable[AppendResult]]", log_token: object) -> None:
        self.base_offset = base_offset
        self.last_offset = last_offset
        self.leader_epoch = leader_epoch  # of the last batch
        self.log_append_time_ms = log_append_time_ms  # -1 unless the topic uses LogAppendTime
        self.log_start_offset = log_start_offset  # when written
        self._wait_durable = wait_durable
        self.log_token = log_token  # the log's own record of the write; opaque to callers

    @property
    def end_offset(self) -> Offset:
        return Offset(self.last_offset + 1)

    async def durable(self) -> AppendResult:
        """May be awaited any number of times, by any number of tasks."""
        return await self._wait_durable(self)

    def __repr__(self) -> str:
        return (f"PendingAppend(base_offset={self.base_offset}, last_offset={self.last_offset}, "
                f"leader_epoch={self.leader_epoch})")


class EpochEntry(NamedTuple):
    """One leader epoch cache entry: `epoch` wrote the offsets from `start_offset` up to
    the next entry's start (or the log end)."""

    epoch: LeaderEpoch
    start_offset: Offset


@dataclass(frozen=True)
class FileRegion:
    """Bytes of whole record batches inside one segment file, for sendfile or pread."""

    path: Path
    position: int
    length: int

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as file:
            file.seek(self.position)
            return file.read(self.length)


@dataclass(frozen=True)
class BatchHeaderInfo:
    """What the log knows about one stored batch without decoding records."""

    base_offset: Offset
    last_offset: Offset
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    is_transactional: bool
    is_control: bool
    position: int  # byte position in its segment file
    size: int


@dataclass(frozen=True)
class SegmentInfo:
    base_offset: Offset
    last_offset: Offset  # last offset in the segment (base_offset - 1 when empty)
    base_timestamp_ms: int  # first batch's first timestamp (-1 when empty)
    max_timestamp_ms: int
    size_bytes: int
    leader_epoch: LeaderEpoch
    log_path: Path
    index_path: Path
    timeindex_path: Path
    sealed: bool  # no more appends (rolled); only sealed segments are archived
    created_ms: int  # when the segment was opened (for segment.ms / time-based seal)


class PartitionLog(Protocol):
    topic: str
    partition: int
    directory: Path

    @property
    def log_start_offset(self) -> Offset: ...  # first offset held locally
    @property
    def log_end_offset(self) -> Offset: ...  # next offset to assign
    @property
    def durable_end_offset(self) -> Offset: ...  # end of durable data: fsynced, or written in relaxed mode
    @property
    def high_watermark(self) -> Offset: ...  # end of committed data (local commit: the durable end)
    @property
    def delete_records_offset(self) -> Offset: ...  # latest delete_records_before offset (0: never); persisted

    def write(self, batch: bytearray | memoryview, *, leader_epoch: LeaderEpoch,
              log_append_time_ms: int | None = None) -> PendingAppend:
        """The leader's append, first phase, synchronous: validate one magic-v2 batch
        (header, lengths, CRC32C, max.message.bytes), assign its offsets (base offset =
        log_end_offset now), patch base_offset and partition leader epoch in place (outside
        the CRC), write it to the active segment (rolled first on a new epoch or when full)
        and record a new epoch in the leader epoch cache. Nothing awaits, so offsets follow
        call order (broker/handlers/produce.py relies on this for idempotent producers).
        log_append_time_ms is only reported back: a LogAppendTime caller stamps the batch
        and rewrites its CRC itself. Raises RecordBatchError subclasses for bad batches,
        KafkaStorageError when the log is closed, failed, being truncated or the write
        fails; InvariantViolation if leader_epoch is below the latest epoch in the log (a
        stale leader must never write)."""

    async def append(self, batch: bytearray | memoryview, *, leader_epoch: LeaderEpoch,
                     log_append_time_ms: int | None = None) -> AppendResult:
        """`write(...)` then `await pending.durable()`: returns once durable per the flush
        policy; concurrent appends share one fsync (group commit)."""

    def write_as_follower(self, records: bytes | bytearray | memoryview) -> PendingAppend:
        """Append batches copied from the leader (a Fetch response's records: one or more
        whole batches back to back) as they are: their own base offsets and leader epochs,
        no patching. Every batch is checked before any is written: CRC32C and lengths
        (RecordBatchError), the first base offset == log_end_offset and each next one
        following the previous (UnexpectedAppendOffset otherwise: a gap or an overlap),
        leader epochs never below the log's latest (InvariantViolation: the follower did
        not truncate to the divergence point first). max.message.bytes is not applied (the
        leader accepted the batch). Segments roll on epoch change as for write(). If the
        disk fails midway, the batches before the failing one stay written
        (KafkaStorageError; log_end_offset says how far)."""

    async def truncate_to(self, offset: Offset) -> Offset:
        """Suffix truncation (a follower dropping its divergent tail): remove every batch at
        or above `offset`; an offset inside a batch removes that whole batch (the log ends
        at its base offset, as Kafka does). Returns the new log_end_offset; a no-op at or
        above the end. The result must not fall below the high watermark (committed data)
        nor to or below set_archived_offset (data in the cold tier): InvariantViolation. Appends are refused (KafkaStorageError) until it returns; the
        durable() of truncated appends raises AppendTruncated. Later segments are deleted,
        the segment holding the new end is cut and reopened for appends, the leader epoch
        cache drops entries starting at or above the new end; all of it durable on return.
        After a crash during the call recovery finds the old log cut at some offset at or
        above the new end (a prefix of it), never batches beyond it once it returned."""

    @property
    def latest_epoch(self) -> LeaderEpoch: ...  # largest leader epoch in the log, -1 if none

    def end_offset_for(self, requested_epoch: LeaderEpoch) -> tuple[LeaderEpoch, Offset]:
        """OffsetForLeaderEpoch / Fetch DivergingEpoch, Kafka's LeaderEpochFileCache
        endOffsetFor rules: the latest epoch -> (it, log_end_offset); a known epoch or one
        between known epochs -> (largest known epoch <= requested, start offset of the next
        higher epoch); below the first known epoch -> (requested, start of the first);
        -1, above every known epoch or no epoch known -> (-1, -1). Epochs wholly below the
        log start are forgotten (the first entry starts at the log start; when everything
        is deleted the latest epoch stays, starting at the log end, until the next epoch
        replaces it or a restart rebuilds the cache from the remaining batches)."""

    def epoch_for_offset(self, offset: Offset) -> LeaderEpoch:
        """The leader epoch of the batch holding `offset` (-1 when unknown)."""

    def leader_epoch_entries(self) -> list[EpochEntry]:
        """The leader epoch cache, oldest first (what leader-epoch-checkpoint holds)."""

    def advance_high_watermark(self, offset: Offset) -> None:
        """External commit mode only (InvariantViolation otherwise): move the high
        watermark up to `offset`; at or below it nothing happens (it never moves back).
        `offset` beyond durable_end_offset is an InvariantViolation (commit only what this
        replica holds durably too). Use batch boundaries (replicas' log ends are): a
        truncation to a high watermark inside a batch would cut below it. Append listeners
        fire when it moves."""

    def read(self, offset: Offset, max_bytes: int, *, upper_bound: Offset | None = None,
             min_one_batch: bool = True) -> list[FileRegion]:
        """Whole batches starting with the batch containing `offset`, up to `max_bytes`
        (at least one batch when min_one_batch, like Kafka), never past `upper_bound`
        (default: high watermark). Empty list at or beyond the end. Raises
        OffsetOutOfRange below log_start_offset or above log_end_offset."""

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[Offset, int] | None:
        """First (offset, timestamp) with timestamp >= timestamp_ms, by the time index
        then a header scan of the located batches; None if none."""

    def max_timestamp(self) -> tuple[Offset, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (ListOffsets -3)."""

    def iter_batch_headers(self, from_offset: Offset) -> Iterator[BatchHeaderInfo]:
        """Batch headers from the batch containing from_offset to the end (used to rebuild
        producer state and by the group coordinator to replay its log)."""

    def segments(self) -> list[SegmentInfo]:
        """All local segments, oldest first; the last one is the active (unsealed) one."""

    def roll(self) -> None:
        """Seal the active segment now (archiver's time-based seal); no-op when empty."""

    async def delete_records_before(self, offset: Offset) -> Offset:
        """Kafka's DeleteRecords: make `offset` the log start offset, durably. Returns the
        local log start offset afterwards; a no-op at or below `delete_records_offset`
        (an offset below the local start is still persisted: the cold tier's floor).
        Raises OffsetOutOfRange above the high watermark, KafkaStorageError when the log
        is closed, failed, or the checkpoint cannot be written.

        Before returning, the offset is persisted in `<partition dir>/delete-records.checkpoint`
        (atomic write, fsyncs), after making everything below it durable; recovery honours it
        (segments wholly below it are removed unread, reads below it stay refused), so deleted
        records never reappear, even after kill -9. Whole segments below the new start are
        retired (files removed after limits.segment_delete_delay_ms, like retention); an
        active segment wholly below it is rolled first; a segment straddling it is kept and
        reads below the start raise OffsetOutOfRange. `offset_for_timestamp` never answers
        below the start.

        With remote_storage_enable, local segments wholly below the offset are retired even
        if not yet archived; the cold tier must honour `delete_records_offset` itself (never
        serve, list or restore offsets below it): the local log cannot do that for it."""

    def set_archived_offset(self, offset: Offset) -> None:
        """Everything <= offset is safely in the cold tier: local retention may delete
        segments wholly at or below it. Until called, a remote-enabled log deletes nothing."""

    def add_append_listener(self, callback: Callable[[], None]) -> None:
        """callback() runs (on the event loop) whenever the high watermark advances."""

    def remove_append_listener(self, callback: Callable[[], None]) -> None:
        """Undo add_append_listener (no-op for an unknown callback)."""

    def add_durable_listener(self, callback: Callable[[], None]) -> None:
        """callback() runs (on the event loop) whenever durable_end_offset advances (a
        replication layer recomputes the commit then). A truncation lowers it silently.
        Local commit mode: durable listeners run before the append listeners."""

    def remove_durable_listener(self, callback: Callable[[], None]) -> None:
        """Undo add_durable_listener (no-op for an unknown callback)."""

    @property
    def config(self) -> PartitionLogConfig: ...  # the config in force (update_config changes it)

    async def flush(self) -> None:
        """Make everything written so far durable now (e.g. before answering a duplicate
        produce whose original may still await its fsync)."""

    async def housekeeping(self, now_ms: int) -> None:
        """Roll on segment.ms, apply retention. Called on ticks by the log manager."""

    def update_config(self, config: PartitionLogConfig) -> None: ...

    async def close(self) -> None: ...


class OffsetOutOfRange(Exception):
    pass


class AppendTruncated(Exception):
    """A suffix truncation removed a written append before it became durable (or before
    its durable() was awaited): it must not be acknowledged."""


class UnexpectedAppendOffset(Exception):
    """write_as_follower got batches that do not start at log_end_offset or do not follow
    each other: the follower's position and the leader's answer disagree."""


class KafkaStorageError(Exception):
    """The log cannot write or fsync (disk full, I/O error): Kafka's KAFKA_STORAGE_ERROR (56).
    After a failed fsync the partition refuses appends until the broker restarts."""
