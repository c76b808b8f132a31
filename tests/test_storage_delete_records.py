"""PartitionLog.delete_records_before (Kafka's DeleteRecords on the local log): the log start
moves forward durably, whole segments below it go, a straddling segment stays but refuses
reads below the start, and the checkpoint survives a clean restart and a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from broker import limits
from broker.clock import ManualClock
from broker.ids import Offset
from broker.invariant import InvariantViolation
from broker.storage.api import KafkaStorageError, OffsetOutOfRange
from broker.storage.start_checkpoint import checkpoint_path, read_delete_records_offset
from tests.storage_support import (
    BASE_TIME_MS, EPOCH, append_batches, log_config, make_batch, open_log, read_all, run,
)
from tests.support import REPO

SMALL_SEGMENTS = log_config(segment_bytes=4096)
RECORDS_PER_BATCH = 4


async def filled_log(directory, clock, batches=40, config=SMALL_SEGMENTS):
    partition_log = await open_log(directory, config, clock)
    await append_batches(partition_log, batches, records=RECORDS_PER_BATCH, value_bytes=150)
    return partition_log


def straddling_offset(partition_log) -> int:
    """An offset in the middle of a batch in the middle of a segment that is not the first."""
    segment = partition_log.segments()[2]
    return segment.base_offset + RECORDS_PER_BATCH + 1


def test_delete_moves_the_start_retires_whole_segments_and_keeps_the_straddling_one(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        before = partition_log.segments()
        target = straddling_offset(partition_log)
        low_watermark = await partition_log.delete_records_before(Offset(target))
        assert low_watermark == target == partition_log.log_start_offset == partition_log.delete_records_offset
        after = partition_log.segments()
        assert after[0].base_offset == before[2].base_offset < target <= after[0].last_offset
        assert len(after) == len(before) - 2 and partition_log.probe.segments_deleted == 2
        for offset in (0, before[1].last_offset, target - 1):
            with pytest.raises(OffsetOutOfRange):
                partition_log.read(Offset(offset), 1 << 20)
        whole_batches = read_all(partition_log)  # whole batches, as Kafka: the first straddles the start
        assert whole_batches[0].offset < target
        records = read_all(partition_log, target)
        assert records[0].offset == target and records[-1].offset == partition_log.high_watermark - 1
        assert next(partition_log.iter_batch_headers(Offset(0))).last_offset >= target
        assert (await partition_log.append(make_batch(99), leader_epoch=EPOCH)).log_start_offset == target
        clock.advance_ms(limits.segment_delete_delay_ms)
        await partition_log.housekeeping(clock.now_ms())
        assert not before[0].log_path.exists() and not before[1].log_path.exists()
        assert before[2].log_path.exists()
        await partition_log.close()
    run(scenario())


def test_delete_is_a_no_op_at_or_below_the_start_and_refused_above_the_high_watermark(tmp_path):
    async def scenario():
        partition_log = await filled_log(tmp_path, ManualClock(BASE_TIME_MS), batches=5)
        assert await partition_log.delete_records_before(Offset(0)) == 0
        assert not checkpoint_path(tmp_path).exists()  # nothing deleted, nothing written
        assert await partition_log.delete_records_before(Offset(6)) == 6
        assert await partition_log.delete_records_before(Offset(3)) == 6  # never backwards
        with pytest.raises(OffsetOutOfRange):
            await partition_log.delete_records_before(Offset(partition_log.high_watermark + 1))
        await partition_log.close()
        with pytest.raises(KafkaStorageError):
            await partition_log.delete_records_before(Offset(10))
    run(scenario())


def test_deleting_up_to_the_high_watermark_empties_the_log_and_appends_continue(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        end = partition_log.high_watermark
        assert await partition_log.delete_records_before(end) == end
        segments = partition_log.segments()
        assert len(segments) == 1 and segments[0].base_offset == end and segments[0].size_bytes == 0
        assert partition_log.read(end, 1 << 20) == []
        result = await partition_log.append(make_batch(1), leader_epoch=EPOCH)
        assert result.base_offset == end
        await partition_log.close()
        reopened = await open_log(tmp_path, SMALL_SEGMENTS, clock)
        assert (reopened.log_start_offset, reopened.log_end_offset) == (end, end + 3)
        assert [record.offset for record in read_all(reopened)] == [end, end + 1, end + 2]
        assert sorted(path.name for path in tmp_path.glob("*.log")) == [f"{end:020d}.log"]
        await reopened.close()
    run(scenario())


def test_a_clean_restart_honours_the_checkpoint(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        target = straddling_offset(partition_log)
        await partition_log.delete_records_before(Offset(target))
        end = partition_log.log_end_offset
        await partition_log.close()
        assert read_delete_records_offset(tmp_path) == target
        reopened = await open_log(tmp_path, SMALL_SEGMENTS, clock)
        assert (reopened.log_start_offset, reopened.log_end_offset) == (target, end)
        with pytest.raises(OffsetOutOfRange):
            reopened.read(Offset(target - 1), 1 << 20)
        assert read_all(reopened, target)[0].offset == target
        await reopened.close()
    run(scenario())


CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from broker.clock import SYSTEM_CLOCK
from broker.ids import Offset
from broker.storage.partition_log import DiskPartitionLog
from tests.storage_support import append_batches, log_config

async def main(directory):
    partition_log = await DiskPartitionLog.open("kill", 0, Path(directory), log_config(segment_bytes=4096), SYSTEM_CLOCK)
    await append_batches(partition_log, 40, records=4, value_bytes=150)
    target = partition_log.segments()[3].base_offset + 2
    start = await partition_log.delete_records_before(Offset(target))
    sys.stdout.write(f"{start} {partition_log.log_end_offset}\n")
    sys.stdout.flush()
    await append_batches(partition_log, 1_000_000, first_tag=1000)  # busy until killed

asyncio.run(main(sys.argv[1]))
"""


def segment_bases(directory) -> list[int]:
    return sorted(int(path.name.split(".")[0]) for path in directory.glob("*.log"))


def test_kill_minus_9_after_delete_never_brings_records_back(tmp_path):
    directory = tmp_path / "kill" / "0"
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(directory)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    guard = threading.Timer(30, process.kill)
    guard.start()
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        start, end_at_delete = (int(field) for field in line.split())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        guard.cancel()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    # the three retired segments' files were still there (delayed deletion) when the kill came
    assert len([base for base in segment_bases(directory) if base <= start]) == 4

    async def reopen():
        partition_log = await open_log(directory, log_config(segment_bytes=4096))
        try:
            assert partition_log.log_start_offset == start
            assert partition_log.log_end_offset >= end_at_delete
            assert segment_bases(directory) == [info.base_offset for info in partition_log.segments()]
            assert len([base for base in segment_bases(directory) if base <= start]) == 1
            with pytest.raises(OffsetOutOfRange):
                partition_log.read(Offset(start - 1), 1 << 20)
            records = read_all(partition_log, start)
            assert records[0].offset == start
            assert [record.offset for record in records] == list(range(start, partition_log.high_watermark))
            first_segment = partition_log.segments()[0]
            assert first_segment.base_offset <= start <= first_segment.last_offset
        finally:
            await partition_log.close()
    run(reopen())


def test_recovery_removes_segments_wholly_below_the_checkpoint_unread(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        before = partition_log.segments()
        target = straddling_offset(partition_log)
        await partition_log.delete_records_before(Offset(target))
        # a crash inside the delete delay: the retired files are still on disk
        partition_log._retired.clear()
        await partition_log.close()
        assert before[0].log_path.exists() and before[1].log_path.exists()
        reopened = await open_log(tmp_path, SMALL_SEGMENTS, clock)
        assert not before[0].log_path.exists() and not before[1].log_path.exists()
        assert not before[0].index_path.exists()
        assert reopened.segments()[0].base_offset == before[2].base_offset
        assert reopened.log_start_offset == target
        await reopened.close()
    run(scenario())


def test_a_checkpoint_beyond_the_recovered_end_starts_the_log_over_there(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock, batches=5)
        await partition_log.close()
        checkpoint_path(tmp_path).write_text("1\n500\n")  # e.g. a relaxed-mode tail lost in a crash
        reopened = await open_log(tmp_path, SMALL_SEGMENTS, clock)
        assert (reopened.log_start_offset, reopened.log_end_offset) == (500, 500)
        assert (await reopened.append(make_batch(1), leader_epoch=EPOCH)).base_offset == 500
        assert sorted(path.name for path in tmp_path.glob("*.log")) == [f"{500:020d}.log"]
        await reopened.close()
    run(scenario())


def test_a_damaged_checkpoint_is_refused_loudly(tmp_path):
    async def scenario():
        partition_log = await filled_log(tmp_path, ManualClock(BASE_TIME_MS), batches=2)
        await partition_log.close()
        checkpoint_path(tmp_path).write_text("1\nnot a number\n")
        with pytest.raises(InvariantViolation, match="delete-records checkpoint"):
            await open_log(tmp_path, SMALL_SEGMENTS)
    run(scenario())


def test_timestamp_lookups_never_answer_below_the_start(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        target = straddling_offset(partition_log)
        await partition_log.delete_records_before(Offset(target))
        offset, _ = partition_log.offset_for_timestamp(0)
        assert offset == target
        await partition_log.close()
    run(scenario())


def test_retention_after_a_delete_keeps_the_start_where_it_is(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled_log(tmp_path, clock)
        segments = partition_log.segments()
        target = segments[3].base_offset + 1
        await partition_log.delete_records_before(Offset(target))
        # retention by bytes now removes the straddling segment: the start moves to the next base
        partition_log.update_config(log_config(segment_bytes=4096, retention_bytes=1))
        await partition_log.housekeeping(clock.now_ms())
        assert partition_log.log_start_offset == partition_log.segments()[0].base_offset > target
        assert partition_log.delete_records_offset == target
        await partition_log.close()
    run(scenario())


def test_remote_enabled_logs_retire_unarchived_segments_below_the_start(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        config = log_config(segment_bytes=4096, remote_storage_enable=True)
        partition_log = await filled_log(tmp_path, clock, config=config)
        target = straddling_offset(partition_log)
        assert await partition_log.delete_records_before(Offset(target)) == target
        assert partition_log.segments()[0].base_offset <= target
        assert partition_log.archived_offset < target  # nothing was archived, still deleted
        await partition_log.close()
    run(scenario())
