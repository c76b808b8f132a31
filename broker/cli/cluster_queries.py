"""Questions the admin commands ask the cluster through AdminClient: which partitions a
topic has, its watermarks, the offset at a timestamp, a group's committed offsets."""

from __future__ import annotations

from typing import Any, Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from broker.cli.connection import (
    CommandError, ConnectionSettings, error_of, is_unknown_topic, kafka_error_text, topic_missing,
    wait_for,
)

PartitionKey = tuple[str, int]


def topic_metadata(metadata: Any, name: str) -> Any:
    """The topic's metadata from a cluster-wide Metadata answer, or 'does not exist'."""
    topic = metadata.topics.get(name)
    if topic is None or (topic.error is not None and is_unknown_topic(topic.error)):
        raise topic_missing(name)
    if topic.error is not None and topic.error.code() != KafkaError.NO_ERROR and not topic.partitions:
        raise CommandError(f"topic '{name}': {kafka_error_text(topic.error)}")
    return topic


def partition_ids(metadata: Any, name: str) -> list[int]:
    return sorted(topic_metadata(metadata, name).partitions)


def partition_keys(metadata: Any, name: str, only: Iterable[int] | None = None) -> list[PartitionKey]:
    """(topic, partition) for every partition, or for the ones asked (checked to exist)."""
    existing = partition_ids(metadata, name)
    if only is None:
        return [(name, partition) for partition in existing]
    missing = sorted(set(only) - set(existing))
    if missing:
        raise CommandError(
            f"topic '{name}' has no partition {missing[0]} (it has {len(existing)}: 0..{len(existing) - 1})")
    return [(name, partition) for partition in sorted(set(only))]


def list_offsets(admin: Any, settings: ConnectionSettings, keys: list[PartitionKey],
                 spec: Any) -> dict[PartitionKey, int]:
    """ListOffsets for every partition with one OffsetSpec (earliest, latest, timestamp)."""
    if not keys:
        return {}
    request = {TopicPartition(topic, partition): spec for topic, partition in keys}
    futures = admin.list_offsets(request, request_timeout=settings.timeout_seconds)
    offsets: dict[PartitionKey, int] = {}
    for topic_partition, future in futures.items():
        key = (topic_partition.topic, topic_partition.partition)
        try:
            offsets[key] = wait_for(future, settings).offset
        except KafkaException as exception:
            raise _partition_failure("cannot list offsets of", key, exception) from None
    return offsets


def watermarks(admin: Any, settings: ConnectionSettings,
               keys: list[PartitionKey]) -> dict[PartitionKey, tuple[int, int]]:
    low = list_offsets(admin, settings, keys, OffsetSpec.earliest())
    high = list_offsets(admin, settings, keys, OffsetSpec.latest())
    return {key: (low[key], high[key]) for key in keys}


def offsets_at_timestamp(admin: Any, settings: ConnectionSettings, keys: list[PartitionKey],
                         timestamp_ms: int) -> dict[PartitionKey, int]:
    """First offset with timestamp >= timestamp_ms per partition; -1 where there is none."""
    return list_offsets(admin, settings, keys, OffsetSpec.for_timestamp(timestamp_ms))


def committed_offsets(admin: Any, settings: ConnectionSettings, group: str,
                      keys: list[PartitionKey] | None = None) -> dict[PartitionKey, int]:
    """The group's committed offsets (all of them when keys is None); absent = none."""
    partitions = None if keys is None else [TopicPartition(topic, partition) for topic, partition in keys]
    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, partitions)], request_timeout=settings.timeout_seconds)
    try:
        result = wait_for(futures[group], settings)
    except KafkaException as exception:
        raise CommandError(f"cannot read offsets of group '{group}': {_describe(exception)}") from None
    return {
        (topic_partition.topic, topic_partition.partition): topic_partition.offset
        for topic_partition in result.topic_partitions
        if topic_partition.offset >= 0 and topic_partition.error is None
    }


def _describe(exception: KafkaException) -> str:
    error = error_of(exception)
    return kafka_error_text(error) if error is not None else str(exception)


def _partition_failure(action: str, key: PartitionKey, exception: KafkaException) -> CommandError:
    error = error_of(exception)
    if error is not None and is_unknown_topic(error):
        return topic_missing(key[0])
    return CommandError(f"{action} {key[0]}[{key[1]}]: {_describe(exception)}")
