"""ListOffsets (2), v1-v7: earliest (-2), latest (-1), max timestamp (-3, v7) and the
first offset whose timestamp is at or after a given time.

Latest is the last stable offset for read_committed and the high watermark otherwise;
without transactions the two are equal. Leader epochs (v4+) are the partition's one
epoch, the same Metadata and Fetch use; a client's current_leader_epoch is checked like
Kafka does (KIP-320). With tiered storage, earliest and timestamp lookups include the cold
tier through the shadow-indexing seam below."""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
from broker.handlers.fetch import leader_epoch_error
from broker.invariant import InvariantViolation
from broker.protocol.kio_build import NO_THROTTLE, build, nested
from broker.protocol.messages import response_type
from broker.storage.api import KafkaStorageError

API_KEY = 2
MIN_VERSION = 1
MAX_VERSION = 7

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
NOT_FOUND = (-1, -1)  # (offset, timestamp)

log = logging.getLogger("shoal.list_offsets")


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    topic_class = nested(response_class, "ListOffsetsTopicResponse")
    partition_class = nested(response_class, "ListOffsetsPartitionResponse")
    topics = []
    for topic_request in request.topics:
        partitions = []
        for partition_request in topic_request.partitions:
            error, offset, timestamp, epoch = await _list_partition(context, topic_request.name, partition_request)
            partitions.append(build(partition_class, partition_index=partition_request.partition_index,
                                    error_code=error, timestamp=timestamp, offset=offset, leader_epoch=epoch))
        topics.append(build(topic_class, name=topic_request.name, partitions=tuple(partitions)))
    return build(response_class, throttle_time=NO_THROTTLE, topics=tuple(topics))


async def _list_partition(context: RequestContext, topic: str,
                          partition_request: Any) -> tuple[ErrorCode, int, int, int]:
    """(error, offset, timestamp, leader epoch) for one partition."""
    broker = context.broker
    index = partition_request.partition_index
    topic_entry = broker.topics.get(topic)
    partition_log = await broker.open_partition_log(topic, index) if topic_entry is not None else None
    if partition_log is None:
        return ErrorCode.unknown_topic_or_partition, -1, -1, -1
    epoch = topic_entry.leader_epoch(index)
    epoch_error = leader_epoch_error(getattr(partition_request, "current_leader_epoch", -1), epoch)
    if epoch_error is not None:
        return ErrorCode(epoch_error), -1, -1, -1
    try:
        offset, timestamp = await _offset_and_timestamp(broker, partition_log, topic, index,
                                                        partition_request.timestamp)
    except InvariantViolation:
        raise
    except KafkaStorageError as error:  # e.g. the bucket is down or frozen (RemoteStorageUnavailable)
        log.error("ListOffsets of %s/%d failed: %s", topic, index, error)
        return ErrorCode.kafka_storage_error, -1, -1, -1
    except Exception:  # e.g. the cold tier is unreachable: a retriable error, not a dropped connection
        log.exception("ListOffsets of %s/%d failed", topic, index)
        return ErrorCode.kafka_storage_error, -1, -1, -1
    return ErrorCode.none, offset, timestamp, epoch if offset >= 0 else -1


async def _offset_and_timestamp(broker: Any, partition_log: Any, topic: str, partition: int,
                                timestamp: int) -> tuple[int, int]:
    if timestamp == LATEST_TIMESTAMP:
        return int(partition_log.high_watermark), -1  # = last stable offset: no transactions
    if timestamp == EARLIEST_TIMESTAMP:
        return await _earliest_offset(broker, partition_log, topic, partition), -1
    if timestamp == MAX_TIMESTAMP:
        found = partition_log.max_timestamp()
        return (int(found[0]), int(found[1])) if found is not None else NOT_FOUND
    found = await _remote_offset_for_timestamp(broker, partition_log, topic, partition, timestamp)
    if found is None:
        found = partition_log.offset_for_timestamp(timestamp)
    return (int(found[0]), int(found[1])) if found is not None else NOT_FOUND


# --- SHADOW INDEXING SEAM: the cold tier's part of ListOffsets ------------------------------
def _cold_tier_reader(broker: Any, partition_log: Any) -> Any:
    if broker.remote_reader is None or not partition_log.config.remote_storage_enable:
        return None
    return broker.remote_reader


async def _earliest_offset(broker: Any, partition_log: Any, topic: str, partition: int) -> int:
    """The first offset of the partition across both tiers."""
    local_start = int(partition_log.log_start_offset)
    reader = _cold_tier_reader(broker, partition_log)
    if reader is None or not hasattr(reader, "start_offset"):
        return local_start
    remote_start = await reader.start_offset(topic, partition)
    return local_start if remote_start is None or remote_start < 0 else min(local_start, int(remote_start))


async def _remote_offset_for_timestamp(broker: Any, partition_log: Any, topic: str, partition: int,
                                       timestamp: int) -> tuple[int, int] | None:
    """A match in the cold tier below the local log start, else None (search locally)."""
    reader = _cold_tier_reader(broker, partition_log)
    if reader is None:
        return None
    local_start = int(partition_log.log_start_offset)
    found = await reader.offset_for_timestamp(topic, partition, timestamp, below_offset=local_start)
    if found is None or found[0] >= local_start:
        return None
    return found
# ----------------------------------------------------------------------------------------------
