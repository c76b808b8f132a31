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
from broker.topic_table import TopicTable

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
