"""Recovery: an empty node pointed at the bucket restores a topic's history."""

import asyncio

import pytest

from tests.test_tiered_archiver import Node, settings
from tests.tiered_support import FileSegmentLog, decode_offsets, local_cloud, moto_s3  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def cloud(request, tmp_path):
    if request.param == "local":
        return local_cloud(tmp_path / "shared")
    server = request.getfixturevalue("moto_s3")
    return server.cloud_config(server.new_bucket(), cache_dir=str(tmp_path / "cache"))


def test_empty_node_recovers_history_with_original_offsets_and_timestamps(tmp_path, cloud):
    async def scenario():
        original = Node(tmp_path / "a", cloud, topic_settings=lambda topic: settings(partition_count=2))
        written = {}
        for partition in (0, 1):
            log = original.create_log("events", partition)
            for batch in range(25):
                log.append_records(4, 120, timestamp_ms=1_650_000_000_000 + partition * 1000 + batch)
            log.roll()
            written[partition] = decode_offsets(log.read_local(0, 10**9))
        await original.settle()
        await original.tiered.close()

        fresh = Node(tmp_path / "b", cloud, topic_settings=lambda topic: settings(partition_count=2))
        progress = []
        report = await fresh.tiered.recover_topic("events", None, progress.append)
        assert [step.partition for step in progress] == [0, 1]
        assert progress[-1].partitions_done == progress[-1].partitions_total == 2
        for partition in (0, 1):
            log = fresh.logs[("events", partition)]
            expected_next = written[partition][-1][0] + 1
            assert report[partition].next_offset == expected_next
            assert log.log_start_offset == expected_next == log.log_end_offset
            assert fresh.tiered.may_read_from_cloud("events", 0, log.log_start_offset)
            assert fresh.tiered.remote_start_offset("events", partition) == 0
            offset, records = 0, []
            while offset < expected_next:
                data = await fresh.tiered.reader.read("events", partition, offset, 4000)
                batch_records = [record for record in decode_offsets(data) if record[0] >= offset]
                records.extend(batch_records)
                offset = batch_records[-1][0] + 1
            assert records == written[partition]

        # new writes continue the offsets and extend the same manifest
        log = fresh.logs[("events", 0)]
        base, _ = log.append_records(3, 50)
        assert base == written[0][-1][0] + 1
        log.roll()
        await fresh.settle()
        manifest = fresh.tiered._archivers[("events", 0)].manifest
        assert manifest.last_offset == base + 2
        assert manifest.segments[0].base_offset == 0
        await fresh.tiered.close()
    asyncio.run(scenario())


def test_recovery_of_unknown_topic_is_an_error(tmp_path):
    async def scenario():
        node = Node(tmp_path, local_cloud(tmp_path))
        with pytest.raises(LookupError):
            await node.tiered.recover_topic("never-archived")
        await node.tiered.close()
    asyncio.run(scenario())


def test_deleting_a_topic_deletes_its_bucket_data_and_a_new_topic_starts_clean(tmp_path):
    async def scenario():
        node = Node(tmp_path, local_cloud(tmp_path))
        log = node.create_log("gone", 0)
        for _ in range(30):
            log.append_records(4, 100)
        await node.settle()
        assert [info async for info in node.tiered.store.list("")]
        del node.logs[("gone", 0)]
        node.tiered.delete_topic("gone", 1)
        await node.tiered.drain()
        assert [info async for info in node.tiered.store.list("")] == []
        recreated = FileSegmentLog(tmp_path / "logs2", "gone", 0, node.clock)
        node.logs[("gone", 0)] = recreated
        for _ in range(30):
            recreated.append_records(4, 100)
        await node.settle()
        manifest = node.tiered._archivers[("gone", 0)].manifest
        assert manifest.segments[0].base_offset == 0 and manifest.revision == 1
        assert recreated.archived_offset == manifest.last_offset
        await node.tiered.close()
    asyncio.run(scenario())
