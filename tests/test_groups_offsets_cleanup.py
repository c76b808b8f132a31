"""The __consumer_offsets cleanup (broker/groups/offsets_cleaner.py): a replay after a
cleanup restores exactly what a replay before it did; commits racing with a cleanup are
never lost; a kill -9 between the snapshot and the deletion, or anywhere under load, loses
nothing acknowledged; and the log stays bounded under an endless stream of commits."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading

from broker import limits
from broker.groups.offsets_cleaner import CleanupSettings
from broker.groups.offsets_log import OFFSETS_TOPIC
from tests.groups_support import PARTITIONS, CoordinatorHarness, async_test, observable_state
from tests.support import REPO

# Small enough that a few hundred commits trigger cleanups, with snapshots of several batches.
SMALL = CleanupSettings(log_bytes_min=8 * 1024, growth_ratio=2, check_interval_ms=0, snapshot_batch_bytes=1024)
# Cleanups every few rounds of commits, so a kill lands in or near one often.
TINY = CleanupSettings(log_bytes_min=2048, growth_ratio=2, check_interval_ms=0, snapshot_batch_bytes=512)
CHILD_TIMEOUT_S = 30
ACKNOWLEDGED_BEFORE_KILL_MIN = 3


async def build_history(harness: CoordinatorHarness, rounds: int = 20) -> None:
    """Every kind of record: stable group metadata, member and simple-group commits with
    metadata and epochs, a deleted group (tombstones), an OffsetDelete, a group that
    emptied, commits to many partitions, all overwritten many times."""
    members, generation = await harness.form_group("stable", 3)
    emptied, emptied_generation = await harness.form_group("emptied", 1)
    for round_number in range(rounds):
        await harness.commit("stable", {("orders", index): round_number * 10 + index for index in range(6)},
                             generation_id=generation, member_id=members[0], leader_epoch=round_number)
        await harness.commit("simple", {("orders", 0): round_number, ("audit", 1): 2 * round_number},
                             metadata=f"round {round_number}")
        await harness.commit("doomed", {("orders", 0): round_number})
        await harness.commit("emptied", {("audit", 0): round_number}, generation_id=emptied_generation,
                             member_id=emptied[0])
    harness.coordinator.membership.leave_group("emptied", [(emptied[0], None)])
    await harness.coordinator.drain()
    assert await harness.coordinator.delete_groups(["doomed"]) == {"doomed": 0}
    error, errors = await harness.coordinator.delete_offsets("simple", [("audit", 1)])
    assert error == 0 and set(errors.values()) == {0}


def partition_logs(harness: CoordinatorHarness):
    return [harness.manager.get(OFFSETS_TOPIC, partition) for partition in range(PARTITIONS)]


def log_bytes(harness: CoordinatorHarness) -> int:
    return sum(segment.size_bytes for log in partition_logs(harness) for segment in log.segments())


@async_test
async def test_a_replay_after_cleanup_restores_exactly_what_a_replay_before_it_did(tmp_path):
    async with CoordinatorHarness(tmp_path, cleanup=SMALL) as harness:
        await build_history(harness)
        coordinator = await harness.restart()
        before = observable_state(coordinator)
        assert set(before) == {"stable", "simple", "emptied"}
        bytes_before = log_bytes(harness)
        for partition in range(PARTITIONS):
            result = await coordinator.clean_offsets_partition(partition, force=True)
            assert harness.manager.get(OFFSETS_TOPIC, partition).log_start_offset == result.snapshot_offset
        assert observable_state(coordinator) == before  # memory untouched
        assert log_bytes(harness) < bytes_before / 4
        coordinator = await harness.restart()
        assert observable_state(coordinator) == before
        # later records still win over the snapshot
        await harness.commit("simple", {("orders", 0): 1000})
        coordinator = await harness.restart()
        assert harness.committed("simple")[("orders", 0)] == 1000
        assert observable_state(coordinator)["stable"] == before["stable"]


@async_test
async def test_a_partition_is_cleaned_only_when_its_log_outgrew_its_live_state(tmp_path):
    harness = CoordinatorHarness(tmp_path, cleanup=SMALL)
    coordinator = await harness.start()
    try:
        for index in range(200):  # a large live state, written once: nothing to gain
            await harness.commit(f"group-{index}", {("orders", 0): index})
        results = [await coordinator.clean_offsets_partition(partition) for partition in range(PARTITIONS)]
        assert results == [None, None]
        assert all(log.log_start_offset == 0 for log in partition_logs(harness))
    finally:
        await harness.stop()


@async_test
async def test_a_cleanup_waits_for_a_commit_written_but_not_yet_acknowledged(tmp_path):
    harness = CoordinatorHarness(tmp_path, cleanup=SMALL)
    coordinator = await harness.start()
    try:
        partition = coordinator.offsets_log.partition_for("racer")
        for value in range(1, 11):
            commit = asyncio.get_running_loop().create_task(harness.commit("racer", {("orders", 0): value}))
            await asyncio.sleep(0)  # the commit's batch is in the log, its fsync (and memory) pending
            assert await coordinator.clean_offsets_partition(partition, force=True) is not None
            assert set((await commit).values()) == {0}
            await harness.restart()  # the snapshot is the last record: it must hold this value
            coordinator = harness.coordinator
            assert harness.committed("racer") == {("orders", 0): value}
    finally:
        await harness.stop()


@async_test
async def test_commits_racing_with_cleanups_are_never_lost(tmp_path):
    harness = CoordinatorHarness(tmp_path, cleanup=SMALL)
    coordinator = await harness.start()
    try:
        groups = [f"racer-{index}" for index in range(12)]
        commits_per_group = 25

        async def committer(group_id: str) -> None:
            for value in range(1, commits_per_group + 1):
                errors = await harness.commit(group_id, {("orders", 0): value, ("orders", 1): -value})
                assert set(errors.values()) == {0}

        committers = [asyncio.get_running_loop().create_task(committer(group_id)) for group_id in groups]
        cleaned = 0
        while not all(task.done() for task in committers) and cleaned < 1000:
            cleaned += await coordinator.clean_offsets_partition(cleaned % PARTITIONS, force=True) is not None
        await asyncio.gather(*committers)
        assert cleaned >= 2
        expected = {group_id: {("orders", 0): commits_per_group, ("orders", 1): -commits_per_group}
                    for group_id in groups}
        assert {group_id: harness.committed(group_id) for group_id in groups} == expected
        await harness.restart()
        assert {group_id: harness.committed(group_id) for group_id in groups} == expected
    finally:
        await harness.stop()


@async_test
async def test_the_log_stays_bounded_under_an_endless_stream_of_commits(tmp_path):
    harness = CoordinatorHarness(tmp_path, cleanup=SMALL)
    coordinator = await harness.start()
    try:
        groups = [f"busy-{index}" for index in range(8)]
        largest = 0
        for round_number in range(150):  # bounded: 1200 commits of 3 partitions each
            await asyncio.gather(*(harness.commit(group_id, {("orders", partition): round_number
                                                             for partition in range(3)})
                                   for group_id in groups))
            harness.advance(limits.group_tick_interval_ms)  # ticks start cleanups when due
            await coordinator.drain()
            largest = max(largest, log_bytes(harness))
        live_bytes = sum(coordinator.cleaner._live_bytes)
        assert 0 < live_bytes and all(log.log_start_offset > 0 for log in partition_logs(harness))
        # per partition: at most max(min, ratio x live) plus the commits of one round
        assert largest <= PARTITIONS * SMALL.log_bytes_min + SMALL.growth_ratio * live_bytes + 8 * 1024
        harness.clock.advance_ms(limits.segment_delete_delay_ms)
        await harness.manager.tick(harness.clock.now_ms())
        on_disk = sum(path.stat().st_size for path in (tmp_path / "topics" / OFFSETS_TOPIC).rglob("*.log"))
        assert on_disk == log_bytes(harness) <= largest
        await harness.restart()
        assert all(harness.committed(group_id) == {("orders", partition): 149 for partition in range(3)}
                   for group_id in groups)
    finally:
        await harness.stop()


# ---------------------------------------------------------------------------------------
# kill -9: real child processes on the same directory


PAUSED_CHILD = r"""
import asyncio, json, sys
from pathlib import Path
from tests.groups_support import CoordinatorHarness, observable_state
from tests.test_groups_offsets_cleanup import SMALL, build_history

async def main(directory):
    harness = CoordinatorHarness(Path(directory), cleanup=SMALL)
    await harness.start()
    await build_history(harness)
    coordinator = await harness.restart()
    print(json.dumps(observable_state(coordinator)), flush=True)

    async def stop_here(partition, offset):
        print(f"snapshot {partition} {offset}", flush=True)
        await asyncio.sleep(3600)  # killed here, between the durable snapshot and the deletion

    coordinator.cleaner.after_snapshot_durable = stop_here
    await coordinator.clean_offsets_partition(0, force=True)

asyncio.run(main(sys.argv[1]))
"""

LOADED_CHILD = r"""
import asyncio, sys
from pathlib import Path
from broker import limits
from tests.groups_support import CoordinatorHarness
from tests.test_groups_offsets_cleanup import TINY

async def main(directory, first_value):
    harness = CoordinatorHarness(Path(directory), cleanup=TINY)
    coordinator = await harness.start()
    print("ready", flush=True)
    groups = [f"loaded-{index}" for index in range(6)]
    for value in range(first_value, first_value + 1_000_000):
        results = await asyncio.gather(*(harness.commit(group_id, {("orders", 0): value, ("orders", 1): value})
                                         for group_id in groups))
        assert all(set(errors.values()) == {0} for errors in results), results
        print(f"acked {value}", flush=True)  # every commit of this value returned: acknowledged
        harness.advance(limits.group_tick_interval_ms)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def start_child(code: str, *arguments: str) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code, *arguments], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environment)


def read_line(process: subprocess.Popen) -> bytes:
    guard = threading.Timer(CHILD_TIMEOUT_S, process.kill)
    guard.start()
    try:
        line = process.stdout.readline()
    finally:
        guard.cancel()
    assert line, process.stderr.read()
    return line


def kill_minus_9(process: subprocess.Popen) -> bytes:
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL, process.returncode
    return output


def stop_child(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_kill_minus_9_between_snapshot_and_delete_loses_nothing(tmp_path):
    process = start_child(PAUSED_CHILD, str(tmp_path))
    try:
        expected = json.loads(read_line(process))
        marker = read_line(process).split()
        assert marker[0] == b"snapshot"
        snapshot_offset = int(marker[2])
        kill_minus_9(process)
    finally:
        stop_child(process)

    async def check() -> None:
        harness = CoordinatorHarness(tmp_path, cleanup=SMALL)
        coordinator = await harness.start()
        try:
            cleaned_log = harness.manager.get(OFFSETS_TOPIC, 0)
            assert cleaned_log.log_start_offset == 0 < snapshot_offset < cleaned_log.log_end_offset
            assert observable_state(coordinator) == expected  # old records, then the snapshot
            result = await coordinator.clean_offsets_partition(0, force=True)  # finish the job
            assert cleaned_log.log_start_offset == result.snapshot_offset > snapshot_offset
            assert observable_state(await harness.restart()) == expected
        finally:
            await harness.stop()
    asyncio.run(asyncio.wait_for(check(), timeout=60))


def test_kill_minus_9_under_commits_and_cleanups_loses_no_acknowledged_commit(tmp_path):
    chance = random.Random()
    next_value = 1
    cleaned_ever = False
    for _ in range(3):  # each round recovers what the previous kill left
        process = start_child(LOADED_CHILD, str(tmp_path), str(next_value))
        try:
            assert read_line(process) == b"ready\n"
            early = [read_line(process) for _ in range(ACKNOWLEDGED_BEFORE_KILL_MIN)]  # slow machines too
            threading.Event().wait(chance.uniform(0.0, 0.8))
            output = b"".join(early) + kill_minus_9(process)
        finally:
            stop_child(process)
        acknowledged = [int(line.split()[1]) for line in output.splitlines() if line.startswith(b"acked ")]
        assert acknowledged, "the child acknowledged nothing before the kill"
        last_acknowledged = acknowledged[-1]

        async def check() -> bool:
            async with CoordinatorHarness(tmp_path, cleanup=TINY) as harness:
                for index in range(6):
                    committed = harness.committed(f"loaded-{index}")
                    for partition in (0, 1):
                        # the value acknowledged last, or the one in flight at the kill
                        assert last_acknowledged <= committed[("orders", partition)] <= last_acknowledged + 1
                return any(log.log_start_offset > 0 for log in partition_logs(harness))
        cleaned_ever |= asyncio.run(asyncio.wait_for(check(), timeout=60))
        next_value = last_acknowledged + 2
    assert cleaned_ever, "no cleanup ran: the test did not exercise what it claims"
