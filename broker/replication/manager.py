"""Every partition replica on this node, its timers, elections and follower fetches.

- `add` / `remove` follow the controller's assignment (the Broker calls them as it opens
  and closes the logs of partitions this node is a replica of).
- `tick` (on the node's ticker): elections whose timer ran out, leaders that lost their
  quorum, and one fetch loop per leader this node follows.
- The Vote and BeginQuorumEpoch handlers and the Fetch handler's replica path call
  `handle_vote`, `handle_begin_epoch` and `replica_fetched` here.

A fetch loop asks one leader, in one long-poll Fetch, for every partition this node
follows from it; it writes what it gets, waits until that is durable (one fsync covers all
partitions), and only then fetches again, so its fetch offsets are durable log ends."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from kio.schema.errors import ErrorCode

from broker import limits
from broker.clock import Clock
from broker.ids import NodeId, Offset
from broker.replication.peer_client import PeerClient, PeerUnavailable
from broker.replication.replica import NO_LEADER, PartitionReplica, Role
from broker.replication.wire import (
    begin_epoch_request, fetch_request, partition_results, vote_request)
from broker.storage.api import AppendTruncated, KafkaStorageError, UnexpectedAppendOffset

log = logging.getLogger("shoal.replication")

PartitionKey = tuple[str, int]


class ReplicationManager:
    def __init__(self, node_id: NodeId, clock: Clock, peers: PeerClient, cluster_id: Callable[[], str],
                 *, on_role_change: Callable[[PartitionReplica], None],
                 on_follower_write: Callable[[str, int, int], None],
                 on_truncate: Callable[[str, int], None], seed: int | None = None) -> None:
        self.node_id = int(node_id)
        self._clock = clock
        self._peers = peers
        self._cluster_id = cluster_id
        self._on_role_change = on_role_change
        self._on_follower_write = on_follower_write  # (topic, index, from_offset): producer state
        self._on_truncate = on_truncate  # (topic, index): rebuild what derives from the log
        self._rng = random.Random(seed)
        self.replicas: dict[PartitionKey, PartitionReplica] = {}
        self._fetchers: dict[int, asyncio.Task] = {}
        self._elections: dict[PartitionKey, asyncio.Task] = {}
        self._announcements: set[asyncio.Task] = set()
        self._closed = False
        self.elections_started = 0
        self.leader_changes = 0

    # -- assignment -------------------------------------------------------------------------

    def add(self, topic: str, index: int, replicas: list[int], partition_log: Any, initial_leader: int) -> PartitionReplica:
        key = (topic, index)
        replica = PartitionReplica(topic, index, NodeId(self.node_id), replicas, partition_log, self._clock,
                                   on_role_change=self._role_changed, rng=self._rng)
        self.replicas[key] = replica
        partition_log.add_durable_listener(replica.update_commit)
        replica.start_as_initial(initial_leader)
        if replicas == [self.node_id] and replica.role is not Role.LEADER:
            replica.start_prevote()  # a single replica needs nobody's vote: it wins at once
        return replica

    def remove(self, topic: str, index: int) -> None:
        replica = self.replicas.pop((topic, index), None)
        if replica is not None:
            replica.log.remove_durable_listener(replica.update_commit)
            election = self._elections.pop((topic, index), None)
            if election is not None:
                election.cancel()

    def get(self, topic: str, index: int) -> PartitionReplica | None:
        return self.replicas.get((topic, index))

    def _role_changed(self, replica: PartitionReplica) -> None:
        if replica.role is Role.LEADER and not replica.ready:
            self.leader_changes += 1
            self._announce(replica)
        self._on_role_change(replica)

    # -- ticks ------------------------------------------------------------------------------------

    def tick(self, _wall_clock_ms: int) -> None:
        """Timers run on the monotonic clock (the ticker passes wall-clock time)."""
        if self._closed:
            return
        now_ms = self._clock.monotonic_ms()
        for key, replica in list(self.replicas.items()):
            if replica.leader_lost_quorum(now_ms):
                replica.step_down(f"no fetch from a majority of {replica.replicas} "
                                  f"for {limits.leader_quorum_timeout_ms} ms")
            elif replica.election_due(now_ms) and key not in self._elections:
                self._start_election(replica)
        for leader in {replica.leader_id for replica in self.replicas.values()
                       if replica.role is Role.FOLLOWER and replica.leader_id not in (NO_LEADER, self.node_id)}:
            if leader not in self._fetchers:
                task = asyncio.get_running_loop().create_task(self._fetch_loop(leader), name=f"replica-fetch-{leader}")
                self._fetchers[leader] = task
                task.add_done_callback(lambda done, leader=leader: self._fetcher_ended(leader, done))

    def _fetcher_ended(self, leader: int, task: asyncio.Task) -> None:
        if self._fetchers.get(leader) is task:
            del self._fetchers[leader]
        if not task.cancelled() and task.exception() is not None:
            log.error("fetching from node %d failed", leader, exc_info=task.exception())

    # -- elections ----------------------------------------------------------------------------------

    def _start_election(self, replica: PartitionReplica) -> None:
        """A pre-vote round first; the real election only if a majority would vote."""
        self.elections_started += 1
        replica.start_prevote()
        key = (replica.topic, replica.index)
        task = asyncio.get_running_loop().create_task(self._election(replica))
        self._elections[key] = task
        task.add_done_callback(lambda done: self._election_ended(key, done))

    def _election_ended(self, key: PartitionKey, task: asyncio.Task) -> None:
        if self._elections.get(key) is task:
            del self._elections[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s-%d: election round failed", *key, exc_info=task.exception())

    async def _election(self, replica: PartitionReplica) -> None:
        if replica.prevoting:
            await self._ask_votes(replica, replica.epoch + 1, pre_vote=True)
        if replica.role is Role.CANDIDATE:
            await self._ask_votes(replica, replica.epoch, pre_vote=False)

    async def _ask_votes(self, replica: PartitionReplica, epoch: int, *, pre_vote: bool) -> None:
        voters = [node for node in replica.replicas if node != self.node_id]
        last_epoch, last_offset = int(replica.log.latest_epoch), int(replica.log.log_end_offset)

        async def ask(voter: int) -> None:
            request = vote_request(self._cluster_id(), voter, replica.topic, replica.index, epoch, self.node_id,
                                   last_epoch, last_offset, pre_vote)
            try:
                response = await self._peers.call(voter, request, limits.peer_request_timeout_ms)
            except PeerUnavailable as error:
                log.debug("vote request to node %d failed: %s", voter, error)
                return
            for result in partition_results(response, replica.topic, replica.index):
                if result.error_code != ErrorCode.none:
                    continue
                if pre_vote:
                    replica.prevote_received(voter, epoch, result.vote_granted, result.leader_epoch, result.leader_id)
                else:
                    replica.vote_received(voter, epoch, result.vote_granted, result.leader_epoch, result.leader_id)

        await asyncio.gather(*(ask(voter) for voter in voters))

    def handle_vote(self, topic: str, index: int, candidate: int, candidate_epoch: int, last_epoch: int,
                    last_offset: int, *, pre_vote: bool = False) -> tuple[ErrorCode, int, int, bool]:
        """(error, our epoch, our leader, granted)."""
        replica = self.replicas.get((topic, index))
        if replica is None or candidate not in replica.replicas:
            return ErrorCode.unknown_topic_or_partition, -1, -1, False
        if pre_vote:
            answer = replica.handle_prevote(candidate, candidate_epoch, last_epoch, last_offset)
        else:
            answer = replica.handle_vote(candidate, candidate_epoch, last_epoch, last_offset)
        return ErrorCode.none, answer.epoch, answer.leader_id, answer.granted

    def handle_begin_epoch(self, topic: str, index: int, leader: int, epoch: int) -> tuple[ErrorCode, int, int]:
        replica = self.replicas.get((topic, index))
        if replica is None:
            return ErrorCode.unknown_topic_or_partition, -1, -1
        replica.handle_begin_epoch(leader, epoch)
        return ErrorCode.none, replica.leader_id, replica.epoch

    def _announce(self, replica: PartitionReplica) -> None:
        """Tell the followers at once (they would find out at their election timeout)."""
        request = begin_epoch_request(self._cluster_id(), replica.topic, replica.index, self.node_id, replica.epoch)

        async def tell(node: int) -> None:
            try:
                await self._peers.call(node, request, limits.peer_request_timeout_ms)
            except PeerUnavailable:
                pass

        for node in replica.replicas:
            if node != self.node_id:
                task = asyncio.get_running_loop().create_task(tell(node))
                self._announcements.add(task)
                task.add_done_callback(self._announcements.discard)

    # -- leader side of follower fetches ------------------------------------------------------------

    def replica_fetched(self, topic: str, index: int, node: int, fetch_offset: int) -> None:
        replica = self.replicas.get((topic, index))
        if replica is not None and replica.role is Role.LEADER:
            replica.follower_fetched(node, fetch_offset)

    # -- follower side: one fetch loop per leader ---------------------------------------------------

    def _followed_from(self, leader: int) -> list[PartitionReplica]:
        return [replica for replica in self.replicas.values()
                if replica.role is Role.FOLLOWER and replica.leader_id == leader]

    async def _fetch_loop(self, leader: int) -> None:
        backoff_ms = 50
        while not self._closed:
            followed = self._followed_from(leader)
            if not followed:
                return
            request = fetch_request(self.node_id, followed)
            try:
                response = await self._peers.call(
                    leader, request, limits.replica_fetch_wait_ms + limits.peer_request_timeout_ms)
            except PeerUnavailable as error:
                log.debug("fetch from node %d failed: %s", leader, error)
                await self._clock.sleep_ms(backoff_ms)
                backoff_ms = min(backoff_ms * 2, 1000)
                continue
            backoff_ms = 50
            await self._apply_fetch_response(leader, {(r.topic, r.index): r for r in followed}, response)

    async def _apply_fetch_response(self, leader: int, asked: dict[PartitionKey, PartitionReplica], response: Any) -> None:
        pending: list[tuple[PartitionReplica, Any, int]] = []
        for topic_response in response.responses:
            for partition in topic_response.partitions:
                replica = asked.get((topic_response.topic, partition.partition_index))
                if replica is None or replica.role is not Role.FOLLOWER or replica.leader_id != leader:
                    continue
                written = await self._apply_partition(replica, partition)
                if written is not None:
                    pending.append((replica, written, int(partition.high_watermark)))
        for replica, written, leader_high_watermark in pending:
            try:
                await written.durable()
            except (AppendTruncated, KafkaStorageError) as error:
                log.error("%s-%d: follower write not made durable: %s", replica.topic, replica.index, error)
                continue
            replica.follow_high_watermark(leader_high_watermark)
        for topic_response in response.responses:  # answers without records move the HWM too
            for partition in topic_response.partitions:
                replica = asked.get((topic_response.topic, partition.partition_index))
                if replica is not None and partition.error_code == ErrorCode.none and replica.leader_id == leader:
                    replica.follow_high_watermark(int(partition.high_watermark))

    async def _apply_partition(self, replica: PartitionReplica, partition: Any) -> Any:
        """Write one partition's answer; returns its PendingAppend (or None)."""
        error = ErrorCode(partition.error_code)
        if error != ErrorCode.none:
            self._follow_hint(replica, error, partition.current_leader)
            return None
        replica.leader_answered()
        diverging = partition.diverging_epoch
        if diverging is not None and diverging.end_offset >= 0:
            await self._truncate(replica, min(int(diverging.end_offset), int(replica.log.log_end_offset)))
            return None
        records = partition.records
        if not records:
            return None
        start = int(replica.log.log_end_offset)
        try:
            written = replica.log.write_as_follower(records)
        except UnexpectedAppendOffset as mismatch:
            log.warning("%s-%d: leader's batches do not follow our log end %d: %s", replica.topic, replica.index,
                        start, mismatch)
            return None
        self._on_follower_write(replica.topic, replica.index, start)
        return written

    async def _truncate(self, replica: PartitionReplica, offset: int) -> None:
        log.info("%s-%d: truncating the divergent tail from offset %d (log end %d)", replica.topic, replica.index,
                 offset, int(replica.log.log_end_offset))
        await replica.log.truncate_to(Offset(offset))
        self._on_truncate(replica.topic, replica.index)

    def _follow_hint(self, replica: PartitionReplica, error: ErrorCode, hint: Any) -> None:
        if error in (ErrorCode.not_leader_or_follower, ErrorCode.fenced_leader_epoch):
            if hint is not None and hint.leader_id >= 0 and hint.leader_epoch >= replica.epoch:
                replica.handle_begin_epoch(int(hint.leader_id), int(hint.leader_epoch))
            elif error == ErrorCode.not_leader_or_follower:
                replica.become_follower(NO_LEADER, replica.epoch)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._fetchers.values()) + list(self._elections.values()) + list(self._announcements)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._peers.close()
