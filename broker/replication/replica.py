"""One partition's replica on this node: Raft on the segment log itself.

Roles: a LEADER takes produce requests and serves Kafka clients; FOLLOWERs pull its log
with Kafka Fetch requests carrying their node id (KRaft style: the fetch offset is the
follower's durable log end, so the leader learns each follower's progress from its
fetches); a CANDIDATE asks the other replicas for votes with KRaft's Vote message.

The term is the Kafka leader epoch. Safety rules (docs/replication.md has the argument):
- (epoch, voted_for) is fsynced before any vote is granted or asked for, so a restarted
  node never votes twice in one epoch;
- a vote is granted only to a candidate whose log is at least as up to date as the
  voter's (last batch epoch, then log end), so a new leader holds every committed batch;
- a voter that heard from a live leader within the minimum election timeout ignores
  candidates (leader stickiness: a node cut off and healed cannot depose a working leader);
- the high watermark (commit index) is the largest offset a majority of replicas holds
  durably, and it moves only once a batch of the leader's own epoch is committed: a new
  leader first writes a LEADER_CHANGE control batch and serves Kafka clients only after
  that batch commits;
- followers fsync what they fetched before fetching again (the fetch offset is durable);
- a follower truncates to the leader's log on divergence (Fetch DivergingEpoch), never
  below its high watermark (an invariant: committed data is never truncated);
- a leader that has not heard from a majority for leader_quorum_timeout_ms steps down.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from broker import limits
from broker.clock import Clock
from broker.ids import LeaderEpoch, NodeId, Offset
from broker.invariant import invariant
from broker.producer_state import write_durably
from broker.records import NewRecord, build_batch

log = logging.getLogger("shoal.replication")

NO_LEADER = -1
NO_VOTE = -1
RAFT_STATE_FILE = "raft-state.json"

# Kafka's ControlRecordType.LEADER_CHANGE: the control record KRaft writes when a leader
# is elected. Consumers skip control batches; the key says version 0, type 2.
LEADER_CHANGE_KEY = struct.pack(">hh", 0, 2)


class Role(enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"


@dataclass(frozen=True)
class VoteAnswer:
    granted: bool
    epoch: int
    leader_id: int


@dataclass
class FollowerProgress:
    durable_end: int = 0  # the follower's last fetch offset: what it holds durably
    last_fetch_ms: int = -1  # monotonic; -1 = never


class PartitionReplica:
    """The replication state of one partition on one node (runs on the event loop)."""

    def __init__(self, topic: str, index: int, node_id: NodeId, replicas: list[int], partition_log: Any,
                 clock: Clock, *, on_role_change: Callable[["PartitionReplica"], None],
                 rng: random.Random | None = None) -> None:
        self.topic = topic
        self.index = index
        self.node_id = int(node_id)
        self.replicas = list(replicas)
        self.log = partition_log
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_role_change = on_role_change
        self._state_path = Path(partition_log.directory) / RAFT_STATE_FILE
        self.epoch, self.voted_for = self._load_state()
        self.role = Role.FOLLOWER
        self.leader_id = NO_LEADER
        self.epoch_start_offset = 0  # leader: the log end when this epoch began
        self.ready = False  # leader: its epoch's first batch is committed (serve Kafka clients)
        self.progress: dict[int, FollowerProgress] = {}
        self.last_leader_contact_ms = -1  # follower: last good fetch answer from the leader
        self.votes: set[int] = set()
        self.prevotes: set[int] = set()
        self.prevoting = False  # a pre-vote round (KIP-996) is asking for epoch + 1
        self.election_deadline_ms = 0
        self._became_leader_ms = 0
        self.reset_election_timer()

    # -- persisted term and vote ----------------------------------------------------------

    def _load_state(self) -> tuple[int, int]:
        try:
            data = json.loads(self._state_path.read_text())
            return int(data["epoch"]), int(data["voted_for"])
        except FileNotFoundError:
            return max(0, int(self.log.latest_epoch)), NO_VOTE
        except (ValueError, KeyError, TypeError) as error:
            # A damaged state file: the log's own epochs are a floor; the vote is lost, so
            # never vote in the current epoch again (as if we had voted for someone else).
            log.error("%s-%d: unreadable %s (%s); continuing from the log's epochs", self.topic, self.index,
                      self._state_path, error)
            return max(0, int(self.log.latest_epoch)) + 1, self.node_id

    def _persist(self) -> None:
        write_durably(self._state_path, json.dumps({"epoch": self.epoch, "voted_for": self.voted_for}).encode())

    def _set_epoch(self, epoch: int, voted_for: int) -> None:
        invariant(epoch >= self.epoch, "the epoch never goes back", self.topic, self.index, self.epoch, epoch)
        self.epoch, self.voted_for = epoch, voted_for
        self._persist()

    # -- timers ---------------------------------------------------------------------------

    def reset_election_timer(self) -> None:
        timeout = self._rng.randint(limits.election_timeout_ms_min, limits.election_timeout_ms_max)
        self.election_deadline_ms = self._clock.monotonic_ms() + timeout

    def heard_from_leader_recently(self, now_ms: int) -> bool:
        if self.role is Role.LEADER:
            return self.has_quorum_contact(now_ms, limits.election_timeout_ms_min)
        return (self.leader_id != NO_LEADER and self.last_leader_contact_ms >= 0
                and now_ms - self.last_leader_contact_ms < limits.election_timeout_ms_min)

    def has_quorum_contact(self, now_ms: int, window_ms: int) -> bool:
        recent = 1 + sum(1 for node, progress in self.progress.items()
                         if node != self.node_id and progress.last_fetch_ms >= 0
                         and now_ms - progress.last_fetch_ms < window_ms)
        return recent >= self.majority

    @property
    def majority(self) -> int:
        return len(self.replicas) // 2 + 1

    def election_due(self, now_ms: int) -> bool:
        """A follower or candidate whose timer ran out stands for election."""
        return self.role is not Role.LEADER and self.node_id in self.replicas and now_ms >= self.election_deadline_ms

    def leader_lost_quorum(self, now_ms: int) -> bool:
        became = self._became_leader_ms
        return (self.role is Role.LEADER and len(self.replicas) > 1
                and now_ms - became >= limits.leader_quorum_timeout_ms
                and not self.has_quorum_contact(now_ms, limits.leader_quorum_timeout_ms))

    # -- roles ----------------------------------------------------------------------------

    def start_as_initial(self, initial_leader: int) -> None:
        """A partition created with an empty log: every replica starts in epoch 0 with the
        controller's first replica as leader, as if elected (nothing to lose yet)."""
        if self.epoch == 0 and self.voted_for == NO_VOTE and int(self.log.log_end_offset) == 0:
            self._set_epoch(0, initial_leader)
            if initial_leader == self.node_id:
                self._become_leader(write_marker=False)
            else:
                self.become_follower(initial_leader, 0)

    def become_follower(self, leader_id: int, epoch: int) -> None:
        """Follow `leader_id` in `epoch` (>= ours); NO_LEADER while it is not known."""
        if epoch > self.epoch:
            self._set_epoch(epoch, NO_VOTE if leader_id == NO_LEADER else leader_id)
        was = self.role
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self.ready = False
        self.prevoting = False
        self.progress.clear()
        self.last_leader_contact_ms = self._clock.monotonic_ms() if leader_id != NO_LEADER else -1
        self.reset_election_timer()
        if was is not Role.FOLLOWER or leader_id != NO_LEADER:
            self._on_role_change(self)

    def start_prevote(self) -> None:
        """Ask, without changing anyone's epoch, whether a majority would vote for us in
        the next epoch (KIP-996). A node cut off and healed learns the current leader from
        the answers instead of raising every replica's epoch."""
        self.prevoting = True
        self.prevotes = {self.node_id}
        self.reset_election_timer()
        log.debug("%s-%d: node %d asks for pre-votes for epoch %d", self.topic, self.index, self.node_id,
                  self.epoch + 1)
        if len(self.prevotes) >= self.majority:
            self.prevoting = False
            self.start_election()

    def prevote_received(self, voter: int, proposed_epoch: int, granted: bool, voter_epoch: int,
                         voter_leader: int) -> None:
        if not self.prevoting or proposed_epoch != self.epoch + 1 or self.role is Role.LEADER:
            return
        if not granted and voter_leader not in (NO_LEADER, self.node_id) and voter_epoch >= self.epoch:
            self.prevoting = False
            self.handle_begin_epoch(voter_leader, voter_epoch)  # the voter hears a live leader: follow it
            return
        if granted:
            self.prevotes.add(voter)
            if len(self.prevotes) >= self.majority:
                self.prevoting = False
                self.start_election()

    def handle_prevote(self, candidate: int, proposed_epoch: int, last_epoch: int, last_offset: int) -> VoteAnswer:
        """Would we vote for `candidate` in `proposed_epoch`? Changes nothing here."""
        now = self._clock.monotonic_ms()
        ours = (int(self.log.latest_epoch), int(self.log.log_end_offset))
        granted = (proposed_epoch > self.epoch and not self.heard_from_leader_recently(now)
                   and (last_epoch, last_offset) >= ours)
        return VoteAnswer(granted, self.epoch, self.leader_id)

    def start_election(self) -> None:
        """Stand for election in the next epoch: vote for ourselves (durably) first."""
        self._set_epoch(self.epoch + 1, self.node_id)
        self.role = Role.CANDIDATE
        self.leader_id = NO_LEADER
        self.ready = False
        self.votes = {self.node_id}
        self.reset_election_timer()
        log.info("%s-%d: node %d stands for election in epoch %d (log end %d, last epoch %d)", self.topic,
                 self.index, self.node_id, self.epoch, int(self.log.log_end_offset), int(self.log.latest_epoch))
        if len(self.votes) >= self.majority:
            self._become_leader(write_marker=True)

    def vote_received(self, voter: int, epoch: int, granted: bool, voter_epoch: int, voter_leader: int) -> None:
        if voter_epoch > self.epoch:
            self.become_follower(voter_leader if voter_leader >= 0 else NO_LEADER, voter_epoch)
            return
        if self.role is not Role.CANDIDATE or epoch != self.epoch or not granted:
            return
        self.votes.add(voter)
        if len(self.votes) >= self.majority:
            self._become_leader(write_marker=True)

    def _become_leader(self, *, write_marker: bool) -> None:
        self.role = Role.LEADER
        self.leader_id = self.node_id
        self.voted_for = self.node_id
        now = self._clock.monotonic_ms()
        self._became_leader_ms = now
        self.progress = {node: FollowerProgress() for node in self.replicas if node != self.node_id}
        self.epoch_start_offset = int(self.log.log_end_offset)
        self.ready = False
        if write_marker:
            marker = build_batch([NewRecord(LEADER_CHANGE_KEY, struct.pack(">hi", 0, self.node_id),
                                            timestamp_ms=self._clock.now_ms())], is_control=True)
            self.log.write(marker, leader_epoch=LeaderEpoch(self.epoch))
        log.info("%s-%d: node %d is the leader in epoch %d from offset %d", self.topic, self.index,
                 self.node_id, self.epoch, self.epoch_start_offset)
        self.update_commit()
        self._on_role_change(self)

    def step_down(self, reason: str) -> None:
        if self.role is Role.LEADER:
            log.warning("%s-%d: node %d steps down as leader of epoch %d: %s", self.topic, self.index,
                        self.node_id, self.epoch, reason)
        self.become_follower(NO_LEADER, self.epoch)

    # -- votes ------------------------------------------------------------------------------

    def handle_vote(self, candidate: int, candidate_epoch: int, last_epoch: int, last_offset: int) -> VoteAnswer:
        now = self._clock.monotonic_ms()
        if candidate_epoch < self.epoch:
            return VoteAnswer(False, self.epoch, self.leader_id)
        if candidate_epoch > self.epoch and self.heard_from_leader_recently(now) and candidate != self.leader_id:
            return VoteAnswer(False, self.epoch, self.leader_id)  # sticky: our leader is alive
        if candidate_epoch > self.epoch:
            was_leader = self.role is Role.LEADER
            self._set_epoch(candidate_epoch, NO_VOTE)
            self.role, self.leader_id, self.ready = Role.FOLLOWER, NO_LEADER, False
            self.progress.clear()
            if was_leader:
                self._on_role_change(self)
        ours = (int(self.log.latest_epoch), int(self.log.log_end_offset))
        up_to_date = (last_epoch, last_offset) >= ours
        if self.voted_for in (NO_VOTE, candidate) and up_to_date and self.role is not Role.LEADER:
            if self.voted_for != candidate:
                self._set_epoch(self.epoch, candidate)
            self.reset_election_timer()
            return VoteAnswer(True, self.epoch, self.leader_id)
        return VoteAnswer(False, self.epoch, self.leader_id)

    def handle_begin_epoch(self, leader: int, epoch: int) -> None:
        """A leader announces itself (KRaft BeginQuorumEpoch): follow it at once."""
        if epoch < self.epoch or (epoch == self.epoch and self.role is Role.LEADER):
            return
        if epoch > self.epoch or self.leader_id != leader or self.role is not Role.FOLLOWER:
            self.become_follower(leader, epoch)

    # -- leader: follower progress and the commit index --------------------------------------

    def follower_fetched(self, node: int, fetch_offset: int) -> None:
        progress = self.progress.get(node)
        if progress is None:
            return
        progress.durable_end = fetch_offset
        progress.last_fetch_ms = self._clock.monotonic_ms()
        self.update_commit()

    def update_commit(self) -> None:
        """Move the high watermark to the largest offset a majority holds durably, once
        a batch of this epoch is among it."""
        if self.role is not Role.LEADER:
            return
        own = int(self.log.durable_end_offset)
        ends = sorted([own] + [progress.durable_end for progress in self.progress.values()], reverse=True)
        commit = min(ends[self.majority - 1], own)
        if commit > self.epoch_start_offset or (commit == self.epoch_start_offset == int(self.log.log_end_offset)
                                               and self.epoch == 0):
            if commit > int(self.log.high_watermark):
                self.log.advance_high_watermark(Offset(commit))
            if not self.ready:
                self.ready = True
                self._on_role_change(self)

    def in_sync_replicas(self) -> list[int]:
        """The leader and the followers that fetched recently and hold the committed log."""
        if self.role is not Role.LEADER:
            return []
        now = self._clock.monotonic_ms()
        high_watermark = int(self.log.high_watermark)
        in_sync = [self.node_id]
        for node, progress in self.progress.items():
            if (progress.last_fetch_ms >= 0 and now - progress.last_fetch_ms < limits.leader_quorum_timeout_ms
                    and progress.durable_end >= high_watermark):
                in_sync.append(node)
        return sorted(in_sync)

    # -- follower: the leader's answers --------------------------------------------------------

    def leader_answered(self) -> None:
        self.last_leader_contact_ms = self._clock.monotonic_ms()
        self.reset_election_timer()

    def follow_high_watermark(self, leader_high_watermark: int) -> None:
        target = min(leader_high_watermark, int(self.log.durable_end_offset))
        if target > int(self.log.high_watermark):
            self.log.advance_high_watermark(Offset(target))

    def describe(self) -> dict:
        return {"topic": self.topic, "partition": self.index, "role": self.role.value, "epoch": self.epoch,
                "leader": self.leader_id, "replicas": self.replicas, "ready": self.ready,
                "high_watermark": int(self.log.high_watermark), "log_end_offset": int(self.log.log_end_offset)}
