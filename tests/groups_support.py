"""Helpers for the group coordinator tests: a coordinator on real __consumer_offsets
partition logs in a temporary directory, driven by a ManualClock, plus request builders."""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path

from kio.schema.consumer_protocol_subscription.v1 import ConsumerProtocolSubscription
from kio.schema.consumer_protocol_subscription.v1.data import TopicPartition
from kio.serial import entity_writer

from broker.clock import ManualClock
from broker.config import NodeConfig
from broker.groups.coordinator import GroupCoordinator, OffsetCommitEntry, OffsetCommitRequest
from broker.groups.group import JoinResult, SyncResult
from broker.groups.membership import JoinRequest, MembershipSettings, SyncRequest
from broker.groups.offsets_cleaner import CleanupSettings
from broker.groups.offsets_log import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, OffsetsLog
from broker.ids import LeaderEpoch
from broker.storage.log_manager import LogManager
from broker.topic_config import partition_log_config

PARTITIONS = 2


def async_test(function):
    """Run an `async def test_...` with asyncio.run (pytest-asyncio is not a dependency)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(function(*args, **kwargs), timeout=60))
    return wrapper


def subscription(*topics: str, owned: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> bytes:
    """A ConsumerProtocolSubscription v1 as Kafka consumers send it (version prefix + body)."""
    buffer = io.BytesIO()
    entity_writer(ConsumerProtocolSubscription)(buffer, ConsumerProtocolSubscription(
        topics=topics, user_data=None,
        owned_partitions=tuple(TopicPartition(topic=topic, partitions=partitions) for topic, partitions in owned)))
    return b"\x00\x01" + buffer.getvalue()


class CoordinatorHarness:
    """A GroupCoordinator over real DiskPartitionLogs; `restart()` replays them afresh."""

    def __init__(self, directory: Path, settings: MembershipSettings | None = None,
                 existing_topics: dict[str, int] | None = None,
                 cleanup: CleanupSettings | None = None) -> None:
        self.directory = directory
        self.clock = ManualClock()
        self.settings = settings or MembershipSettings(initial_rebalance_delay_ms=3000)
        self.existing_topics = existing_topics
        self.cleanup = cleanup or CleanupSettings()
        self.manager: LogManager | None = None
        self.coordinator: GroupCoordinator | None = None

    def _topic_exists(self, topic: str, partition: int) -> bool:
        if self.existing_topics is None:
            return True
        return 0 <= partition < self.existing_topics.get(topic, 0)

    async def start(self, load: bool = True) -> GroupCoordinator:
        log_config = partition_log_config(NodeConfig(data_dir=self.directory), OFFSETS_TOPIC,
                                          dict(OFFSETS_TOPIC_CONFIGS))
        self.manager = LogManager(self.directory, self.clock, lambda topic, partition: log_config)
        await self.manager.start()
        logs = [await self.manager.create(OFFSETS_TOPIC, partition, log_config) for partition in range(PARTITIONS)]
        self.offsets_log = OffsetsLog(logs, [LeaderEpoch(0)] * PARTITIONS, self.clock)
        self.coordinator = GroupCoordinator(self.clock, self.settings, self._topic_exists, self.cleanup)
        if load:
            await self.coordinator.load(self.offsets_log)
        return self.coordinator

    async def stop(self) -> None:
        if self.coordinator is not None:
            await self.coordinator.close()
        if self.manager is not None:
            await self.manager.close()

    async def __aenter__(self) -> "CoordinatorHarness":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def restart(self) -> GroupCoordinator:
        await self.stop()
        return await self.start()

    def advance(self, duration_ms: int) -> None:
        self.clock.advance_ms(duration_ms)
        self.coordinator.tick()

    def finish_initial_delay(self, group_id: str) -> int:
        """Advance one initial delay at a time until the group's first join completes
        (every member added during a delay earns one more); returns the time taken."""
        from broker.groups.group import GroupState

        delay = self.settings.initial_rebalance_delay_ms
        for steps in range(1, 20):
            self.advance(delay)
            if self.coordinator.groups[group_id].state != GroupState.PREPARING_REBALANCE:
                return steps * delay
        raise AssertionError("the initial delay never ended")

    # -- requests -------------------------------------------------------------------------

    def join(self, group_id: str, member_id: str = "", *, instance_id: str | None = None,
             protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),),
             session_timeout_ms: int = 10_000, rebalance_timeout_ms: int = 30_000,
             require_known_member_id: bool = False, protocol_type: str = "consumer",
             client_id: str = "client") -> list[JoinResult]:
        """Send a JoinGroup; the returned list receives the response when it comes."""
        responses: list[JoinResult] = []
        self.coordinator.membership.join_group(JoinRequest(
            group_id=group_id, member_id=member_id, group_instance_id=instance_id,
            client_id=client_id, client_host="/127.0.0.1", session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms, protocol_type=protocol_type,
            protocols=protocols, require_known_member_id=require_known_member_id), responses.append)
        return responses

    def sync(self, group_id: str, member_id: str, generation_id: int,
             assignments: dict[str, bytes] | None = None, *, instance_id: str | None = None,
             protocol_type: str | None = None, protocol_name: str | None = None) -> list[SyncResult]:
        responses: list[SyncResult] = []
        self.coordinator.membership.sync_group(SyncRequest(
            group_id=group_id, generation_id=generation_id, member_id=member_id,
            group_instance_id=instance_id, protocol_type=protocol_type, protocol_name=protocol_name,
            assignments=assignments or {}), responses.append)
        return responses

    def heartbeat(self, group_id: str, member_id: str, generation_id: int, instance_id: str | None = None):
        return self.coordinator.membership.heartbeat(group_id, member_id, instance_id, generation_id)

    async def commit(self, group_id: str, offsets: dict[tuple[str, int], int], *, generation_id: int = -1,
                     member_id: str = "", instance_id: str | None = None, leader_epoch: int = -1,
                     metadata: str | None = ""):
        entries = tuple(OffsetCommitEntry(topic, partition, offset, leader_epoch, metadata)
                        for (topic, partition), offset in offsets.items())
        return await self.coordinator.commit_offsets(OffsetCommitRequest(
            group_id, generation_id, member_id, instance_id, entries))

    def committed(self, group_id: str, partitions=None) -> dict[tuple[str, int], int]:
        error, fetched = self.coordinator.fetch_offsets(group_id, partitions)
        assert error == 0, error
        return {(item.topic, item.partition): item.offset for item in fetched}

    async def form_group(self, group_id: str, count: int, **join_options) -> tuple[list[str], int]:
        """`count` members join (one initial delay), the leader syncs an assignment naming
        each member: returns (member ids, generation) of the Stable group."""
        pending = [self.join(group_id, client_id=f"client{index}", **join_options) for index in range(count)]
        self.finish_initial_delay(group_id)
        results = [responses[0] for responses in pending]
        member_ids = [result.member_id for result in results]
        generation = results[0].generation_id
        leader = results[0].leader_id
        syncs = [self.sync(group_id, member_id, generation,
                           {m: m.encode() for m in member_ids} if member_id == leader else None)
                 for member_id in member_ids]
        await self.coordinator.drain()
        assert all(responses and responses[0].error == 0 for responses in syncs), syncs
        return member_ids, generation


def observable_state(coordinator: GroupCoordinator) -> dict:
    """Everything a replay of __consumer_offsets restores, as JSON-friendly values: compare
    two replays (live memory also holds what is not logged, e.g. every offered protocol)."""
    state = {}
    for group_id, group in sorted(coordinator.groups.items()):
        state[group_id] = {
            "state": group.state.value, "generation": group.generation_id,
            "protocol_type": group.protocol_type, "protocol": group.protocol_name, "leader": group.leader_id,
            "members": [[member.member_id, member.group_instance_id, member.client_id, member.client_host,
                         member.session_timeout_ms, member.rebalance_timeout_ms,
                         [[name, metadata.hex()] for name, metadata in member.protocols], member.assignment.hex()]
                        for member in group.members.values()],
            "offsets": {f"{topic}/{partition}": [committed.offset, committed.leader_epoch, committed.metadata,
                                                 committed.commit_timestamp_ms]
                        for (topic, partition), committed in sorted(group.offsets.items())},
        }
    return state
