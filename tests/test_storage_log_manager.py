"""LogManager: directory layout, create/get/delete, recovery of every partition at start,
ticks."""

from __future__ import annotations

import asyncio

from broker.clock import ManualClock
from broker.ids import Offset
from broker.storage.log_manager import LogManager
from tests.storage_support import BASE_TIME_MS, EPOCH, log_config, make_batch, read_all, run, with_config


def test_partitions_live_under_topics_topic_partition_and_are_recovered_at_start(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        manager = LogManager(tmp_path, clock, lambda topic, partition: log_config())
        await manager.start()
        logs = await asyncio.gather(*(manager.create(topic, partition)
                                      for topic in ("orders", "audit.events") for partition in range(3)))
        for number, partition_log in enumerate(logs):
            for tag in range(number + 1):
                await partition_log.append(make_batch(tag), leader_epoch=EPOCH)
        assert (tmp_path / "topics" / "orders" / "2" / f"{0:020d}.log").exists()
        assert manager.get("orders", 1) is logs[1] and manager.get("orders", 9) is None
        assert await manager.create("orders", 1) is logs[1]  # idempotent
        await manager.close()

        restarted = LogManager(tmp_path, clock, lambda topic, partition: log_config())
        await restarted.start()
        assert len(restarted) == 6
        assert restarted.get("audit.events", 2).log_end_offset == 6 * 3
        assert [record.offset for record in read_all(restarted.get("orders", 0))] == [0, 1, 2]
        await restarted.close()
    run(scenario())


def test_concurrent_creates_of_one_partition_open_it_once(tmp_path):
    async def scenario():
        manager = LogManager(tmp_path, ManualClock(), lambda topic, partition: log_config())
        await manager.start()
        opened = await asyncio.gather(*(manager.create("t", 0) for _ in range(5)))
        assert all(partition_log is opened[0] for partition_log in opened)
        await manager.close()
    run(scenario())


def test_delete_removes_the_partition_directory_and_empty_topic_directory(tmp_path):
    async def scenario():
        manager = LogManager(tmp_path, ManualClock(), lambda topic, partition: log_config())
        await manager.start()
        for partition in range(2):
            partition_log = await manager.create("gone", partition)
            await partition_log.append(make_batch(1), leader_epoch=EPOCH)
        await manager.delete("gone", 0)
        assert manager.get("gone", 0) is None and not (tmp_path / "topics" / "gone" / "0").exists()
        assert (tmp_path / "topics" / "gone").exists()
        await manager.delete("gone", 1)
        assert not (tmp_path / "topics" / "gone").exists()
        await manager.close()
    run(scenario())


def test_tick_runs_housekeeping_on_every_partition(tmp_path):
    async def scenario():
        clock = ManualClock(BASE_TIME_MS)
        config = log_config(segment_bytes=4096, retention_bytes=4096)
        manager = LogManager(tmp_path, clock, lambda topic, partition: config)
        await manager.start()
        logs = [await manager.create("t", partition) for partition in range(2)]
        created_with_other_config = await manager.create("u", 0, with_config(config, retention_bytes=-1))
        for partition_log in (*logs, created_with_other_config):
            for tag in range(30):
                await partition_log.append(make_batch(tag, records=4, value_bytes=150), leader_epoch=EPOCH)
        await manager.tick(clock.now_ms())
        assert all(partition_log.log_start_offset > 0 for partition_log in logs)
        assert created_with_other_config.log_start_offset == 0
        assert manager.probe_totals().appended_batches == 90
        assert manager.probe_totals().segments_deleted == sum(log.probe.segments_deleted for log in logs)
        await manager.close()
    run(scenario())


def test_a_restored_partition_starts_at_its_remote_end_offset(tmp_path):
    async def scenario():
        manager = LogManager(tmp_path, ManualClock(), lambda topic, partition: log_config())
        await manager.start()
        partition_log = await manager.create("restored", 0, start_offset=Offset(12_345))
        assert (await partition_log.append(make_batch(1), leader_epoch=EPOCH)).base_offset == 12_345
        await manager.close()
    run(scenario())
