"""The cluster controller for asyncio: a pysyncobj Raft group ticked from the event loop.

One code path for one node and for N: a node whose seeds name no other node is a Raft
group of one (it elects itself within ~0.1 s; see `RaftTiming.single_node`). A lone node
may listen on port 0 (an ephemeral port: no one else needs to reach it).

Threads: none. pysyncobj runs with autoTick=False and `_tick` calls `doTick(0)` every
`tick_interval_ms` through `loop.call_later`, so every Raft message, every apply of a
command, every callback and every change event runs on the event loop thread; nothing is
locked. `sync=True` calls are never made (they wait for a ticking thread that does not
exist); each command resolves an asyncio Future from pysyncobj's callback instead.

Commands go to pysyncobj on whatever node they are issued; a follower forwards them to
the leader (commandsWaitLeader). Each returns the command's `CommandResult` as applied on
this node, or raises `CommandNotApplied` (certainly not applied: retry freely) or
`CommandOutcomeUnknown` (timeout or leader change in flight: it may still apply; the CAS
guards make a retry safe). Both carry `kafka_error`, the kio ErrorCode name a Kafka
handler answers with (not_controller / request_timed_out).

Reads are local and synchronous, of the state applied on this node (possibly behind the
leader); `await read_barrier()` first for a linearizable read.

Security: the Raft port binds only `rpc_listen` (pysyncobj would bind 0.0.0.0), and every
frame on it is unpickled by pysyncobj. With `password` set (needs `cryptography`) frames
are Fernet-encrypted and authenticated, so only holders of the password reach the
unpickler or pysyncobj's admin commands (add/remove node, transfer leadership). Without a
password anyone who reaches the port can run code on the node: keep it on a private
network, and set a password on anything shared.

Durability: see raft_storage (a result reaches its caller only after the command is on
the disk of a majority).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.syncobj import SyncObjException

from broker import limits
from broker.clock import Clock
from broker.controller import cluster_state, controller_limits
from broker.controller.broker_liveness import BrokerLiveness, LivenessDecision
from broker.controller.controller_stm import ControllerStm
from broker.controller.events import (
    BrokerChanged, CommandResult, ControllerLeadershipChanged, StateChange, StateReplaced)
from broker.controller.raft_storage import DiskSyncError, RaftStorage, SyncBeforeSendTransport
from broker.controller.views import BrokerView, TopicView, broker_view, topic_view
from broker.ids import NodeId
from broker.invariant import invariant

log = logging.getLogger("shoal.controller")

ChangeListener = Callable[[StateChange], None]


@dataclass(frozen=True)
class RaftTiming:
    tick_interval_ms: int = controller_limits.tick_interval_ms
    append_entries_period_ms: int = controller_limits.append_entries_period_ms
    election_timeout_min_ms: int = controller_limits.election_timeout_min_ms
    election_timeout_max_ms: int = controller_limits.election_timeout_max_ms
    connection_timeout_ms: int = controller_limits.connection_timeout_ms
    connection_retry_ms: int = controller_limits.connection_retry_ms
    leader_fallback_timeout_ms: int = controller_limits.leader_fallback_timeout_ms

    @classmethod
    def single_node(cls) -> "RaftTiming":
        """pysyncobj elects a lone node only when its election timer runs out, like any
        follower; with no one to hear from, that timer may as well be short."""
        return cls(append_entries_period_ms=controller_limits.single_node_append_entries_period_ms,
                   election_timeout_min_ms=controller_limits.single_node_election_timeout_min_ms,
                   election_timeout_max_ms=controller_limits.single_node_election_timeout_max_ms)


class ControllerUnavailable(Exception):
    """The controller group could not run a command. `reason` is pysyncobj's fail reason
    (lower case) or `timeout` / `stopped`; `kafka_error` the kio ErrorCode name to answer."""

    def __init__(self, reason: str, kafka_error: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.kafka_error = kafka_error


class CommandNotApplied(ControllerUnavailable):
    """The command did not and will not apply."""


class CommandOutcomeUnknown(ControllerUnavailable):
    """The command may or may not have applied (or may still apply)."""


class ControllerStartError(RuntimeError):
    pass


# pysyncobj FAIL_REASON -> (exception class, reason, kafka error)
_FAILURES = {
    FAIL_REASON.QUEUE_FULL: (CommandNotApplied, "queue_full", "request_timed_out"),
    FAIL_REASON.MISSING_LEADER: (CommandNotApplied, "missing_leader", "not_controller"),
    FAIL_REASON.DISCARDED: (CommandNotApplied, "discarded", "not_controller"),
    FAIL_REASON.NOT_LEADER: (CommandNotApplied, "not_leader", "not_controller"),
    FAIL_REASON.REQUEST_DENIED: (CommandNotApplied, "request_denied", "not_controller"),
    # The leader changed before it told this node where it put the command: the old leader
    # may have appended it, and the new one may commit it.
    FAIL_REASON.LEADER_CHANGED: (CommandOutcomeUnknown, "leader_changed", "not_controller"),
    FAIL_REASON.UNKNOWN_OUTCOME: (CommandOutcomeUnknown, "unknown_outcome", "request_timed_out"),
}


def command_failure(fail_reason: int, command: str) -> ControllerUnavailable:
    exception_class, reason, kafka_error = _FAILURES.get(
        fail_reason, (CommandOutcomeUnknown, f"fail_reason_{fail_reason}", "request_timed_out"))
    return exception_class(reason, kafka_error, f"controller command {command} failed: {reason}")


def new_cluster_id() -> str:
    """Kafka's form: a random UUID, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class Controller:
    def __init__(self, node_id: int, rpc_listen: Any, seeds: Iterable[Any], data_dir: Path,
                 password: str | None, clock: Clock, *, timing: RaftTiming | None = None,
                 call_timeout_ms: int = controller_limits.call_timeout_ms_default,
                 heartbeat_interval_ms: int = controller_limits.broker_heartbeat_interval_ms,
                 session_timeout_ms: int = controller_limits.broker_session_timeout_ms,
                 log_compaction_entries_min: int = controller_limits.log_compaction_entries_min,
                 initial_cluster_id: str | None = None) -> None:
        """`rpc_listen` and `seeds` are host:port strings (or broker.config.Address); the
        seeds are the founding voters, the same list on every node, this node included.
        `initial_cluster_id` is the id the first leader sets if the cluster has none yet
        (e.g. the one a single-node broker already persisted); default: a new random one."""
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError(f"heartbeat interval ({heartbeat_interval_ms} ms) must be shorter than the "
                             f"session timeout ({session_timeout_ms} ms)")
        self.node_id = NodeId(node_id)
        self.rpc_address = str(rpc_listen)
        seed_addresses = sorted({str(seed) for seed in seeds})
        if seed_addresses and self.rpc_address not in seed_addresses:
            raise ValueError(f"rpc listen address {self.rpc_address} must be one of the seeds {seed_addresses}")
        self.partners = [address for address in seed_addresses if address != self.rpc_address]
        self.timing = timing or (RaftTiming() if self.partners else RaftTiming.single_node())
        self._password = password
        self._clock = clock
        self._call_timeout_ms = call_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._log_compaction_entries_min = log_compaction_entries_min
        self._initial_cluster_id = initial_cluster_id
        self._stm = ControllerStm()
        self._storage = RaftStorage(Path(data_dir) / "controller" / "raft", self._stm)
        self._liveness = BrokerLiveness(session_timeout_ms)
        self._syncobj: SyncObj | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._listeners: list[ChangeListener] = []
        self._pending: set[asyncio.Future] = set()
        self._ready_waiters: list[asyncio.Future] = []
        self._background: set[asyncio.Task] = set()  # leader duties and heartbeats in flight
        self.failure: BaseException | None = None
        # leadership as last seen after a tick, and what this leadership has done so far
        self._leading_term: int | None = None
        self._leading_since_barrier = False
        self._barrier_in_flight = False
        self._cluster_id_in_flight = False
        self._next_liveness_check_ms = 0
        # this node's own broker registration, heartbeated once set
        self._incarnation: str | None = None
        self._heartbeat_in_flight = False
        self._next_heartbeat_ms = 0
        # read-view caches, invalidated by the change events
        self._topic_views: dict[str, TopicView] = {}
        self._broker_views: dict[int, BrokerView] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        invariant(self._syncobj is None, "controller started twice")
        self._loop = asyncio.get_running_loop()
        with self._storage.install():
            try:
                self._syncobj = SyncObj(self.rpc_address, self.partners, self._conf(), consumers=[self._stm],
                                        transportClass=functools.partial(SyncBeforeSendTransport,
                                                                         before_send=self._storage.sync))
            except SyncObjException as error:
                if self._storage.journal is not None:
                    self._storage.journal._destroy()
                raise ControllerStartError(f"controller cannot listen on {self.rpc_address}: {error}") from error
        log.info("controller node %d on %s, partners %s", self.node_id, self.rpc_address, self.partners or "none")
        self._tick_handle = self._loop.call_soon(self._tick)

    def _conf(self) -> SyncObjConf:
        timing = self.timing
        return SyncObjConf(
            autoTick=False,
            password=self._password,
            bindAddress=self.rpc_address,
            maxBindRetries=1,  # a taken port fails start() at once instead of spinning
            appendEntriesPeriod=timing.append_entries_period_ms / 1000,
            raftMinTimeout=timing.election_timeout_min_ms / 1000,
            raftMaxTimeout=timing.election_timeout_max_ms / 1000,
            connectionTimeout=timing.connection_timeout_ms / 1000,
            connectionRetryTime=timing.connection_retry_ms / 1000,
            leaderFallbackTimeout=timing.leader_fallback_timeout_ms / 1000,
            commandsQueueSize=controller_limits.commands_queued_max,
            commandsWaitLeader=True,
            appendEntriesUseBatch=True,
            dynamicMembershipChange=False,
            journalFile=str(self._storage.journal_path),
            fullDumpFile=str(self._storage.snapshot_path),
            serializer=self._storage.write_snapshot,
            deserializer=self._storage.read_snapshot,
            useFork=False,
            logCompactionMinEntries=self._log_compaction_entries_min,
            logCompactionMinTime=controller_limits.log_compaction_interval_ms_min / 1000,
        )

    async def stop(self) -> None:
        """Stop ticking, close the Raft port and the journal (synced). Commands still in
        flight fail with CommandOutcomeUnknown."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        syncobj, self._syncobj = self._syncobj, None
        if syncobj is not None:
            try:
                syncobj.destroy()
            except DiskSyncError as error:
                self.failure = self.failure or error
        self._storage.close()
        self._fail_waiters(CommandOutcomeUnknown("stopped", "not_controller", "controller stopped"))
        background, self._background = list(self._background), set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def __aenter__(self) -> "Controller":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _fail_waiters(self, error: ControllerUnavailable) -> None:
        for future in list(self._pending) + self._ready_waiters:
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._ready_waiters.clear()

    def _stop_on_failure(self, error: BaseException) -> None:
        log.critical("controller node %d stops: %s", self.node_id, error)
        self.failure = error
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._fail_waiters(CommandOutcomeUnknown("failed", "not_controller", f"controller failed: {error}"))

    # -- the tick -----------------------------------------------------------------------------------

    def _tick(self) -> None:
        self._tick_handle = None
        syncobj = self._syncobj
        if syncobj is None:
            return
        try:
            syncobj.doTick(0)
            # Entries appended during this tick are on disk before any result or change
            # produced by it is seen outside (futures run their waiters after this returns).
            self._storage.sync()
        except DiskSyncError as error:
            self._stop_on_failure(error)
            return
        except Exception:  # noqa: BLE001 - pysyncobj's own tick thread logs and goes on too
            log.exception("controller tick failed")
        if self._storage.load_error is not None:
            self._stop_on_failure(self._storage.load_error)
            return
        self._after_tick(syncobj)
        if self._syncobj is not None and self.failure is None:
            self._tick_handle = self._loop.call_later(self.timing.tick_interval_ms / 1000, self._tick)

    def _after_tick(self, syncobj: SyncObj) -> None:
        now_ms = self._clock.monotonic_ms()
        is_leader = syncobj._isLeader()
        leading_term = syncobj.raftCurrentTerm if is_leader else None
        if leading_term != self._leading_term:
            self._leading_term = leading_term
            self._leading_since_barrier = False
            log.info("controller node %d %s leader (term %d)", self.node_id,
                     "became" if is_leader else "is no longer", syncobj.raftCurrentTerm)
            self._deliver(ControllerLeadershipChanged(is_leader, syncobj.raftCurrentTerm))
        for change in self._stm.drain_changes():
            self._invalidate_views(change)
            self._liveness.observe(change, now_ms)
            self._deliver(change)
        if self._ready_waiters and syncobj.isReady():
            for future in self._ready_waiters:
                if not future.done():
                    future.set_result(None)
            self._ready_waiters.clear()
        if is_leader:
            self._lead(now_ms)
        self._heartbeat_own_broker(now_ms)

    def _deliver(self, change: StateChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the controller
                log.exception("controller change listener failed on %r", change)

    # -- leader duties: own-term barrier, cluster id, broker liveness ------------------------------

    def _lead(self, now_ms: int) -> None:
        if not self._leading_since_barrier:
            if not self._barrier_in_flight:
                self._barrier_in_flight = True
                self._spawn(self._leadership_barrier(), "leadership barrier")
            return
        if self._stm.state["cluster_id"] is None and not self._cluster_id_in_flight:
            self._cluster_id_in_flight = True
            self._spawn(self._set_cluster_id(), "cluster id")
        if now_ms >= self._next_liveness_check_ms:
            self._next_liveness_check_ms = now_ms + controller_limits.liveness_check_interval_ms
            for decision in self._liveness.decide(self._stm.state["brokers"], now_ms):
                self._liveness.started(decision)
                self._spawn(self._apply_liveness(decision), f"{decision.action} node {decision.node_id}")

    async def _leadership_barrier(self) -> None:
        term = self._leading_term
        try:
            await self.read_barrier()
            if self._syncobj is not None and self._syncobj._isLeader() and self._leading_term == term:
                self._liveness.start_leading(self._stm.state["brokers"], self._clock.monotonic_ms())
                self._leading_since_barrier = True
        finally:
            self._barrier_in_flight = False

    async def _set_cluster_id(self) -> None:
        try:
            await self._call("init_cluster", self._initial_cluster_id or new_cluster_id())
        finally:
            self._cluster_id_in_flight = False

    async def _apply_liveness(self, decision: LivenessDecision) -> None:
        try:
            if decision.action == "fence":
                result = await self._call("fence_broker", decision.node_id, decision.incarnation, decision.heartbeats)
            else:
                result = await self._call("unfence_broker", decision.node_id, decision.incarnation)
            log.info("controller: %s node %d: %s", decision.action, decision.node_id, result.error)
        finally:
            self._liveness.finished(decision)

    def _heartbeat_own_broker(self, now_ms: int) -> None:
        if self._incarnation is None or self._heartbeat_in_flight or now_ms < self._next_heartbeat_ms:
            return
        self._next_heartbeat_ms = now_ms + self._heartbeat_interval_ms
        self._heartbeat_in_flight = True
        self._spawn(self._send_heartbeat(), "heartbeat")

    async def _send_heartbeat(self) -> None:
        try:
            result = await self.heartbeat()
            if not result.ok:
                log.warning("controller heartbeat of node %d rejected: %s %s", self.node_id, *result)
        finally:
            self._heartbeat_in_flight = False

    def _spawn(self, coroutine: Any, what: str) -> None:
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(functools.partial(_log_background_failure, what))

    # -- commands -------------------------------------------------------------------------------------

    async def _call(self, command: str, *args: Any, timeout_ms: int | None = None) -> CommandResult:
        syncobj = self._syncobj
        if syncobj is None or self.failure is not None:
            raise CommandNotApplied("stopped", "not_controller", f"controller is not running ({command})")
        future = self._loop.create_future()

        def on_result(result: Any, fail_reason: int) -> None:
            if future.done():
                return
            if fail_reason == FAIL_REASON.SUCCESS:
                future.set_result(result)
            else:
                future.set_exception(command_failure(fail_reason, command))

        self._pending.add(future)
        try:
            getattr(self._stm, command)(*args, callback=on_result)
            timeout_s = (timeout_ms if timeout_ms is not None else self._call_timeout_ms) / 1000
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise CommandOutcomeUnknown("timeout", "request_timed_out",
                                        f"controller command {command} did not apply within {timeout_s} s") from None
        finally:
            self._pending.discard(future)

    async def read_barrier(self, timeout_ms: int | None = None) -> None:
        """Returns once this node has applied everything committed before the call."""
        await self._call("barrier", timeout_ms=timeout_ms)

    async def register_broker(self, kafka_endpoint: str, admin_url: str = "", rpc_endpoint: str | None = None,
                              timeout_ms: int | None = None) -> CommandResult:
        """Register this node under a new incarnation; it then heartbeats on its own."""
        incarnation = str(uuid.uuid4())
        result = await self._call("register_broker", int(self.node_id), incarnation, kafka_endpoint,
                                  rpc_endpoint or self.rpc_address, admin_url, self._clock.now_ms(),
                                  timeout_ms=timeout_ms)
        if result.ok:
            self._incarnation = incarnation
            self._next_heartbeat_ms = self._clock.monotonic_ms() + self._heartbeat_interval_ms
            return CommandResult(result.error, broker_view(result.value))
        return result

    async def heartbeat(self, timeout_ms: int | None = None) -> CommandResult:
        invariant(self._incarnation is not None, "heartbeat before register_broker")
        term = self._syncobj.raftCurrentTerm if self._syncobj is not None else 0
        return await self._call("broker_heartbeat", int(self.node_id), self._incarnation, self._clock.now_ms(), term,
                                timeout_ms=timeout_ms)

    async def fence_broker(self, node_id: int, incarnation: str, expected_heartbeats: int = -1,
                           timeout_ms: int | None = None) -> CommandResult:
        return await self._call("fence_broker", node_id, incarnation, expected_heartbeats, timeout_ms=timeout_ms)

    async def unfence_broker(self, node_id: int, incarnation: str, timeout_ms: int | None = None) -> CommandResult:
        return await self._call("unfence_broker", node_id, incarnation, timeout_ms=timeout_ms)

    async def create_topic(self, name: str, partitions: int, replication_factor: int,
                           configs: dict[str, str] | None = None, *, default_partitions: int = 1,
                           default_replication_factor: int = 1, topic_id: uuid.UUID | None = None,
                           timeout_ms: int | None = None) -> CommandResult:
        """`configs` must already be validated and canonical (broker.topic_config).
        -1 for partitions / replication factor takes the defaults (the replication factor
        default capped at the live brokers)."""
        result = await self._call("create_topic", name, str(topic_id or uuid.uuid4()), partitions,
                                  replication_factor, dict(configs or {}), default_partitions,
                                  default_replication_factor, self._clock.now_ms(), timeout_ms=timeout_ms)
        return _with_topic_view(result)

    async def delete_topic(self, name: str, topic_id: uuid.UUID | None = None,
                           timeout_ms: int | None = None) -> CommandResult:
        result = await self._call("delete_topic", name, str(topic_id) if topic_id else None, timeout_ms=timeout_ms)
        return _with_topic_view(result)

    async def add_partitions(self, name: str, new_total: int, timeout_ms: int | None = None) -> CommandResult:
        return _with_topic_view(await self._call("add_partitions", name, new_total, timeout_ms=timeout_ms))

    async def set_topic_configs(self, name: str, configs: dict[str, str],
                                timeout_ms: int | None = None) -> CommandResult:
        return await self._call("set_topic_configs", name, dict(configs), timeout_ms=timeout_ms)

    async def elect_leader(self, topic: str, partition: int, expected_leader_epoch: int, new_leader: int,
                           timeout_ms: int | None = None) -> CommandResult:
        """value: the new leader epoch."""
        return await self._call("elect_leader", topic, partition, expected_leader_epoch, new_leader,
                                timeout_ms=timeout_ms)

    async def record_leader(self, topic: str, partition: int, leader: int, leader_epoch: int,
                            timeout_ms: int | None = None) -> CommandResult:
        """The partition's replicas elected `leader` in `leader_epoch`: record it (only a
        newer epoch replaces the record). value: the recorded epoch."""
        return await self._call("record_leader", topic, partition, leader, leader_epoch, timeout_ms=timeout_ms)

    async def reassign_replicas(self, topic: str, partition: int, expected_partition_epoch: int,
                                replicas: list[int], timeout_ms: int | None = None) -> CommandResult:
        """value: the new partition epoch."""
        return await self._call("reassign_replicas", topic, partition, expected_partition_epoch,
                                [int(replica) for replica in replicas], timeout_ms=timeout_ms)

    async def decommission_broker(self, node_id: int, timeout_ms: int | None = None) -> list[CommandResult]:
        """Move every replica off `node_id` (one CAS reassignment per partition, planned
        from the state applied here); a move that lost a race comes back rejected."""
        moves = cluster_state.plan_decommission(self._stm.state, node_id)
        return [await self.reassign_replicas(topic, partition, epoch, replicas, timeout_ms=timeout_ms)
                for topic, partition, epoch, replicas in moves]

    async def allocate_producer_id_block(self, at_least: int = 0, timeout_ms: int | None = None) -> CommandResult:
        """value: (start, end), the ids [start, end) now belong to this node alone."""
        return await self._call("allocate_producer_id_block", int(self.node_id), limits.producer_id_block_size,
                                at_least, timeout_ms=timeout_ms)

    # -- reads (local, of the state applied on this node) --------------------------------------------

    async def wait_ready(self, timeout_ms: int | None = None) -> None:
        """Returns once this node has caught up with the leader's commit index as it first
        learnt it (pysyncobj's onReady); raises CommandOutcomeUnknown on timeout."""
        if self._syncobj is not None and self._syncobj.isReady():
            return
        future = self._loop.create_future()
        self._ready_waiters.append(future)
        timeout_s = (timeout_ms if timeout_ms is not None else self._call_timeout_ms) / 1000
        try:
            await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise CommandOutcomeUnknown("timeout", "request_timed_out",
                                        f"controller not ready within {timeout_s} s") from None

    @property
    def is_ready(self) -> bool:
        return self._syncobj is not None and self._syncobj.isReady()

    @property
    def is_leader(self) -> bool:
        """This node believes it leads the controller group (another may too, briefly)."""
        return self._syncobj is not None and self._syncobj._isLeader()

    @property
    def leader_address(self) -> str | None:
        """rpc address of the last known leader, or None."""
        leader = self._syncobj._getLeader() if self._syncobj is not None else None
        return None if leader is None else str(leader.id)

    @property
    def leader_node_id(self) -> NodeId | None:
        """Node id of the last known leader, if that node registered as a broker."""
        address = self.leader_address
        for broker in self.brokers().values():
            if broker.rpc_endpoint == address:
                return broker.node_id
        return None

    @property
    def term(self) -> int:
        return self._syncobj.raftCurrentTerm if self._syncobj is not None else 0

    @property
    def cluster_id(self) -> str | None:
        return self._stm.state["cluster_id"]

    @property
    def incarnation(self) -> str | None:
        return self._incarnation

    def status(self) -> dict[str, Any]:
        syncobj = self._syncobj
        return {
            "node_id": int(self.node_id), "rpc_address": self.rpc_address, "ready": self.is_ready,
            "leader": self.is_leader, "leader_address": self.leader_address, "term": self.term,
            "commit_index": syncobj.raftCommitIndex if syncobj else 0,
            "last_applied": syncobj.raftLastApplied if syncobj else 0,
            "failure": repr(self.failure) if self.failure else None,
        }

    def add_listener(self, listener: ChangeListener) -> None:
        """`listener(change)` runs on the event loop after each applied change (and on
        leadership changes of this node); it must not block. At start, the entries replayed
        from the local journal are reported like new ones (after a StateReplaced if a
        snapshot was loaded), so a listener added before start() sees the whole state."""
        self._listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        self._listeners.remove(listener)

    def topic(self, name: str) -> TopicView | None:
        view = self._topic_views.get(name)
        if view is None:
            record = self._stm.state["topics"].get(name)
            if record is None:
                return None
            view = self._topic_views[name] = topic_view(record)
        return view

    def topic_names(self) -> list[str]:
        return sorted(self._stm.state["topics"])

    def topics(self) -> list[TopicView]:
        return [self.topic(name) for name in self.topic_names()]

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicView | None:
        wanted = str(topic_id)
        for name, record in self._stm.state["topics"].items():
            if record["topic_id"] == wanted:
                return self.topic(name)
        return None

    def __contains__(self, name: str) -> bool:
        return name in self._stm.state["topics"]

    def brokers(self) -> dict[NodeId, BrokerView]:
        if self._broker_views is None:
            self._broker_views = {NodeId(node_id): broker_view(record)
                                  for node_id, record in sorted(self._stm.state["brokers"].items())}
        return self._broker_views

    def live_brokers(self) -> list[NodeId]:
        return [NodeId(node_id) for node_id in cluster_state.live_broker_ids(self._stm.state)]

    def producer_id_blocks(self) -> dict[int, tuple[int, int]]:
        return {node_id: (start, end) for node_id, (start, end) in self._stm.state["producer_id_blocks"].items()}

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the whole applied state (plain data)."""
        return copy.deepcopy(self._stm.state)

    def _invalidate_views(self, change: StateChange) -> None:
        if isinstance(change, StateReplaced):
            self._topic_views.clear()
            self._broker_views = None
            return
        topic = getattr(change, "topic", None)
        if topic is not None:
            self._topic_views.pop(topic, None)
        if isinstance(change, BrokerChanged):
            self._broker_views = None


def _with_topic_view(result: CommandResult) -> CommandResult:
    return CommandResult(result.error, topic_view(result.value)) if result.ok else result


def _log_background_failure(what: str, task: asyncio.Task) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if isinstance(error, ControllerUnavailable):
        log.info("controller %s did not complete: %s", what, error)
    elif error is not None:
        log.error("controller %s failed", what, exc_info=error)
