"""The controller's durability seam over pysyncobj: nothing leaves a node, and no result
reaches a caller, while entries it holds are unsynced; term and vote are on disk before
any vote goes out; damaged files stop the node instead of being run on."""

from __future__ import annotations

import asyncio
import json

import pytest
from pysyncobj.journal import FileJournal
from pysyncobj.transport import TCPTransport

from broker.clock import SYSTEM_CLOCK
from broker.controller import CommandOutcomeUnknown, Controller
from broker.controller.raft_storage import SyncBeforeSendTransport
from broker.invariant import InvariantViolation
from tests.support import free_port
from tests.test_controller_raft import Group

pytestmark = pytest.mark.timeout(120)


def test_no_raft_message_leaves_a_node_with_unsynced_entries(tmp_path, monkeypatch):
    violations = []
    votes = []
    original_send = TCPTransport.send

    def checked_send(transport, node, message):
        if isinstance(transport, SyncBeforeSendTransport):
            storage = next(controller._storage for controller in group.running
                           if controller._syncobj is not None and controller.rpc_address == str(transport._selfNode))
            if storage.journal._dirty:
                violations.append(message.get("type"))
            if message.get("type") in ("request_vote", "response_vote"):
                on_disk = json.loads((storage.raft_dir / "raft_meta.json").read_text())
                votes.append((message["term"], on_disk["current_term"]))
        return original_send(transport, node, message)

    monkeypatch.setattr(TCPTransport, "send", checked_send)
    group = Group(tmp_path, 3)

    async def scenario():
        async with group:
            leader = await group.ready()
            results = await asyncio.gather(*(node.create_topic(f"t{int(node.node_id)}-{index}", 1, 2)
                                             for node in group.running for index in range(5)))
            assert all(result.ok for result in results)
            await group.stop(int(leader.node_id))  # an election: votes go out
            await group.leader()
            assert (await group.running[0].allocate_producer_id_block()).ok

    asyncio.run(scenario())
    assert violations == []
    assert votes and all(term <= on_disk for term, on_disk in votes)


def test_a_result_reaches_its_caller_only_after_the_entry_is_synced(tmp_path):
    async def scenario():
        address = f"127.0.0.1:{free_port()}"
        async with Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK) as node:
            await node.wait_ready(timeout_ms=5_000)
            for index in range(5):
                assert (await node.allocate_producer_id_block()).ok
                assert not node._storage.journal._dirty

    asyncio.run(scenario())


def test_a_journal_with_a_gap_stops_the_node_at_start(tmp_path):
    raft_dir = tmp_path / "controller" / "raft"
    raft_dir.mkdir(parents=True)
    journal = FileJournal(str(raft_dir / "journal"))
    for index in (1, 2, 4):
        journal.add(b"\x01", index, 1)
    journal._destroy()

    async def scenario():
        address = f"127.0.0.1:{free_port()}"
        with pytest.raises(InvariantViolation, match="out of order"):
            await Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK).start()

    asyncio.run(scenario())


def test_a_damaged_snapshot_stops_the_node_instead_of_an_empty_state(tmp_path):
    async def scenario():
        address = f"127.0.0.1:{free_port()}"
        async with Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK,
                              log_compaction_entries_min=5) as node:
            await node.wait_ready(timeout_ms=5_000)
            for index in range(10):
                assert (await node.allocate_producer_id_block()).ok
        snapshot = tmp_path / "controller" / "raft" / "snapshot.json"
        assert snapshot.exists()
        snapshot.write_bytes(snapshot.read_bytes()[:40])
        async with Controller(0, address, [address], tmp_path, None, SYSTEM_CLOCK) as node:
            with pytest.raises(CommandOutcomeUnknown):
                await node.wait_ready(timeout_ms=5_000)
            assert node.failure is not None and node.snapshot()["next_producer_id"] == 0

    asyncio.run(scenario())
