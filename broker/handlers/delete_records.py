"""DeleteRecords (21), v0-2: move a partition's log start offset forward (Kafka's
AdminClient.deleteRecords), through Partition.delete_records_before (broker/partition.py).

Per partition, as Kafka answers: offset -1 means the high watermark; an offset above the
high watermark (or any other negative one) gets OFFSET_OUT_OF_RANGE; an unknown topic or
partition UNKNOWN_TOPIC_OR_PARTITION; internal topics (__consumer_offsets) get
INVALID_TOPIC_EXCEPTION ("Cannot delete records of internal topic", Kafka's refusal for
every client but its own admin tools: deleting the coordinator's records would lose
committed offsets); a log that cannot persist the deletion KAFKA_STORAGE_ERROR.
low_watermark is the partition's first readable offset afterwards (-1 with an error). The
deletion is durable before the response: a restart never brings the records back.

With remote.storage.enable the local log deletes and persists the new start first
(`delete_records_offset`, which also stops remote reads below it), then the cold tier
takes it into the partition manifest (`TieredStorage.delete_records_before`); the low
watermark is then the lower of the local start and the first offset still in the bucket.
A bucket that cannot take it in time gives KAFKA_STORAGE_ERROR (clients retry; the local
deletion already holds)."""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build, nested
from broker.protocol.messages import response_type
from broker.storage.api import KafkaStorageError, OffsetOutOfRange
from broker.topic_table import INTERNAL_TOPICS

API_KEY = 21
MIN_VERSION = 0
MAX_VERSION = 2

HIGH_WATERMARK = -1  # Kafka's DeleteRecordsRequest.HIGH_WATERMARK
NO_LOW_WATERMARK = -1

log = logging.getLogger("shoal.delete_records")


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    topic_class = nested(response_class, "DeleteRecordsTopicResult")
    partition_class = nested(response_class, "DeleteRecordsPartitionResult")
    topics = []
    for topic_request in request.topics:
        partitions = []
        for partition_request in topic_request.partitions:
            error, low_watermark = await _delete_partition(
                context, topic_request.name, partition_request.partition_index, partition_request.offset)
            partitions.append(build(partition_class, partition_index=partition_request.partition_index,
                                    low_watermark=low_watermark, error_code=error))
        topics.append(build(topic_class, name=topic_request.name, partitions=tuple(partitions)))
    return build(response_class, throttle_time=NO_THROTTLE, topics=tuple(topics))


async def _delete_partition(context: RequestContext, topic: str, index: int,
                            requested_offset: int) -> tuple[ErrorCode, int]:
    """(error, low watermark) for one partition."""
    partition = await context.broker.partitions.wait_for(topic, index)
    if partition is None:
        return ErrorCode.unknown_topic_or_partition, NO_LOW_WATERMARK
    if topic in INTERNAL_TOPICS:
        return ErrorCode.invalid_topic_exception, NO_LOW_WATERMARK
    offset = int(partition.high_watermark) if requested_offset == HIGH_WATERMARK else requested_offset
    if offset < 0:
        return ErrorCode.offset_out_of_range, NO_LOW_WATERMARK
    try:
        return ErrorCode.none, await partition.delete_records_before(offset)
    except OffsetOutOfRange:
        return ErrorCode.offset_out_of_range, NO_LOW_WATERMARK
    except KafkaStorageError:  # the local disk, or the bucket (RemoteStorageUnavailable)
        log.exception("DeleteRecords on %s/%d failed", topic, index)
        return ErrorCode.kafka_storage_error, NO_LOW_WATERMARK
