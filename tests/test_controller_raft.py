"""The controller as a Raft group: real pysyncobj over real sockets on 127.0.0.1, every
node ticking on the one event loop of the test. Conditions are polled with deadlines."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from broker.clock import SYSTEM_CLOCK
from broker.controller import CommandNotApplied, CommandOutcomeUnknown, Controller, ControllerStartError
from broker.controller.events import ControllerLeadershipChanged, PartitionChanged, TopicCreated, TopicDeleted
from tests.support import free_port

pytestmark = pytest.mark.timeout(120)


async def wait_until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


class Group:
    """`size` controller nodes with data under `root`, started and stopped one by one."""

    def __init__(self, root: Path, size: int, password: str | None = None, **options) -> None:
        self.root = root
        self.addresses = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        self.password = password
        # No heartbeats unless a test asks (they change the state: full-state comparisons race them).
        self.options = {"heartbeat_interval_ms": 600_000, "session_timeout_ms": 3_600_000} | options
        self.nodes: list[Controller | None] = [None] * size

    async def start(self, index: int, password: str | None = None) -> Controller:
        node = Controller(index, self.addresses[index], self.addresses, self.root / f"node{index}",
                          password or self.password, SYSTEM_CLOCK, **self.options)
        await node.start()
        self.nodes[index] = node
        return node

    async def stop(self, index: int) -> None:
        node, self.nodes[index] = self.nodes[index], None
        await node.stop()

    @property
    def running(self) -> list[Controller]:
        return [node for node in self.nodes if node is not None]

    async def leader(self, timeout_s: float = 10.0) -> Controller:
        """The one running node that leads, once every running node agrees on it."""
        def agreed() -> bool:
            leaders = [node for node in self.running if node.is_leader]
            return (len(leaders) == 1 and leaders[0].is_ready
                    and all(node.leader_address == leaders[0].rpc_address for node in self.running))
        await wait_until(agreed, "one leader that every running node follows", timeout_s)
        return next(node for node in self.running if node.is_leader)

    async def ready(self) -> Controller:
        """Wait for the leader, register every node as a broker; returns the leader."""
        leader = await self.leader()
        for node in self.running:
            result = await node.register_broker(f"127.0.0.1:{9092 + int(node.node_id)}")
            assert result.ok, result
        return leader

    async def converged(self, what: str = "identical state on every running node", timeout_s: float = 10.0) -> dict:
        await wait_until(lambda: all(node.snapshot() == self.running[0].snapshot() for node in self.running), what,
                         timeout_s)
        return self.running[0].snapshot()

    async def __aenter__(self) -> "Group":
        for index in range(len(self.nodes)):
            await self.start(index)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for index, node in enumerate(self.nodes):
            if node is not None:
                await self.stop(index)


def test_single_node_creates_alters_deletes_and_restarts_with_state_intact(tmp_path):
    async def scenario():
        address = f"127.0.0.1:{free_port()}"
        changes = []
        node = Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK)
        node.add_listener(changes.append)
        started = time.monotonic()
        await node.start()
        await node.wait_ready(timeout_ms=5_000)
        assert node.is_leader and time.monotonic() - started < 2.0
        assert (await node.register_broker("127.0.0.1:9092")).ok
        created = await node.create_topic("orders", 3, 1, {"retention.ms": "1000"})
        assert created.ok and created.value.partitions == 3
        assert (await node.create_topic("orders", 1, 1)).error == "topic_already_exists"
        assert (await node.create_topic("two", 1, 2)).error == "invalid_replication_factor"
        assert (await node.create_topic("gone", 2, 1)).ok
        assert (await node.add_partitions("orders", 5)).value.partitions == 5
        assert (await node.set_topic_configs("orders", {"retention.ms": "5"})).ok
        assert (await node.elect_leader("orders", 4, 0, 0)).value == 1
        deleted = await node.delete_topic("gone")
        assert deleted.ok and deleted.value.name == "gone"
        block = (await node.allocate_producer_id_block()).value
        await wait_until(lambda: node.cluster_id is not None, "a cluster id")
        before = node.snapshot()
        assert node.topic_names() == ["orders"] and node.topic("orders").configs["retention.ms"] == "5"
        assert node.topic("orders").leader_epochs == [0, 0, 0, 0, 1]
        kinds = Counter(type(change).__name__ for change in changes)
        assert kinds["TopicCreated"] == 2 and kinds["TopicDeleted"] == 1 and kinds["PartitionChanged"] == 1
        assert ControllerLeadershipChanged(True, node.term) in changes
        await node.stop()

        again = Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK)
        await again.start()
        await again.wait_ready(timeout_ms=5_000)
        assert again.snapshot() == before
        assert again.topic_by_id(created.value.topic_id).name == "orders"
        assert (await again.allocate_producer_id_block()).value[0] >= block[1]
        await again.stop()

    asyncio.run(scenario())


def test_three_nodes_agree_and_a_follower_command_applies_everywhere(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3) as group:
            leader = await group.ready()
            follower = next(node for node in group.running if not node.is_leader)
            created = await follower.create_topic("events", 6, 2)
            assert created.ok
            state = await group.converged()
            partitions = state["topics"]["events"]["partitions"]
            assert Counter(partition["leader"] for partition in partitions) == {0: 2, 1: 2, 2: 2}
            assert all(len(set(partition["replicas"])) == 2 for partition in partitions)
            assert state["cluster_id"] is not None and leader.leader_node_id == leader.node_id
            assert (await follower.create_topic("wide", 1, 4)).error == "invalid_replication_factor"

    asyncio.run(scenario())


def test_leader_failover_and_the_stopped_node_catches_up_on_restart(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3) as group:
            old_leader = await group.ready()
            assert (await group.running[0].create_topic("before", 3, 3)).ok
            await group.converged()
            stopped = int(old_leader.node_id)
            await group.stop(stopped)
            started = time.monotonic()
            new_leader = await group.leader(timeout_s=8)
            failover_s = time.monotonic() - started
            assert new_leader.node_id != stopped and failover_s < 6, failover_s
            survivor = next(node for node in group.running if node is not new_leader)
            assert (await survivor.create_topic("after", 2, 2)).ok
            assert (await new_leader.add_partitions("before", 4)).ok
            assert (await new_leader.delete_topic("before")).ok
            assert (await new_leader.create_topic("before", 1, 1)).ok  # same name, new id
            expected = await group.converged()
            restarted = await group.start(stopped)
            await restarted.wait_ready(timeout_ms=10_000)
            assert await group.converged("the restarted node caught up") == expected

    asyncio.run(scenario())


def test_concurrent_elections_on_one_epoch_apply_once(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3) as group:
            await group.ready()
            assert (await group.running[0].create_topic("t", 1, 3)).ok
            await group.converged()
            results = await asyncio.gather(*(node.elect_leader("t", 0, 0, int(node.node_id))
                                             for node in group.running))
            assert sorted(result.error for result in results) == ["fenced_leader_epoch"] * 2 + ["none"]
            winner = next(node for node, result in zip(group.running, results) if result.ok)
            state = await group.converged()
            assert state["topics"]["t"]["partitions"][0]["leader"] == int(winner.node_id)
            assert state["topics"]["t"]["partitions"][0]["leader_epoch"] == 1
            assert (await group.running[1].elect_leader("t", 0, 0, 1)).error == "fenced_leader_epoch"

    asyncio.run(scenario())


def test_producer_id_blocks_from_every_node_never_overlap(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3) as group:
            await group.leader()
            results = await asyncio.gather(*(node.allocate_producer_id_block()
                                             for node in group.running for _ in range(5)))
            blocks = sorted(result.value for result in results)
            assert len(blocks) == 15 and all(start < end for start, end in blocks)
            assert all(previous[1] <= current[0] for previous, current in zip(blocks, blocks[1:]))

    asyncio.run(scenario())


def test_without_a_majority_a_command_fails_within_its_timeout(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3, call_timeout_ms=1_500) as group:
            leader = await group.leader()
            survivor = leader  # the leader keeps believing it leads for a while: the harder case
            for index, node in enumerate(group.nodes):
                if node is not survivor:
                    await group.stop(index)
            started = time.monotonic()
            with pytest.raises((CommandOutcomeUnknown, CommandNotApplied)) as failure:
                await survivor.allocate_producer_id_block()
            assert time.monotonic() - started < 2.5
            assert failure.value.kafka_error in ("request_timed_out", "not_controller")
            assert survivor.snapshot()["producer_id_blocks"] == {}  # not applied here either

    asyncio.run(scenario())


def test_log_compaction_and_a_lagging_node_installs_the_snapshot(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3, log_compaction_entries_min=20) as group:
            await group.ready()
            lagging = next(index for index, node in enumerate(group.nodes) if not node.is_leader)
            await group.stop(lagging)
            writer = group.running[0]
            for first in range(0, 60, 10):
                results = await asyncio.gather(*(writer.create_topic(f"t{index}", 1, 1)
                                                 for index in range(first, first + 10)))
                assert all(result.ok for result in results)
            expected = await group.converged()
            assert all((group.root / f"node{index}/controller/raft/snapshot.json").exists()
                       for index, node in enumerate(group.nodes) if node is not None)
            restarted = await group.start(lagging)
            await restarted.wait_ready(timeout_ms=10_000)
            assert await group.converged("the lagging node installed the snapshot") == expected
            assert (group.root / f"node{lagging}/controller/raft/snapshot.json").exists()
            await group.stop(lagging)
            again = await group.start(lagging)  # from its own snapshot and journal
            await again.wait_ready(timeout_ms=10_000)
            assert again.snapshot() == expected

    asyncio.run(scenario())


def test_the_leader_fences_a_silent_node(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3, heartbeat_interval_ms=200, session_timeout_ms=1_500) as group:
            leader = await group.ready()
            assert (await leader.create_topic("spread", 3, 2)).ok  # two partitions on each node
            silent = next(index for index, node in enumerate(group.nodes) if not node.is_leader)
            fenced = []
            leader.add_listener(lambda change: fenced.append(change.node_id)
                                if getattr(change, "change", None) == "fenced" else None)
            await group.stop(silent)
            await wait_until(lambda: fenced == [silent], "the silent node fenced", timeout_s=6)
            assert leader.live_brokers() == [index for index in range(3) if index != silent]
            await wait_until(lambda: all(node.brokers()[silent].fenced for node in group.running), "fenced everywhere")
            result = await leader.create_topic("t", 4, 2)
            assert all(silent not in partition.replicas for partition in result.value.assignments)
            moves = await leader.decommission_broker(silent)
            assert len(moves) == 2 and all(move.ok for move in moves)
            assert all(silent not in partition.replicas for partition in leader.topic("spread").assignments)
            restarted = await group.start(silent)
            await restarted.wait_ready(timeout_ms=10_000)
            assert (await restarted.register_broker(f"127.0.0.1:{9092 + silent}")).ok
            await wait_until(lambda: not leader.brokers()[silent].fenced, "the node is back")
            await asyncio.sleep(0.6)  # three heartbeats: it stays unfenced
            assert fenced == [silent] and leader.live_brokers() == [0, 1, 2]

    asyncio.run(scenario())


def test_change_events_report_topics_and_leadership(tmp_path):
    async def scenario():
        async with Group(tmp_path, 3) as group:
            await group.ready()
            seen = {int(node.node_id): [] for node in group.running}
            for node in group.running:
                node.add_listener(seen[int(node.node_id)].append)
            created = await group.running[2].create_topic("t", 2, 2)
            assert (await group.running[1].elect_leader("t", 1, 0, created.value.assignments[1].replicas[1])).ok
            assert (await group.running[0].delete_topic("t")).ok
            await group.converged()
            topic_id = str(created.value.topic_id)
            for changes in seen.values():
                assert [change for change in changes if not hasattr(change, "node_id")] == [
                    TopicCreated("t", topic_id, 2),
                    PartitionChanged("t", 1, created.value.assignments[1].replicas,
                                     created.value.assignments[1].replicas[1], 1, True),
                    TopicDeleted("t", topic_id, 2),
                ]

    asyncio.run(scenario())


def test_a_password_keeps_other_nodes_out(tmp_path):
    async def scenario():
        group = Group(tmp_path, 3, password="right")
        await group.start(0)
        await group.start(1)
        intruder = await group.start(2, password="wrong")
        try:
            leader = await wait_for_leader_among(group.nodes[:2])
            assert (await leader.allocate_producer_id_block()).ok
            await asyncio.sleep(0.5)
            assert not intruder.is_ready and intruder.snapshot()["next_producer_id"] == 0
        finally:
            for index in range(3):
                await group.stop(index)

    async def wait_for_leader_among(nodes):
        await wait_until(lambda: any(node.is_leader and node.is_ready for node in nodes), "a leader")
        return next(node for node in nodes if node.is_leader)

    asyncio.run(scenario())


def test_a_lone_node_may_take_an_ephemeral_port(tmp_path):
    async def scenario():
        for _ in range(2):
            async with Controller(0, "127.0.0.1:0", [], tmp_path, None, SYSTEM_CLOCK) as node:
                await node.wait_ready(timeout_ms=5_000)
                assert node.is_leader and (await node.allocate_producer_id_block()).ok
        assert node.snapshot()["next_producer_id"] == 2000

    asyncio.run(scenario())


def test_the_raft_port_binds_only_the_configured_address_and_must_be_free(tmp_path):
    async def scenario():
        port = free_port()
        node = Controller(0, f"127.0.0.1:{port}", [], tmp_path / "a", None, SYSTEM_CLOCK)
        await node.start()
        try:
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) == 0
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.2", port)) == errno.ECONNREFUSED
            taken = Controller(1, f"127.0.0.1:{port}", [], tmp_path / "b", None, SYSTEM_CLOCK)
            with pytest.raises(ControllerStartError):
                await taken.start()
        finally:
            await node.stop()

    asyncio.run(scenario())
