"""OffsetForLeaderEpoch (23), v2-v4: where a leader epoch ends in this node's log
(KIP-101/279, and KIP-320 for consumers validating their position after a leader change).

Per partition, as Kafka's leader answers it (ReplicaManager.lastOffsetForLeaderEpoch):
unknown partition -> UNKNOWN_TOPIC_OR_PARTITION; a current_leader_epoch older than ours
-> FENCED_LEADER_EPOCH (74), newer -> UNKNOWN_LEADER_EPOCH (75), -1 skips the check; else
(epoch, end offset) = `Partition.end_offset_for(leader_epoch)`: the largest epoch not above
the requested one and where it ends (our latest epoch ends at the log end offset); -1 or an
epoch above ours answer (-1, -1) with no error.

Versions: kio and Kafka 4 know v2-v4 (v0-1 were removed in Kafka 4.0; v0 had no
leader_epoch in its response). librdkafka sends v2, kafka-python v2-v4, the Java client
v3+ (replica_id -1 for consumers) and validates positions only against a broker
advertising v3 or more. replica_id (v3+) changes nothing here: consumers and followers get
the same answer, as from Kafka.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build, nested
from broker.protocol.messages import response_type

API_KEY = 23
MIN_VERSION = 2
MAX_VERSION = 4


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    topic_class = nested(response_class, "OffsetForLeaderTopicResult")
    partition_class = nested(response_class, "EpochEndOffset")
    topics = []
    for topic_request in request.topics:
        partitions = []
        for partition_request in topic_request.partitions:
            error, epoch, end_offset = await _end_offset(context, topic_request.topic, partition_request)
            partitions.append(build(partition_class, error_code=error, partition=partition_request.partition,
                                    leader_epoch=epoch, end_offset=end_offset))
        topics.append(build(topic_class, topic=topic_request.topic, partitions=tuple(partitions)))
    return build(response_class, throttle_time=NO_THROTTLE, topics=tuple(topics))


async def _end_offset(context: RequestContext, topic: str, partition_request: Any) -> tuple[ErrorCode, int, int]:
    """(error, leader epoch, end offset) for one partition."""
    partition = await context.broker.partitions.wait_for(topic, partition_request.partition)
    if partition is None:
        return ErrorCode.unknown_topic_or_partition, -1, -1
    epoch_error = partition.leadership_error() or partition.epoch_error(partition_request.current_leader_epoch)
    if epoch_error is not None:
        return epoch_error, -1, -1
    epoch, end_offset = partition.end_offset_for(partition_request.leader_epoch)
    return ErrorCode.none, int(epoch), int(end_offset)
