"""Committed offsets and group state: commit rules, fetch, delete, and replay of the real
__consumer_offsets logs after a restart (tombstones included)."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from broker import limits
from broker.groups.group import GroupState
from tests.groups_support import CoordinatorHarness, async_test, subscription


@async_test
async def test_member_commits_survive_a_restart_with_leader_epoch_and_metadata(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [member], generation = await harness.form_group("g", 1)
        errors = await harness.commit("g", {("orders", 0): 42, ("orders", 1): 7}, generation_id=generation,
                                      member_id=member, leader_epoch=3, metadata="checkpoint")
        assert errors == {("orders", 0): ErrorCode.none, ("orders", 1): ErrorCode.none}
        coordinator = await harness.restart()
        error, fetched = coordinator.fetch_offsets("g", [("orders", 0), ("orders", 1), ("orders", 2)])
        assert error == ErrorCode.none
        assert [(item.offset, item.leader_epoch, item.metadata) for item in fetched] == [
            (42, 3, "checkpoint"), (7, 3, "checkpoint"), (-1, -1, "")]


@async_test
async def test_group_state_survives_a_restart_and_members_keep_their_generation(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2, session_timeout_ms=10_000)
        await harness.restart()
        group = harness.coordinator.groups["g"]
        assert group.state == GroupState.STABLE and group.generation_id == generation
        assert set(group.members) == {first, second} and group.protocol_name == "range"
        assert harness.heartbeat("g", first, generation) == ErrorCode.none
        assert harness.sync("g", second, generation)[0].assignment == second.encode()
        harness.advance(6_000)
        assert harness.heartbeat("g", first, generation) == ErrorCode.none
        harness.advance(4_000)  # the second member never came back after the restart
        assert set(harness.coordinator.groups["g"].members) == {first}
        assert harness.heartbeat("g", first, generation) == ErrorCode.rebalance_in_progress


@async_test
async def test_an_emptied_group_is_stored_empty(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [member], generation = await harness.form_group("g", 1)
        harness.coordinator.membership.leave_group("g", [(member, None)])
        await harness.coordinator.drain()
        await harness.restart()
        group = harness.coordinator.groups["g"]
        assert group.state == GroupState.EMPTY and group.generation_id == generation + 1
        assert group.protocol_type == "consumer" and not group.members


@async_test
async def test_commit_validation(tmp_path):
    async with CoordinatorHarness(tmp_path, existing_topics={"orders": 2}) as harness:
        assert (await harness.commit("fresh", {("orders", 0): 1}, generation_id=3, member_id="m")
                == {("orders", 0): ErrorCode.illegal_generation})
        [member], generation = await harness.form_group("g", 1)
        assert (await harness.commit("g", {("orders", 0): 1}, generation_id=generation + 1, member_id=member)
                == {("orders", 0): ErrorCode.illegal_generation})
        assert (await harness.commit("g", {("orders", 0): 1}, generation_id=generation, member_id="who")
                == {("orders", 0): ErrorCode.unknown_member_id})
        assert (await harness.commit("g", {("orders", 0): 1})  # a simple commit to an active group
                == {("orders", 0): ErrorCode.unknown_member_id})
        too_long = "x" * (limits.offset_metadata_chars_max + 1)
        assert await harness.commit("g", {("orders", 0): 5, ("orders", 1): 6, ("nope", 0): 1, ("orders", 9): 1},
                                    generation_id=generation, member_id=member, metadata=too_long) == {
            ("orders", 0): ErrorCode.offset_metadata_too_large, ("orders", 1): ErrorCode.offset_metadata_too_large,
            ("nope", 0): ErrorCode.unknown_topic_or_partition, ("orders", 9): ErrorCode.unknown_topic_or_partition}
        harness.join("g", member)  # the only member rejoins: the group completes the join at once
        assert harness.coordinator.groups["g"].state == GroupState.COMPLETING_REBALANCE
        assert (await harness.commit("g", {("orders", 0): 1}, generation_id=generation + 1, member_id=member)
                == {("orders", 0): ErrorCode.rebalance_in_progress})


@async_test
async def test_a_commit_during_preparing_rebalance_is_accepted_and_counts_as_a_heartbeat(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2, session_timeout_ms=10_000)
        harness.join("g", first)  # rebalance: the second member commits before it rejoins
        harness.advance(9_000)
        assert (await harness.commit("g", {("t", 0): 9}, generation_id=generation, member_id=second)
                == {("t", 0): ErrorCode.none})
        harness.advance(9_000)
        assert second in harness.coordinator.groups["g"].members


@async_test
async def test_simple_commits_and_fetch_of_everything(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        assert await harness.commit("tool", {("b", 1): 10, ("a", 0): 5}) == {
            ("b", 1): ErrorCode.none, ("a", 0): ErrorCode.none}
        assert await harness.commit("tool", {("a", 0): 6}) == {("a", 0): ErrorCode.none}
        assert harness.committed("tool") == {("a", 0): 6, ("b", 1): 10}  # None = all, sorted
        assert harness.committed("unknown-group") == {}
        assert harness.committed("unknown-group", [("a", 0)]) == {("a", 0): -1}
        await harness.restart()
        assert harness.committed("tool") == {("a", 0): 6, ("b", 1): 10}
        error, listings = harness.coordinator.list_groups()
        assert [(listing.group_id, listing.protocol_type, listing.state) for listing in listings] == [
            ("tool", "", "Empty")]


@async_test
async def test_concurrent_commits_of_one_partition_keep_the_last_written(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        results = await asyncio.gather(*(harness.commit("g", {("t", 0): offset}) for offset in range(20)))
        assert all(result == {("t", 0): ErrorCode.none} for result in results)
        assert harness.committed("g") == {("t", 0): 19}
        await harness.restart()
        assert harness.committed("g") == {("t", 0): 19}


@async_test
async def test_requests_wait_for_the_load(tmp_path):
    harness = CoordinatorHarness(tmp_path)
    coordinator = await harness.start(load=False)
    try:
        assert await harness.commit("g", {("t", 0): 1}) == {("t", 0): ErrorCode.coordinator_load_in_progress}
        assert coordinator.fetch_offsets("g", None)[0] == ErrorCode.coordinator_load_in_progress
        assert coordinator.describe_group("g").error == ErrorCode.coordinator_load_in_progress
        await coordinator.load(harness.offsets_log)
        assert await harness.commit("g", {("t", 0): 1}) == {("t", 0): ErrorCode.none}
    finally:
        await harness.stop()


@async_test
async def test_delete_groups(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        await harness.commit("idle", {("t", 0): 3, ("t", 1): 4})
        [member], generation = await harness.form_group("busy", 1)
        results = await harness.coordinator.delete_groups(["idle", "busy", "missing"])
        assert results == {"idle": ErrorCode.none, "busy": ErrorCode.non_empty_group,
                           "missing": ErrorCode.group_id_not_found}
        assert "idle" not in harness.coordinator.groups and harness.committed("idle") == {}
        await harness.commit("reborn", {("t", 0): 1})
        await harness.coordinator.delete_groups(["reborn"])
        await harness.commit("reborn", {("t", 0): 2})  # a group of the same name after the delete
        await harness.restart()
        assert "idle" not in harness.coordinator.groups
        assert harness.committed("reborn") == {("t", 0): 2}
        assert harness.coordinator.groups["busy"].generation_id == generation


@async_test
async def test_offset_delete_refuses_subscribed_topics(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [member], generation = await harness.form_group(
            "g", 1, protocols=(("range", subscription("orders")),))
        await harness.commit("g", {("orders", 0): 1, ("old", 0): 2, ("old", 1): 3},
                             generation_id=generation, member_id=member)
        error, errors = await harness.coordinator.delete_offsets("g", [("orders", 0), ("old", 0)])
        assert error == ErrorCode.none
        assert errors == {("orders", 0): ErrorCode.group_subscribed_to_topic, ("old", 0): ErrorCode.none}
        assert harness.committed("g") == {("old", 1): 3, ("orders", 0): 1}
        assert (await harness.coordinator.delete_offsets("nope", [("old", 0)]))[0] == ErrorCode.group_id_not_found
        await harness.restart()
        assert harness.committed("g") == {("old", 1): 3, ("orders", 0): 1}
        harness.coordinator.membership.leave_group("g", [(member, None)])
        error, errors = await harness.coordinator.delete_offsets("g", [("orders", 0)])  # empty group now
        assert error == ErrorCode.none and errors == {("orders", 0): ErrorCode.none}
        assert harness.committed("g") == {("old", 1): 3}


@async_test
async def test_offset_delete_of_a_non_consumer_group_with_members(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        await harness.form_group("connect", 1, protocol_type="connect", protocols=(("default", b"x"),))
        assert (await harness.coordinator.delete_offsets("connect", [("t", 0)]))[0] == ErrorCode.non_empty_group


@async_test
async def test_list_and_describe(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), _ = await harness.form_group("stable", 2, protocols=(("range", b"sub"),))
        harness.join("joining")
        await harness.commit("simple", {("t", 0): 1})
        _, listings = harness.coordinator.list_groups()
        assert {(listing.group_id, listing.state) for listing in listings} == {
            ("stable", "Stable"), ("joining", "PreparingRebalance"), ("simple", "Empty")}
        _, filtered = harness.coordinator.list_groups(["stable", "EMPTY"])
        assert sorted(listing.group_id for listing in filtered) == ["simple", "stable"]
        described = harness.coordinator.describe_group("stable")
        assert (described.state, described.protocol_type, described.protocol_name) == ("Stable", "consumer", "range")
        assert {(m.member_id, m.metadata, m.assignment, m.client_host) for m in described.members} == {
            (first, b"sub", first.encode(), "/127.0.0.1"), (second, b"sub", second.encode(), "/127.0.0.1")}
        joining = harness.coordinator.describe_group("joining")
        assert joining.state == "PreparingRebalance" and joining.protocol_name == ""
        assert [member.metadata for member in joining.members] == [b""]
        missing = harness.coordinator.describe_group("missing")
        assert (missing.error, missing.state, missing.members) == (ErrorCode.none, "Dead", ())


@async_test
async def test_replay_skips_records_it_cannot_read(tmp_path):
    from broker.groups.offsets_log import LogRecord

    async with CoordinatorHarness(tmp_path) as harness:
        await harness.commit("g", {("t", 0): 1})
        # what a client producing into __consumer_offsets could leave behind
        await harness.offsets_log.append("g", [LogRecord(b"\x00\x63garbage", b"value")])
        await harness.commit("g", {("t", 0): 2})
        await harness.restart()
        assert harness.committed("g") == {("t", 0): 2}
