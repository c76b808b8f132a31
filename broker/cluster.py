"""A node in a cluster (`cluster:` in the node config): the controller, the replicas this
node holds, and what Kafka clients are told about the other nodes.

- The controller (broker/controller, a Raft group on pysyncobj over `cluster.rpc_listen`)
  holds brokers, topics, configs and replica assignments. Any node takes topic changes;
  every node applies them in the same order and opens or removes the logs of the
  partitions it is a replica of (`ControllerEvents`).
- Partition data is replicated by per-partition Raft on the segment logs
  (broker/replication). The leader a partition elected is recorded in the controller with
  its epoch, for Metadata on every node.
- One node alone with no `cluster:` section does not come here at all: its topic table is
  broker/topic_table.py and every partition commits what is durable locally."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from broker import limits
from broker.controller import Controller
from broker.controller.controller import ControllerUnavailable
from broker.controller.events import (
    PartitionChanged, PartitionsAdded, StateReplaced, TopicConfigsChanged, TopicCreated, TopicDeleted)
from broker.replication.manager import ReplicationManager
from broker.replication.peer_client import PeerClient
from broker.replication.replica import PartitionReplica, Role
from broker.topic_table import TopicError

if TYPE_CHECKING:
    from broker.app import Broker

log = logging.getLogger("shoal.cluster")


class ControllerTopics:
    """The topic table as the controller holds it, with broker/topic_table.py's read API."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def get(self, name: str):
        return self._controller.topic(name)

    def by_id(self, topic_id: uuid.UUID):
        return self._controller.topic_by_id(topic_id)

    def names(self) -> list[str]:
        return self._controller.topic_names()

    def topics(self):
        return self._controller.topics()

    def __contains__(self, name: str) -> bool:
        return name in self._controller


def topic_error(error: ControllerUnavailable) -> TopicError:
    """A controller that could not apply a command, as the Kafka error clients retry."""
    return TopicError(error.kafka_error, str(error))


def checked(result: Any) -> Any:
    """The value of an applied command; a rejected one raises TopicError with its code."""
    if not result.ok:
        raise TopicError(result.error, str(result.value))
    return result.value


def _address(endpoint: str) -> tuple[str, int] | None:
    host, _, port = endpoint.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


class ClusterNode:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        cluster = broker.config.cluster
        self.controller = Controller(int(broker.node_id), cluster.rpc_listen, cluster.seeds, broker.config.data_dir,
                                     cluster.password, broker.clock)
        self.topics = ControllerTopics(self.controller)
        self.replication: ReplicationManager | None = None
        self._recording: dict[tuple[str, int], asyncio.Task] = {}
        self._producer_ids: tuple[int, int] = (0, 0)  # [next, end) of this node's current block
        self._producer_id_lock = asyncio.Lock()

    # -- start and stop ---------------------------------------------------------------------

    async def start_controller(self) -> None:
        """Join the controller group and wait for it (a majority of the seeds must be up),
        then register this node's endpoints."""
        await self.controller.start()
        started = time.monotonic()
        next_report = started + limits.cluster_join_progress_ms / 1000
        while True:
            try:
                await self.controller.wait_ready(timeout_ms=limits.cluster_join_progress_ms)
                if self.controller.cluster_id is not None:
                    break
            except ControllerUnavailable:
                pass
            if time.monotonic() >= next_report:
                next_report += limits.cluster_join_progress_ms / 1000
                log.warning("node %d waiting for a majority of the controller group %s (%d s so far)",
                            self.broker.node_id, [str(seed) for seed in self.broker.config.cluster.seeds],
                            time.monotonic() - started)
            await asyncio.sleep(0.1)
        config = self.broker.config
        admin = config.admin_listen
        while True:
            try:
                checked(await self.controller.register_broker(
                    str(config.kafka_advertise), f"http://{admin.host}:{self.broker.admin_port}"))
                break
            except (ControllerUnavailable, TopicError) as error:
                log.warning("node %d could not register with the controller yet: %s", self.broker.node_id, error)
                await asyncio.sleep(0.5)
        log.info("node %d joined cluster %s (controller leader: node %s)", self.broker.node_id,
                 self.controller.cluster_id, self.controller.leader_node_id)

    def start_replication(self) -> ReplicationManager:
        peers = PeerClient(int(self.broker.node_id), self.kafka_address_of)
        self.replication = ReplicationManager(
            self.broker.node_id, self.broker.clock, peers, lambda: self.broker.cluster_id or "",
            on_role_change=self._role_changed, on_follower_write=self._follower_wrote,
            on_truncate=self._truncated)
        self.broker.ticker.every("replication", limits.replication_tick_interval_ms, self.replication.tick)
        self.controller.add_listener(self._controller_changed)
        return self.replication

    async def stop(self) -> None:
        for task in list(self._recording.values()):
            task.cancel()
        if self.replication is not None:
            await self.replication.close()
        await self.controller.stop()

    async def allocate_producer_id(self) -> int:
        """The next id of this node's block; a new block from the controller when it is
        used up (ids are never handed out twice in the cluster)."""
        async with self._producer_id_lock:
            next_id, end = self._producer_ids
            if next_id >= end:
                next_id, end = checked(await self.controller.allocate_producer_id_block())
            self._producer_ids = (next_id + 1, end)
            return next_id

    # -- who is where -----------------------------------------------------------------------

    def kafka_address_of(self, node_id: int) -> tuple[str, int] | None:
        broker = self.controller.brokers().get(node_id)
        return _address(broker.kafka_endpoint) if broker is not None else None

    def hosts(self, topic: Any, index: int) -> bool:
        return int(self.broker.node_id) in topic.assignments[index].replicas

    def metadata_brokers(self) -> list[tuple[int, str, int]]:
        brokers = []
        for node_id, view in self.controller.brokers().items():
            address = _address(view.kafka_endpoint)
            if address is not None and view.alive:
                brokers.append((int(node_id), address[0], address[1]))
        return brokers or [(int(self.broker.node_id), self.broker.config.kafka_advertise.host,
                            self.broker.config.kafka_advertise.port)]

    def partition_metadata(self, topic: Any, index: int) -> tuple[int, int, list[int], list[int], list[int]]:
        """(leader, leader epoch, replicas, in-sync replicas, offline replicas)."""
        assignment = topic.assignments[index]
        brokers = self.controller.brokers()
        replicas = [int(node) for node in assignment.replicas]
        offline = [node for node in replicas if node not in brokers or not brokers[node].alive]
        online = [node for node in replicas if node not in offline]
        local = self.replication.get(topic.name, index) if self.replication is not None else None
        if local is not None and local.role is Role.LEADER and local.epoch >= assignment.leader_epoch:
            in_sync = local.in_sync_replicas() if local.ready else [local.node_id]
            return local.node_id, local.epoch, replicas, in_sync, offline
        leader = int(assignment.leader)
        return leader, int(assignment.leader_epoch), replicas, online if leader in online else online, offline

    def controller_id(self) -> int:
        leader = self.controller.leader_node_id
        return int(leader) if leader is not None else -1

    # -- replicas ----------------------------------------------------------------------------

    def attach(self, partition: Any, topic: Any) -> None:
        """Give a newly served partition its replica (Raft state, timers, fetches)."""
        assignment = topic.assignments[partition.index]
        replicas = [int(node) for node in assignment.replicas]
        replica = self.replication.add(partition.topic, partition.index, replicas, partition.log,
                                       initial_leader=replicas[0])
        partition.replica = replica
        recorded_leader = int(assignment.leader)
        if (replica.role is Role.FOLLOWER and replica.leader_id < 0 and recorded_leader >= 0
                and recorded_leader != replica.node_id):
            replica.handle_begin_epoch(recorded_leader, int(assignment.leader_epoch))  # rejoin at once
        partition.commit_moved()
        self._role_changed(replica)

    def detach(self, topic: str, index: int) -> None:
        if self.replication is not None:
            self.replication.remove(topic, index)

    def _role_changed(self, replica: PartitionReplica) -> None:
        partition = self.broker.partitions.get(replica.topic, replica.index)
        if partition is not None:
            partition.commit_moved()  # writes waiting on a lost leadership are answered
        self.broker.fetch_waiters.notify(replica.topic, replica.index)
        if replica.role is Role.LEADER and replica.ready:
            self._record_leader(replica)
        if self.broker.groups is not None and hasattr(self.broker.groups, "leadership_changed"):
            self.broker.groups.leadership_changed(replica.topic, replica.index)

    def _record_leader(self, replica: PartitionReplica) -> None:
        """Tell the controller (for every node's Metadata) who leads, in which epoch."""
        key = (replica.topic, replica.index)
        topic = self.controller.topic(replica.topic)
        if topic is None or replica.index >= topic.partitions:
            return
        recorded = topic.assignments[replica.index]
        if int(recorded.leader) == replica.node_id and int(recorded.leader_epoch) == replica.epoch:
            return
        previous = self._recording.get(key)
        if previous is not None and not previous.done():
            previous.cancel()

        async def record(epoch: int = replica.epoch) -> None:
            for attempt in range(limits.record_leader_attempts_max):
                try:
                    await self.controller.record_leader(replica.topic, replica.index, replica.node_id, epoch)
                    return
                except ControllerUnavailable as error:
                    log.warning("%s-%d: cannot record leader epoch %d yet: %s", replica.topic, replica.index,
                                epoch, error)
                    await asyncio.sleep(0.2 * (attempt + 1))

        task = asyncio.get_running_loop().create_task(record())
        self._recording[key] = task
        task.add_done_callback(lambda done: self._recording.pop(key, None) if self._recording.get(key) is done else None)

    def _follower_wrote(self, topic: str, index: int, from_offset: int) -> None:
        partition = self.broker.partitions.get(topic, index)
        if partition is not None:
            partition.follower_wrote(from_offset)

    def _truncated(self, topic: str, index: int) -> None:
        partition = self.broker.partitions.get(topic, index)
        if partition is not None:
            partition.producers = self.broker.producers.rebuild(
                topic, index, partition.log.iter_batch_headers(partition.log.log_start_offset),
                self.broker.clock.now_ms())

    # -- controller changes ------------------------------------------------------------------------

    def _controller_changed(self, change: Any) -> None:
        broker = self.broker
        if isinstance(change, TopicCreated):
            topic = self.controller.topic(change.topic)
            if topic is not None:
                broker.open_local_partitions(topic, range(topic.partitions))
        elif isinstance(change, PartitionsAdded):
            topic = self.controller.topic(change.topic)
            if topic is not None:
                broker.open_local_partitions(topic, range(change.old_count, change.new_count))
        elif isinstance(change, TopicDeleted):
            broker.topic_deleted(change.topic, change.partition_count)
        elif isinstance(change, TopicConfigsChanged):
            broker.topic_configs_changed(change.topic)
        elif isinstance(change, PartitionChanged):
            replica = self.replication.get(change.topic, change.partition) if self.replication else None
            if replica is not None:
                replica.replicas = [int(node) for node in change.replicas]
        elif isinstance(change, StateReplaced):
            broker.resync_partitions()
