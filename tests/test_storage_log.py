"""DiskPartitionLog on real files: append/read, rolls, indexes, timestamps, listeners."""

from __future__ import annotations

import asyncio
import struct

import pytest

from broker.clock import ManualClock
from broker.ids import LeaderEpoch, Offset
from broker.records import (
    Compression, RecordBatchTooLarge, read_header, set_log_append_time, validate_batch,
)
from broker.storage.api import OffsetOutOfRange
from broker.storage.index import OFFSET_ENTRY, TIME_ENTRY
from tests.storage_support import (
    BASE_TIME_MS, EPOCH, append_batches, log_config, make_batch, open_log, read_all, run,
)


def test_append_assigns_offsets_and_read_returns_whole_batches(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        results = await append_batches(partition_log, 10, records=3)
        assert [(result.base_offset, result.last_offset) for result in results][:3] == [(0, 2), (3, 5), (6, 8)]
        assert partition_log.log_end_offset == partition_log.high_watermark == 30
        records = read_all(partition_log)
        assert [record.offset for record in records] == list(range(30))
        assert records[14].key == b"tag-4" and records[14].value.startswith(b"4/2;")
        [region] = partition_log.read(Offset(13), 1 << 20)
        first = read_header(region.read_bytes())
        assert first.base_offset == 12 and first.partition_leader_epoch == EPOCH  # the batch holding 13
        validate_batch(region.read_bytes()[: first.size])
        await partition_log.close()
    run(scenario())


def test_read_limits_bounds_and_errors(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        await append_batches(partition_log, 5, records=2, value_bytes=200)
        batch_size = read_header(partition_log.read(Offset(0), 1)[0].read_bytes()).size
        assert partition_log.read(Offset(0), 1)[0].length == batch_size  # min_one_batch
        assert partition_log.read(Offset(0), 1, min_one_batch=False) == []
        assert partition_log.read(Offset(0), 2 * batch_size + 1)[0].length == 2 * batch_size
        assert sum(region.length for region in partition_log.read(Offset(0), 1 << 20, upper_bound=Offset(4))) == 2 * batch_size
        assert partition_log.read(Offset(10), 1 << 20) == []
        with pytest.raises(OffsetOutOfRange):
            partition_log.read(Offset(11), 1 << 20)
        await partition_log.close()
    run(scenario())


def test_append_rejects_oversized_and_corrupt_batches(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(max_message_bytes=500))
        with pytest.raises(RecordBatchTooLarge):
            await partition_log.append(make_batch(1, records=10), leader_epoch=EPOCH)
        damaged = make_batch(2, records=1)
        damaged[-1] ^= 0xFF
        with pytest.raises(Exception) as raised:
            await partition_log.append(damaged, leader_epoch=EPOCH)
        assert getattr(raised.value, "error_code", None) == 2
        assert partition_log.log_end_offset == 0
        await partition_log.close()
    run(scenario())


def test_segments_roll_on_size_and_sealed_ones_get_kafka_index_files(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=4096))
        await append_batches(partition_log, 60, records=4, value_bytes=150)
        await partition_log.flush()
        segments = partition_log.segments()
        assert len(segments) > 5 and not segments[-1].sealed and all(info.sealed for info in segments[:-1])
        assert all(info.size_bytes <= 4096 for info in segments)
        for before, after in zip(segments, segments[1:]):
            assert after.base_offset == before.last_offset + 1
        for info in segments[:-1]:
            assert info.log_path.name == f"{info.base_offset:020d}.log"
            check_index_files(info)
        assert [record.offset for record in read_all(partition_log)] == list(range(240))
        await partition_log.close()
    run(scenario())


def check_index_files(info):
    """Every .index entry names the last offset of the batch at its position; the last
    .timeindex entry is the segment's max timestamp."""
    data = info.log_path.read_bytes()
    entries = list(OFFSET_ENTRY.iter_unpack(info.index_path.read_bytes()))
    assert entries
    for relative_offset, position in entries:
        assert read_header(data, position).last_offset == info.base_offset + relative_offset
    time_entries = list(TIME_ENTRY.iter_unpack(info.timeindex_path.read_bytes()))
    assert time_entries[-1][0] == info.max_timestamp_ms


def test_segment_rolls_on_age_and_on_leader_epoch_change(tmp_path):
    async def scenario():
        clock = ManualClock()
        partition_log = await open_log(tmp_path, log_config(segment_ms=60_000), clock)
        await append_batches(partition_log, 2)
        await partition_log.housekeeping(clock.now_ms())
        assert len(partition_log.segments()) == 1
        clock.advance_ms(60_000)
        await partition_log.housekeeping(clock.now_ms())
        assert len(partition_log.segments()) == 2
        await partition_log.append(make_batch(5), leader_epoch=LeaderEpoch(2))
        await partition_log.append(make_batch(6), leader_epoch=LeaderEpoch(3))
        epochs = [info.leader_epoch for info in partition_log.segments()]
        assert epochs == [1, 2, 3]
        partition_log.roll()
        partition_log.roll()  # no-op: the new active segment is empty
        assert len(partition_log.segments()) == 4
        await partition_log.close()
    run(scenario())


def test_offset_for_timestamp_and_max_timestamp_across_segments_and_codecs(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=2048))
        codecs = list(Compression)
        for tag in range(40):  # timestamps rise by 10 per batch, 1 per record
            await partition_log.append(make_batch(tag, records=5, timestamp_ms=BASE_TIME_MS + tag * 10,
                                                  compression=codecs[tag % len(codecs)]), leader_epoch=EPOCH)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS) == (0, BASE_TIME_MS)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS + 123) == (63, BASE_TIME_MS + 123)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS + 126) == (65, BASE_TIME_MS + 130)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS + 395) is None
        assert partition_log.max_timestamp() == (199, BASE_TIME_MS + 394)
        await partition_log.close()
        reopened = await open_log(tmp_path, log_config(segment_bytes=2048))
        assert reopened.offset_for_timestamp(BASE_TIME_MS + 123) == (63, BASE_TIME_MS + 123)
        assert reopened.max_timestamp() == (199, BASE_TIME_MS + 394)
        await reopened.close()
    run(scenario())


def test_max_timestamp_in_the_middle_and_log_append_time(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        assert partition_log.max_timestamp() is None and partition_log.offset_for_timestamp(0) is None
        await partition_log.append(make_batch(1, records=3, timestamp_ms=BASE_TIME_MS + 500), leader_epoch=EPOCH)
        await partition_log.append(make_batch(2, records=3, timestamp_ms=BASE_TIME_MS), leader_epoch=EPOCH)
        assert partition_log.max_timestamp() == (2, BASE_TIME_MS + 502)
        stamped = make_batch(3, records=4, timestamp_ms=BASE_TIME_MS)
        set_log_append_time(stamped, BASE_TIME_MS + 9000)
        result = await partition_log.append(stamped, leader_epoch=EPOCH, log_append_time_ms=BASE_TIME_MS + 9000)
        assert result.log_append_time_ms == BASE_TIME_MS + 9000
        assert partition_log.max_timestamp() == (6, BASE_TIME_MS + 9000)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS + 600) == (6, BASE_TIME_MS + 9000)
        await partition_log.close()
    run(scenario())


def test_iter_batch_headers_from_an_offset(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=2048))
        await append_batches(partition_log, 30, records=2)
        headers = list(partition_log.iter_batch_headers(Offset(7)))
        assert headers[0].base_offset == 6 and headers[0].last_offset == 7
        assert [header.base_offset for header in headers] == list(range(6, 60, 2))
        assert all(header.record_count == 2 and not header.is_control for header in headers)
        await partition_log.close()
    run(scenario())


def test_high_watermark_waits_for_fsync_and_listeners_hear_it(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        heard = []
        partition_log.add_append_listener(lambda: heard.append(partition_log.high_watermark))
        append = asyncio.create_task(partition_log.append(make_batch(1), leader_epoch=EPOCH))
        await asyncio.sleep(0)  # written, fsync not yet done
        assert partition_log.log_end_offset == 3 and partition_log.high_watermark == 0
        assert partition_log.read(Offset(0), 1 << 20) == []
        await append
        assert partition_log.high_watermark == 3 and heard == [3]
        await partition_log.close()
    run(scenario())


def test_relaxed_flush_makes_data_visible_at_once_and_fsyncs_on_the_interval(tmp_path):
    async def scenario():
        clock = ManualClock()
        partition_log = await open_log(tmp_path, log_config(flush_fsync=False, flush_interval_ms=5000), clock)
        rounds_at_open = partition_log.probe.flush_rounds
        await append_batches(partition_log, 20)
        assert partition_log.high_watermark == 60  # relaxed: visible once written
        assert partition_log.probe.flush_rounds == rounds_at_open
        await partition_log.housekeeping(clock.now_ms())
        assert partition_log.probe.flush_rounds == rounds_at_open  # interval not reached
        clock.advance_ms(5000)
        await partition_log.housekeeping(clock.now_ms())  # starts the round, does not wait
        for _ in range(200):
            if partition_log.probe.flush_rounds > rounds_at_open:
                break
            await asyncio.sleep(0.01)
        assert partition_log.probe.flush_rounds == rounds_at_open + 1
        await partition_log.close()
    run(scenario())


def test_index_lookups_stay_cheap_with_many_small_batches(tmp_path):
    """Reads start from the sparse index, not the segment start: the scan from an index
    entry to the target covers at most one index interval of headers."""
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=1 << 20))
        await asyncio.gather(*(partition_log.append(make_batch(tag, records=1, value_bytes=10), leader_epoch=EPOCH)
                               for tag in range(3000)))
        segment = partition_log._segments[-1]
        assert len(segment.offset_index) > 20
        start = segment.scan_start(2500)
        scanned = sum(1 for _ in segment.scan_headers(start, segment.size_bytes)
                      if _[1].last_offset < 2500)
        assert scanned < 100
        [region] = partition_log.read(Offset(2500), 1)
        assert read_header(region.read_bytes()).base_offset == 2500
        await partition_log.close()
    run(scenario())


def test_recovered_active_segment_keeps_its_layout(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        await append_batches(partition_log, 5)
        await partition_log.close()
        reopened = await open_log(tmp_path)
        assert reopened.log_end_offset == reopened.high_watermark == 15
        await append_batches(reopened, 1, first_tag=5)
        assert [record.offset for record in read_all(reopened)] == list(range(18))
        await reopened.close()
    run(scenario())


def test_index_entry_format_is_big_endian_kafka():
    assert OFFSET_ENTRY.size == 8 and TIME_ENTRY.size == 12
    assert OFFSET_ENTRY.pack(1, 2) == struct.pack(">II", 1, 2)
