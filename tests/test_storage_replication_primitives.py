"""Storage primitives for partition replication, on real files: two-phase writes
(write() + PendingAppend.durable()), durable end vs high watermark (local and external
commit), follower appends, suffix truncation, and the leader epoch cache with its
checkpoint file. The randomized model check and the kill -9 test live in
test_storage_replication_model.py."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest

from broker.ids import LeaderEpoch, Offset
from broker.invariant import InvariantViolation
from broker.records import CorruptRecordBatch, patch_base_offset_and_leader_epoch, read_header
from broker.storage import flusher
from broker.storage.api import AppendTruncated, EpochEntry, KafkaStorageError, UnexpectedAppendOffset
from broker.storage.leader_epoch_cache import LEADER_EPOCH_FILE_NAME, LeaderEpochCache
from tests.storage_support import BASE_TIME_MS, EPOCH, log_config, make_batch, open_log, read_all, run, with_config

EXTERNAL = log_config(external_commit=True)
SMALL_SEGMENTS = log_config(external_commit=True, segment_bytes=1024)  # 2 batches of make_batch(tag) each


async def write_epochs(partition_log, epochs: list[int], first_tag: int = 0) -> list:
    """One batch per entry of `epochs` (3 records each), awaited durable."""
    results = []
    for number, epoch in enumerate(epochs):
        pending = partition_log.write(make_batch(first_tag + number), leader_epoch=LeaderEpoch(epoch))
        results.append(await pending.durable())
    return results


def stored_batches(partition_log, from_offset: int | None = None) -> list[tuple[int, int, int, int]]:
    """(base offset, last offset, leader epoch, crc) of every batch up to the log end."""
    offset = partition_log.log_start_offset if from_offset is None else Offset(from_offset)
    batches = []
    for region in partition_log.read(offset, 1 << 30, upper_bound=partition_log.log_end_offset):
        data = region.read_bytes()
        position = 0
        while position < len(data):
            header = read_header(data, position)
            batches.append((header.base_offset, header.last_offset, header.partition_leader_epoch, header.crc))
            position += header.size
    return batches


def raw_batches(partition_log) -> bytes:
    """Every stored byte from the log start to the log end (what a follower fetches)."""
    regions = partition_log.read(partition_log.log_start_offset, 1 << 30, upper_bound=partition_log.log_end_offset)
    return b"".join(region.read_bytes() for region in regions)


def batch_sizes(data: bytes) -> list[int]:
    sizes, position = [], 0
    while position < len(data):
        sizes.append(read_header(data, position).size)
        position += sizes[-1]
    return sizes


def rebased(data: bytes, base_offset: Offset) -> bytes:
    """The batches of `data` with offsets moved to start at base_offset (epochs kept)."""
    copy = bytearray(data)
    position, offset = 0, base_offset
    for size in batch_sizes(data):
        header = read_header(copy, position)
        patch_base_offset_and_leader_epoch(copy, offset, header.partition_leader_epoch, position)
        offset += header.last_offset_delta + 1
        position += size
    return bytes(copy)


def checkpoint_text(directory) -> str | None:
    path = directory / LEADER_EPOCH_FILE_NAME
    return path.read_text() if path.exists() else None


# -- two-phase append --------------------------------------------------------------------


def test_write_assigns_offsets_in_call_order_and_writes_share_one_fsync(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=1 << 20))
        rounds_before = partition_log.probe.flush_rounds
        pendings = [partition_log.write(make_batch(tag), leader_epoch=EPOCH) for tag in range(20)]
        assert [pending.base_offset for pending in pendings] == list(range(0, 60, 3))
        assert partition_log.log_end_offset == 60  # written at once, before any await
        assert partition_log.durable_end_offset == partition_log.high_watermark == 0
        results = await asyncio.gather(*(pending.durable() for pending in reversed(pendings)))
        assert [result.base_offset for result in reversed(results)] == list(range(0, 60, 3))
        assert partition_log.probe.flush_rounds - rounds_before == 1  # group commit
        assert partition_log.durable_end_offset == partition_log.high_watermark == 60
        assert (await pendings[0].durable()) == results[-1]  # awaitable again
        assert len(read_all(partition_log)) == 60
        await partition_log.close()
    run(scenario())


def test_durable_raises_the_fsync_failure_and_relaxed_writes_are_durable_at_once(tmp_path, monkeypatch):
    async def scenario():
        relaxed = await open_log(tmp_path / "relaxed", log_config(flush_fsync=False))
        pending = relaxed.write(make_batch(0), leader_epoch=EPOCH)
        assert relaxed.durable_end_offset == relaxed.high_watermark == 3
        assert (await pending.durable()).last_offset == 2
        await relaxed.close()

        partition_log = await open_log(tmp_path / "fsync")

        def failing_sync(descriptor):
            raise OSError(errno.EIO, "injected I/O error")

        monkeypatch.setattr(flusher, "_sync_data", failing_sync)  # fault point: the disk fails
        pending = partition_log.write(make_batch(1), leader_epoch=EPOCH)
        with pytest.raises(KafkaStorageError, match="injected"):
            await pending.durable()
        assert partition_log.durable_end_offset == partition_log.high_watermark == 0
        with pytest.raises(KafkaStorageError):
            partition_log.write(make_batch(2), leader_epoch=EPOCH)
        await partition_log.close()
    run(scenario())


def test_a_write_below_the_latest_epoch_is_refused_before_anything_is_written(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        await write_epochs(partition_log, [3])
        with pytest.raises(InvariantViolation, match="below the latest epoch"):
            partition_log.write(make_batch(1), leader_epoch=LeaderEpoch(2))
        assert partition_log.log_end_offset == 3
        await partition_log.close()
    run(scenario())


# -- durable end and high watermark ----------------------------------------------------------


def test_local_commit_moves_the_high_watermark_with_the_durable_end_after_durable_listeners(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        heard = []
        partition_log.add_durable_listener(lambda: heard.append(("durable", partition_log.durable_end_offset,
                                                                 partition_log.high_watermark)))
        partition_log.add_append_listener(lambda: heard.append(("commit", partition_log.durable_end_offset,
                                                                partition_log.high_watermark)))
        pending = partition_log.write(make_batch(0), leader_epoch=EPOCH)
        assert heard == []  # written, not yet fsynced
        await pending.durable()
        assert heard == [("durable", 3, 0), ("commit", 3, 3)]
        with pytest.raises(InvariantViolation, match="external commit"):
            partition_log.advance_high_watermark(Offset(3))
        await partition_log.close()
    run(scenario())


def test_external_commit_high_watermark_never_passes_the_durable_end_nor_moves_back(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, EXTERNAL)
        commits, durables = [], []
        partition_log.add_append_listener(lambda: commits.append(partition_log.high_watermark))
        partition_log.add_durable_listener(lambda: durables.append(partition_log.durable_end_offset))
        first = partition_log.write(make_batch(0), leader_epoch=EPOCH)
        second = partition_log.write(make_batch(1), leader_epoch=EPOCH)
        with pytest.raises(InvariantViolation, match="beyond the durable end"):
            partition_log.advance_high_watermark(Offset(3))  # written, not fsynced
        await first.durable()
        await second.durable()
        assert durables == [6] and commits == [] and partition_log.high_watermark == 0
        assert partition_log.read(Offset(0), 1 << 20) == []  # consumers see committed data only
        partition_log.advance_high_watermark(Offset(3))
        partition_log.advance_high_watermark(Offset(2))  # never backwards: a no-op
        assert partition_log.high_watermark == 3 and commits == [3]
        assert [record.offset for record in read_all(partition_log)] == [0, 1, 2]
        with pytest.raises(InvariantViolation, match="beyond the durable end"):
            partition_log.advance_high_watermark(Offset(7))
        partition_log.advance_high_watermark(Offset(6))
        assert commits == [3, 6]
        await partition_log.close()

        reopened = await open_log(tmp_path, EXTERNAL)  # a replica restarts knowing nothing committed
        assert (reopened.high_watermark, reopened.durable_end_offset, reopened.log_end_offset) == (0, 6, 6)
        reopened.update_config(with_config(EXTERNAL, external_commit=False))
        assert reopened.high_watermark == 6  # local commit again: the durable end
        await reopened.close()
    run(scenario())


def test_external_commit_in_relaxed_mode_counts_written_data_as_durable(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, with_config(EXTERNAL, flush_fsync=False))
        durables = []
        partition_log.add_durable_listener(lambda: durables.append(partition_log.durable_end_offset))
        partition_log.write(make_batch(0), leader_epoch=EPOCH)
        assert durables == [3] and partition_log.high_watermark == 0
        partition_log.advance_high_watermark(Offset(3))
        assert partition_log.high_watermark == 3
        await partition_log.close()
    run(scenario())


# -- follower appends ------------------------------------------------------------------------


def test_follower_keeps_the_leaders_offsets_epochs_and_bytes(tmp_path):
    async def scenario():
        leader = await open_log(tmp_path / "leader", SMALL_SEGMENTS)
        await write_epochs(leader, [1, 1, 2, 2, 2, 4, 4])
        follower = await open_log(tmp_path / "follower", SMALL_SEGMENTS)
        data = raw_batches(leader)
        two_batches = sum(batch_sizes(data)[:2])
        first = follower.write_as_follower(data[:two_batches])
        assert (first.base_offset, first.last_offset, first.leader_epoch) == (0, 5, 1)
        second = follower.write_as_follower(memoryview(data)[two_batches:])
        assert (second.base_offset, second.last_offset, second.leader_epoch) == (6, 20, 4)
        await second.durable()
        assert raw_batches(follower) == data
        assert follower.leader_epoch_entries() == leader.leader_epoch_entries() == [
            EpochEntry(1, 0), EpochEntry(2, 6), EpochEntry(4, 15)]
        assert [(info.base_offset, info.leader_epoch) for info in follower.segments()] == [
            (info.base_offset, info.leader_epoch) for info in leader.segments()]  # one epoch per segment
        await leader.close()
        await follower.close()
    run(scenario())


def test_follower_refuses_gaps_overlaps_corruption_and_epochs_going_back_writing_nothing(tmp_path):
    async def scenario():
        leader = await open_log(tmp_path / "leader", EXTERNAL)
        await write_epochs(leader, [1, 1, 3])
        data = raw_batches(leader)
        first_size = batch_sizes(data)[0]
        follower = await open_log(tmp_path / "follower", EXTERNAL)
        with pytest.raises(UnexpectedAppendOffset):
            follower.write_as_follower(data[first_size:])  # a gap: starts at 3, log end 0
        follower.write_as_follower(data[:first_size])
        with pytest.raises(UnexpectedAppendOffset):
            follower.write_as_follower(data)  # an overlap: starts at 0, log end 3
        corrupt = bytearray(data[first_size:])
        corrupt[-1] ^= 0xFF  # the last batch's last byte: its CRC no longer holds
        with pytest.raises(CorruptRecordBatch):
            follower.write_as_follower(corrupt)
        assert follower.log_end_offset == 3  # the good batch before the corrupt one was not written
        stale = await open_log(tmp_path / "stale", EXTERNAL)
        await write_epochs(stale, [5])
        with pytest.raises(InvariantViolation, match="did not truncate"):
            stale.write_as_follower(rebased(data[first_size:], Offset(3)))  # epochs 1 and 3 after 5
        assert stale.log_end_offset == 3
        for partition_log in (leader, follower, stale):
            await partition_log.close()
    run(scenario())




# -- suffix truncation ---------------------------------------------------------------------


def segment_files(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.suffix in (".log", ".index", ".timeindex"))


def test_truncation_inside_the_active_segment_then_appends_then_recovery(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, EXTERNAL)
        await write_epochs(partition_log, [1, 1, 1, 1])
        partition_log.advance_high_watermark(Offset(3))
        assert await partition_log.truncate_to(Offset(7)) == 6  # inside batch 6..8: the whole batch goes
        assert partition_log.log_end_offset == 6
        assert partition_log.durable_end_offset == 6 and partition_log.high_watermark == 3
        kept = stored_batches(partition_log)
        assert [batch[:3] for batch in kept] == [(0, 2, 1), (3, 5, 1)]
        await write_epochs(partition_log, [2, 2], first_tag=10)
        expected = stored_batches(partition_log)
        assert [batch[:3] for batch in expected] == [(0, 2, 1), (3, 5, 1), (6, 8, 2), (9, 11, 2)]
        assert partition_log.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(2, 6)]
        assert await partition_log.truncate_to(Offset(12)) == 12  # at the end: nothing to do
        await partition_log.close()

        reopened = await open_log(tmp_path, EXTERNAL)
        assert stored_batches(reopened) == expected and reopened.log_end_offset == 12
        assert reopened.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(2, 6)]
        await reopened.close()
    run(scenario())


def test_truncation_across_segments_reopens_the_cut_segment_and_deletes_later_ones(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, SMALL_SEGMENTS)
        await write_epochs(partition_log, [1] * 12)
        await partition_log.flush()  # sealed segments get their index files
        before = partition_log.segments()
        assert len(before) >= 4 and all(info.sealed for info in before[:-1])
        cut_segment = before[1]
        target = cut_segment.base_offset + 3  # its second batch
        assert await partition_log.truncate_to(Offset(target)) == target
        after = partition_log.segments()
        assert [info.base_offset for info in after] == [before[0].base_offset, cut_segment.base_offset]
        assert not after[-1].sealed and after[-1].last_offset == target - 1
        assert segment_files(tmp_path) == [f"{before[0].base_offset:020d}.index", f"{before[0].base_offset:020d}.log",
                                           f"{before[0].base_offset:020d}.timeindex", f"{cut_segment.base_offset:020d}.log"]
        assert (tmp_path / f"{cut_segment.base_offset:020d}.log").stat().st_size == after[-1].size_bytes
        await write_epochs(partition_log, [2, 2, 2, 2], first_tag=50)  # a new epoch rolls the reopened segment
        expected = stored_batches(partition_log)
        assert [batch[2] for batch in expected] == [1] * (target // 3) + [2] * 4
        partition_log.advance_high_watermark(partition_log.durable_end_offset)
        assert partition_log.offset_for_timestamp(BASE_TIME_MS + 50) == (target, BASE_TIME_MS + 50)
        await partition_log.close()

        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert stored_batches(reopened) == expected
        assert [info.base_offset for info in reopened.segments()][:2] == [before[0].base_offset, cut_segment.base_offset]
        assert reopened.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(2, target)]
        await reopened.close()
    run(scenario())


def test_truncation_at_a_segment_base_empties_that_segment(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, SMALL_SEGMENTS)
        await write_epochs(partition_log, [1] * 9)
        before = partition_log.segments()
        base = before[1].base_offset
        assert await partition_log.truncate_to(Offset(base)) == base
        after = partition_log.segments()
        assert [info.base_offset for info in after] == [before[0].base_offset, base]
        assert after[0].sealed and after[1].size_bytes == 0 and after[1].last_offset == base - 1
        await write_epochs(partition_log, [3], first_tag=30)
        expected = stored_batches(partition_log)
        await partition_log.close()
        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert stored_batches(reopened) == expected
        assert reopened.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(3, base)]
        assert await reopened.truncate_to(Offset(0)) == 0  # everything, down to an empty log
        assert reopened.log_end_offset == 0 and reopened.leader_epoch_entries() == []
        assert segment_files(tmp_path) == [f"{0:020d}.log"]
        await reopened.close()
    run(scenario())


def test_truncation_below_the_high_watermark_is_an_invariant_violation(tmp_path):
    async def scenario():
        local = await open_log(tmp_path / "local")
        await write_epochs(local, [1, 1])
        with pytest.raises(InvariantViolation, match="below the high watermark"):
            await local.truncate_to(Offset(3))  # local commit: durable data is committed
        external = await open_log(tmp_path / "external", EXTERNAL)
        await write_epochs(external, [1, 1, 1])
        external.advance_high_watermark(Offset(4))  # inside the second batch
        with pytest.raises(InvariantViolation, match="below the high watermark"):
            await external.truncate_to(Offset(5))  # would cut that whole batch, 3..5
        assert external.log_end_offset == 9
        assert await external.truncate_to(Offset(6)) == 6
        await local.close()
        await external.close()

        restarted = await open_log(tmp_path / "external", EXTERNAL)  # knows nothing committed...
        restarted.set_archived_offset(Offset(2))  # ...but 0..2 are in the cold tier
        with pytest.raises(InvariantViolation, match="below the archived offset"):
            await restarted.truncate_to(Offset(1))
        assert await restarted.truncate_to(Offset(3)) == 3
        await restarted.close()
    run(scenario())


def test_truncated_appends_fail_durable_even_when_new_data_takes_their_offsets(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, EXTERNAL)
        await write_epochs(partition_log, [1])
        doomed = partition_log.write(make_batch(1), leader_epoch=LeaderEpoch(1))
        truncation = asyncio.create_task(partition_log.truncate_to(Offset(3)))
        await asyncio.sleep(0)
        with pytest.raises(KafkaStorageError, match="being truncated"):
            partition_log.write(make_batch(2), leader_epoch=LeaderEpoch(2))
        await truncation
        replacement = partition_log.write(make_batch(3), leader_epoch=LeaderEpoch(2))
        assert (replacement.base_offset, replacement.last_offset) == (doomed.base_offset, doomed.last_offset)
        await replacement.durable()
        with pytest.raises(AppendTruncated):
            await doomed.durable()
        await partition_log.close()
    run(scenario())


def test_truncation_waits_for_a_running_fsync_round(tmp_path, monkeypatch):
    """An append made durable by the round the truncation waited for reports durable once;
    asked again after the truncation removed it, durable() raises AppendTruncated."""
    async def scenario():
        partition_log = await open_log(tmp_path, EXTERNAL)
        await write_epochs(partition_log, [1])
        release = asyncio.Event()
        loop = asyncio.get_running_loop()
        real_sync = flusher._sync_data

        def stuck_sync(descriptor):  # fault point: a slow disk
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)
            real_sync(descriptor)

        monkeypatch.setattr(flusher, "_sync_data", stuck_sync)
        pending = partition_log.write(make_batch(1), leader_epoch=LeaderEpoch(1))
        waiting = asyncio.create_task(pending.durable())
        truncation = asyncio.create_task(partition_log.truncate_to(Offset(3)))
        await asyncio.sleep(0.05)
        assert not waiting.done() and not truncation.done()
        assert partition_log.log_end_offset == 6
        with pytest.raises(KafkaStorageError, match="being truncated"):
            partition_log.write(make_batch(2), leader_epoch=LeaderEpoch(1))
        monkeypatch.setattr(flusher, "_sync_data", real_sync)
        release.set()
        assert (await waiting).base_offset == 3  # durable before the truncation ran
        assert await truncation == 3
        with pytest.raises(AppendTruncated):
            await pending.durable()
        await partition_log.close()
    run(scenario())


# -- leader epoch cache ----------------------------------------------------------------------


def test_end_offset_for_follows_kafkas_rules():
    cache = LeaderEpochCache([EpochEntry(2, 10), EpochEntry(4, 20), EpochEntry(7, 35)])
    log_end = 50
    assert cache.end_offset_for(7, log_end) == (7, 50)  # the latest epoch: the log end
    assert cache.end_offset_for(4, log_end) == (4, 35)  # a known epoch: the next one's start
    assert cache.end_offset_for(5, log_end) == (4, 35)  # between: largest known below, next start
    assert cache.end_offset_for(3, log_end) == (2, 20)
    assert cache.end_offset_for(1, log_end) == (1, 10)  # below the first: requested, first start
    assert cache.end_offset_for(8, log_end) == (-1, -1)  # above every known epoch
    assert cache.end_offset_for(-1, log_end) == (-1, -1)  # no epoch
    assert LeaderEpochCache().end_offset_for(0, log_end) == (-1, -1)  # nothing known
    assert [cache.epoch_for_offset(offset) for offset in (9, 10, 19, 20, 49)] == [-1, 2, 2, 4, 7]
    cache.truncate_from_start(25)
    assert cache.entries == [EpochEntry(4, 25), EpochEntry(7, 35)]
    cache.truncate_from_start(35)
    assert cache.entries == [EpochEntry(7, 35)]
    cache.truncate_from_end(35)
    assert cache.entries == [] and cache.latest_epoch == -1


def test_epoch_cache_is_persisted_answers_after_reopen_and_follows_truncation(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, SMALL_SEGMENTS)
        await write_epochs(partition_log, [1, 1, 3, 3, 5])
        assert checkpoint_text(tmp_path) == "0\n3\n1 0\n3 6\n5 12\n"
        answers = {epoch: partition_log.end_offset_for(LeaderEpoch(epoch)) for epoch in range(-1, 7)}
        assert answers == {-1: (-1, -1), 0: (0, 0), 1: (1, 6), 2: (1, 6), 3: (3, 12), 4: (3, 12),
                           5: (5, 15), 6: (-1, -1)}
        assert partition_log.latest_epoch == 5 and partition_log.epoch_for_offset(Offset(7)) == 3
        await partition_log.close()

        reopened = await open_log(tmp_path, SMALL_SEGMENTS)
        assert {epoch: reopened.end_offset_for(LeaderEpoch(epoch)) for epoch in range(-1, 7)} == answers
        await reopened.truncate_to(Offset(9))
        assert reopened.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(3, 6)]
        assert checkpoint_text(tmp_path) == "0\n2\n1 0\n3 6\n"  # durable when truncate_to returns
        assert reopened.end_offset_for(LeaderEpoch(3)) == (3, 9)
        await reopened.truncate_to(Offset(6))
        assert checkpoint_text(tmp_path) == "0\n1\n1 0\n"
        await reopened.close()
    run(scenario())


def test_a_missing_or_garbled_checkpoint_is_rebuilt_from_the_batch_headers(tmp_path, caplog):
    async def scenario():
        partition_log = await open_log(tmp_path, SMALL_SEGMENTS)
        await write_epochs(partition_log, [2, 2, 2, 4, 7])  # the sealed segments are trusted at reopen
        await partition_log.close()
        expected = "0\n3\n2 0\n4 9\n7 12\n"
        stale, short, unordered, version_1 = b"0\n2\n2 0\n4 9\n", b"0\n3\n2 0\n4 9\n", b"0\n2\n4 9\n2 0\n", b"1\n1\n2 0\n"
        for damage in (None, stale, short, b"\xff\x00garbage", unordered, version_1):
            path = tmp_path / LEADER_EPOCH_FILE_NAME
            path.unlink()
            if damage is not None:
                path.write_bytes(damage)
            reopened = await open_log(tmp_path, SMALL_SEGMENTS)
            assert reopened.leader_epoch_entries() == [EpochEntry(2, 0), EpochEntry(4, 9), EpochEntry(7, 12)]
            assert checkpoint_text(tmp_path) == expected, damage
            await reopened.close()
        assert "is damaged" in caplog.text and "is stale" in caplog.text
    with caplog.at_level(logging.INFO, logger="shoal.storage"):
        run(scenario())


def test_epoch_cache_follows_delete_records_and_retention(tmp_path):
    async def scenario():
        config = with_config(SMALL_SEGMENTS, external_commit=False, retention_bytes=2500)
        partition_log = await open_log(tmp_path, config)
        await write_epochs(partition_log, [1, 1, 1, 1, 2, 2, 3, 3, 3])
        assert partition_log.leader_epoch_entries() == [EpochEntry(1, 0), EpochEntry(2, 12), EpochEntry(3, 18)]
        await partition_log.delete_records_before(Offset(5))
        assert partition_log.leader_epoch_entries() == [EpochEntry(1, 5), EpochEntry(2, 12), EpochEntry(3, 18)]
        assert partition_log.end_offset_for(LeaderEpoch(0)) == (0, 5)
        await partition_log.flush()
        assert checkpoint_text(tmp_path) == "0\n3\n1 5\n2 12\n3 18\n"
        await partition_log.housekeeping(0)  # retention by size: the oldest segment goes
        start = partition_log.log_start_offset
        assert 5 < start == partition_log.segments()[0].base_offset < 12
        assert partition_log.leader_epoch_entries() == [EpochEntry(1, start), EpochEntry(2, 12), EpochEntry(3, 18)]
        await partition_log.flush()
        entries = partition_log.leader_epoch_entries()
        await partition_log.close()
        reopened = await open_log(tmp_path, config)
        assert reopened.leader_epoch_entries() == entries
        await reopened.close()
    run(scenario())
