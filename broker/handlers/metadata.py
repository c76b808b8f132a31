"""Metadata (3): brokers, cluster id, controller, topics with ids, partitions, leaders and
leader epochs; auto-creates requested topics when both the node (auto_create_topics) and
the request (allow_auto_topic_creation, v4+) allow it.

Version notes: v0 treats an empty topic list as "all topics" (v1+ uses null for that);
topic ids from v10 (and lookup by id in v10+ requests); leader epochs from v7; authorized
operations from v8 (cluster-level only in v8-v10)."""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build, nested
from broker.protocol.messages import response_type
from broker.topic_table import Topic, TopicError, check_topic_name

API_KEY = 3
MIN_VERSION = 0
MAX_VERSION = 12

# Kafka's "authorized operations not requested" marker (Integer.MIN_VALUE).
OPERATIONS_NOT_REQUESTED = -(2**31)
# AclOperation codes (Kafka's org.apache.kafka.common.acl.AclOperation). Without ACLs
# every client may do everything Shoal supports.
_READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE = 3, 4, 5, 6, 7, 8
_CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS, _IDEMPOTENT_WRITE = 9, 10, 11, 12
TOPIC_OPERATIONS = sum(1 << operation for operation in (
    _READ, _WRITE, _CREATE, _DELETE, _ALTER, _DESCRIBE, _DESCRIBE_CONFIGS, _ALTER_CONFIGS))
CLUSTER_OPERATIONS = sum(1 << operation for operation in (
    _CREATE, _ALTER, _DESCRIBE, _CLUSTER_ACTION, _DESCRIBE_CONFIGS, _ALTER_CONFIGS, _IDEMPOTENT_WRITE))


async def handle(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    response_class = response_type(API_KEY, version)
    broker = context.broker
    wants_operations = bool(getattr(request, "include_topic_authorized_operations", False))
    topics = [_topic_entry(response_class, broker, outcome, wants_operations)
              for outcome in await _requested_topics(context, request)]
    broker_class = nested(response_class, "MetadataResponseBroker")
    brokers = tuple(build(broker_class, node_id=node_id, host=host, port=port, rack=None)
                    for node_id, host, port in broker.metadata_brokers())
    wants_cluster_operations = bool(getattr(request, "include_cluster_authorized_operations", False))
    return build(
        response_class,
        throttle_time=NO_THROTTLE,
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=broker.controller_id(),
        topics=tuple(topics),
        cluster_authorized_operations=CLUSTER_OPERATIONS if wants_cluster_operations else OPERATIONS_NOT_REQUESTED,
    )


TopicOutcome = tuple[str | None, uuid.UUID | None, Topic | None, ErrorCode]  # name, id, topic, error


async def _requested_topics(context: RequestContext, request: Any) -> list[TopicOutcome]:
    """(name, id, topic or None, error) for every topic the response lists."""
    broker = context.broker
    version = context.api_version
    if request.topics is None or (version == 0 and not request.topics):
        return [(topic.name, topic.topic_id, topic, ErrorCode.none) for topic in broker.topics.topics()]
    allow_auto_create = getattr(request, "allow_auto_topic_creation", True)
    outcomes = []
    seen: set[str] = set()
    for requested in request.topics:
        name = requested.name
        topic_id = getattr(requested, "topic_id", None)
        if name is None:
            outcomes.append(_topic_by_id(broker, topic_id))
            continue
        if name in seen:
            continue
        seen.add(name)
        outcomes.append(await _topic_by_name(broker, name, allow_auto_create))
    return outcomes


def _topic_by_id(broker: Any, topic_id: uuid.UUID | None) -> TopicOutcome:
    topic = broker.topics.by_id(topic_id) if topic_id is not None else None
    if topic is None:
        return (None, topic_id, None, ErrorCode.unknown_topic_id)
    return (topic.name, topic.topic_id, topic, ErrorCode.none)


async def _topic_by_name(broker: Any, name: str, allow_auto_create: bool) -> TopicOutcome:
    topic = broker.topics.get(name)
    if topic is not None:
        return (name, topic.topic_id, topic, ErrorCode.none)
    try:
        check_topic_name(name)
    except TopicError:
        return (name, None, None, ErrorCode.invalid_topic_exception)
    if not (broker.config.auto_create_topics and allow_auto_create):
        return (name, None, None, ErrorCode.unknown_topic_or_partition)
    try:
        topic = await broker.create_topic(name, -1, -1, {})
    except TopicError as error:
        topic = broker.topics.get(name)
        if error.error_name == "topic_already_exists" and topic is not None:  # created meanwhile
            return (name, topic.topic_id, topic, ErrorCode.none)
        if error.error_name in ("not_controller", "request_timed_out"):
            return (name, None, None, ErrorCode.leader_not_available)  # clients retry
        return (name, None, None, ErrorCode[error.error_name])
    return (name, topic.topic_id, topic, ErrorCode.none)


def _topic_entry(response_class: type, broker: Any, outcome: TopicOutcome, wants_operations: bool) -> Any:
    name, topic_id, topic, error = outcome
    topic_class = nested(response_class, "MetadataResponseTopic")
    partitions = () if topic is None else tuple(
        _partition_entry(response_class, broker, topic, index) for index in range(topic.partitions))
    return build(
        topic_class,
        error_code=error,
        name=name,
        topic_id=topic_id,
        is_internal=topic.internal if topic is not None else False,
        partitions=partitions,
        topic_authorized_operations=TOPIC_OPERATIONS if wants_operations and topic is not None
        else OPERATIONS_NOT_REQUESTED,
    )


def _partition_entry(response_class: type, broker: Any, topic: Topic, index: int) -> Any:
    partition_class = nested(response_class, "MetadataResponsePartition")
    leader, leader_epoch, replicas, in_sync, offline = broker.partition_metadata(topic, index)
    return build(
        partition_class,
        error_code=ErrorCode.none if leader >= 0 else ErrorCode.leader_not_available,
        partition_index=index,
        leader_id=leader,
        leader_epoch=leader_epoch,
        replica_nodes=tuple(replicas),
        isr_nodes=tuple(in_sync),
        offline_replicas=tuple(offline),
    )
