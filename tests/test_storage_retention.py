"""Retention by bytes and time, local retention of remote-enabled logs, delayed deletion."""

from __future__ import annotations

import pytest

from broker import limits
from broker.clock import ManualClock
from broker.ids import Offset
from broker.storage.api import OffsetOutOfRange
from tests.storage_support import (
    BASE_TIME_MS, append_batches, log_config, open_log, read_all, run, with_config,
)

SMALL_SEGMENTS = log_config(segment_bytes=4096)


async def filled(directory, config, clock, batches=60, **options):
    partition_log = await open_log(directory, config, clock)
    await append_batches(partition_log, batches, records=4, value_bytes=150, **options)
    return partition_log


def test_retention_by_bytes_keeps_at_least_the_limit_and_never_the_active_segment(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled(tmp_path, with_config(SMALL_SEGMENTS, retention_bytes=10_000), clock)
        before = partition_log.segments()
        await partition_log.housekeeping(clock.now_ms())
        after = partition_log.segments()
        total = sum(info.size_bytes for info in after)
        assert len(after) < len(before) and total >= 10_000
        assert total - after[0].size_bytes < 10_000  # one more deletion would go below the limit
        assert partition_log.log_start_offset == after[0].base_offset > 0
        assert partition_log.probe.segments_deleted == len(before) - len(after)
        with pytest.raises(OffsetOutOfRange):
            partition_log.read(Offset(0), 1000)
        assert read_all(partition_log)[0].offset == after[0].base_offset
        await partition_log.close()
    run(scenario())


def test_retired_segment_files_stay_until_the_delete_delay(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled(tmp_path, with_config(SMALL_SEGMENTS, retention_bytes=10_000), clock)
        first = partition_log.segments()[0]
        await partition_log.housekeeping(clock.now_ms())
        assert partition_log.log_start_offset > first.base_offset
        assert first.log_path.exists() and first.index_path.exists()  # a fetch may still read it
        clock.advance_ms(limits.segment_delete_delay_ms)
        await partition_log.housekeeping(clock.now_ms())
        assert not first.log_path.exists() and not first.index_path.exists() and not first.timeindex_path.exists()
        await partition_log.close()
    run(scenario())


def test_retention_by_time_uses_each_segments_newest_timestamp(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        config = with_config(SMALL_SEGMENTS, retention_ms=3_600_000)
        partition_log = await open_log(tmp_path, config, clock)
        await append_batches(partition_log, 20, records=4, value_bytes=150, timestamp_ms=BASE_TIME_MS - 7_200_000)
        old_segments = len(partition_log.segments())
        partition_log.roll()
        await append_batches(partition_log, 10, first_tag=20, records=4, value_bytes=150, timestamp_ms=BASE_TIME_MS)
        await partition_log.housekeeping(clock.now_ms())
        segments = partition_log.segments()
        assert len(segments) == 2 and segments[0].base_offset == 80  # only the fresh ones remain
        assert partition_log.log_start_offset == 80 and old_segments >= 3
        clock.advance_ms(3_600_010)
        await partition_log.housekeeping(clock.now_ms())
        assert len(partition_log.segments()) == 1  # the active segment is never deleted
        await partition_log.close()
    run(scenario())


def test_remote_enabled_log_deletes_nothing_before_set_archived_offset(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        config = with_config(SMALL_SEGMENTS, remote_storage_enable=True, local_retention_bytes=4096,
                             local_retention_ms=1000, retention_bytes=-1, retention_ms=-1)
        partition_log = await filled(tmp_path, config, clock, timestamp_ms=BASE_TIME_MS - 10_000)
        count = len(partition_log.segments())
        clock.advance_ms(10_000)
        await partition_log.housekeeping(clock.now_ms())
        assert len(partition_log.segments()) == count and partition_log.log_start_offset == 0
        third = partition_log.segments()[2]
        partition_log.set_archived_offset(Offset(third.last_offset - 1))  # inside the third segment
        await partition_log.housekeeping(clock.now_ms())
        assert partition_log.log_start_offset == third.base_offset  # first two only
        partition_log.set_archived_offset(Offset(partition_log.log_end_offset - 1))
        await partition_log.housekeeping(clock.now_ms())
        assert len(partition_log.segments()) == 1  # everything archived and expired, but the active one
        await partition_log.close()
    run(scenario())


def test_remote_enabled_local_retention_is_never_looser_than_total_retention(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        config = with_config(SMALL_SEGMENTS, remote_storage_enable=True, local_retention_bytes=-1,
                             local_retention_ms=-1, retention_bytes=10_000)
        partition_log = await filled(tmp_path, config, clock)
        partition_log.set_archived_offset(Offset(partition_log.log_end_offset - 1))
        await partition_log.housekeeping(clock.now_ms())
        assert sum(info.size_bytes for info in partition_log.segments()) < 10_000 + 4096
        await partition_log.close()
    run(scenario())


def test_close_deletes_retired_segments_at_once(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        partition_log = await filled(tmp_path, with_config(SMALL_SEGMENTS, retention_bytes=4096), clock)
        first = partition_log.segments()[0]
        await partition_log.housekeeping(clock.now_ms())
        await partition_log.close()
        assert not first.log_path.exists()
        reopened = await open_log(tmp_path, SMALL_SEGMENTS, clock)
        assert reopened.log_start_offset == partition_log.log_start_offset
        await reopened.close()
    run(scenario())
