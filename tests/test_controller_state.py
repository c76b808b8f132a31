"""The controller's commands as pure functions: validation, replica assignment, CAS
guards, producer-id blocks, the snapshot encoding, and the leader's liveness decisions."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from broker import limits
from broker.controller import cluster_state
from broker.controller.broker_liveness import BrokerLiveness
from broker.controller.events import BrokerChanged, PartitionChanged

NOW_MS = 1_700_000_000_000


def state_with_brokers(*node_ids: int) -> dict:
    state = cluster_state.new_state()
    for node_id in node_ids:
        result, _ = cluster_state.register_broker(state, node_id, f"inc-{node_id}", f"h:{9092 + node_id}",
                                                  f"h:{33145 + node_id}", "", NOW_MS)
        assert result.ok
    return state


def create(state: dict, name: str, partitions: int = 3, replication_factor: int = 1, topic_id: str | None = None,
           default_replication_factor: int = 1):
    result, changes = cluster_state.create_topic(state, name, topic_id or f"id-{name}", partitions, replication_factor,
                                                 {}, 1, default_replication_factor, NOW_MS)
    return result, changes


def test_replication_factor_is_validated_like_the_single_node_broker():
    state = state_with_brokers(0, 1, 2)
    assert create(state, "bad..name?")[0].error == "invalid_topic_exception"
    assert create(state, "zero", replication_factor=0)[0] == ("invalid_replication_factor",
                                                               "replication factor must be >= 1")
    assert create(state, "four", replication_factor=4)[0] == (
        "invalid_replication_factor", "replication factor 4 is larger than the 3 available broker(s)")
    assert create(state, "none", partitions=0)[0].error == "invalid_partitions"
    assert create(state, "many", partitions=limits.partitions_per_topic_max + 1)[0].error == "invalid_partitions"
    assert create(state, "t")[0].ok
    assert create(state, "t")[0] == ("topic_already_exists", "topic 't' already exists")
    assert create(state, "other", topic_id="id-t")[0].error == "invalid_request"
    # -1 takes the default, capped at the live brokers
    result, _ = create(state, "defaulted", replication_factor=-1, default_replication_factor=5)
    assert result.ok and result.value["replication_factor"] == 3
    assert state["topics"].keys() == {"t", "defaulted"}


def test_a_rejected_command_changes_nothing():
    state = state_with_brokers(0, 1)
    create(state, "t", partitions=2, replication_factor=2)
    before = copy.deepcopy(state)
    rejected = [
        create(state, "t"),
        cluster_state.add_partitions(state, "t", 2),
        cluster_state.add_partitions(state, "missing", 5),
        cluster_state.delete_topic(state, "t", "another-id"),
        cluster_state.elect_leader(state, "t", 0, 7, 1),
        cluster_state.elect_leader(state, "t", 5, 0, 1),
        cluster_state.reassign_replicas(state, "t", 0, 0, [0, 0]),
        cluster_state.fence_broker(state, 1, "old-incarnation", -1),
        cluster_state.broker_heartbeat(state, 9, "inc-9", NOW_MS, 1),
        cluster_state.allocate_producer_id_block(state, 0, 0, 0),
    ]
    assert all(not result.ok and changes == [] for result, changes in rejected)
    assert state == before


def test_leaders_spread_evenly_and_replicas_are_distinct():
    state = state_with_brokers(0, 1, 2)
    leaders = Counter()
    for index in range(7):
        result, _ = create(state, f"t{index}", partitions=3 + index % 2, replication_factor=2)
        assert result.ok
        for partition in result.value["partitions"]:
            assert len(set(partition["replicas"])) == 2
            assert partition["leader"] == partition["replicas"][0]
            leaders[partition["leader"]] += 1
    assert sum(leaders.values()) == 24 and set(leaders.values()) == {8}


def test_assignment_uses_only_live_unfenced_brokers():
    state = state_with_brokers(0, 1, 2)
    assert cluster_state.fence_broker(state, 1, "inc-1", 0)[0] == (cluster_state.applied(True))
    result, _ = create(state, "t", partitions=4, replication_factor=2)
    assert all(set(partition["replicas"]) == {0, 2} for partition in result.value["partitions"])
    assert create(state, "wide", replication_factor=3)[0].error == "invalid_replication_factor"


def test_elect_leader_is_compare_and_set_on_the_leader_epoch():
    state = state_with_brokers(0, 1, 2)
    create(state, "t", partitions=1, replication_factor=3)
    result, changes = cluster_state.elect_leader(state, "t", 0, 0, 1)
    assert result == ("none", 1)
    assert changes == [PartitionChanged("t", 0, (0, 1, 2), 1, 1, True)]
    stale, changes = cluster_state.elect_leader(state, "t", 0, 0, 2)
    assert stale.error == "fenced_leader_epoch" and changes == []
    assert state["topics"]["t"]["partitions"][0]["leader"] == 1
    cluster_state.fence_broker(state, 2, "inc-2", -1)
    assert cluster_state.elect_leader(state, "t", 0, 1, 2)[0].error == "ineligible_replica"
    assert cluster_state.elect_leader(state, "t", 0, 1, 7)[0].error == "ineligible_replica"
    assert cluster_state.elect_leader(state, "t", 0, 1, -1)[0] == ("none", 2)  # leaderless, epoch still moves


def test_reassign_and_decommission_move_every_replica_off_a_node():
    state = state_with_brokers(0, 1, 2, 3)
    create(state, "a", partitions=4, replication_factor=2)
    create(state, "b", partitions=3, replication_factor=3)
    moves = cluster_state.plan_decommission(state, 1)
    assert moves and all(1 not in replicas for _, _, _, replicas in moves)
    cluster_state.fence_broker(state, 1, "inc-1", -1)  # decommissioning: no new replicas on it
    for topic, partition, epoch, replicas in moves:
        before = copy.deepcopy(state["topics"][topic]["partitions"][partition])
        result, changes = cluster_state.reassign_replicas(state, topic, partition, epoch, replicas)
        assert result.ok
        after = state["topics"][topic]["partitions"][partition]
        assert after["leader"] in replicas
        leader_moved = after["leader_epoch"] == before["leader_epoch"] + 1
        assert leader_moved == (before["leader"] == 1) == changes[0].leader_changed
    assert all(1 not in partition["replicas"]
               for topic in state["topics"].values() for partition in topic["partitions"])
    topic, partition, epoch, replicas = moves[0]
    stale, _ = cluster_state.reassign_replicas(state, topic, partition, epoch, replicas)
    assert stale.error == "invalid_update_version"


def test_producer_id_blocks_never_overlap():
    state = cluster_state.new_state()
    blocks = [cluster_state.allocate_producer_id_block(state, node_id % 3, 1000, 0)[0].value for node_id in range(9)]
    blocks.append(cluster_state.allocate_producer_id_block(state, 0, 1000, 50_000)[0].value)
    blocks.append(cluster_state.allocate_producer_id_block(state, 1, 10, 0)[0].value)
    assert blocks[-2:] == [(50_000, 51_000), (51_000, 51_010)]
    ordered = sorted(blocks)
    assert all(previous[1] <= current[0] for previous, current in zip(ordered, ordered[1:]))


def test_fence_loses_to_a_heartbeat_that_came_first():
    state = state_with_brokers(0)
    heartbeats_seen = state["brokers"][0]["heartbeats"]
    cluster_state.broker_heartbeat(state, 0, "inc-0", NOW_MS + 1, 3)
    assert cluster_state.fence_broker(state, 0, "inc-0", heartbeats_seen)[0].error == "invalid_update_version"
    assert cluster_state.fence_broker(state, 0, "inc-0", heartbeats_seen + 1)[0] == ("none", True)
    assert cluster_state.unfence_broker(state, 0, "inc-1")[0].error == "stale_broker_epoch"
    assert cluster_state.unfence_broker(state, 0, "inc-0")[0] == ("none", True)


def test_snapshot_encoding_round_trips_through_json():
    state = state_with_brokers(0, 1, 2)
    create(state, "t", partitions=3, replication_factor=2)
    cluster_state.allocate_producer_id_block(state, 2, 1000, 0)
    cluster_state.init_cluster(state, "cluster-1")
    encoded = json.loads(json.dumps(cluster_state.encode_state(state)))
    assert cluster_state.decode_state(encoded) == state


def test_liveness_fences_the_silent_and_unfences_the_returning():
    liveness = BrokerLiveness(session_timeout_ms=1000)
    state = state_with_brokers(0, 1)
    liveness.start_leading(state["brokers"], now_ms=0)
    assert liveness.decide(state["brokers"], now_ms=1000) == []
    liveness.observe(BrokerChanged(0, "heartbeat", "inc-0"), now_ms=900)
    decisions = liveness.decide(state["brokers"], now_ms=1500)
    assert [(decision.action, decision.node_id) for decision in decisions] == [("fence", 1)]
    liveness.started(decisions[0])
    assert liveness.decide(state["brokers"], now_ms=1600) == []  # one command in flight per node
    liveness.finished(decisions[0])
    cluster_state.fence_broker(state, 1, "inc-1", decisions[0].heartbeats)
    liveness.observe(BrokerChanged(1, "fenced", "inc-1"), now_ms=1600)
    assert liveness.decide(state["brokers"], now_ms=1700) == []  # node 1 stays fenced until it heartbeats
    liveness.observe(BrokerChanged(1, "heartbeat", "inc-1"), now_ms=2000)
    decisions = liveness.decide(state["brokers"], now_ms=2000)
    assert [(decision.action, decision.node_id) for decision in decisions] == [("fence", 0), ("unfence", 1)]


@pytest.mark.parametrize("node_count", [1, 2, 5])
def test_assign_replicas_round_robin(node_count):
    live = list(range(10, 10 + node_count))
    assignment = cluster_state.assign_replicas(live, 2 * node_count, node_count, cursor=1)
    leaders = [replicas[0] for replicas in assignment]
    assert leaders == [live[(1 + index) % node_count] for index in range(2 * node_count)]
    assert all(sorted(replicas) == live for replicas in assignment)
