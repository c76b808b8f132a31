"""Read-only views of the applied controller state, so readers can never change the
replicated data by accident. `TopicView` answers what `broker.topic_table.Topic` answers
(name, topic_id, partitions, replication_factor, configs, leader_epochs, internal,
leader_epoch(p)), plus each partition's replicas and leader."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from broker.ids import LeaderEpoch, NodeId
from broker.topic_table import INTERNAL_TOPICS


@dataclass(frozen=True)
class BrokerView:
    node_id: NodeId
    kafka_endpoint: str  # host:port given to Kafka clients
    rpc_endpoint: str  # host:port of node-to-node traffic
    admin_url: str
    incarnation: str
    fenced: bool
    heartbeats: int
    last_heartbeat_ms: int
    last_heartbeat_term: int

    @property
    def alive(self) -> bool:
        return not self.fenced


@dataclass(frozen=True)
class PartitionView:
    replicas: tuple[NodeId, ...]
    leader: NodeId  # -1 when no replica leads
    leader_epoch: LeaderEpoch
    partition_epoch: int


@dataclass(frozen=True)
class TopicView:
    name: str
    topic_id: uuid.UUID
    replication_factor: int
    configs: Mapping[str, str]
    assignments: tuple[PartitionView, ...]

    @property
    def partitions(self) -> int:
        return len(self.assignments)

    @property
    def leader_epochs(self) -> list[int]:
        return [assignment.leader_epoch for assignment in self.assignments]

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    def leader_epoch(self, partition: int) -> LeaderEpoch:
        return self.assignments[partition].leader_epoch


def broker_view(record: dict) -> BrokerView:
    return BrokerView(NodeId(record["node_id"]), record["kafka_endpoint"], record["rpc_endpoint"], record["admin_url"],
                      record["incarnation"], record["fenced"], record["heartbeats"], record["last_heartbeat_ms"],
                      record["last_heartbeat_term"])


def partition_view(record: dict) -> PartitionView:
    return PartitionView(tuple(NodeId(replica) for replica in record["replicas"]), NodeId(record["leader"]),
                         LeaderEpoch(record["leader_epoch"]), record["partition_epoch"])


def topic_view(record: dict) -> TopicView:
    return TopicView(record["name"], uuid.UUID(record["topic_id"]), record["replication_factor"],
                     MappingProxyType(dict(record["configs"])),
                     tuple(partition_view(partition) for partition in record["partitions"]))
