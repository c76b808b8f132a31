"""What the controller tells the rest of the node: command results and state changes.

Both are plain values. A command's result says, in Kafka's words (kio `ErrorCode` member
names), whether the command changed anything; a change event says what changed, so the
Broker can open or close partition logs and react to leadership changes without diffing
the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

NO_ERROR = "none"  # kio ErrorCode.none


class CommandResult(NamedTuple):
    """("none", value) when the command applied; (error_name, message) when it did not
    (and then it changed nothing)."""

    error: str
    value: Any

    @property
    def ok(self) -> bool:
        return self.error == NO_ERROR


def applied(value: Any = None) -> CommandResult:
    return CommandResult(NO_ERROR, value)


def rejected(error: str, message: str) -> CommandResult:
    return CommandResult(error, message)


@dataclass(frozen=True)
class ClusterIdSet:
    cluster_id: str


@dataclass(frozen=True)
class BrokerChanged:
    node_id: int
    change: Literal["registered", "heartbeat", "fenced", "unfenced"]
    incarnation: str


@dataclass(frozen=True)
class TopicCreated:
    topic: str
    topic_id: str
    partition_count: int


@dataclass(frozen=True)
class TopicDeleted:
    topic: str
    topic_id: str
    partition_count: int


@dataclass(frozen=True)
class PartitionsAdded:
    topic: str
    old_count: int
    new_count: int


@dataclass(frozen=True)
class TopicConfigsChanged:
    topic: str


@dataclass(frozen=True)
class PartitionChanged:
    """Replicas or leader of one partition changed; `leader_changed` says whether the
    leader epoch moved (it moves on every leadership change, never otherwise)."""

    topic: str
    partition: int
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    leader_changed: bool


@dataclass(frozen=True)
class ProducerIdBlockAllocated:
    node_id: int
    start: int
    end: int  # exclusive


@dataclass(frozen=True)
class StateReplaced:
    """A snapshot replaced the whole state (restart, or a follower too far behind): re-read
    everything instead of applying a difference."""


@dataclass(frozen=True)
class ControllerLeadershipChanged:
    """This node became or stopped being the Raft leader of the controller group. Several
    nodes may believe they lead for a while: decisions still go through CAS commands."""

    is_leader: bool
    term: int


StateChange = (ClusterIdSet | BrokerChanged | TopicCreated | TopicDeleted | PartitionsAdded
               | TopicConfigsChanged | PartitionChanged | ProducerIdBlockAllocated | StateReplaced
               | ControllerLeadershipChanged)
