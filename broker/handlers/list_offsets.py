"""ListOffsets (2), v1-v7: earliest (-2), latest (-1), max timestamp (-3, v7) and the
first offset whose timestamp is at or after a given time.

Latest is the last stable offset for read_committed and the high watermark otherwise;
without transactions the two are equal. Leader epochs (v4+) are the partition's one
epoch, the same Metadata and Fetch use; a client's current_leader_epoch is checked like
Kafka does (KIP-320). With tiered storage, earliest and timestamp lookups include the cold
tier: the partition (broker/partition.py) asks both."""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
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
    index = partition_request.partition_index
    partition = await context.broker.partitions.wait_for(topic, index)
    if partition is None:
        return ErrorCode.unknown_topic_or_partition, -1, -1, -1
    epoch = partition.leader_epoch
    error = partition.leadership_error() or partition.epoch_error(getattr(partition_request, "current_leader_epoch", -1))
    if error is not None:
        return error, -1, -1, -1
    try:
        offset, timestamp = await _offset_and_timestamp(partition, partition_request.timestamp)
    except InvariantViolation:
        raise
    except KafkaStorageError as error:  # e.g. the bucket is down or frozen (RemoteStorageUnavailable)
        log.error("ListOffsets of %s/%d failed: %s", topic, index, error)
        return ErrorCode.kafka_storage_error, -1, -1, -1
    except Exception:  # e.g. the cold tier is unreachable: a retriable error, not a dropped connection
        log.exception("ListOffsets of %s/%d failed", topic, index)
        return ErrorCode.kafka_storage_error, -1, -1, -1
    return ErrorCode.none, offset, timestamp, epoch if offset >= 0 else -1


async def _offset_and_timestamp(partition: Any, timestamp: int) -> tuple[int, int]:
    if timestamp == LATEST_TIMESTAMP:
        return partition.latest_offset(), -1
    if timestamp == EARLIEST_TIMESTAMP:
        return await partition.earliest_offset(), -1
    found = partition.max_timestamp() if timestamp == MAX_TIMESTAMP else await partition.offset_for_timestamp(timestamp)
    return found if found is not None else NOT_FOUND
