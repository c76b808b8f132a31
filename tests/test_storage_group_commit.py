"""Group commit: concurrent appends share fsyncs (counted by the probe, not timed), and a
failed fsync fails the waiting appends and every later one."""

from __future__ import annotations

import asyncio
import errno

import pytest

from broker.storage import flusher
from broker.storage.api import KafkaStorageError
from tests.storage_support import EPOCH, log_config, make_batch, open_log, read_all, run


def test_concurrent_appends_share_a_few_fsyncs(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=1 << 20))
        rounds_before = partition_log.probe.flush_rounds
        results = await asyncio.gather(*(partition_log.append(make_batch(tag), leader_epoch=EPOCH)
                                         for tag in range(500)))
        rounds = partition_log.probe.flush_rounds - rounds_before
        assert 1 <= rounds <= 3, rounds  # 500 durable appends, a handful of fsync rounds
        assert sorted(result.base_offset for result in results) == list(range(0, 1500, 3))
        assert partition_log.high_watermark == partition_log.log_end_offset == 1500
        assert len(read_all(partition_log)) == 1500
        await partition_log.close()
    run(scenario())


def test_appends_arriving_during_an_fsync_ride_the_next_round(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(segment_bytes=1 << 20))
        rounds_before = partition_log.probe.flush_rounds
        first_wave = [asyncio.create_task(partition_log.append(make_batch(tag), leader_epoch=EPOCH)) for tag in range(50)]
        await asyncio.sleep(0)  # the first wave is written and its fsync round starts
        second_wave = [asyncio.create_task(partition_log.append(make_batch(tag), leader_epoch=EPOCH)) for tag in range(50, 300)]
        await asyncio.gather(*first_wave, *second_wave)
        assert partition_log.probe.flush_rounds - rounds_before <= 3
        assert partition_log.probe.appended_batches == 300
        await partition_log.close()
    run(scenario())


def test_sequential_appends_each_wait_for_their_own_fsync(tmp_path):
    async def scenario():
        partition_log = await open_log(tmp_path)
        rounds_before = partition_log.probe.flush_rounds
        for tag in range(5):
            await partition_log.append(make_batch(tag), leader_epoch=EPOCH)
            assert partition_log.high_watermark == partition_log.log_end_offset
        assert partition_log.probe.flush_rounds - rounds_before == 5
        await partition_log.close()
    run(scenario())


def test_failed_fsync_fails_waiters_and_later_appends(tmp_path, monkeypatch):
    async def scenario():
        partition_log = await open_log(tmp_path)
        await partition_log.append(make_batch(0), leader_epoch=EPOCH)

        def failing_sync(descriptor):
            raise OSError(errno.EIO, "injected I/O error")

        monkeypatch.setattr(flusher, "_sync_data", failing_sync)  # fault point: the disk fails
        with pytest.raises(KafkaStorageError):
            await partition_log.append(make_batch(1), leader_epoch=EPOCH)
        assert partition_log.high_watermark == 3  # the unsynced batch never became visible
        assert partition_log.probe.flush_failures == 1
        with pytest.raises(KafkaStorageError):
            await partition_log.append(make_batch(2), leader_epoch=EPOCH)
        await partition_log.close()
    run(scenario())


def test_relaxed_flush_returns_under_a_steady_stream_of_appends(tmp_path):
    """flush() waits for the round that covers what is pending when it is called, not for
    appends that keep arriving, and relaxed appends alone start no fsync rounds."""
    async def scenario():
        partition_log = await open_log(tmp_path, log_config(flush_fsync=False, segment_bytes=1 << 20))
        rounds_before = partition_log.probe.flush_rounds
        appended = 0
        stop = asyncio.Event()

        async def appender():
            nonlocal appended
            while not stop.is_set() and appended < 20_000:
                await partition_log.append(make_batch(appended, records=1, value_bytes=20), leader_epoch=EPOCH)
                appended += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(appender())
        for _ in range(50):
            await asyncio.sleep(0)
        assert partition_log.probe.flush_rounds == rounds_before
        await asyncio.wait_for(partition_log.flush(), timeout=10)
        stop.set()
        await task
        assert appended < 20_000  # flush() returned while appends were still arriving
        assert 1 <= partition_log.probe.flush_rounds - rounds_before <= 2
        await partition_log.close()
    run(scenario())
