"""The controller's state and its commands, as pure functions over plain data.

Every command here runs on every controller node when its log entry applies, so it is
deterministic: time, ids and uuids arrive as arguments, iteration orders are sorted, and
nothing reads a clock, a random source or the disk. A command validates everything first
and mutates only after, so a rejected command changes nothing; it returns
`(CommandResult, [events])` and never raises for a bad request.

Commands that decide something are compare-and-set: `elect_leader` applies only while the
leader epoch is still the one the caller saw, `reassign_replicas` only while the partition
epoch is, `fence_broker` only while the broker's incarnation and heartbeat count are.

State (plain dicts, lists, ints, strs; node ids are ints):

    cluster_id        str | None
    brokers           {node_id: {node_id, kafka_endpoint, rpc_endpoint, admin_url,
                                 incarnation, fenced, registered_ms, heartbeats,
                                 last_heartbeat_ms, last_heartbeat_term}}
    topics            {name: {name, topic_id, replication_factor, configs, created_ms,
                              partitions: [{replicas, leader, leader_epoch, partition_epoch}]}}
    next_producer_id  first producer id not yet handed out in a block
    producer_id_blocks {node_id: [start, end)}   the last block each node received
    assignment_cursor where the next partition's round-robin replica assignment starts
"""

from __future__ import annotations

import copy
from typing import Any

from broker import limits
from broker.controller.events import (
    BrokerChanged, ClusterIdSet, PartitionChanged, PartitionsAdded, ProducerIdBlockAllocated, StateChange,
    TopicConfigsChanged, TopicCreated, TopicDeleted, CommandResult, applied, rejected)
from broker.invariant import invariant
from broker.topic_table import TopicError, check_topic_name

STATE_FORMAT_VERSION = 1
NO_LEADER = -1

Outcome = tuple[CommandResult, list[StateChange]]


def new_state() -> dict[str, Any]:
    return {
        "cluster_id": None,
        "brokers": {},
        "topics": {},
        "next_producer_id": 0,
        "producer_id_blocks": {},
        "assignment_cursor": 0,
    }


# -- queries --------------------------------------------------------------------------------

def live_broker_ids(state: dict) -> list[int]:
    """Registered, unfenced brokers, by node id: the ones that may take new replicas."""
    return sorted(node_id for node_id, broker in state["brokers"].items() if not broker["fenced"])


def assign_replicas(live: list[int], partition_count: int, replication_factor: int,
                    cursor: int) -> list[list[int]]:
    """Round-robin over `live` starting at `cursor`: partition p's replicas are the
    `replication_factor` brokers from position cursor + p on, its leader the first of them,
    so leaders spread evenly over the brokers (and over topics, as the cursor moves on)."""
    invariant(1 <= replication_factor <= len(live), "replication factor within the live brokers",
              replication_factor, live)
    count = len(live)
    return [[live[(cursor + partition + offset) % count] for offset in range(replication_factor)]
            for partition in range(partition_count)]


# -- cluster and brokers ---------------------------------------------------------------------

def init_cluster(state: dict, cluster_id: str) -> Outcome:
    """Set the cluster id once; later calls return the id already set."""
    if state["cluster_id"] is not None:
        return applied(state["cluster_id"]), []
    if not cluster_id:
        return rejected("invalid_request", "cluster id must not be empty"), []
    state["cluster_id"] = cluster_id
    return applied(cluster_id), [ClusterIdSet(cluster_id)]


def register_broker(state: dict, node_id: int, incarnation: str, kafka_endpoint: str, rpc_endpoint: str,
                    admin_url: str, now_ms: int) -> Outcome:
    """A (re)started broker announces its endpoints under a new incarnation id; the
    previous incarnation's heartbeats and fencing decisions no longer apply to it."""
    if node_id < 0:
        return rejected("invalid_request", f"node id must be >= 0, got {node_id}"), []
    if not incarnation:
        return rejected("invalid_request", "incarnation id must not be empty"), []
    for other_id, other in state["brokers"].items():
        if other_id != node_id and other["kafka_endpoint"] == kafka_endpoint:
            return rejected("duplicate_broker_registration",
                            f"kafka endpoint {kafka_endpoint} is already registered by node {other_id}"), []
    state["brokers"][node_id] = {
        "node_id": node_id,
        "kafka_endpoint": kafka_endpoint,
        "rpc_endpoint": rpc_endpoint,
        "admin_url": admin_url,
        "incarnation": incarnation,
        "fenced": False,
        "registered_ms": now_ms,
        "heartbeats": 0,
        "last_heartbeat_ms": now_ms,
        "last_heartbeat_term": 0,
    }
    return applied(copy.deepcopy(state["brokers"][node_id])), [BrokerChanged(node_id, "registered", incarnation)]


def _current_broker(state: dict, node_id: int, incarnation: str) -> tuple[dict | None, CommandResult | None]:
    broker = state["brokers"].get(node_id)
    if broker is None:
        return None, rejected("broker_id_not_registered", f"node {node_id} is not registered")
    if broker["incarnation"] != incarnation:
        return None, rejected("stale_broker_epoch",
                              f"node {node_id} has incarnation {broker['incarnation']}, not {incarnation}")
    return broker, None


def broker_heartbeat(state: dict, node_id: int, incarnation: str, now_ms: int, controller_term: int) -> Outcome:
    broker, error = _current_broker(state, node_id, incarnation)
    if error is not None:
        return error, []
    broker["heartbeats"] += 1
    broker["last_heartbeat_ms"] = now_ms
    broker["last_heartbeat_term"] = controller_term
    return applied(broker["heartbeats"]), [BrokerChanged(node_id, "heartbeat", incarnation)]


def fence_broker(state: dict, node_id: int, incarnation: str, expected_heartbeats: int) -> Outcome:
    """Fence (mark not alive) only if no heartbeat applied since the caller decided, so a
    heartbeat that raced the decision wins. `expected_heartbeats=-1` skips that check (a
    broker fencing itself for a controlled shutdown)."""
    broker, error = _current_broker(state, node_id, incarnation)
    if error is not None:
        return error, []
    if expected_heartbeats != -1 and broker["heartbeats"] != expected_heartbeats:
        return rejected("invalid_update_version",
                        f"node {node_id} sent heartbeat {broker['heartbeats']} since the decision "
                        f"(expected {expected_heartbeats})"), []
    if broker["fenced"]:
        return applied(False), []
    broker["fenced"] = True
    return applied(True), [BrokerChanged(node_id, "fenced", incarnation)]


def unfence_broker(state: dict, node_id: int, incarnation: str) -> Outcome:
    broker, error = _current_broker(state, node_id, incarnation)
    if error is not None:
        return error, []
    if not broker["fenced"]:
        return applied(False), []
    broker["fenced"] = False
    return applied(True), [BrokerChanged(node_id, "unfenced", incarnation)]


# -- topics ----------------------------------------------------------------------------------

def _new_partition(replicas: list[int]) -> dict:
    return {"replicas": list(replicas), "leader": replicas[0], "leader_epoch": 0, "partition_epoch": 0}


def _check_partition_count(count: int) -> CommandResult | None:
    if not 1 <= count <= limits.partitions_per_topic_max:
        return rejected("invalid_partitions", f"partitions must be 1..{limits.partitions_per_topic_max}, got {count}")
    return None


def create_topic(state: dict, name: str, topic_id: str, partition_count: int, replication_factor: int,
                 configs: dict[str, str], default_partitions: int, default_replication_factor: int,
                 now_ms: int) -> Outcome:
    """Validated in the order broker/app.py's create_topic uses: name, defaults for -1,
    replication factor (>= 1, at most the live brokers; a default is capped at them),
    existence, partition count. `configs` arrive already validated and canonical."""
    try:
        check_topic_name(name)
    except TopicError as error:
        return rejected(error.error_name, str(error)), []
    live = live_broker_ids(state)
    if partition_count == -1:
        partition_count = default_partitions
    if replication_factor == -1:
        replication_factor = max(1, min(default_replication_factor, len(live)))
    if replication_factor < 1:
        return rejected("invalid_replication_factor", "replication factor must be >= 1"), []
    if replication_factor > len(live):
        return rejected("invalid_replication_factor",
                        f"replication factor {replication_factor} is larger than the "
                        f"{len(live)} available broker(s)"), []
    if name in state["topics"]:
        return rejected("topic_already_exists", f"topic {name!r} already exists"), []
    error = _check_partition_count(partition_count)
    if error is not None:
        return error, []
    if any(topic["topic_id"] == topic_id for topic in state["topics"].values()):
        return rejected("invalid_request", f"topic id {topic_id} is already in use"), []
    assignment = assign_replicas(live, partition_count, replication_factor, state["assignment_cursor"])
    state["assignment_cursor"] = (state["assignment_cursor"] + partition_count) % len(live)
    state["topics"][name] = {
        "name": name,
        "topic_id": topic_id,
        "replication_factor": replication_factor,
        "configs": dict(configs),
        "created_ms": now_ms,
        "partitions": [_new_partition(replicas) for replicas in assignment],
    }
    return applied(copy.deepcopy(state["topics"][name])), [TopicCreated(name, topic_id, partition_count)]


def _require_topic(state: dict, name: str) -> tuple[dict | None, CommandResult | None]:
    topic = state["topics"].get(name)
    if topic is None:
        return None, rejected("unknown_topic_or_partition", f"topic {name!r} does not exist")
    return topic, None


def delete_topic(state: dict, name: str, expected_topic_id: str | None) -> Outcome:
    """Delete `name`; with `expected_topic_id`, only if it is still that topic (not one
    re-created under the same name meanwhile)."""
    topic, error = _require_topic(state, name)
    if error is not None:
        return error, []
    if expected_topic_id is not None and topic["topic_id"] != expected_topic_id:
        return rejected("unknown_topic_id", f"topic {name!r} has id {topic['topic_id']}, not {expected_topic_id}"), []
    del state["topics"][name]
    return applied(copy.deepcopy(topic)), [TopicDeleted(name, topic["topic_id"], len(topic["partitions"]))]


def add_partitions(state: dict, name: str, new_total: int) -> Outcome:
    topic, error = _require_topic(state, name)
    if error is not None:
        return error, []
    old_total = len(topic["partitions"])
    if new_total <= old_total:
        return rejected("invalid_partitions",
                        f"topic {name!r} has {old_total} partitions; new count {new_total} must be larger"), []
    error = _check_partition_count(new_total)
    if error is not None:
        return error, []
    live = live_broker_ids(state)
    if topic["replication_factor"] > len(live):
        return rejected("invalid_replication_factor",
                        f"replication factor {topic['replication_factor']} is larger than the "
                        f"{len(live)} available broker(s)"), []
    added = new_total - old_total
    assignment = assign_replicas(live, added, topic["replication_factor"], state["assignment_cursor"])
    state["assignment_cursor"] = (state["assignment_cursor"] + added) % len(live)
    topic["partitions"].extend(_new_partition(replicas) for replicas in assignment)
    return applied(copy.deepcopy(topic)), [PartitionsAdded(name, old_total, new_total)]


def set_topic_configs(state: dict, name: str, configs: dict[str, str]) -> Outcome:
    """Replace the topic's explicit configs (the caller merged and validated them)."""
    topic, error = _require_topic(state, name)
    if error is not None:
        return error, []
    topic["configs"] = dict(configs)
    return applied(dict(configs)), [TopicConfigsChanged(name)]


# -- partition leadership and replicas ---------------------------------------------------------

def _require_partition(state: dict, name: str, partition: int) -> tuple[dict | None, CommandResult | None]:
    topic, error = _require_topic(state, name)
    if error is not None:
        return None, error
    if not 0 <= partition < len(topic["partitions"]):
        return None, rejected("unknown_topic_or_partition", f"topic {name!r} has no partition {partition}")
    return topic["partitions"][partition], None


def _partition_changed(name: str, partition: int, record: dict, leader_changed: bool) -> PartitionChanged:
    return PartitionChanged(name, partition, tuple(record["replicas"]), record["leader"], record["leader_epoch"],
                            leader_changed)


def elect_leader(state: dict, name: str, partition: int, expected_leader_epoch: int, new_leader: int) -> Outcome:
    """Make `new_leader` (a replica on an unfenced broker, or -1 for none) the leader, only
    while the leader epoch is still `expected_leader_epoch`; the epoch moves by one."""
    record, error = _require_partition(state, name, partition)
    if error is not None:
        return error, []
    if record["leader_epoch"] != expected_leader_epoch:
        return rejected("fenced_leader_epoch",
                        f"{name}-{partition} is at leader epoch {record['leader_epoch']}, "
                        f"not {expected_leader_epoch}"), []
    if new_leader != NO_LEADER:
        if new_leader not in record["replicas"]:
            return rejected("ineligible_replica", f"node {new_leader} is not a replica of {name}-{partition}"), []
        if new_leader not in live_broker_ids(state):
            return rejected("ineligible_replica", f"node {new_leader} is fenced or not registered"), []
    record["leader"] = new_leader
    record["leader_epoch"] += 1
    record["partition_epoch"] += 1
    return (applied(record["leader_epoch"]),
            [_partition_changed(name, partition, record, leader_changed=True)])


def record_leader(state: dict, name: str, partition: int, leader: int, leader_epoch: int) -> Outcome:
    """A partition's replicas elected `leader` in `leader_epoch` (per-partition Raft, where
    the epoch is the term): record it for Metadata. Applies only to a newer epoch (or the
    same epoch naming a leader where none was recorded), so a late report never rolls the
    record back."""
    record, error = _require_partition(state, name, partition)
    if error is not None:
        return error, []
    if leader not in record["replicas"]:
        return rejected("ineligible_replica", f"node {leader} is not a replica of {name}-{partition}"), []
    current = record["leader_epoch"]
    if leader_epoch < current or (leader_epoch == current and record["leader"] not in (NO_LEADER, leader)):
        return rejected("fenced_leader_epoch",
                        f"{name}-{partition} already records leader {record['leader']} in epoch {current}"), []
    if leader_epoch == current and record["leader"] == leader:
        return applied(current), []
    record["leader"] = leader
    record["leader_epoch"] = leader_epoch
    record["partition_epoch"] += 1
    return applied(leader_epoch), [_partition_changed(name, partition, record, leader_changed=True)]


def reassign_replicas(state: dict, name: str, partition: int, expected_partition_epoch: int,
                      replicas: list[int]) -> Outcome:
    """Replace the replica set (same size, distinct unfenced brokers), only while the
    partition epoch is still `expected_partition_epoch`. A leader that is no longer a
    replica hands over to the first new replica, and the leader epoch moves."""
    record, error = _require_partition(state, name, partition)
    if error is not None:
        return error, []
    if record["partition_epoch"] != expected_partition_epoch:
        return rejected("invalid_update_version",
                        f"{name}-{partition} is at partition epoch {record['partition_epoch']}, "
                        f"not {expected_partition_epoch}"), []
    topic = state["topics"][name]
    live = live_broker_ids(state)
    if len(replicas) != topic["replication_factor"] or len(set(replicas)) != len(replicas):
        return rejected("invalid_replica_assignment",
                        f"{name} needs {topic['replication_factor']} distinct replicas, got {replicas}"), []
    if any(node_id not in live for node_id in replicas):
        return rejected("invalid_replica_assignment", f"replicas {replicas} include a fenced or unknown broker"), []
    leader_changed = record["leader"] not in replicas
    record["replicas"] = list(replicas)
    if leader_changed:
        record["leader"] = replicas[0]
        record["leader_epoch"] += 1
    record["partition_epoch"] += 1
    return (applied(record["partition_epoch"]),
            [_partition_changed(name, partition, record, leader_changed=leader_changed)])


def plan_decommission(state: dict, node_id: int) -> list[tuple[str, int, int, list[int]]]:
    """Replica moves that take `node_id` out of every partition: (topic, partition,
    expected partition epoch, new replicas), each replacing `node_id` by the live broker
    outside the replica set that holds the fewest replicas (then the lowest id). Pure: the
    caller issues one `reassign_replicas` per move."""
    live = [broker for broker in live_broker_ids(state) if broker != node_id]
    load = {broker: 0 for broker in live}
    for topic in state["topics"].values():
        for record in topic["partitions"]:
            for replica in record["replicas"]:
                if replica in load:
                    load[replica] += 1
    moves = []
    for name in sorted(state["topics"]):
        for index, record in enumerate(state["topics"][name]["partitions"]):
            if node_id not in record["replicas"]:
                continue
            candidates = [broker for broker in live if broker not in record["replicas"]]
            if not candidates:
                continue
            target = min(candidates, key=lambda broker: (load[broker], broker))
            load[target] += 1
            replicas = [target if replica == node_id else replica for replica in record["replicas"]]
            moves.append((name, index, record["partition_epoch"], replicas))
    return moves


# -- producer ids ----------------------------------------------------------------------------

def allocate_producer_id_block(state: dict, node_id: int, block_size: int, at_least: int) -> Outcome:
    """Hand `node_id` the next `block_size` producer ids, [start, end); `at_least` skips ids
    already in use elsewhere (found in the logs, or given out before the controller)."""
    if not 1 <= block_size <= limits.producer_ids_max:
        return rejected("invalid_request", f"block size must be 1..{limits.producer_ids_max}, got {block_size}"), []
    start = max(state["next_producer_id"], at_least)
    end = start + block_size
    state["next_producer_id"] = end
    state["producer_id_blocks"][node_id] = [start, end]
    return applied((start, end)), [ProducerIdBlockAllocated(node_id, start, end)]


# -- snapshot encoding (JSON: int keys become lists) -------------------------------------------

def encode_state(state: dict) -> dict:
    return {
        "format_version": STATE_FORMAT_VERSION,
        "cluster_id": state["cluster_id"],
        "brokers": [state["brokers"][node_id] for node_id in sorted(state["brokers"])],
        "topics": [state["topics"][name] for name in sorted(state["topics"])],
        "next_producer_id": state["next_producer_id"],
        "producer_id_blocks": [[node_id, *block] for node_id, block in sorted(state["producer_id_blocks"].items())],
        "assignment_cursor": state["assignment_cursor"],
    }


def decode_state(data: dict) -> dict:
    invariant(data.get("format_version") == STATE_FORMAT_VERSION, "unknown controller state format",
              data.get("format_version"))
    state = new_state()
    state["cluster_id"] = data["cluster_id"]
    state["brokers"] = {broker["node_id"]: broker for broker in data["brokers"]}
    state["topics"] = {topic["name"]: topic for topic in data["topics"]}
    state["next_producer_id"] = data["next_producer_id"]
    state["producer_id_blocks"] = {node_id: [start, end] for node_id, start, end in data["producer_id_blocks"]}
    state["assignment_cursor"] = data["assignment_cursor"]
    return state
