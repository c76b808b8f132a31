"""OffsetDelete (47, KIP-496): delete a group's committed offsets for some partitions.
Allowed for partitions of topics the group's members do not subscribe to
(GROUP_SUBSCRIBED_TO_TOPIC otherwise); a non-consumer group with members answers
NON_EMPTY_GROUP; an unknown group GROUP_ID_NOT_FOUND."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of, element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 47
MIN_VERSION = 0
MAX_VERSION = 0


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    partitions = [(topic.name, partition.partition_index)
                  for topic in request.topics for partition in topic.partitions]
    coordinator = coordinator_of(context)
    if coordinator is None:
        return build(response_class, throttle_time=NO_THROTTLE, topics=(),
                     error_code=ErrorCode.coordinator_load_in_progress)
    error, errors = await coordinator.delete_offsets(request.group_id, partitions)
    if error != ErrorCode.none:
        return build(response_class, throttle_time=NO_THROTTLE, topics=(), error_code=error)
    topic_class = element_type(response_class, "topics")
    partition_class = element_type(topic_class, "partitions")
    topics = tuple(
        build(topic_class, name=topic.name, partitions=tuple(
            build(partition_class, partition_index=partition.partition_index,
                  error_code=errors[(topic.name, partition.partition_index)])
            for partition in topic.partitions))
        for topic in request.topics)
    return build(response_class, throttle_time=NO_THROTTLE, topics=topics, error_code=ErrorCode.none)
