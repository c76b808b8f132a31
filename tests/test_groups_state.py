"""The membership state machine with a ManualClock: joins, initial delay, sync, heartbeat,
leave, expiry, static membership, KIP-394, protocol votes. The coordinator writes to real
__consumer_offsets partition logs in a temporary directory."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from broker.groups.group import GroupState
from broker.groups.membership import MembershipSettings
from tests.groups_support import CoordinatorHarness, async_test, subscription


def state_of(harness: CoordinatorHarness, group_id: str) -> GroupState:
    return harness.coordinator.groups[group_id].state


# ---------------------------------------------------------------------------------------
# the first join: initial rebalance delay


@async_test
async def test_first_join_waits_the_initial_delay_not_the_session_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        responses = harness.join("g", session_timeout_ms=45_000)
        assert responses == [] and state_of(harness, "g") == GroupState.PREPARING_REBALANCE
        harness.advance(2_999)
        assert responses == []
        harness.advance(1)
        [result] = responses
        assert result.error == ErrorCode.none
        assert result.generation_id == 1 and result.leader_id == result.member_id
        assert result.protocol_name == "range" and result.protocol_type == "consumer"
        assert [member.member_id for member in result.members] == [result.member_id]
        assert state_of(harness, "g") == GroupState.COMPLETING_REBALANCE


@async_test
async def test_initial_delay_extends_per_new_member_up_to_the_rebalance_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        first = harness.join("g", rebalance_timeout_ms=60_000)
        harness.advance(1_000)
        second = harness.join("g", rebalance_timeout_ms=60_000)
        harness.advance(2_000)  # t=3000: a member arrived during the delay: wait one more
        assert first == [] and second == []
        third = harness.join("g", rebalance_timeout_ms=60_000)
        harness.advance(2_999)
        assert first == []
        harness.advance(1)  # t=6000: the third arrived during the second delay
        assert first == []
        harness.advance(3_000)  # t=9000: nobody new
        assert [len(r) for r in (first, second, third)] == [1, 1, 1]
        assert {r[0].generation_id for r in (first, second, third)} == {1}
        leader = [r[0] for r in (first, second, third) if r[0].leader_id == r[0].member_id]
        assert len(leader) == 1 and len(leader[0].members) == 3


@async_test
async def test_initial_delay_extensions_stop_at_the_rebalance_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        first = harness.join("g", rebalance_timeout_ms=4_000)
        harness.advance(1_000)
        harness.join("g", rebalance_timeout_ms=4_000)
        harness.advance(2_000)  # t=3000: extended by what is left of the rebalance timeout
        assert first == []
        harness.join("g", rebalance_timeout_ms=4_000)
        harness.advance(1_000)  # t=4000: no further extension
        assert len(first) == 1 and len(first[0].members) == 3


# ---------------------------------------------------------------------------------------
# KIP-394 member ids


@async_test
async def test_member_id_required_only_for_v4_and_later(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [required] = harness.join("g", require_known_member_id=True, client_id="new")
        assert required.error == ErrorCode.member_id_required
        assert required.member_id.startswith("new-")
        assert state_of(harness, "g") == GroupState.EMPTY  # not a member yet
        joined = harness.join("g", required.member_id, require_known_member_id=True)
        old_client = harness.join("g", require_known_member_id=False)  # JoinGroup v0-3
        harness.advance(3_000)
        assert joined == []  # one more delay for the member that came during the first
        harness.advance(3_000)
        assert joined[0].error == ErrorCode.none and joined[0].member_id == required.member_id
        assert old_client[0].error == ErrorCode.none and len(harness.coordinator.groups["g"].members) == 2


@async_test
async def test_a_pending_member_that_never_rejoins_expires_after_its_session_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [leader], generation = await harness.form_group("g", 1)
        [pending] = harness.join("g", require_known_member_id=True, session_timeout_ms=6_000)
        assert pending.error == ErrorCode.member_id_required
        rejoin = harness.join("g", leader)  # the leader rejoins: a rebalance starts
        harness.advance(5_999)
        assert rejoin == []  # waits for the pending member
        harness.advance(1)
        assert rejoin[0].error == ErrorCode.none and rejoin[0].generation_id == generation + 1


# ---------------------------------------------------------------------------------------
# sync, heartbeat, rebalances


@async_test
async def test_sync_distributes_the_leaders_assignment_after_it_is_stored(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        joins = [harness.join("g"), harness.join("g")]
        assert harness.finish_initial_delay("g") == 6_000  # the second member earned one more delay
        leader = next(r[0] for r in joins if r[0].leader_id == r[0].member_id)
        follower = next(r[0] for r in joins if r[0].leader_id != r[0].member_id)
        assert follower.members == ()
        follower_sync = harness.sync("g", follower.member_id, 1)
        assert follower_sync == []  # waits for the leader
        leader_sync = harness.sync("g", leader.member_id, 1,
                                   {leader.member_id: b"L", follower.member_id: b"F"},
                                   protocol_type="consumer", protocol_name="range")
        assert leader_sync == [] and follower_sync == []  # the assignment is being written
        await harness.coordinator.drain()
        assert leader_sync[0].assignment == b"L" and follower_sync[0].assignment == b"F"
        assert leader_sync[0].protocol_name == "range" and leader_sync[0].protocol_type == "consumer"
        assert state_of(harness, "g") == GroupState.STABLE
        assert harness.heartbeat("g", follower.member_id, 1) == ErrorCode.none
        late = harness.sync("g", follower.member_id, 1)  # a repeated sync in Stable
        assert late[0].assignment == b"F"


@async_test
async def test_sync_errors(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [member], generation = await harness.form_group("g", 1)
        assert harness.sync("g", member, generation + 1)[0].error == ErrorCode.illegal_generation
        assert harness.sync("g", "nobody", generation)[0].error == ErrorCode.unknown_member_id
        assert harness.sync("missing", member, generation)[0].error == ErrorCode.unknown_member_id
        assert (harness.sync("g", member, generation, protocol_name="roundrobin")[0].error
                == ErrorCode.inconsistent_group_protocol)


@async_test
async def test_a_new_member_triggers_a_rebalance_that_completes_when_all_rejoined(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2)
        newcomer = harness.join("g")
        assert state_of(harness, "g") == GroupState.PREPARING_REBALANCE
        assert harness.heartbeat("g", first, generation) == ErrorCode.rebalance_in_progress
        assert harness.sync("g", first, generation)[0].error == ErrorCode.rebalance_in_progress
        rejoin_first = harness.join("g", first)
        assert rejoin_first == []
        rejoin_second = harness.join("g", second)  # everyone is back: done at once, no delay
        results = [rejoin_first[0], rejoin_second[0], newcomer[0]]
        assert {result.generation_id for result in results} == {generation + 1}
        assert sum(len(result.members) for result in results) == 3  # only the leader gets them


@async_test
async def test_members_that_do_not_rejoin_are_removed_at_the_rebalance_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2, rebalance_timeout_ms=20_000)
        rejoin = harness.join("g", first, rebalance_timeout_ms=20_000)
        for _ in range(2):  # the second member stays alive but does not rejoin
            harness.advance(9_000)
            assert harness.heartbeat("g", second, generation) == ErrorCode.rebalance_in_progress
        harness.advance(1_999)
        assert rejoin == []
        harness.advance(1)
        assert rejoin[0].generation_id == generation + 1 and [m.member_id for m in rejoin[0].members] == [first]
        assert harness.heartbeat("g", second, generation) == ErrorCode.unknown_member_id


@async_test
async def test_heartbeat_errors_and_completing_rebalance(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        [result] = (harness.join("g"), harness.advance(3_000))[0]
        assert harness.heartbeat("g", result.member_id, 1) == ErrorCode.none  # CompletingRebalance
        assert harness.heartbeat("g", result.member_id, 7) == ErrorCode.illegal_generation
        assert harness.heartbeat("g", "stranger", 1) == ErrorCode.unknown_member_id
        assert harness.heartbeat("nope", result.member_id, 1) == ErrorCode.unknown_member_id


@async_test
async def test_join_validation(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        assert harness.join("g", session_timeout_ms=5_999)[0].error == ErrorCode.invalid_session_timeout
        assert harness.join("g", session_timeout_ms=1_800_001)[0].error == ErrorCode.invalid_session_timeout
        assert harness.join("")[0].error == ErrorCode.invalid_group_id
        assert harness.join("g", protocols=())[0].error == ErrorCode.inconsistent_group_protocol
        assert harness.join("g", "made-up-id")[0].error == ErrorCode.unknown_member_id
        await harness.form_group("g", 1)
        assert (harness.join("g", protocols=(("roundrobin", b""),))[0].error
                == ErrorCode.inconsistent_group_protocol)
        assert harness.join("g", protocol_type="connect")[0].error == ErrorCode.inconsistent_group_protocol


@async_test
async def test_protocol_is_chosen_by_votes_among_common_protocols(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        joins = [harness.join("g", protocols=(("range", b"a"), ("roundrobin", b"b"), ("sticky", b"c"))),
                 harness.join("g", protocols=(("roundrobin", b"d"), ("range", b"e"))),
                 harness.join("g", protocols=(("roundrobin", b"f"), ("range", b"g")))]
        harness.finish_initial_delay("g")
        assert {responses[0].protocol_name for responses in joins} == {"roundrobin"}
        leader = next(r[0] for r in joins if r[0].members)
        assert sorted(member.metadata for member in leader.members) == [b"b", b"d", b"f"]


@async_test
async def test_leave_rebalances_and_the_last_leave_empties_the_group(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2)
        group_error, errors = harness.coordinator.membership.leave_group("g", [(second, None), ("ghost", None)])
        assert group_error == ErrorCode.none and errors == [ErrorCode.none, ErrorCode.unknown_member_id]
        assert state_of(harness, "g") == GroupState.PREPARING_REBALANCE
        rejoin = harness.join("g", first)
        assert rejoin[0].generation_id == generation + 1 and len(rejoin[0].members) == 1
        harness.coordinator.membership.leave_group("g", [(first, None)])
        group = harness.coordinator.groups["g"]
        assert group.state == GroupState.EMPTY and group.generation_id == generation + 2
        assert harness.coordinator.membership.leave_group("missing", [("x", None)]) == (
            ErrorCode.none, [ErrorCode.unknown_member_id])


@async_test
async def test_a_member_that_stops_heartbeating_expires_after_its_session_timeout(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2, session_timeout_ms=10_000)
        for _ in range(3):
            harness.advance(3_000)
            assert harness.heartbeat("g", first, generation) == ErrorCode.none
        assert second in harness.coordinator.groups["g"].members
        harness.advance(999)
        assert second in harness.coordinator.groups["g"].members
        harness.advance(1)  # 10 s since the second member's last sign of life
        assert second not in harness.coordinator.groups["g"].members
        assert harness.heartbeat("g", first, generation) == ErrorCode.rebalance_in_progress


@async_test
async def test_a_waiting_join_answers_the_old_request_when_retried(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        (first, second), generation = await harness.form_group("g", 2)
        old = harness.join("g", first)
        new = harness.join("g", first)
        assert old[0].error == ErrorCode.rebalance_in_progress and new == []
        harness.join("g", second)
        assert new[0].error == ErrorCode.none and new[0].generation_id == generation + 1


# ---------------------------------------------------------------------------------------
# static membership (KIP-345)


@async_test
async def test_static_member_rejoin_takes_over_without_a_rebalance(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        metadata = subscription("orders")
        joins = [harness.join("g", instance_id="a", protocols=(("range", metadata),)),
                 harness.join("g", instance_id="b", protocols=(("range", metadata),))]
        harness.finish_initial_delay("g")
        results = [responses[0] for responses in joins]
        leader_id = results[0].leader_id
        harness.sync("g", results[1].member_id, 1, instance_id="b")
        harness.sync("g", results[0].member_id, 1, {results[0].member_id: b"A", results[1].member_id: b"B"},
                     instance_id="a")
        await harness.coordinator.drain()
        old_b = results[1].member_id
        # b restarts: same instance id, no member id, same subscription (owned partitions differ)
        restarted = harness.join("g", instance_id="b",
                                 protocols=(("range", subscription("orders", owned=(("orders", (1,)),))),))
        assert restarted == []  # the new member id is being stored
        await harness.coordinator.drain()
        [result] = restarted
        assert result.error == ErrorCode.none and result.member_id != old_b
        assert result.generation_id == 1 and result.leader_id == leader_id and result.members == ()
        assert state_of(harness, "g") == GroupState.STABLE
        assert harness.sync("g", result.member_id, 1, instance_id="b")[0].assignment == b"B"
        assert harness.heartbeat("g", old_b, 1, instance_id="b") == ErrorCode.fenced_instance_id
        assert harness.join("g", old_b, instance_id="b")[0].error == ErrorCode.fenced_instance_id


@async_test
async def test_static_member_with_a_new_subscription_triggers_a_rebalance(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        joins = [harness.join("g", instance_id="a", protocols=(("range", subscription("orders")),))]
        harness.advance(3_000)
        member_id = joins[0][0].member_id
        harness.sync("g", member_id, 1, {member_id: b"A"}, instance_id="a")
        await harness.coordinator.drain()
        changed = harness.join("g", instance_id="a", protocols=(("range", subscription("orders", "refunds")),))
        # a rebalance, complete at once since its only member has rejoined
        assert changed[0].error == ErrorCode.none and changed[0].generation_id == 2
        assert changed[0].leader_id == changed[0].member_id and len(changed[0].members) == 1
        assert state_of(harness, "g") == GroupState.COMPLETING_REBALANCE


@async_test
async def test_static_members_leave_by_instance_id(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        joins = [harness.join("g", instance_id="a"), harness.join("g", instance_id="b")]
        harness.finish_initial_delay("g")
        member_a = joins[0][0].member_id
        error, errors = harness.coordinator.membership.leave_group("g", [("", "b"), ("", "zzz"), ("other-id", "a")])
        assert errors == [ErrorCode.none, ErrorCode.unknown_member_id, ErrorCode.fenced_instance_id]
        assert list(harness.coordinator.groups["g"].members) == [member_a]


@async_test
async def test_group_size_limit(tmp_path):
    async with CoordinatorHarness(tmp_path, MembershipSettings(initial_rebalance_delay_ms=100, members_max=2)) as harness:
        harness.join("g")
        harness.join("g")
        assert harness.join("g")[0].error == ErrorCode.group_max_size_reached


@async_test
async def test_groups_left_by_failed_joins_are_forgotten(tmp_path):
    async with CoordinatorHarness(tmp_path) as harness:
        assert harness.join("g", protocols=())[0].error == ErrorCode.inconsistent_group_protocol
        [pending] = harness.join("h", require_known_member_id=True, session_timeout_ms=6_000)
        harness.advance(1)
        assert "g" not in harness.coordinator.groups and "h" in harness.coordinator.groups
        harness.advance(6_000)  # the member id was never used
        assert "h" not in harness.coordinator.groups
        assert harness.coordinator.list_groups()[1] == []
