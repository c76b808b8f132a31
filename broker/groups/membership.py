"""The classic group membership protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
session expiry and rebalance deadlines, as a state machine over Group objects.

Sans-io in the way that matters for tests: nothing here awaits. Requests that wait
(JoinGroup until the rebalance completes, SyncGroup until the leader's assignment is
stored) take a `respond` callback that is called exactly once, possibly later; deadlines
are compared with the injected clock only when `tick()` runs. Persisting a group goes
through `store(group_id, assignments, on_stored)`, which the coordinator implements with
a durable append to __consumer_offsets and which calls `on_stored(error)` when done.

Semantics follow Kafka's classic GroupCoordinator: states Empty -> PreparingRebalance ->
CompletingRebalance -> Stable (and Dead once deleted); the first join of an Empty group
waits `initial_rebalance_delay_ms`, extended by one delay per newly added member up to the
rebalance timeout; later rebalances complete as soon as every known member has rejoined or
at the rebalance timeout (members that did not rejoin are removed); KIP-394 member ids for
JoinGroup v4+; KIP-345 static membership."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Callable

from kio.schema.errors import ErrorCode

from broker import limits
from broker.clock import Clock
from broker.groups.group import (
    Group, GroupState, JoinCallback, JoinResult, Member, PendingMember, Protocols,
    SyncCallback, SyncResult)
from broker.groups.subscription import subscribed_topics
from broker.invariant import invariant

log = logging.getLogger("shoal.groups")

UNKNOWN_MEMBER_ID = ""

StoreCallback = Callable[[ErrorCode], None]
StoreGroup = Callable[[Group, dict[str, bytes], StoreCallback | None], None]


@dataclass(frozen=True)
class MembershipSettings:
    initial_rebalance_delay_ms: int = limits.group_initial_rebalance_delay_ms_default
    min_session_timeout_ms: int = limits.group_min_session_timeout_ms
    max_session_timeout_ms: int = limits.group_max_session_timeout_ms
    new_member_join_timeout_ms: int = limits.group_new_member_join_timeout_ms
    members_max: int = limits.group_members_max


@dataclass(frozen=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    require_known_member_id: bool  # JoinGroup v4+ (KIP-394)


@dataclass(frozen=True)
class SyncRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None
    protocol_type: str | None
    protocol_name: str | None
    assignments: dict[str, bytes] = field(default_factory=dict)


def join_error(member_id: str, error: ErrorCode) -> JoinResult:
    return JoinResult(error=error, member_id=member_id)


class Membership:
    def __init__(self, groups: dict[str, Group], clock: Clock, settings: MembershipSettings,
                 store: StoreGroup) -> None:
        self.groups = groups
        self.clock = clock
        self.settings = settings
        self.store = store

    def _now(self) -> int:
        return self.clock.monotonic_ms()

    # =====================================================================================
    # JoinGroup

    def join_group(self, request: JoinRequest, respond: JoinCallback) -> None:
        error = self._join_precondition_error(request)
        if error is not None:
            respond(join_error(request.member_id, error))
            return
        group = self.groups.get(request.group_id)
        if group is None:
            if request.member_id != UNKNOWN_MEMBER_ID:
                respond(join_error(request.member_id, ErrorCode.unknown_member_id))
                return
            group = self.groups[request.group_id] = Group(request.group_id)
        if group.is_state(GroupState.DEAD):
            respond(join_error(request.member_id, ErrorCode.coordinator_not_available))
        elif not group.supports_protocols(request.protocol_type, request.protocols):
            respond(join_error(request.member_id, ErrorCode.inconsistent_group_protocol))
        elif request.member_id == UNKNOWN_MEMBER_ID:
            self._join_new_member(group, request, respond)
        else:
            self._join_existing_member(group, request, respond)

    def _join_precondition_error(self, request: JoinRequest) -> ErrorCode | None:
        if not request.group_id:
            return ErrorCode.invalid_group_id
        if not (self.settings.min_session_timeout_ms <= request.session_timeout_ms
                <= self.settings.max_session_timeout_ms):
            return ErrorCode.invalid_session_timeout
        return None

    def _join_new_member(self, group: Group, request: JoinRequest, respond: JoinCallback) -> None:
        prefix = request.group_instance_id if request.group_instance_id is not None else request.client_id
        new_member_id = f"{prefix}-{uuid.uuid4()}"
        if len(group.members) + len(group.pending_members) >= self.settings.members_max:
            respond(join_error(UNKNOWN_MEMBER_ID, ErrorCode.group_max_size_reached))
        elif request.group_instance_id is not None:
            self._join_static_member(group, request, new_member_id, respond)
        elif request.require_known_member_id:
            # KIP-394: hand out the id first; the member is admitted when it rejoins with it.
            deadline = self._now() + request.session_timeout_ms
            group.pending_members[new_member_id] = PendingMember(new_member_id, deadline)
            respond(join_error(new_member_id, ErrorCode.member_id_required))
        else:
            self._add_member_and_rebalance(group, request, new_member_id, respond)

    def _join_static_member(self, group: Group, request: JoinRequest, new_member_id: str,
                            respond: JoinCallback) -> None:
        old_member_id = group.static_member_id(request.group_instance_id)
        if old_member_id is None:
            self._add_member_and_rebalance(group, request, new_member_id, respond)
        else:
            self._replace_static_member(group, request, old_member_id, new_member_id, respond)

    def _join_existing_member(self, group: Group, request: JoinRequest, respond: JoinCallback) -> None:
        member_id = request.member_id
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            self._add_member_and_rebalance(group, request, member_id, respond)
            return
        if group.is_static_member_fenced(request.group_instance_id, member_id):
            respond(join_error(member_id, ErrorCode.fenced_instance_id))
            return
        unknown_instance = (request.group_instance_id is not None
                            and group.static_member_id(request.group_instance_id) is None)
        if not group.has_member(member_id) or unknown_instance:
            respond(join_error(member_id, ErrorCode.unknown_member_id))
            return
        self._rejoin(group, group.members[member_id], request, respond)

    def _rejoin(self, group: Group, member: Member, request: JoinRequest, respond: JoinCallback) -> None:
        if group.is_state(GroupState.PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, request, respond)
        elif group.is_state(GroupState.COMPLETING_REBALANCE):
            if member.matches(request.protocols):
                # the join response was lost: send it again
                respond(self._join_result(group, member, include_members=group.is_leader(member.member_id)))
            else:
                self._update_member_and_rebalance(group, member, request, respond)
        elif group.is_state(GroupState.STABLE):
            if group.is_leader(member.member_id) or not member.matches(request.protocols):
                # the leader rejoins to force a new assignment (e.g. metadata changed)
                self._update_member_and_rebalance(group, member, request, respond)
            else:
                respond(self._join_result(group, member, include_members=False))
        else:
            respond(join_error(member.member_id, ErrorCode.unknown_member_id))

    def _join_result(self, group: Group, member: Member, include_members: bool,
                     leader_id: str | None = None) -> JoinResult:
        return JoinResult(
            error=ErrorCode.none, member_id=member.member_id, generation_id=group.generation_id,
            protocol_type=group.protocol_type, protocol_name=group.protocol_name,
            leader_id=(leader_id if leader_id is not None else group.leader_id) or "",
            members=group.member_snapshots() if include_members else ())

    def _add_member_and_rebalance(self, group: Group, request: JoinRequest, member_id: str,
                                  respond: JoinCallback) -> None:
        now = self._now()
        member = Member(
            member_id=member_id, group_instance_id=request.group_instance_id,
            client_id=request.client_id, client_host=request.client_host,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            protocol_type=request.protocol_type, protocols=request.protocols,
            join_callback=respond, is_new=True, last_heartbeat_ms=now, joined_at_ms=now)
        group.add_member(member)
        if group.is_state(GroupState.PREPARING_REBALANCE) and group.in_initial_delay:
            group.new_member_added = True
        self._maybe_prepare_rebalance(group, f"member {member_id} joined")
        self._maybe_complete_join(group)

    def _update_member_and_rebalance(self, group: Group, member: Member, request: JoinRequest,
                                     respond: JoinCallback) -> None:
        self._update_member(member, request, respond)
        self._maybe_prepare_rebalance(group, f"member {member.member_id} rejoined")
        self._maybe_complete_join(group)

    def _update_member(self, member: Member, request: JoinRequest, respond: JoinCallback) -> None:
        if member.join_callback is not None and member.join_callback is not respond:
            # a retried JoinGroup replaces the one still waiting (its connection is gone)
            member.join_callback(join_error(member.member_id, ErrorCode.rebalance_in_progress))
        member.protocols = request.protocols
        member.protocol_type = request.protocol_type
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.client_id = request.client_id
        member.client_host = request.client_host
        member.join_callback = respond
        member.last_heartbeat_ms = self._now()

    # -- static membership (KIP-345) --------------------------------------------------------

    def _replace_static_member(self, group: Group, request: JoinRequest, old_member_id: str,
                               new_member_id: str, respond: JoinCallback) -> None:
        """A known group.instance.id joins with no member id (a restarted instance): it takes
        over the old member id's place. The old id, if still in use, is fenced."""
        old_member = group.members[old_member_id]
        old_protocols = old_member.protocols
        old_leader_id = group.leader_id
        self._fence(old_member)
        member = group.replace_static_member(request.group_instance_id, old_member_id, new_member_id)
        self._update_member(member, request, respond)
        if group.is_state(GroupState.STABLE):
            if self._rejoin_changes_nothing(group, old_protocols, member):
                self._confirm_static_replacement(group, member, old_member_id, old_protocols, old_leader_id)
            else:
                self._maybe_prepare_rebalance(group, f"static member {request.group_instance_id} changed its subscription")
        elif group.is_state(GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, f"static member {request.group_instance_id} rejoined")
        self._maybe_complete_join(group)

    def _fence(self, old_member: Member) -> None:
        if old_member.join_callback is not None:
            old_member.join_callback(join_error(old_member.member_id, ErrorCode.fenced_instance_id))
            old_member.join_callback = None
        if old_member.sync_callback is not None:
            old_member.sync_callback(SyncResult(ErrorCode.fenced_instance_id))
            old_member.sync_callback = None

    def _rejoin_changes_nothing(self, group: Group, old_protocols: Protocols, member: Member) -> bool:
        """A static member may come back without a rebalance when the protocol the group
        would pick is unchanged and so is what it consumes: same metadata, or (for 'consumer'
        groups) the same subscribed topics (owned partitions and user data may differ after
        a restart)."""
        if group.select_protocol() != group.protocol_name:
            return False
        old_metadata = dict(old_protocols).get(group.protocol_name)
        new_metadata = member.metadata_for(group.protocol_name)
        if old_metadata == new_metadata:
            return True
        old_topics = subscribed_topics(old_metadata or b"")
        return old_topics is not None and old_topics == subscribed_topics(new_metadata)

    def _confirm_static_replacement(self, group: Group, member: Member, old_member_id: str,
                                    old_protocols: Protocols, old_leader_id: str | None) -> None:
        generation = group.generation_id
        assignments = {m.member_id: m.assignment for m in group.members.values()}

        def on_stored(error: ErrorCode) -> None:
            respond = member.join_callback
            member.join_callback = None
            if respond is None:
                return
            if error != ErrorCode.none and group.generation_id == generation and member.member_id in group.members:
                group.replace_static_member(member.group_instance_id, member.member_id, old_member_id)
                member.protocols = old_protocols
                respond(join_error(member.member_id, error))
                return
            # The old leader id is returned so the rejoined member does not believe it must
            # compute an assignment the Stable group would never distribute.
            respond(self._join_result(group, member, include_members=False, leader_id=old_leader_id))

        self.store(group, assignments, on_stored)

    # =====================================================================================
    # rebalance

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_state(GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY):
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_state(GroupState.COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, ErrorCode.rebalance_in_progress)
        now = self._now()
        if group.is_state(GroupState.EMPTY):
            delay = self.settings.initial_rebalance_delay_ms
            group.in_initial_delay = True
            group.new_member_added = False
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms() - delay, 0)
            group.join_deadline_ms = now + delay
        else:
            group.in_initial_delay = False
            group.join_deadline_ms = now + group.rebalance_timeout_ms()
        log.info("group %s preparing rebalance (generation %d): %s", group.group_id, group.generation_id, reason)
        self._transition(group, GroupState.PREPARING_REBALANCE)

    def _transition(self, group: Group, state: GroupState) -> None:
        group.state = state
        group.state_timestamp_ms = self.clock.now_ms()

    def _maybe_complete_join(self, group: Group) -> None:
        """Kafka's DelayedJoin.tryComplete: done once every member rejoined (never early
        during the initial delay, which exists to let more members arrive)."""
        if (group.is_state(GroupState.PREPARING_REBALANCE) and not group.in_initial_delay
                and group.has_all_members_joined()):
            self._complete_join(group)

    def _on_join_deadline(self, group: Group) -> None:
        if group.in_initial_delay and group.new_member_added and group.initial_delay_remaining_ms > 0:
            # one more delay, counted from when this one was due (ticks may come late)
            delay = min(self.settings.initial_rebalance_delay_ms, group.initial_delay_remaining_ms)
            group.initial_delay_remaining_ms = max(
                group.initial_delay_remaining_ms - self.settings.initial_rebalance_delay_ms, 0)
            group.new_member_added = False
            group.join_deadline_ms = (group.join_deadline_ms or self._now()) + delay
            return
        self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        """Kafka's onCompleteJoin: drop dynamic members that did not rejoin, start the next
        generation, answer every waiting JoinGroup (the leader gets all members' metadata)."""
        for member in group.not_yet_rejoined():
            if not member.is_static:
                self._remove_member(group, member)
        group.in_initial_delay = False
        group.join_deadline_ms = None
        if group.is_state(GroupState.DEAD):
            return
        if group.members and not self._elect_joined_leader(group):
            # only static members that did not rejoin are left: wait for them (or for
            # their session timeouts) a while longer
            group.join_deadline_ms = self._now() + group.max_session_timeout_ms()
            return
        self._start_next_generation(group)
        if group.is_state(GroupState.EMPTY):
            self.store(group, {}, None)
            return
        for member in list(group.members.values()):
            if member.join_callback is not None:
                respond = member.join_callback
                member.join_callback = None
                member.is_new = False
                member.last_heartbeat_ms = self._now()
                respond(self._join_result(group, member, include_members=group.is_leader(member.member_id)))

    def _elect_joined_leader(self, group: Group) -> bool:
        leader = group.members.get(group.leader_id or "")
        if leader is not None and leader.is_awaiting_join:
            return True
        for member in group.members.values():
            if member.is_awaiting_join:
                group.leader_id = member.member_id
                return True
        return False

    def _start_next_generation(self, group: Group) -> None:
        group.generation_id += 1
        if group.members:
            group.protocol_name = group.select_protocol()
            invariant(group.protocol_name is not None, "members of a group share a protocol", group.group_id)
            self._transition(group, GroupState.COMPLETING_REBALANCE)
        else:
            group.protocol_name = None
            self._transition(group, GroupState.EMPTY)
        log.info("group %s generation %d: %d member(s), protocol %s, state %s", group.group_id,
                 group.generation_id, len(group.members), group.protocol_name, group.state.value)

    def _reset_and_propagate_assignment_error(self, group: Group, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            if member.sync_callback is not None:
                respond = member.sync_callback
                member.sync_callback = None
                respond(SyncResult(error))

    # =====================================================================================
    # SyncGroup

    def sync_group(self, request: SyncRequest, respond: SyncCallback) -> None:
        group = self.groups.get(request.group_id)
        error = self._sync_precondition_error(group, request)
        if error is not None:
            respond(SyncResult(error))
            return
        member = group.members[request.member_id]
        if group.is_state(GroupState.PREPARING_REBALANCE):
            respond(SyncResult(ErrorCode.rebalance_in_progress))
        elif group.is_state(GroupState.COMPLETING_REBALANCE):
            member.sync_callback = respond
            member.last_heartbeat_ms = self._now()
            if group.is_leader(member.member_id):
                self._store_assignment(group, request.assignments)
        elif group.is_state(GroupState.STABLE):
            member.last_heartbeat_ms = self._now()
            respond(self._sync_result(group, member))
        else:
            respond(SyncResult(ErrorCode.unknown_member_id))

    def _sync_precondition_error(self, group: Group | None, request: SyncRequest) -> ErrorCode | None:
        if group is None:
            return ErrorCode.unknown_member_id
        if group.is_state(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        error = group.member_generation_error(request.group_instance_id, request.member_id, request.generation_id)
        if error is not None:
            return error
        if ((request.protocol_type is not None and request.protocol_type != group.protocol_type)
                or (request.protocol_name is not None and request.protocol_name != group.protocol_name)):
            return ErrorCode.inconsistent_group_protocol
        return None

    def _sync_result(self, group: Group, member: Member) -> SyncResult:
        return SyncResult(ErrorCode.none, member.assignment, group.protocol_type, group.protocol_name)

    def _store_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        """The leader's assignment: persist it, then hand each member its part."""
        full = {member_id: assignments.get(member_id, b"") for member_id in group.members}
        generation = group.generation_id

        def on_stored(error: ErrorCode) -> None:
            if not (group.is_state(GroupState.COMPLETING_REBALANCE) and group.generation_id == generation):
                return  # the group moved on (a member left or joined) while we wrote
            if error != ErrorCode.none:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance(group, f"storing the assignment failed: {error.name}")
                return
            self._set_and_propagate_assignment(group, full)
            self._transition(group, GroupState.STABLE)

        self.store(group, full, on_stored)

    def _set_and_propagate_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        now = self._now()
        for member in group.members.values():
            member.assignment = assignments.get(member.member_id, b"")
            if member.sync_callback is not None:
                respond = member.sync_callback
                member.sync_callback = None
                member.last_heartbeat_ms = now
                respond(self._sync_result(group, member))

    # =====================================================================================
    # Heartbeat

    def heartbeat(self, group_id: str, member_id: str, group_instance_id: str | None,
                  generation_id: int) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id
        if group.is_state(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        error = group.member_generation_error(group_instance_id, member_id, generation_id)
        if error is not None:
            return error
        if group.is_state(GroupState.EMPTY):
            return ErrorCode.unknown_member_id
        group.members[member_id].last_heartbeat_ms = self._now()
        if group.is_state(GroupState.PREPARING_REBALANCE):
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def touch(self, group: Group, member_id: str) -> None:
        """A valid request from a member (e.g. OffsetCommit) counts as a heartbeat."""
        member = group.members.get(member_id)
        if member is not None:
            member.last_heartbeat_ms = self._now()

    # =====================================================================================
    # LeaveGroup

    def leave_group(self, group_id: str, leaving: list[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        """(group-level error, one error per (member_id, group_instance_id) leaving)."""
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.none, [ErrorCode.unknown_member_id for _ in leaving]
        if group.is_state(GroupState.DEAD):
            return ErrorCode.coordinator_not_available, []
        return ErrorCode.none, [self._leave_one(group, member_id, instance_id) for member_id, instance_id in leaving]

    def _leave_one(self, group: Group, member_id: str, instance_id: str | None) -> ErrorCode:
        if member_id == UNKNOWN_MEMBER_ID and instance_id is not None:
            # KIP-345 admin removal by instance id
            member_id = group.static_member_id(instance_id) or ""
            if not member_id:
                return ErrorCode.unknown_member_id
        elif group.is_static_member_fenced(instance_id, member_id):
            return ErrorCode.fenced_instance_id
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            self._maybe_complete_join(group)
            return ErrorCode.none
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        self._remove_member_and_update_group(group, member, "left the group")
        return ErrorCode.none

    # =====================================================================================
    # member removal, expiry, ticks

    def _remove_member(self, group: Group, member: Member) -> None:
        if member.join_callback is not None:
            respond = member.join_callback
            member.join_callback = None
            respond(join_error(member.member_id, ErrorCode.unknown_member_id))
        if member.sync_callback is not None:
            respond_sync = member.sync_callback
            member.sync_callback = None
            respond_sync(SyncResult(ErrorCode.unknown_member_id))
        group.remove_member(member.member_id)

    def _remove_member_and_update_group(self, group: Group, member: Member, reason: str) -> None:
        log.info("group %s: member %s %s", group.group_id, member.member_id, reason)
        self._remove_member(group, member)
        if group.is_state(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, f"member {member.member_id} {reason}")
        self._maybe_complete_join(group)

    def _member_expired(self, member: Member, now: int) -> bool:
        """Kafka's shouldKeepAlive, negated: members waiting in JoinGroup are kept (new ones
        only up to the new-member join timeout), members waiting in SyncGroup too, everyone
        else must heartbeat within the session timeout."""
        if member.is_awaiting_join:
            return member.is_new and now >= member.joined_at_ms + self.settings.new_member_join_timeout_ms
        if member.is_awaiting_sync:
            return False
        return now >= member.last_heartbeat_ms + member.session_timeout_ms

    def tick(self) -> None:
        """Expire members and pending member ids, and run due rebalance deadlines."""
        now = self._now()
        for group in list(self.groups.values()):
            if group.members or group.pending_members or group.join_deadline_ms is not None:
                self._tick_group(group, now)

    def _tick_group(self, group: Group, now: int) -> None:
        for pending in list(group.pending_members.values()):
            if now >= pending.expires_at_ms:
                del group.pending_members[pending.member_id]
                self._maybe_complete_join(group)
        for member in list(group.members.values()):
            if group.members.get(member.member_id) is member and self._member_expired(member, now):
                self._remove_member_and_update_group(group, member, "session timed out")
        if (group.is_state(GroupState.PREPARING_REBALANCE) and group.join_deadline_ms is not None
                and now >= group.join_deadline_ms):
            self._on_join_deadline(group)

    def fail_waiting_requests(self, error: ErrorCode) -> None:
        """Shutdown: answer every waiting JoinGroup/SyncGroup so no handler hangs."""
        for group in self.groups.values():
            for member in group.members.values():
                if member.join_callback is not None:
                    respond = member.join_callback
                    member.join_callback = None
                    respond(join_error(member.member_id, error))
                if member.sync_callback is not None:
                    respond_sync = member.sync_callback
                    member.sync_callback = None
                    respond_sync(SyncResult(error))
