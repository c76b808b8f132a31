"""The Broker: wires config, topic table, local log, groups, tiered storage, the Kafka
listener and the admin HTTP API together, and runs background ticks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from broker.clock import SYSTEM_CLOCK, Clock
from broker.config import NodeConfig
from broker.ids import NodeId
from broker.metrics import BrokerProbe
from broker.server import KafkaServer
from broker.topic_table import Topic, TopicTable

log = logging.getLogger("shoal.broker")


class Broker:
    def __init__(self, config: NodeConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.node_id = NodeId(config.node_id)
        self.probe = BrokerProbe()
        self.topics: TopicTable | None = None
        self.logs: Any = None  # broker.storage.log_manager.LogManager
        self.groups: Any = None  # broker.groups coordinator
        self.producers: Any = None  # idempotent producer state
        self.tiered: Any = None  # tiered.service.TieredStorage
        self.kafka_server = KafkaServer(self)
        self.kafka_port: int | None = None
        self.admin_port: int | None = None
        self.ready = False
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task] = []

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.topics = TopicTable(self.config.data_dir, self.node_id)
        listen = self.config.kafka_listen
        self.kafka_port = await self.kafka_server.start(listen.host, listen.port)
        self.ready = True
        log.info("node %d serving Kafka on %s:%d", self.node_id, listen.host, self.kafka_port)

    # -- topic lifecycle: the one place topics are created, changed and deleted -----------
    # (handlers for Metadata auto-create, CreateTopics, DeleteTopics, CreatePartitions,
    # AlterConfigs, IncrementalAlterConfigs, and the group coordinator call these)

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str], validate_only: bool = False) -> "Topic":
        """Validate, persist in the topic table, create each partition's log.
        Raises TopicError or InvalidTopicConfig (both carry a client-facing message)."""
        from broker.topic_config import validate_topic_configs
        from broker.topic_table import Topic, TopicError, check_topic_name

        check_topic_name(name)
        if partitions == -1:
            partitions = self.config.default_partitions
        if replication_factor == -1:
            replication_factor = self.config.default_replication_factor
        if replication_factor < 1:
            raise TopicError("invalid_replication_factor", "replication factor must be >= 1")
        if replication_factor > self.cluster_size():
            raise TopicError("invalid_replication_factor",
                             f"replication factor {replication_factor} is larger than the "
                             f"{self.cluster_size()} available broker(s)")
        canonical = validate_topic_configs(configs, self.config)
        if name in self.topics:
            raise TopicError("topic_already_exists", f"topic {name!r} already exists")
        if validate_only:
            return Topic(name, __import__("uuid").uuid4(), partitions, replication_factor, canonical, [0] * partitions)
        topic = self.topics.create(name, partitions, replication_factor, canonical)
        self._open_partition_logs(topic, range(topic.partitions))
        return topic

    def delete_topic(self, name: str) -> None:
        topic = self.topics.delete(name)
        if self.logs is not None:
            self.logs.delete_topic(topic.name)

    def add_partitions(self, name: str, new_total: int, validate_only: bool = False) -> None:
        from broker.topic_table import TopicError

        topic = self.topics.get(name)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        if validate_only:
            if new_total <= topic.partitions:
                raise TopicError("invalid_partitions",
                                 f"topic {name!r} has {topic.partitions} partitions; new count {new_total} must be larger")
            return
        old_total = topic.partitions
        topic = self.topics.add_partitions(name, new_total)
        self._open_partition_logs(topic, range(old_total, new_total))

    def set_topic_configs(self, name: str, configs: dict[str, str], validate_only: bool = False) -> None:
        """Replace a topic's explicit configs (already merged by the caller for
        incremental alters); validated, persisted, applied to open logs."""
        from broker.topic_config import partition_log_config, validate_topic_configs
        from broker.topic_table import TopicError

        topic = self.topics.get(name)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        canonical = validate_topic_configs(configs, self.config)
        if validate_only:
            return
        self.topics.set_configs(name, canonical)
        if self.logs is not None:
            log_config = partition_log_config(self.config, name, canonical)
            for partition in range(topic.partitions):
                partition_log = self.partition_log(name, partition)
                if partition_log is not None:
                    partition_log.update_config(log_config)

    def partition_log(self, topic: str, partition: int):
        """The PartitionLog of topic/partition on this node, or None."""
        if self.logs is None:
            return None
        return self.logs.get(topic, partition)

    def cluster_size(self) -> int:
        return 1  # single node until clustering lands

    def _open_partition_logs(self, topic: "Topic", partitions: range) -> None:
        from broker.topic_config import partition_log_config

        if self.logs is None:
            return
        log_config = partition_log_config(self.config, topic.name, topic.configs)
        for partition in partitions:
            self.logs.create(topic.name, partition, log_config)

    async def run_until_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        self.ready = False
        await self.kafka_server.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        log.info("node %d stopped", self.node_id)
