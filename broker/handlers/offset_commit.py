"""OffsetCommit (8): commit offsets for a group's members (by generation) or for a simple
group (generation -1, no member id: standalone consumers and admin tools). The response is
sent only after the commit's record is fsynced in __consumer_offsets. v6 adds the
committed leader epoch, v7 group.instance.id; retention_time (v2-4) is accepted and
ignored, like Kafka since 2.1 (offsets live until the group is deleted)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import OffsetCommitEntry, OffsetCommitRequest
from broker.groups.wire import coordinator_of, partition_error_topics
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 8
MIN_VERSION = 2
MAX_VERSION = 8


async def handle(context: RequestContext, request: Any) -> Any:
    entries = tuple(
        OffsetCommitEntry(topic=topic.name, partition=partition.partition_index,
                          offset=partition.committed_offset,
                          leader_epoch=getattr(partition, "committed_leader_epoch", -1),
                          metadata=partition.committed_metadata)
        for topic in request.topics for partition in topic.partitions)
    coordinator = coordinator_of(context)
    if coordinator is None:
        errors = {(entry.topic, entry.partition): ErrorCode.coordinator_load_in_progress for entry in entries}
    else:
        errors = await coordinator.commit_offsets(OffsetCommitRequest(
            group_id=request.group_id, generation_id=request.generation_id_or_member_epoch,
            member_id=request.member_id, group_instance_id=getattr(request, "group_instance_id", None),
            entries=entries))
    return _response(context, request, errors)


def _response(context: RequestContext, request: Any, errors: dict[tuple[str, int], ErrorCode]) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    topics = partition_error_topics(response_class, request.topics, errors)
    return build(response_class, throttle_time=NO_THROTTLE, topics=topics)
