"""How the Broker starts its group coordinator: open (or create) __consumer_offsets,
replay it, then tick. Kept apart from the coordinator so the state machine never sees the
Broker."""

from __future__ import annotations

from typing import Any

from broker import limits
from broker.groups.coordinator import GroupCoordinator
from broker.groups.membership import MembershipSettings
from broker.groups.offsets_log import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS, OffsetsLog
from broker.invariant import invariant


def settings_for(config: Any) -> MembershipSettings:
    return MembershipSettings(initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms)


async def open_offsets_log(broker: Any) -> OffsetsLog:
    topic = broker.topics.get(OFFSETS_TOPIC)
    if topic is None:
        topic = await broker.create_topic(OFFSETS_TOPIC, limits.group_log_partitions, 1, dict(OFFSETS_TOPIC_CONFIGS))
    partition_logs = [await broker.open_partition_log(OFFSETS_TOPIC, partition) for partition in range(topic.partitions)]
    invariant(all(log is not None for log in partition_logs), "every __consumer_offsets partition has a log")
    epochs = [topic.leader_epoch(partition) for partition in range(topic.partitions)]
    return OffsetsLog(partition_logs, epochs, broker.clock)


def _topic_exists_in(broker: Any):
    def topic_exists(name: str, partition: int) -> bool:
        topic = broker.topics.get(name)
        return topic is not None and 0 <= partition < topic.partitions
    return topic_exists


async def start_group_coordinator(broker: Any) -> GroupCoordinator:
    """A loaded, ticking coordinator for `broker` (call after its logs are serving)."""
    coordinator = GroupCoordinator(broker.clock, settings_for(broker.config), _topic_exists_in(broker))
    await coordinator.load(await open_offsets_log(broker))
    coordinator.forget_topics_other_than(lambda topic: topic in broker.topics)
    coordinator.on_invariant_violation(lambda: broker.fail("the group coordinator's offsets cleanup"))
    broker.ticker.every("groups", limits.group_tick_interval_ms, lambda now_ms: coordinator.tick())
    return coordinator
