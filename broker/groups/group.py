"""A classic consumer group and its members: plain state plus the pure queries the
coordinator's state machine asks of it (who has rejoined, which protocol wins, which topics
the members subscribe to). No I/O and no timers here: deadlines are numbers the
coordinator compares with its clock on each tick."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from kio.schema.errors import ErrorCode

from broker.groups.subscription import subscribed_topics

CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    """Kafka's classic group states; the value is the name clients see."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class JoinResult:
    """What a JoinGroup request gets back."""

    error: ErrorCode
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple["MemberSnapshot", ...] = ()


@dataclass(frozen=True)
class SyncResult:
    error: ErrorCode
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True)
class MemberSnapshot:
    """A member as the leader (JoinGroup) or DescribeGroups sees it."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes
    client_id: str = ""
    client_host: str = ""
    assignment: bytes = b""


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]

Protocols = tuple[tuple[str, bytes], ...]  # (protocol name, member metadata), preferred first


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    assignment: bytes = b""
    join_callback: JoinCallback | None = None
    sync_callback: SyncCallback | None = None
    is_new: bool = False  # joined but not yet through a completed join (KIP-394 ghost guard)
    last_heartbeat_ms: int = 0
    joined_at_ms: int = 0

    @property
    def is_awaiting_join(self) -> bool:
        return self.join_callback is not None

    @property
    def is_awaiting_sync(self) -> bool:
        return self.sync_callback is not None

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    def metadata_for(self, protocol_name: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        return b""

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def matches(self, protocols: Protocols) -> bool:
        return self.protocols == protocols

    def snapshot(self, protocol_name: str | None, with_assignment: bool = False) -> MemberSnapshot:
        return MemberSnapshot(self.member_id, self.group_instance_id,
                              self.metadata_for(protocol_name), self.client_id,
                              self.client_host, self.assignment if with_assignment else b"")


@dataclass
class CommittedOffset:
    offset: int
    leader_epoch: int  # -1 when the client did not say
    metadata: str
    commit_timestamp_ms: int
    log_offset: int  # position of its record in __consumer_offsets: newer records win


@dataclass
class PendingMember:
    """A member id handed out with MEMBER_ID_REQUIRED (KIP-394), not joined yet."""

    member_id: str
    expires_at_ms: int


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: dict[str, PendingMember] = field(default_factory=dict)
    offsets: dict[tuple[str, int], CommittedOffset] = field(default_factory=dict)
    pending_commits: Counter = field(default_factory=Counter)  # (topic, partition) -> appends in flight
    # log offset of an offset tombstone applied while older commits were still in flight
    offset_tombstones: dict[tuple[str, int], int] = field(default_factory=dict)
    # the running rebalance (state PREPARING_REBALANCE)
    join_deadline_ms: int | None = None
    in_initial_delay: bool = False
    initial_delay_remaining_ms: int = 0
    new_member_added: bool = False
    state_timestamp_ms: int = -1
    # The group metadata record value last written to (or replayed from) __consumer_offsets
    # and its log offset: what a replay restores, re-appended as is by the log cleanup.
    stored_metadata: bytes | None = None
    stored_metadata_log_offset: int = -1

    def has_pending_commits(self) -> bool:
        return any(count > 0 for count in self.pending_commits.values())

    # -- membership ----------------------------------------------------------------------
    def is_state(self, *states: GroupState) -> bool:
        return self.state in states

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def add_member(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove_member(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, instance_id: str, old_member_id: str, new_member_id: str) -> Member:
        """Give a static member a new member id, keeping its place, assignment and leadership."""
        member = self.members.pop(old_member_id)
        member.member_id = new_member_id
        self.members[new_member_id] = member
        self.static_members[instance_id] = new_member_id
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        return member

    def static_member_id(self, instance_id: str | None) -> str | None:
        return None if instance_id is None else self.static_members.get(instance_id)

    def is_static_member_fenced(self, instance_id: str | None, member_id: str) -> bool:
        """Another member id holds this group.instance.id (Kafka's FENCED_INSTANCE_ID)."""
        existing = self.static_member_id(instance_id)
        return existing is not None and existing != member_id

    def member_generation_error(self, instance_id: str | None, member_id: str, generation_id: int) -> ErrorCode | None:
        """Why a request from this member of this generation is refused (sync, heartbeat and
        member commits check the same three things, in this order); None when it is not."""
        if self.is_static_member_fenced(instance_id, member_id):
            return ErrorCode.fenced_instance_id
        if not self.has_member(member_id):
            return ErrorCode.unknown_member_id
        if generation_id != self.generation_id:
            return ErrorCode.illegal_generation
        return None

    def has_all_members_joined(self) -> bool:
        return (all(member.is_awaiting_join for member in self.members.values())
                and not self.pending_members)

    def not_yet_rejoined(self) -> list[Member]:
        return [member for member in self.members.values() if not member.is_awaiting_join]

    def rebalance_timeout_ms(self) -> int:
        return max((member.rebalance_timeout_ms for member in self.members.values()), default=0)

    def max_session_timeout_ms(self) -> int:
        return max((member.session_timeout_ms for member in self.members.values()), default=0)

    # -- protocols -------------------------------------------------------------------------
    def supports_protocols(self, protocol_type: str, protocols: Protocols) -> bool:
        if self.is_state(GroupState.EMPTY) or not self.members:
            return bool(protocol_type) and bool(protocols)
        if protocol_type != self.protocol_type:
            return False
        supported = self._protocol_support_counts()
        return any(supported[name] == len(self.members) for name, _ in protocols)

    def _protocol_support_counts(self) -> Counter:
        counts: Counter = Counter()
        for member in self.members.values():
            counts.update(set(member.protocol_names()))
        return counts

    def select_protocol(self) -> str | None:
        """The protocol every member supports that most members prefer (Kafka's vote);
        ties go to the protocol listed first by the earliest member."""
        if not self.members:
            return None
        supported = self._protocol_support_counts()
        candidates = [name for name, count in supported.items() if count == len(self.members)]
        if not candidates:
            return None
        votes: Counter = Counter()
        for member in self.members.values():
            votes[next(name for name in member.protocol_names() if name in candidates)] += 1
        preference = [name for member in self.members.values() for name in member.protocol_names()]
        return max(candidates, key=lambda name: (votes[name], -preference.index(name)))

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members consume, or None when unknown (not a 'consumer' group or
        metadata that does not decode): callers must then assume every topic."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            member_topics = subscribed_topics(member.metadata_for(self.protocol_name))
            if member_topics is None:
                return None
            topics |= member_topics
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        topics = self.subscribed_topics()
        return topics is None or topic in topics

    def member_snapshots(self, with_assignment: bool = False) -> tuple[MemberSnapshot, ...]:
        return tuple(member.snapshot(self.protocol_name, with_assignment) for member in self.members.values())
