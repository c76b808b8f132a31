"""The Broker: wires config, topic table, local log, producer state, groups, tiered
storage, the Kafka listener and the admin HTTP API together, and runs background ticks.

Lifecycle of partition logs: the topic table says which partitions exist; the Broker
serves a partition once its log is open (`partition_log` / `open_partition_log`). Topic
changes (create, delete, add partitions) update the table at once and queue the file work
(open, close, remove) on one ordered lifecycle chain, so a delete and a re-create of the
same name can never interleave on disk."""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import uuid
from typing import Any, Awaitable, Callable

from broker import limits
from broker.clock import SYSTEM_CLOCK, Clock
from broker.config import NodeConfig
from broker.data_dir_lock import DataDirLock, StartupError
from broker.fetch_waiters import FetchWaiters
from broker.ids import NodeId
from broker.invariant import InvariantViolation
from broker.metrics import BrokerProbe
from broker.producer_state import ProducerStateManager, write_durably
from broker.partition import ColdTier
from broker.partition_manager import PartitionManager
from broker.server import KafkaServer
from broker.ticker import Ticker
from broker.topic_table import INTERNAL_TOPICS, Topic, TopicTable
from tiered.wiring import attach_tiered_storage, detach_tiered_storage, initial_offset_for

log = logging.getLogger("shoal.broker")

PartitionKey = tuple[str, int]


class Broker:
    def __init__(self, config: NodeConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.node_id = NodeId(config.node_id)
        self.probe = BrokerProbe()
        self.cluster_id: str | None = None  # persisted in <data_dir>/controller/cluster_id
        self.topics: TopicTable | None = None
        self.logs: Any = None  # broker.storage.log_manager.LogManager
        self.groups: Any = None  # broker.groups coordinator (None: groups unavailable)
        self.producers: ProducerStateManager | None = None  # idempotent producer state
        self.fetch_waiters = FetchWaiters()
        self.tiered: Any = None  # tiered.service.TieredStorage
        self.cold_tier = ColdTier()  # what partitions read from / delete in the bucket
        self.partitions = PartitionManager(lambda: self.topics, lambda: self.producers, self.cold_tier,
                                           self.fetch_waiters, self.probe, clock)
        self.kafka_server = KafkaServer(self)
        self.kafka_port: int | None = None
        self.admin_port: int | None = None
        self.admin_http: Any = None  # broker.admin_http.AdminHttpServer
        self.ready = False
        self._stopping = asyncio.Event()
        self.ticker = Ticker(clock, on_invariant_violation=self.fail)
        self.failed = False  # stopped by a broken invariant (exit non-zero)
        self._lifecycle_tail: asyncio.Task | None = None
        self._data_dir_lock: DataDirLock | None = None
        self.cluster: Any = None  # broker.cluster.ClusterNode when `cluster:` is configured
        self.replication: Any = None  # broker.replication.manager.ReplicationManager (cluster)

    async def start(self) -> None:
        """Lock the data directory, bind every listener, then recover and serve. The lock
        comes before anything in data_dir is read or written, the listeners before any log
        is opened: a node that cannot have its directory or its ports fails before it
        touches a single segment. Raises StartupError (one line) when it cannot start."""
        from broker.storage.log_manager import LogManager

        self._data_dir_lock = DataDirLock.acquire(self.config.data_dir)
        await self._start_admin_http()
        listen = self.config.kafka_listen
        self.kafka_port = await _bind("kafka_api.listen", listen, self.kafka_server.bind)
        if self.config.cluster is not None:
            from broker.cluster import ClusterNode

            self.cluster = ClusterNode(self)
            await self.cluster.start_controller()
            self.cluster_id = self.cluster.controller.cluster_id
            self.topics = self.cluster.topics
        else:
            self.cluster_id = load_or_create_cluster_id(self.config.data_dir)
            self.topics = TopicTable(self.config.data_dir, self.node_id)
        self.producers = ProducerStateManager(self.config.data_dir)
        self.logs = LogManager(self.config.data_dir, self.clock, self._log_config_for)
        await self.logs.start()
        self.tiered = await attach_tiered_storage(self)
        if self.tiered is not None:
            self.cold_tier.reader, self.cold_tier.storage = self.tiered.reader, self.tiered
        if self.cluster is not None:
            self.replication = self.cluster.start_replication()
        await self._serve_recovered_logs()
        self.ticker.every("housekeeping", limits.housekeeping_interval_ms, self._housekeeping)
        self.ticker.start()
        await self._start_group_coordinator()
        await self.kafka_server.start_serving()
        self.ready = True
        user_partitions = sum(1 for topic, _ in self.partitions.keys() if topic not in INTERNAL_TOPICS)
        user_topics = sum(1 for topic in self.topics.topics() if not topic.internal)
        admin = self.config.admin_listen
        log.info("node %d (cluster %s) serving Kafka on %s:%d and the admin API on http://%s:%d: "
                 "%d topic(s), %d partition(s)", self.node_id, self.cluster_id, listen.host, self.kafka_port,
                 admin.host, self.admin_port, user_topics, user_partitions)

    # -- topic lifecycle: the one place topics are created, changed and deleted -----------
    # (handlers for Metadata auto-create, CreateTopics, DeleteTopics, CreatePartitions,
    # AlterConfigs, IncrementalAlterConfigs, and the group coordinator call these)

    async def create_topic(self, name: str, partitions: int, replication_factor: int,
                           configs: dict[str, str], validate_only: bool = False) -> "Topic":
        """Validate, record in the topic table (the controller in a cluster), open the logs
        of the partitions this node holds (queued; await `topic_logs_ready(name)` to wait
        for it, produce/fetch wait on their own). Raises TopicError or InvalidTopicConfig
        (both carry a client-facing message)."""
        from broker.topic_config import validate_topic_configs
        from broker.topic_table import TopicError, check_topic_name

        check_topic_name(name)
        if partitions == -1:
            partitions = self.config.default_partitions
        if replication_factor == -1:
            replication_factor = min(self.config.default_replication_factor, self.cluster_size())
        if replication_factor < 1:
            raise TopicError("invalid_replication_factor", "replication factor must be >= 1")
        if replication_factor > self.cluster_size():
            raise TopicError("invalid_replication_factor",
                             f"replication factor {replication_factor} is larger than the "
                             f"{self.cluster_size()} available broker(s)")
        canonical = validate_topic_configs(configs, self.config)
        if name in self.topics:
            raise TopicError("topic_already_exists", f"topic {name!r} already exists")
        if not 1 <= partitions <= limits.partitions_per_topic_max:
            raise TopicError("invalid_partitions",
                             f"partitions must be 1..{limits.partitions_per_topic_max}, got {partitions}")
        if validate_only:
            return Topic(name, uuid.uuid4(), partitions, replication_factor, canonical, [0] * partitions)
        if self.cluster is None:
            topic = self.topics.create(name, partitions, replication_factor, canonical)
            self._open_partition_logs(topic, range(topic.partitions))
            return topic
        from broker.cluster import checked, topic_error
        from broker.controller.controller import ControllerUnavailable

        try:  # every node (this one too) opens its replicas' logs when the change applies
            return checked(await self.cluster.controller.create_topic(name, partitions, replication_factor,
                                                                      canonical))
        except ControllerUnavailable as error:
            raise topic_error(error) from error

    async def delete_topic(self, name: str) -> None:
        if self.cluster is None:
            topic = self.topics.delete(name)
            self.topic_deleted(topic.name, topic.partitions)
            return
        from broker.cluster import checked, topic_error
        from broker.controller.controller import ControllerUnavailable

        try:
            checked(await self.cluster.controller.delete_topic(name))
        except ControllerUnavailable as error:
            raise topic_error(error) from error

    def topic_deleted(self, name: str, partition_count: int) -> None:
        """The topic is gone from the topic table: stop serving it, drop what derives from
        it (producer state, committed offsets, its data in the bucket) and its logs."""
        for partition in range(partition_count):
            self.partitions.stop_serving(name, partition)
            if self.cluster is not None:
                self.cluster.detach(name, partition)
        if self.producers is not None:
            self.producers.forget_topic(name)
        if self.groups is not None:
            self.groups.forget_topic(name)  # committed offsets go with the topic, as in Kafka
        self.fetch_waiters.notify_all()  # waiting fetches answer UNKNOWN_TOPIC_OR_PARTITION
        if self.tiered is not None:
            self.tiered.delete_topic(name, partition_count)  # its bucket data too, as Kafka
        if self.logs is not None:
            for partition in range(partition_count):
                self._queue_lifecycle(lambda partition=partition: self.logs.delete(name, partition))

    async def add_partitions(self, name: str, new_total: int, validate_only: bool = False) -> None:
        from broker.topic_table import TopicError

        topic = self.topics.get(name)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        if validate_only:
            if new_total <= topic.partitions:
                raise TopicError("invalid_partitions",
                                 f"topic {name!r} has {topic.partitions} partitions; new count {new_total} must be larger")
            return
        if self.cluster is None:
            old_total = topic.partitions
            topic = self.topics.add_partitions(name, new_total)
            self._open_partition_logs(topic, range(old_total, new_total))
            return
        from broker.cluster import checked, topic_error
        from broker.controller.controller import ControllerUnavailable

        try:
            checked(await self.cluster.controller.add_partitions(name, new_total))
        except ControllerUnavailable as error:
            raise topic_error(error) from error

    async def set_topic_configs(self, name: str, configs: dict[str, str], validate_only: bool = False) -> None:
        """Replace a topic's explicit configs (already merged by the caller for
        incremental alters); validated, persisted, applied to open logs."""
        from broker.topic_config import validate_topic_configs
        from broker.topic_table import TopicError

        topic = self.topics.get(name)
        if topic is None:
            raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
        canonical = validate_topic_configs(configs, self.config)
        if validate_only:
            return
        if self.cluster is None:
            self.topics.set_configs(name, canonical)
            self.topic_configs_changed(name)
            return
        from broker.cluster import checked, topic_error
        from broker.controller.controller import ControllerUnavailable

        try:
            checked(await self.cluster.controller.set_topic_configs(name, canonical))
        except ControllerUnavailable as error:
            raise topic_error(error) from error

    def topic_configs_changed(self, name: str) -> None:
        """Apply a topic's configs as now recorded to its open logs."""
        topic = self.topics.get(name)
        if topic is None or self.logs is None:
            return
        for partition in range(topic.partitions):
            partition_log = self.partition_log(name, partition)
            if partition_log is not None:
                partition_log.update_config(self._log_config_for(name, partition))

    @property
    def remote_reader(self) -> Any:
        """The cold tier's reader (shadow_indexing.RemoteReader), or None."""
        return self.cold_tier.reader

    def partition_log(self, topic: str, partition: int):
        """The open PartitionLog of topic/partition on this node, or None (no such
        partition, or its log is still opening: see open_partition_log)."""
        partition_object = self.partitions.get(topic, partition)
        return partition_object.log if partition_object is not None else None

    async def open_partition_log(self, topic: str, partition: int):
        """The PartitionLog of an existing partition, waiting for it to open if it was
        just created; None when the topic table has no such partition."""
        partition_object = await self.partitions.wait_for(topic, partition)
        return partition_object.log if partition_object is not None else None

    async def topic_logs_ready(self, name: str) -> None:
        """Wait until every partition log of topic `name` queued so far is open."""
        await self.partitions.topic_ready(name)

    def cluster_size(self) -> int:
        """Brokers a replica can be placed on (the live ones in a cluster)."""
        if self.cluster is None:
            return 1
        return max(1, len(self.cluster.controller.live_brokers()))

    def hosts(self, topic: Any, index: int) -> bool:
        """This node holds a replica of topic-index (every partition on a single node)."""
        return self.cluster is None or self.cluster.hosts(topic, index)

    def metadata_brokers(self) -> list[tuple[int, str, int]]:
        """(node id, host, port) of the brokers Kafka clients are told about."""
        if self.cluster is not None:
            return self.cluster.metadata_brokers()
        advertise = self.config.kafka_advertise
        return [(int(self.node_id), advertise.host, advertise.port)]

    def partition_metadata(self, topic: Any, index: int) -> tuple[int, int, list[int], list[int], list[int]]:
        """(leader, leader epoch, replicas, in-sync replicas, offline replicas)."""
        if self.cluster is not None:
            return self.cluster.partition_metadata(topic, index)
        node = int(self.node_id)
        return node, int(topic.leader_epoch(index)), [node], [node], []

    def archivable_logs(self) -> list[Any]:
        """The logs the archiver may upload from: every log on one node; in a cluster only
        those of partitions this node leads (followers never upload)."""
        if self.logs is None:
            return []
        if self.cluster is None:
            return list(self.logs)
        from broker.replication.replica import Role

        return [partition.log for partition in self.partitions
                if partition.replica is not None and partition.replica.role is Role.LEADER and partition.replica.ready]

    def controller_id(self) -> int:
        return self.cluster.controller_id() if self.cluster is not None else int(self.node_id)

    async def allocate_producer_id(self) -> int:
        """A producer id no other producer of the cluster has (blocks from the controller
        in a cluster, from <data_dir>/controller/producer_ids.json on one node)."""
        if self.cluster is not None:
            return await self.cluster.allocate_producer_id()
        return int(self.producers.allocator.allocate())

    # -- partition logs ---------------------------------------------------------------------

    def _log_config_for(self, topic: str, partition: int):
        import dataclasses

        from broker.topic_config import partition_log_config

        entry = self.topics.get(topic) if self.topics is not None else None
        config = partition_log_config(self.config, topic, dict(entry.configs) if entry is not None else {})
        # In a cluster the replicas decide the commit (the high watermark), not the disk.
        return dataclasses.replace(config, external_commit=True) if self.cluster is not None else config

    def open_local_partitions(self, topic: Any, partitions: range) -> None:
        """Open (queued) the logs of the partitions of `topic` this node holds."""
        self._open_partition_logs(topic, partitions)

    def resync_partitions(self) -> None:
        """After the controller state was replaced wholesale: serve exactly the partitions
        the topic table now gives this node."""
        wanted = {(topic.name, index): topic for topic in self.topics.topics()
                  for index in range(topic.partitions) if self.hosts(topic, index)}
        for key in self.partitions.keys():
            if key not in wanted:
                self.partitions.stop_serving(*key)
                if self.cluster is not None:
                    self.cluster.detach(*key)
                self._queue_lifecycle(lambda key=key: self.logs.delete(*key))
        for (name, index), topic in wanted.items():
            if self.partitions.get(name, index) is None:
                self._open_partition_logs(topic, range(index, index + 1))

    def _open_partition_logs(self, topic: "Topic", partitions: range) -> None:
        if self.logs is None:
            return
        topic_id = topic.topic_id
        for partition in partitions:
            if not self.hosts(topic, partition):
                continue
            key = (topic.name, partition)

            async def open_one(key: PartitionKey = key) -> None:
                current = self.topics.get(key[0])
                if current is None or current.topic_id != topic_id:
                    return  # deleted (or re-created) before its turn came
                partition_log = await self.logs.create(key[0], key[1], self._log_config_for(*key),
                                                       start_offset=await initial_offset_for(self, *key))
                self._serve(key, partition_log)

            self.partitions.opening(key, self._queue_lifecycle(open_one))

    def _queue_lifecycle(self, work: Callable[[], Awaitable[None]]) -> asyncio.Task:
        """Run `work` after every lifecycle step queued before it (file operations on
        partitions happen in the order the topic changes happened)."""
        previous = self._lifecycle_tail

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await work()
            except InvariantViolation as error:
                self.fail("a partition log lifecycle step", error)
                raise
            except Exception:
                log.exception("partition log lifecycle step failed")
                raise

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(_retrieve_exception)  # logged in run(); no "never retrieved" noise
        self._lifecycle_tail = task
        return task

    async def _serve_recovered_logs(self) -> None:
        """After LogManager.start(): serve every partition of the topic table (creating
        logs that are missing) and remove logs of topics no longer in the table (a delete
        interrupted by a crash)."""
        wanted = {(topic.name, partition) for topic in self.topics.topics() for partition in range(topic.partitions)
                  if self.hosts(topic, partition)}
        for partition_log in list(self.logs):
            key = (partition_log.topic, partition_log.partition)
            if key not in wanted:
                log.warning("removing the log of %s/%d: not in the topic table", *key)
                await self.logs.delete(*key)
        for key in sorted(wanted):
            partition_log = await self.logs.create(key[0], key[1], self._log_config_for(*key),
                                                   start_offset=await initial_offset_for(self, *key))
            self._serve(key, partition_log)

    def _serve(self, key: PartitionKey, partition_log: Any) -> None:
        partition = self.partitions.serve(key[0], key[1], partition_log)
        if self.cluster is not None:
            topic = self.topics.get(key[0])
            if topic is not None:
                self.cluster.attach(partition, topic)

    # -- background ---------------------------------------------------------------------------

    async def _housekeeping(self, now_ms: int) -> None:
        """Roll, retention, relaxed-mode fsync and producer expiry."""
        await self.logs.tick(now_ms)
        self.producers.expire(now_ms)

    def fail(self, where: str, error: BaseException | None = None) -> None:
        """A broken invariant: a bug, and continuing risks data. Log it and stop the node;
        `shoal start` then exits non-zero."""
        log.critical("invariant violated in %s; stopping the node", where, exc_info=error)
        self.failed = True
        self.request_stop()

    async def run_until_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Stop serving, then flush and close every log (exit 0 after SIGTERM)."""
        self.ready = False
        await self.kafka_server.stop()
        await self.ticker.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self._stop_group_coordinator()
        if self._lifecycle_tail is not None:
            await asyncio.gather(self._lifecycle_tail, return_exceptions=True)
        await detach_tiered_storage(self)
        opened_logs = self.logs is not None
        if opened_logs:
            await self.logs.close()
        await self._stop_admin_http()
        if self._data_dir_lock is not None:
            self._data_dir_lock.release()
            self._data_dir_lock = None
        if opened_logs:
            log.info("node %d stopped", self.node_id)

    # --- GROUP COORDINATOR wiring (broker/groups; owned by the groups helper) ---------------
    # Replays __consumer_offsets before the Kafka listener opens (so clients never see a
    # loading coordinator), ticks session/rebalance timers, answers waiting joins at stop.

    async def _start_group_coordinator(self) -> None:
        from broker.groups.wiring import start_group_coordinator

        if self.cluster is not None:
            # Group coordination in a cluster (a group's coordinator is the leader of its
            # __consumer_offsets partition) is not built yet: FindCoordinator answers
            # COORDINATOR_NOT_AVAILABLE, which clients retry.
            log.warning("node %d: consumer groups are not available in a cluster yet", self.node_id)
            return
        self.groups = await start_group_coordinator(self)

    async def _stop_group_coordinator(self) -> None:
        if self.groups is not None:
            await self.groups.close()
    # --- end GROUP COORDINATOR wiring ---------------------------------------------------------

    # --- ADMIN HTTP API wiring (broker/admin_http.py; owned by the admin helper) -------------
    # Started first and stopped last, so /v1/status/ready answers 503 while logs recover at
    # start and while the node drains at stop.

    async def _start_admin_http(self) -> None:
        from broker.admin_http import AdminHttpServer

        self.admin_http = AdminHttpServer(self)
        admin = self.config.admin_listen
        self.admin_port = await _bind("admin_api.listen", admin, self.admin_http.start)

    async def _stop_admin_http(self) -> None:
        if self.admin_http is not None:
            await self.admin_http.stop()
    # --- end ADMIN HTTP API wiring ------------------------------------------------------------


async def _bind(key: str, address: Any, bind: Callable[[str, int], Awaitable[int]]) -> int:
    """Bind one listener; a taken or unusable address is a StartupError naming its key."""
    try:
        return await bind(address.host, address.port)
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        raise StartupError(f"cannot listen on {key}={address}: {reason}") from error


def _retrieve_exception(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def load_or_create_cluster_id(data_dir) -> str:
    """The cluster id of this data dir, created once (22 characters of URL-safe base64 of a
    random UUID, like Kafka's) and kept in <data_dir>/controller/cluster_id."""
    path = data_dir / "controller" / "cluster_id"
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    write_durably(path, cluster_id.encode())
    return cluster_id
