"""The topic table: which topics exist, their ids, partition counts, leader epochs and
explicit configs. Persisted atomically (write, fsync, rename) under
<data_dir>/controller/topics.json. In a cluster this becomes the controller's
replicated state machine; on one node it is the whole controller."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from broker import limits
from broker.ids import LeaderEpoch, NodeId
from broker.invariant import invariant

INTERNAL_TOPICS = frozenset({"__consumer_offsets"})
_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


class TopicError(Exception):
    """Carries the Kafka error name (kio ErrorCode member name) and a message."""

    def __init__(self, error_name: str, message: str) -> None:
        super().__init__(message)
        self.error_name = error_name


def check_topic_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise TopicError("invalid_topic_exception", f"topic name {name!r} is not allowed")
    if len(name) > limits.topic_name_chars_max:
        raise TopicError("invalid_topic_exception",
                         f"topic name longer than {limits.topic_name_chars_max} characters")
    if not _LEGAL_NAME.match(name):
        raise TopicError("invalid_topic_exception",
                         f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' and '-'")


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    leader_epochs: list[int] = field(default_factory=list)

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    def leader_epoch(self, partition: int) -> LeaderEpoch:
        return LeaderEpoch(self.leader_epochs[partition])

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "topic_id": str(self.topic_id),
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": self.configs,
            "leader_epochs": self.leader_epochs,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Topic":
        return cls(
            name=data["name"],
            topic_id=uuid.UUID(data["topic_id"]),
            partitions=int(data["partitions"]),
            replication_factor=int(data["replication_factor"]),
            configs=dict(data.get("configs", {})),
            leader_epochs=list(data.get("leader_epochs", [0] * int(data["partitions"]))),
        )


class TopicTable:
    FORMAT_VERSION = 1

    def __init__(self, data_dir: Path, node_id: NodeId) -> None:
        self._path = data_dir / "controller" / "topics.json"
        self.node_id = node_id
        self._topics: dict[str, Topic] = {}
        self._load()

    # -- queries ---------------------------------------------------------------------
    def get(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        for topic in self._topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None

    def names(self) -> list[str]:
        return sorted(self._topics)

    def topics(self) -> list[Topic]:
        return [self._topics[name] for name in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._topics

    # -- changes (each persisted before it returns) ----------------------------------
    def create(self, name: str, partitions: int, replication_factor: int,
               configs: dict[str, str]) -> Topic:
        check_topic_name(name)
        if name in self._topics:
            raise TopicError("topic_already_exists", f"topic {name!r} already exists")
        if not 1 <= partitions <= limits.partitions_per_topic_max:
            raise TopicError("invalid_partitions",
                             f"partitions must be 1..{limits.partitions_per_topic_max}, got {partitions}")
        topic = Topic(name, uuid.uuid4(), partitions, replication_factor, dict(configs), [0] * partitions)
        self._topics[name] = topic
        self._save()
        return topic

    def delete(self, name: str) -> Topic:
        topic = self._topics.pop(name, None)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        self._save()
        return topic

    def add_partitions(self, name: str, new_total: int) -> Topic:
        topic = self._require(name)
        if new_total <= topic.partitions:
            raise TopicError("invalid_partitions",
                             f"topic {name!r} has {topic.partitions} partitions; new count {new_total} must be larger")
        if new_total > limits.partitions_per_topic_max:
            raise TopicError("invalid_partitions", f"at most {limits.partitions_per_topic_max} partitions")
        topic.leader_epochs.extend([0] * (new_total - topic.partitions))
        topic.partitions = new_total
        self._save()
        return topic

    def set_configs(self, name: str, configs: dict[str, str]) -> Topic:
        topic = self._require(name)
        topic.configs = dict(configs)
        self._save()
        return topic

    def _require(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        return topic

    # -- persistence ---------------------------------------------------------------------
    def _load(self) -> None:
        if not self._path.exists():
            return
        data = json.loads(self._path.read_text())
        invariant(data.get("format_version") == self.FORMAT_VERSION,
                  "unknown topic table format", data.get("format_version"))
        for entry in data["topics"]:
            topic = Topic.from_json(entry)
            invariant(len(topic.leader_epochs) == topic.partitions, "leader epochs per partition", topic.name)
            self._topics[topic.name] = topic

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({
            "format_version": self.FORMAT_VERSION,
            "topics": [topic.to_json() for topic in self.topics()],
        }, indent=1).encode()
        temporary = self._path.with_suffix(".json.tmp")
        with open(temporary, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
