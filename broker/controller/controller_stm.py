"""The controller's replicated state machine: one pysyncobj consumer holding plain data.

Each `@replicated` method is one log command. Calling it (with `callback=`) appends the
command through Raft; pysyncobj then runs the method body on every node when the entry
applies, and hands the local result to the callback. The bodies only delegate to the pure
functions of `cluster_state`, record what changed, and never raise: a rejected command
returns its error result, and an unexpected exception (a bug: commands validate before
they mutate) is logged and returned as `unknown_server_error` on every node alike, rather
than leaving pysyncobj to retry the entry on every tick forever.

The state is saved by `raft_storage.RaftStorage`'s snapshot serializer, not by
pysyncobj's pickling of consumer attributes.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from pysyncobj import SyncObjConsumer, replicated

from broker.controller import cluster_state
from broker.controller.events import CommandResult, StateChange, StateReplaced, applied, rejected

log = logging.getLogger("shoal.controller")


class ControllerStm(SyncObjConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, Any] = cluster_state.new_state()
        # Node-local, never replicated: changes applied since the facade last drained them,
        # and a counter of local changes (read-view caches key on it).
        self.pending_changes: list[StateChange] = []
        self.local_change_count = 0

    def replace_state(self, state: dict[str, Any]) -> None:
        """A snapshot was loaded (restart or install from the leader)."""
        self.state = state
        self.local_change_count += 1
        self.pending_changes.append(StateReplaced())

    def drain_changes(self) -> list[StateChange]:
        changes, self.pending_changes = self.pending_changes, []
        return changes

    def _run(self, command: Callable[..., cluster_state.Outcome], *args: Any) -> CommandResult:
        try:
            result, changes = command(self.state, *args)
        except Exception as error:  # noqa: BLE001 - see the module docstring
            log.critical("controller command %s%r raised; answered as an error on every node",
                         command.__name__, args, exc_info=True)
            return rejected("unknown_server_error", f"{command.__name__} failed: {error!r}")
        if changes:
            self.local_change_count += 1
            self.pending_changes.extend(changes)
        return result

    # -- commands (arguments are plain data, fixed by the caller: time, ids, uuids) ----------

    @replicated
    def barrier(self) -> CommandResult:
        """Changes nothing. Once it applies here, this node has applied everything committed
        before it: a new leader's own-term barrier, and the way to read linearizably."""
        return applied(None)

    @replicated
    def init_cluster(self, cluster_id: str) -> CommandResult:
        return self._run(cluster_state.init_cluster, cluster_id)

    @replicated
    def register_broker(self, node_id: int, incarnation: str, kafka_endpoint: str, rpc_endpoint: str,
                        admin_url: str, now_ms: int) -> CommandResult:
        return self._run(cluster_state.register_broker, node_id, incarnation, kafka_endpoint, rpc_endpoint,
                         admin_url, now_ms)

    @replicated
    def broker_heartbeat(self, node_id: int, incarnation: str, now_ms: int, controller_term: int) -> CommandResult:
        return self._run(cluster_state.broker_heartbeat, node_id, incarnation, now_ms, controller_term)

    @replicated
    def fence_broker(self, node_id: int, incarnation: str, expected_heartbeats: int) -> CommandResult:
        return self._run(cluster_state.fence_broker, node_id, incarnation, expected_heartbeats)

    @replicated
    def unfence_broker(self, node_id: int, incarnation: str) -> CommandResult:
        return self._run(cluster_state.unfence_broker, node_id, incarnation)

    @replicated
    def create_topic(self, name: str, topic_id: str, partition_count: int, replication_factor: int,
                     configs: dict[str, str], default_partitions: int, default_replication_factor: int,
                     now_ms: int) -> CommandResult:
        return self._run(cluster_state.create_topic, name, topic_id, partition_count, replication_factor, configs,
                         default_partitions, default_replication_factor, now_ms)

    @replicated
    def delete_topic(self, name: str, expected_topic_id: str | None) -> CommandResult:
        return self._run(cluster_state.delete_topic, name, expected_topic_id)

    @replicated
    def add_partitions(self, name: str, new_total: int) -> CommandResult:
        return self._run(cluster_state.add_partitions, name, new_total)

    @replicated
    def set_topic_configs(self, name: str, configs: dict[str, str]) -> CommandResult:
        return self._run(cluster_state.set_topic_configs, name, configs)

    @replicated
    def elect_leader(self, name: str, partition: int, expected_leader_epoch: int, new_leader: int) -> CommandResult:
        return self._run(cluster_state.elect_leader, name, partition, expected_leader_epoch, new_leader)

    @replicated
    def record_leader(self, name: str, partition: int, leader: int, leader_epoch: int) -> CommandResult:
        return self._run(cluster_state.record_leader, name, partition, leader, leader_epoch)

    @replicated
    def reassign_replicas(self, name: str, partition: int, expected_partition_epoch: int,
                          replicas: list[int]) -> CommandResult:
        return self._run(cluster_state.reassign_replicas, name, partition, expected_partition_epoch, replicas)

    @replicated
    def allocate_producer_id_block(self, node_id: int, block_size: int, at_least: int) -> CommandResult:
        return self._run(cluster_state.allocate_producer_id_block, node_id, block_size, at_least)
