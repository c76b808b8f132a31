"""Helpers for tests/test_storage_*.py: configs, batches, and opening real logs on disk."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from broker.clock import Clock, ManualClock
from broker.ids import LeaderEpoch, Offset
from broker.records import Compression, NewRecord, build_batch, iter_records, read_header
from broker.storage.api import PartitionLogConfig
from broker.storage.partition_log import DiskPartitionLog

BASE_TIME_MS = 1_700_000_000_000
EPOCH = LeaderEpoch(1)


def log_config(**overrides: object) -> PartitionLogConfig:
    values: dict[str, object] = dict(
        segment_bytes=64 * 1024, segment_ms=7 * 86_400_000, retention_bytes=-1, retention_ms=-1,
        local_retention_bytes=-1, local_retention_ms=-1, remote_storage_enable=False,
        max_message_bytes=1_048_588, flush_fsync=True, flush_interval_ms=1000)
    values.update(overrides)
    return PartitionLogConfig(**values)  # type: ignore[arg-type]


def with_config(config: PartitionLogConfig, **overrides: object) -> PartitionLogConfig:
    return dataclasses.replace(config, **overrides)


def make_batch(tag: int, records: int = 3, value_bytes: int = 100, timestamp_ms: int | None = None,
               compression: int = Compression.NONE) -> bytearray:
    """A client-style batch (base offset 0) whose values name `tag`, for checking reads."""
    timestamp = BASE_TIME_MS + tag if timestamp_ms is None else timestamp_ms
    return build_batch([NewRecord(key=b"tag-%d" % tag, value=(b"%d/%d;" % (tag, index) * value_bytes)[:value_bytes],
                                  timestamp_ms=timestamp + index) for index in range(records)],
                       compression=compression)


async def open_log(directory: Path, config: PartitionLogConfig | None = None,
                   clock: Clock | None = None) -> DiskPartitionLog:
    return await DiskPartitionLog.open("topic", 0, directory, config or log_config(), clock or ManualClock())


async def append_batches(partition_log: DiskPartitionLog, count: int, first_tag: int = 0, **batch_options: object) -> list:
    results = []
    for tag in range(first_tag, first_tag + count):
        results.append(await partition_log.append(make_batch(tag, **batch_options), leader_epoch=EPOCH))  # type: ignore[arg-type]
    return results


def read_all(partition_log: DiskPartitionLog, from_offset: int = -1) -> list:
    """Every record from `from_offset` (default: log start) to the high watermark, via read()."""
    offset = partition_log.log_start_offset if from_offset < 0 else Offset(from_offset)
    records = []
    while offset < partition_log.high_watermark:
        regions = partition_log.read(Offset(offset), 1 << 20)
        assert regions, f"no data at {offset} below the high watermark"
        for region in regions:
            data = region.read_bytes()
            position = 0
            while position < len(data):
                header = read_header(data, position)
                records.extend(iter_records(data[position: position + header.size]))
                position += header.size
        offset = Offset(records[-1].offset + 1)
    return [record for record in records if record.offset >= (from_offset if from_offset >= 0 else 0)]


def run(coroutine):
    return asyncio.run(coroutine)
