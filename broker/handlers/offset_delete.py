"""OffsetDelete (47, KIP-496): delete a group's committed offsets for some partitions.
Allowed for partitions of topics the group's members do not subscribe to
(GROUP_SUBSCRIBED_TO_TOPIC otherwise); a non-consumer group with members answers
NON_EMPTY_GROUP; an unknown group GROUP_ID_NOT_FOUND."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of, partition_error_topics
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
    topics = partition_error_topics(response_class, request.topics, errors)
    return build(response_class, throttle_time=NO_THROTTLE, topics=topics, error_code=ErrorCode.none)
