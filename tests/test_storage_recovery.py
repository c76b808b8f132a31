"""Recovery at open: torn tails are cut, corrupt batches end the log, damaged or missing
indexes are rebuilt from the log, and good ones are trusted."""

from __future__ import annotations

import os

from broker.ids import Offset
from broker.records import read_header
from tests.storage_support import append_batches, log_config, make_batch, open_log, read_all, run

SMALL_SEGMENTS = log_config(segment_bytes=4096)


async def filled_log(directory, batches=60):
    partition_log = await open_log(directory, SMALL_SEGMENTS)
    await append_batches(partition_log, batches, records=4, value_bytes=150)
    await partition_log.flush()
    segments = partition_log.segments()
    await partition_log.close()
    return segments


def test_torn_tail_half_a_batch_is_cut_and_appends_continue(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path, batches=10)
        active = segments[-1].log_path
        good_size = active.stat().st_size
        with open(active, "ab") as file:
            file.write(bytes(make_batch(99))[:70])  # a torn write: header and a bit of body
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == 40 and active.stat().st_size == good_size
        assert reopened.probe.recovery_cut_bytes == 70
        result = await reopened.append(make_batch(10, records=4), leader_epoch=1)
        assert result.base_offset == 40
        assert [record.offset for record in read_all(reopened)] == list(range(44))
        await reopened.close()
    run(scenario())


def test_garbage_tail_is_cut(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path, batches=10)
        with open(segments[-1].log_path, "ab") as file:
            file.write(os.urandom(5000))
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == 40 and reopened.probe.recovery_cut_bytes == 5000
        await reopened.close()
    run(scenario())


def test_corrupt_batch_in_the_last_segment_ends_the_log_there(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path, batches=30)
        active = segments[-1]
        data = bytearray(active.log_path.read_bytes())
        first = read_header(data)
        second_position = first.size
        data[second_position + 100] ^= 0x40  # flip a bit in the second batch's records
        active.log_path.write_bytes(data)
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == first.last_offset + 1
        assert [record.offset for record in read_all(reopened)] == list(range(first.last_offset + 1))
        await reopened.close()
    run(scenario())


def test_missing_truncated_and_scrambled_indexes_are_rebuilt_identically(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path)
        sealed = [info for info in segments if info.sealed]
        assert len(sealed) >= 4
        original = {info.base_offset: (info.index_path.read_bytes(), info.timeindex_path.read_bytes()) for info in sealed}
        sealed[0].index_path.unlink()  # missing
        sealed[1].timeindex_path.write_bytes(sealed[1].timeindex_path.read_bytes()[:-5])  # torn entry
        index = sealed[2].index_path.read_bytes()
        sealed[2].index_path.write_bytes(index[8:16] + index[0:8] + index[16:])  # not monotonic
        sealed[3].index_path.write_bytes(index)  # another segment's index: points at wrong offsets
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        await reopened.flush()  # rebuilt indexes are written by the flusher
        for info in reopened.segments()[:-1]:
            assert info.sealed
            assert (info.index_path.read_bytes(), info.timeindex_path.read_bytes()) == original[info.base_offset]
        assert [record.offset for record in read_all(reopened)] == list(range(240))
        assert reopened.offset_for_timestamp(0) == (0, read_all(reopened)[0].timestamp)
        await reopened.close()
    run(scenario())


def test_good_indexes_are_trusted_without_reading_the_segment(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path)
        victim = segments[1]
        data = bytearray(victim.log_path.read_bytes())
        middle = read_header(data).size + 100  # inside the second batch: not read when trusted
        data[middle] ^= 0xFF
        victim.log_path.write_bytes(data)
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == 240  # no full scan of a trusted sealed segment
        assert [info.base_offset for info in reopened.segments()] == [info.base_offset for info in segments]
        await reopened.close()
    run(scenario())


def test_torn_sealed_segment_without_index_drops_everything_after_it(tmp_path):
    """A sealed segment without index files was sealed just before a crash; if it is torn
    too, nothing after it can have been acknowledged."""
    async def scenario():
        segments = await filled_log(tmp_path)
        victim = segments[2]
        victim.index_path.unlink()
        victim.timeindex_path.unlink()
        data = victim.log_path.read_bytes()
        first = read_header(data)
        victim.log_path.write_bytes(data[: first.size + 30])
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == first.last_offset + 1
        assert [info.base_offset for info in reopened.segments()] == [info.base_offset for info in segments[:3]]
        assert not any(info.log_path.exists() for info in segments[3:])
        assert [record.offset for record in read_all(reopened)] == list(range(first.last_offset + 1))
        result = await reopened.append(make_batch(1), leader_epoch=1)
        assert result.base_offset == first.last_offset + 1
        await reopened.close()
    run(scenario())


def test_leftover_temporary_and_orphan_index_files_are_removed(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path, batches=10)
        orphan = tmp_path / f"{999999:020d}.index"
        orphan.write_bytes(b"\x00" * 8)
        temporary = tmp_path / (segments[0].index_path.name + ".tmp")
        temporary.write_bytes(b"\x00" * 3)
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert not orphan.exists() and not temporary.exists()
        assert reopened.log_end_offset == 40
        await reopened.close()
    run(scenario())


def test_empty_directory_starts_at_the_given_offset(tmp_path):
    async def scenario():
        from broker.clock import ManualClock
        from broker.storage.partition_log import DiskPartitionLog
        partition_log = await DiskPartitionLog.open("topic", 0, tmp_path / "new", SMALL_SEGMENTS, ManualClock(),
                                                    start_offset=Offset(5000))
        assert partition_log.log_start_offset == partition_log.log_end_offset == 5000
        result = await partition_log.append(make_batch(1), leader_epoch=1)
        assert result.base_offset == 5000
        assert (tmp_path / "new" / f"{5000:020d}.log").exists()
        await partition_log.close()
    run(scenario())


def test_empty_file_between_segments_is_dropped_and_the_log_continues(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path)
        stray = tmp_path / f"{segments[1].base_offset + 1:020d}.log"  # empty, inside segment 1's range
        stray.write_bytes(b"")
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert not stray.exists()
        assert reopened.log_end_offset == 240 and len(reopened.segments()) == len(segments)
        await reopened.close()
    run(scenario())


def test_segment_that_does_not_follow_its_predecessor_ends_the_log(tmp_path):
    async def scenario():
        segments = await filled_log(tmp_path)
        segments[3].log_path.unlink()
        segments[3].index_path.unlink()
        segments[3].timeindex_path.unlink()
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert reopened.log_end_offset == segments[2].last_offset + 1
        assert [info.base_offset for info in reopened.segments()][:3] == [info.base_offset for info in segments[:3]]
        result = await reopened.append(make_batch(1), leader_epoch=1)
        assert result.base_offset == segments[2].last_offset + 1
        await reopened.close()
    run(scenario())
