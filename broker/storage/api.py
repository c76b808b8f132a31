"""The storage seam: what the rest of the broker may ask of a partition's local log.

`broker.storage` implements it (one PartitionLog per partition, owned by one shard);
handlers, the group coordinator, the archiver (`tiered/`) and the remote read path
(`shadow_indexing/`) use only what is declared here.

On-disk layout (also what the archiver uploads), Kafka's own format:
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.log        record batches (magic v2), as produced, offsets patched
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.index      sparse offset index: 8-byte entries (relative_offset u32 BE, file position u32 BE)
    <data_dir>/topics/<topic>/<partition>/<base_offset:020d>.timeindex  sparse time index: 12-byte entries (max_timestamp i64 BE, relative_offset u32 BE)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

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


@dataclass(frozen=True)
class AppendResult:
    base_offset: Offset
    last_offset: Offset
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: Offset


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
    def high_watermark(self) -> Offset: ...  # single node: end of durable data (fsynced or, relaxed mode, written)
    @property
    def delete_records_offset(self) -> Offset: ...  # latest delete_records_before offset (0: never); persisted

    async def append(self, batch: bytearray | memoryview, *, leader_epoch: LeaderEpoch,
                     log_append_time_ms: int | None = None) -> AppendResult:
        """Append one validated magic-v2 batch. Patches base_offset and partition
        leader epoch in place (and max timestamp when log_append_time_ms is given, which
        requires a new CRC: the caller passes log_append_time_ms only after it has done
        that rewrite itself — the log only patches base_offset/leader epoch, which the
        CRC does not cover). Returns once durable per the flush policy; concurrent
        appends share one fsync (group commit). The offset is assigned and the batch
        written before the first await, in call order: the base offset is the
        log_end_offset seen just before the call (broker/handlers/produce.py relies on
        this for idempotent producers and checks it with an invariant)."""

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


class KafkaStorageError(Exception):
    """The log cannot write or fsync (disk full, I/O error): Kafka's KAFKA_STORAGE_ERROR (56).
    After a failed fsync the partition refuses appends until the broker restarts."""
