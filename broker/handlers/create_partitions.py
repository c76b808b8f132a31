"""CreatePartitions (37): raise a topic's partition count through Broker.add_partitions.
Internal topics (__consumer_offsets) are refused with INVALID_REQUEST: the group
coordinator maps a group to a partition by the partition count, so a change would strand
every group's committed offsets (Kafka's own tools refuse it with the same reason)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker import limits
from broker.handlers.admin_support import (
    NO_THROTTLE, AdminRequestError, build, duplicates, error_of, response_module)
from broker.handlers.context import RequestContext
from broker.topic_table import TopicError

API_KEY = 37
MIN_VERSION = 0
MAX_VERSION = 3


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    repeated = duplicates(topic.name for topic in request.topics)
    results = []
    for topic_request in request.topics:
        try:
            if topic_request.name in repeated:
                raise AdminRequestError(ErrorCode.invalid_request,
                                        f"topic {topic_request.name!r} appears more than once in the request")
            _check(context, topic_request)
            await context.broker.add_partitions(topic_request.name, topic_request.count,
                                                validate_only=request.validate_only)
        except (TopicError, AdminRequestError) as error:
            error_code, message = error_of(error)
            results.append(build(module.CreatePartitionsTopicResult, name=topic_request.name,
                                 error_code=error_code, error_message=message))
            continue
        results.append(build(module.CreatePartitionsTopicResult, name=topic_request.name,
                             error_code=ErrorCode.none, error_message=None))
    return build(module.CreatePartitionsResponse, throttle_time=NO_THROTTLE, results=tuple(results))


def _check(context: RequestContext, topic_request: Any) -> None:
    """What Broker.add_partitions leaves to the caller: the upper bound (also under
    validate_only) and a manual assignment of the new partitions."""
    topic = context.broker.topics.get(topic_request.name)
    if topic is None:
        raise TopicError("unknown_topic_or_partition", f"topic {topic_request.name!r} does not exist")
    if topic.internal:  # a group's records must always land in the same partition
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"the number of partitions of internal topic {topic.name!r} cannot be changed")
    new_total = topic_request.count
    if new_total <= topic.partitions:
        raise TopicError("invalid_partitions",
                         f"topic {topic.name!r} has {topic.partitions} partitions; the new count "
                         f"{new_total} must be larger")
    if new_total > limits.partitions_per_topic_max:
        raise TopicError("invalid_partitions", f"at most {limits.partitions_per_topic_max} partitions")
    if topic_request.assignments:  # null (and, leniently, empty) means "any broker"
        _check_assignments(context, topic_request.assignments, new_total - topic.partitions,
                           topic.replication_factor)


def _check_assignments(context: RequestContext, assignments: Any, added: int, replication_factor: int) -> None:
    if len(assignments) != added:
        raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                f"{len(assignments)} assignment(s) given for {added} new partition(s)")
    node_id = int(context.broker.node_id)
    for assignment in assignments:
        broker_ids = [int(broker_id) for broker_id in assignment.broker_ids]
        if len(broker_ids) != replication_factor or len(set(broker_ids)) != len(broker_ids):
            raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                    f"each new partition needs {replication_factor} distinct broker(s), "
                                    f"got {broker_ids}")
        if any(broker_id != node_id for broker_id in broker_ids):
            raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                    f"unknown broker in {broker_ids}; the cluster has broker {node_id}")
