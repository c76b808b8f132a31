"""GroupCoordinator: the node's classic consumer group coordinator.

Owns the group table, the membership state machine (membership.py), committed offsets,
and their durability in __consumer_offsets (offsets_log.py): replayed on start (until then
every group request is answered with COORDINATOR_LOAD_IN_PROGRESS and FindCoordinator
with COORDINATOR_NOT_AVAILABLE), appended to on every commit and group change.

Ordering rule: every in-memory change that is also written to the log is applied only
after its append returned, and only if its record is newer (higher log offset) than what
memory already holds for that key, so memory always equals a replay of the log. The
change is made inside the partition's append gate (`on_appended`), so the log cleanup
(offsets_cleaner.py), which snapshots memory with the gate closed, never misses one."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from kio.schema.errors import ErrorCode

from broker import limits
from broker.clock import Clock
from broker.groups import codec
from broker.groups.group import (
    CONSUMER_PROTOCOL_TYPE, CommittedOffset, Group, GroupState, Member, MemberSnapshot)
from broker.groups.membership import UNKNOWN_MEMBER_ID, Membership, MembershipSettings, StoreCallback
from broker.groups.offsets_cleaner import CleanupResult, CleanupSettings, OffsetsLogCleaner
from broker.groups.offsets_log import LogRecord, OffsetsLog
from broker.invariant import InvariantViolation, invariant
from broker.records import RecordBatchTooLarge

log = logging.getLogger("shoal.groups")

TopicPartition = tuple[str, int]
TopicExists = Callable[[str, int], bool]


@dataclass(frozen=True)
class OffsetCommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str | None


@dataclass(frozen=True)
class OffsetCommitRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None
    entries: tuple[OffsetCommitEntry, ...]


@dataclass(frozen=True)
class FetchedOffset:
    topic: str
    partition: int
    offset: int  # -1: nothing committed
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.none


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True)
class GroupDescription:
    error: ErrorCode
    group_id: str
    state: str
    protocol_type: str
    protocol_name: str
    members: tuple[MemberSnapshot, ...]


class GroupCoordinator:
    def __init__(self, clock: Clock, settings: MembershipSettings = MembershipSettings(),
                 topic_exists: TopicExists = lambda topic, partition: True,
                 cleanup_settings: CleanupSettings = CleanupSettings()) -> None:
        self.clock = clock
        self.groups: dict[str, Group] = {}
        self.membership = Membership(self.groups, clock, settings, self._store_group)
        self.topic_exists = topic_exists
        self.offsets_log: OffsetsLog | None = None
        self.cleanup_settings = cleanup_settings
        self.cleaner: OffsetsLogCleaner | None = None
        self.loaded = False
        self._tasks: set[asyncio.Task] = set()
        self._cleanup_task: asyncio.Task | None = None
        self._on_fatal: Callable[[], None] = lambda: None

    # =====================================================================================
    # lifecycle

    async def load(self, offsets_log: OffsetsLog) -> None:
        """Replay __consumer_offsets into memory; the coordinator serves afterwards."""
        self.offsets_log = offsets_log
        unreadable: list[int] = []
        count = await offsets_log.replay(lambda key, value, offset: self._replay_record(key, value, offset, unreadable))
        if unreadable:
            log.error("skipped %d unreadable record(s) in __consumer_offsets (first at log offset %d)",
                      len(unreadable), unreadable[0])
        now = self.clock.monotonic_ms()
        for group in list(self.groups.values()):
            for member in group.members.values():
                member.last_heartbeat_ms = now  # loaded members get one session to reappear
            if not group.members and not group.offsets and group.protocol_type is None:
                del self.groups[group.group_id]
        self.cleaner = OffsetsLogCleaner(offsets_log, self.live_records, self.cleanup_settings)
        self.loaded = True
        log.info("loaded %d group(s) from %d record(s) of __consumer_offsets", len(self.groups), count)

    def on_invariant_violation(self, on_fatal: Callable[[], None]) -> None:
        """`on_fatal` is called when background work (offsets cleanup) breaks an invariant:
        the Broker stops the node. `tick()` itself runs on the node's ticker, which
        handles its failures the same way."""
        self._on_fatal = on_fatal

    def tick(self) -> None:
        if self.loaded:
            self.membership.tick()
            self._forget_unused_groups()
            self._maybe_start_cleanup()

    def _maybe_start_cleanup(self) -> None:
        """Start a cleanup of the partition whose check is due, if its log has grown enough;
        one at a time, in the background (offsets_cleaner.py)."""
        if self.cleaner is None or self._cleanup_task is not None:
            return
        partition = self.cleaner.due_partition(self.clock.monotonic_ms())
        if partition is not None:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._run_cleanup(partition))
            self._tasks.add(self._cleanup_task)
            self._cleanup_task.add_done_callback(self._tasks.discard)

    async def _run_cleanup(self, partition: int) -> None:
        try:
            await self.clean_offsets_partition(partition)
        except InvariantViolation:
            log.critical("invariant violated cleaning __consumer_offsets/%d; stopping the node", partition,
                         exc_info=True)
            self._on_fatal()
        except Exception:
            log.exception("cleaning __consumer_offsets/%d failed; retried at its next check", partition)
        finally:
            self._cleanup_task = None

    async def clean_offsets_partition(self, partition: int, force: bool = False) -> CleanupResult | None:
        """Rewrite one __consumer_offsets partition as a snapshot of its live state (see
        offsets_cleaner.py); returns a CleanupResult, or None when not worth it."""
        if self.cleaner is None:
            return None
        return await self.cleaner.clean(partition, force=force)

    def live_records(self, partition: int) -> list[LogRecord]:
        """What a replay of `partition` restores, as records: each group's last stored
        metadata record (byte for byte) and its committed offsets. Called by the cleanup
        with the partition's append gate closed, when memory equals the log."""
        invariant(self.offsets_log is not None, "live records asked of a coordinator without a log")
        records: list[LogRecord] = []
        for group in self.groups.values():
            if self.offsets_log.partition_for(group.group_id) != partition:
                continue
            if group.stored_metadata is not None:
                records.append(LogRecord(codec.encode_group_key(codec.GroupKey(group.group_id)),
                                         group.stored_metadata))
            for (topic, index), committed in group.offsets.items():
                value = codec.OffsetValue(committed.offset, committed.leader_epoch, committed.metadata,
                                          committed.commit_timestamp_ms)
                records.append(LogRecord(codec.encode_offset_key(codec.OffsetKey(group.group_id, topic, index)),
                                         codec.encode_offset_value(value)))
        return records

    def _forget_unused_groups(self) -> None:
        """Drop groups that hold nothing and were never written to the log (created by a
        join that failed, or by KIP-394 member ids that never came back)."""
        for group in list(self.groups.values()):
            if (group.is_state(GroupState.EMPTY) and group.generation_id == 0 and not group.members
                    and not group.pending_members and not group.offsets and not group.has_pending_commits()):
                del self.groups[group.group_id]

    async def close(self) -> None:
        self.membership.fail_waiting_requests(ErrorCode.not_coordinator)
        await self.drain()
        self.loaded = False

    async def drain(self) -> None:
        """Wait for the background appends (group metadata stores) in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # =====================================================================================
    # the log

    async def _append(self, group_id: str, records: Sequence[LogRecord],
                      too_large: ErrorCode = ErrorCode.unknown_server_error,
                      on_appended: Callable[[int], None] | None = None) -> tuple[ErrorCode, int]:
        """(error, log offset of the first record). `on_appended(offset)` makes the memory
        change of a successful append (inside the partition's append gate)."""
        if self.offsets_log is None:
            return ErrorCode.coordinator_not_available, -1
        try:
            return ErrorCode.none, await self.offsets_log.append(group_id, records, on_appended)
        except InvariantViolation:
            raise
        except RecordBatchTooLarge:
            return too_large, -1
        except Exception:
            log.exception("appending to __consumer_offsets for group %s failed", group_id)
            return ErrorCode.coordinator_not_available, -1

    def _store_group(self, group: Group, assignments: dict[str, bytes], on_stored: StoreCallback | None) -> None:
        """Membership's persistence hook: write the group's metadata (with `assignments`)."""
        value = codec.encode_group_value(self._group_value(group, assignments))
        record = LogRecord(codec.encode_group_key(codec.GroupKey(group.group_id)), value)

        def remember(log_offset: int) -> None:
            self._remember_stored_metadata(group, value, log_offset)

        async def store() -> None:
            error, _ = await self._append(group.group_id, [record], on_appended=remember)
            if on_stored is not None:
                on_stored(error)

        self._spawn(store())

    @staticmethod
    def _remember_stored_metadata(group: Group, value: bytes, log_offset: int) -> None:
        if log_offset > group.stored_metadata_log_offset:
            group.stored_metadata = value
            group.stored_metadata_log_offset = log_offset

    def _group_value(self, group: Group, assignments: dict[str, bytes]) -> codec.GroupValue:
        members = tuple(
            codec.StoredMember(
                member_id=member.member_id, group_instance_id=member.group_instance_id,
                client_id=member.client_id, client_host=member.client_host,
                rebalance_timeout_ms=member.rebalance_timeout_ms,
                session_timeout_ms=member.session_timeout_ms,
                subscription=member.metadata_for(group.protocol_name),
                assignment=assignments.get(member.member_id, b""))
            for member in group.members.values())
        return codec.GroupValue(group.protocol_type or "", group.generation_id, group.protocol_name,
                                group.leader_id, self.clock.now_ms(), members)

    def _replay_record(self, key_bytes: bytes, value: bytes | None, log_offset: int,
                       unreadable: list[int]) -> None:
        """Replay one record; one that does not decode (written by something else than a
        coordinator, e.g. a client producing to the topic) is skipped, not fatal."""
        try:
            self._apply_log_record(key_bytes, value, log_offset)
        except (codec.GroupRecordError, UnicodeDecodeError):
            unreadable.append(log_offset)

    def _apply_log_record(self, key_bytes: bytes, value: bytes | None, log_offset: int) -> None:
        key = codec.decode_key(key_bytes)
        if isinstance(key, codec.OffsetKey):
            group = self._group_for_write(key.group_id)
            committed = None
            if value is not None:
                stored = codec.decode_offset_value(value)
                committed = CommittedOffset(stored.offset, stored.leader_epoch, stored.metadata,
                                            stored.commit_timestamp_ms, log_offset)
            self._apply_offset(group, (key.topic, key.partition), committed, log_offset)
        elif value is None:
            self.groups.pop(key.group_id, None)
        else:
            group = self._restore_group(key.group_id, codec.decode_group_value(value))
            self._remember_stored_metadata(group, value, log_offset)

    def _restore_group(self, group_id: str, value: codec.GroupValue) -> Group:
        group = self._group_for_write(group_id)
        group.members.clear()
        group.static_members.clear()
        group.protocol_type = value.protocol_type or None
        group.generation_id = value.generation_id
        group.protocol_name = value.protocol_name
        group.leader_id = value.leader_id
        group.state_timestamp_ms = value.state_timestamp_ms
        for stored in value.members:
            group.add_member(Member(
                member_id=stored.member_id, group_instance_id=stored.group_instance_id,
                client_id=stored.client_id, client_host=stored.client_host,
                session_timeout_ms=stored.session_timeout_ms,
                rebalance_timeout_ms=stored.rebalance_timeout_ms,
                protocol_type=value.protocol_type,
                protocols=((value.protocol_name or "", stored.subscription),),
                assignment=stored.assignment))
        group.leader_id = value.leader_id if value.leader_id in group.members else next(iter(group.members), None)
        group.state = GroupState.STABLE if group.members else GroupState.EMPTY
        return group

    def _group_for_write(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
        return group

    @staticmethod
    def _apply_offset(group: Group, partition: TopicPartition, committed: CommittedOffset | None,
                      log_offset: int) -> None:
        """Apply one offset record (None: tombstone) unless memory holds a newer one."""
        existing = group.offsets.get(partition)
        if existing is not None and existing.log_offset > log_offset:
            return
        if group.offset_tombstones.get(partition, -1) > log_offset:
            return
        if committed is None:
            group.offsets.pop(partition, None)
            if group.pending_commits[partition] > 0:
                group.offset_tombstones[partition] = log_offset  # older in-flight commits must not resurrect it
        else:
            group.offsets[partition] = committed
        if group.pending_commits[partition] <= 0:
            group.pending_commits.pop(partition, None)
            group.offset_tombstones.pop(partition, None)

    # =====================================================================================
    # OffsetCommit

    async def commit_offsets(self, request: OffsetCommitRequest) -> dict[TopicPartition, ErrorCode]:
        error = self._commit_precondition_error(request)
        if error is not None:
            return {(entry.topic, entry.partition): error for entry in request.entries}
        group = self.groups[request.group_id]
        if request.member_id != UNKNOWN_MEMBER_ID:
            self.membership.touch(group, request.member_id)
        errors, accepted = self._check_commit_entries(request.entries)
        if accepted:
            append_error = await self._write_commits(group, accepted)
            for entry in accepted:
                errors[(entry.topic, entry.partition)] = append_error
        return errors

    def _commit_precondition_error(self, request: OffsetCommitRequest) -> ErrorCode | None:
        if not self.loaded:
            return ErrorCode.coordinator_load_in_progress
        group = self.groups.get(request.group_id)
        if group is None:
            if request.generation_id >= 0:
                return ErrorCode.illegal_generation  # Kafka's answer before OffsetCommit v9
            # a "simple" group: the client only uses Kafka to store its offsets
            self.groups[request.group_id] = Group(request.group_id)
            return None
        if group.is_state(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        if (request.generation_id >= 0 or request.member_id != UNKNOWN_MEMBER_ID
                or request.group_instance_id is not None):
            return self._member_commit_error(group, request)
        if not group.is_state(GroupState.EMPTY):
            return ErrorCode.unknown_member_id  # only members commit to an active group
        return None

    @staticmethod
    def _member_commit_error(group: Group, request: OffsetCommitRequest) -> ErrorCode | None:
        error = group.member_generation_error(request.group_instance_id, request.member_id, request.generation_id)
        if error is not None:
            return error
        if group.is_state(GroupState.COMPLETING_REBALANCE):
            # the member has the new generation but not yet its assignment
            return ErrorCode.rebalance_in_progress
        return None

    def _check_commit_entries(self, entries: Sequence[OffsetCommitEntry]) -> tuple[dict[TopicPartition, ErrorCode], list[OffsetCommitEntry]]:
        errors: dict[TopicPartition, ErrorCode] = {}
        accepted: list[OffsetCommitEntry] = []
        for entry in entries:
            if not self.topic_exists(entry.topic, entry.partition):
                errors[(entry.topic, entry.partition)] = ErrorCode.unknown_topic_or_partition
            elif entry.metadata is not None and len(entry.metadata) > limits.offset_metadata_chars_max:
                errors[(entry.topic, entry.partition)] = ErrorCode.offset_metadata_too_large
            else:
                accepted.append(entry)
        return errors, accepted

    async def _write_commits(self, group: Group, entries: list[OffsetCommitEntry]) -> ErrorCode:
        now = self.clock.now_ms()
        values = [codec.OffsetValue(entry.offset, entry.leader_epoch, entry.metadata or "", now) for entry in entries]
        records = [LogRecord(codec.encode_offset_key(codec.OffsetKey(group.group_id, entry.topic, entry.partition)),
                             codec.encode_offset_value(value)) for entry, value in zip(entries, values)]
        partitions = [(entry.topic, entry.partition) for entry in entries]
        group.pending_commits.update(partitions)
        settled = False

        def apply(base_offset: int) -> None:
            nonlocal settled
            settled = True
            group.pending_commits.subtract(partitions)
            for index, (partition, value) in enumerate(zip(partitions, values)):
                if group.is_state(GroupState.DEAD):
                    self._forget_settled_commit(group, partition)
                    continue
                committed = CommittedOffset(value.offset, value.leader_epoch, value.metadata,
                                            value.commit_timestamp_ms, base_offset + index)
                self._apply_offset(group, partition, committed, base_offset + index)

        try:
            error, _ = await self._append(group.group_id, records, ErrorCode.invalid_commit_offset_size,
                                          on_appended=apply)
        finally:
            if not settled:  # failed (or cancelled): nothing of it reached memory
                group.pending_commits.subtract(partitions)
                for partition in partitions:
                    self._forget_settled_commit(group, partition)
        return error

    @staticmethod
    def _forget_settled_commit(group: Group, partition: TopicPartition) -> None:
        if group.pending_commits[partition] <= 0:
            group.pending_commits.pop(partition, None)
            group.offset_tombstones.pop(partition, None)

    # =====================================================================================
    # OffsetFetch

    def fetch_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None,
                      require_stable: bool = False) -> tuple[ErrorCode, list[FetchedOffset]]:
        """(group error, offsets). `partitions` None means every committed partition.
        require_stable is honoured trivially: only transactional commits are ever
        unstable in Kafka, and Shoal has no transactions yet."""
        if not self.loaded:
            return ErrorCode.coordinator_load_in_progress, []
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None and not group.is_state(GroupState.DEAD) else {}
        wanted = sorted(offsets) if partitions is None else list(partitions)
        return ErrorCode.none, [self._fetched(partition, offsets.get(partition)) for partition in wanted]

    @staticmethod
    def _fetched(partition: TopicPartition, committed: CommittedOffset | None) -> FetchedOffset:
        topic, index = partition
        if committed is None:
            return FetchedOffset(topic, index, -1, -1, "")
        return FetchedOffset(topic, index, committed.offset, committed.leader_epoch, committed.metadata)

    # =====================================================================================
    # ListGroups, DescribeGroups

    def list_groups(self, states_filter: Sequence[str] = ()) -> tuple[ErrorCode, list[GroupListing]]:
        wanted = {state.lower() for state in states_filter}
        listings = [GroupListing(group.group_id, group.protocol_type or "", group.state.value)
                    for group in self.groups.values()
                    if not wanted or group.state.value.lower() in wanted]
        error = ErrorCode.none if self.loaded else ErrorCode.coordinator_load_in_progress
        return error, sorted(listings, key=lambda listing: listing.group_id)

    def describe_group(self, group_id: str) -> GroupDescription:
        if not self.loaded:
            return GroupDescription(ErrorCode.coordinator_load_in_progress, group_id, "", "", "", ())
        group = self.groups.get(group_id)
        if group is None:
            return GroupDescription(ErrorCode.none, group_id, GroupState.DEAD.value, "", "", ())
        stable = group.is_state(GroupState.STABLE)
        members = (group.member_snapshots(with_assignment=True) if stable
                   else tuple(MemberSnapshot(m.member_id, m.group_instance_id, b"", m.client_id, m.client_host)
                              for m in group.members.values()))
        return GroupDescription(ErrorCode.none, group_id, group.state.value, group.protocol_type or "",
                                (group.protocol_name or "") if stable else "", members)

    # =====================================================================================
    # DeleteGroups, OffsetDelete

    async def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode]:
        results: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            results[group_id] = await self._delete_group(group_id)
        return results

    async def _delete_group(self, group_id: str) -> ErrorCode:
        if not self.loaded:
            return ErrorCode.coordinator_load_in_progress
        group = self.groups.get(group_id)
        if group is None or group.is_state(GroupState.DEAD):
            return ErrorCode.group_id_not_found
        if not group.is_state(GroupState.EMPTY) or group.has_pending_commits():
            return ErrorCode.non_empty_group
        partitions = sorted(group.offsets)
        records = [LogRecord(codec.encode_offset_key(codec.OffsetKey(group_id, topic, partition)), None)
                   for topic, partition in partitions]
        records.append(LogRecord(codec.encode_group_key(codec.GroupKey(group_id)), None))
        # Dead first, synchronously: commits racing with the delete now fail instead of
        # landing in the log before our tombstones and surviving in memory.
        group.state = GroupState.DEAD
        del self.groups[group_id]
        error, _ = await self._append(group_id, records)
        if error != ErrorCode.none:
            log.error("group %s removed from memory but its tombstones were not written: %s", group_id, error.name)
        return error

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        if not self.loaded:
            return ErrorCode.coordinator_load_in_progress, {}
        group = self.groups.get(group_id)
        if group is None or group.is_state(GroupState.DEAD):
            return ErrorCode.group_id_not_found, {}
        if not group.is_state(GroupState.EMPTY) and group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return ErrorCode.non_empty_group, {}
        errors: dict[TopicPartition, ErrorCode] = {}
        deletable: list[TopicPartition] = []
        for partition in partitions:
            if not self.topic_exists(*partition):
                errors[partition] = ErrorCode.unknown_topic_or_partition
            elif not group.is_state(GroupState.EMPTY) and group.is_subscribed_to(partition[0]):
                errors[partition] = ErrorCode.group_subscribed_to_topic
            else:
                errors[partition] = ErrorCode.none
                deletable.append(partition)
        to_delete = [partition for partition in deletable if partition in group.offsets]
        if to_delete:
            error = await self._write_offset_tombstones(group, to_delete)
            if error != ErrorCode.none:
                return error, {}
        return ErrorCode.none, errors

    def forget_topic(self, topic: str) -> None:
        """A topic was deleted: every group's committed offsets of it go too, as in Kafka,
        so a topic re-created under the same name is consumed from its start, not from
        the old topic's positions. Memory changes at once; tombstones follow in the log."""
        for group in list(self.groups.values()):
            partitions = sorted(partition for partition in group.offsets if partition[0] == topic)
            if not partitions:
                continue
            for partition in partitions:
                group.offsets.pop(partition, None)
            self._spawn(self._tombstone_deleted_topic(group, partitions))

    def forget_topics_other_than(self, existing: Callable[[str], bool]) -> None:
        """At load: drop offsets of topics that no longer exist (a delete whose tombstones
        did not reach the log before a crash)."""
        topics = {topic for group in self.groups.values() for topic, _ in group.offsets}
        for topic in sorted(topics):
            if not existing(topic):
                self.forget_topic(topic)

    async def _tombstone_deleted_topic(self, group: Group, partitions: list[TopicPartition]) -> None:
        error = await self._write_offset_tombstones(group, partitions)
        if error != ErrorCode.none:
            log.error("offsets of deleted partitions %s of group %s were removed from memory but their "
                      "tombstones were not written: %s", partitions, group.group_id, error.name)

    async def _write_offset_tombstones(self, group: Group, partitions: list[TopicPartition]) -> ErrorCode:
        records = [LogRecord(codec.encode_offset_key(codec.OffsetKey(group.group_id, topic, partition)), None)
                   for topic, partition in partitions]

        def apply(base_offset: int) -> None:
            for index, partition in enumerate(partitions):
                self._apply_offset(group, partition, None, base_offset + index)

        error, _ = await self._append(group.group_id, records, on_appended=apply)
        return error
