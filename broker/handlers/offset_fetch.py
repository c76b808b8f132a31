"""OffsetFetch (9): committed offsets of a group (v1: listed partitions; v2+: null topics =
every committed partition; v5 adds the committed leader epoch; v7 require_stable; v8
(KIP-709) several groups in one request). A partition with nothing committed gets offset
-1 and no error, like Kafka."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import FetchedOffset
from broker.groups.wire import coordinator_of, element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 9
MIN_VERSION = 1
MAX_VERSION = 8

FIRST_MULTI_GROUP_VERSION = 8


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    require_stable = bool(getattr(request, "require_stable", False))
    if context.api_version >= FIRST_MULTI_GROUP_VERSION:
        group_class = element_type(response_class, "groups")
        groups = tuple(_group_entry(context, group_class, group.group_id, group.topics, require_stable)
                       for group in request.groups)
        return build(response_class, throttle_time=NO_THROTTLE, groups=groups)
    error, topics = _fetch(context, response_class, request.group_id, request.topics, require_stable)
    return build(response_class, throttle_time=NO_THROTTLE, topics=topics, error_code=error)


def _group_entry(context: RequestContext, group_class: type, group_id: str, requested: Any,
                 require_stable: bool) -> Any:
    error, topics = _fetch(context, group_class, group_id, requested, require_stable)
    return build(group_class, group_id=group_id, topics=topics, error_code=error)


def _fetch(context: RequestContext, container_class: type, group_id: str, requested: Any,
           require_stable: bool) -> tuple[ErrorCode, tuple[Any, ...]]:
    """(group-level error, response topics) for one group; `container_class` is the
    response (v1-7) or response group (v8) entity that holds the topics."""
    partitions = None if requested is None else [
        (topic.name, index) for topic in requested for index in topic.partition_indexes]
    coordinator = coordinator_of(context)
    if coordinator is None:
        error = ErrorCode.coordinator_load_in_progress
        fetched = [FetchedOffset(topic, index, -1, -1, "", error) for topic, index in partitions or []]
    else:
        error, fetched = coordinator.fetch_offsets(group_id, partitions, require_stable)
    return error, _topics(container_class, fetched)


def _topics(container_class: type, fetched: list[FetchedOffset]) -> tuple[Any, ...]:
    topic_class = element_type(container_class, "topics")
    partition_class = element_type(topic_class, "partitions")
    by_topic: dict[str, list[Any]] = {}
    for item in fetched:
        by_topic.setdefault(item.topic, []).append(build(
            partition_class, partition_index=item.partition, committed_offset=item.offset,
            committed_leader_epoch=item.leader_epoch, metadata=item.metadata, error_code=item.error))
    return tuple(build(topic_class, name=name, partitions=tuple(partitions)) for name, partitions in by_topic.items())
