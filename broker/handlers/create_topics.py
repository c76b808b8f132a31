"""CreateTopics (19): create topics through Broker.create_topic.

-1 partitions / replication factor take the node defaults (KIP-464; Kafka's broker accepts
-1 at every version, its clients send it from v4). v5+ responses carry the created topic's
partition count, replication factor and every config with its source; v7 the topic id.
A topic created with `shoal.remote.recovery=true` is restored from the bucket by tiered
storage.
"""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from broker import limits
from broker.handlers.admin_support import (
    NO_THROTTLE, AdminRequestError, build, describe_entries, duplicates, error_of, response_module)
from broker.handlers.context import RequestContext
from broker.topic_config import InvalidTopicConfig, canonical_name, describe_topic_configs
from broker.topic_table import INTERNAL_TOPICS, Topic, TopicError

log = logging.getLogger("shoal.admin")

API_KEY = 19
MIN_VERSION = 2  # kio (Kafka 4 schemas) starts at 2; every client we target sends >= 2
MAX_VERSION = 7

_DEFAULT = -1  # "use the node's default" for partitions / replication factor


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    repeated = duplicates(topic.name for topic in request.topics)
    results = []
    for topic_request in request.topics:
        if topic_request.name in repeated:
            error = AdminRequestError(ErrorCode.invalid_request,
                                      f"topic {topic_request.name!r} appears more than once in the request")
            results.append(_failure(module, topic_request.name, error))
            continue
        results.append(await _create_one(context, module, topic_request, request.validate_only))
    return build(module.CreateTopicsResponse, throttle_time=NO_THROTTLE, topics=tuple(results))


async def _create_one(context: RequestContext, module: Any, topic_request: Any, validate_only: bool) -> Any:
    broker = context.broker
    try:
        partitions, replication_factor = _partitions_and_replication(context, topic_request)
        configs = {entry.name: entry.value for entry in topic_request.configs}
        recovery = _recovery_requested(context, configs)
        if recovery and partitions == _DEFAULT:
            partitions = await _partitions_in_bucket(broker, topic_request.name)
        topic = await broker.create_topic(topic_request.name, partitions, replication_factor, configs,
                                          validate_only=validate_only)
    except (TopicError, InvalidTopicConfig, AdminRequestError) as error:
        return _failure(module, topic_request.name, error)
    if recovery and not validate_only:
        # --- TIERED RECOVERY CALL SITE -----------------------------------------------------
        # tiered/ restores the topic's history from the bucket into the new, empty and open
        # partition logs. _recovery_requested() has already refused the request when tiered
        # is None (no cloud_storage).
        if broker.tiered is not None:
            try:
                await broker.topic_logs_ready(topic.name)
                await broker.tiered.recover_topic(topic)
            except Exception as error:  # the bucket failed us; the topic exists without its history
                log.exception("recovery of topic %r from the bucket failed", topic.name)
                return _failure(module, topic.name, AdminRequestError(
                    ErrorCode.unknown_server_error,
                    f"topic {topic.name!r} was created but its recovery from the bucket failed "
                    f"({error}); delete it and create it again to retry"))
        # ------------------------------------------------------------------------------------
    return _success(context, module, topic, validate_only)


async def _partitions_in_bucket(broker: Any, name: str) -> int:
    """A recovered topic created with -1 partitions gets the count its manifest in the
    bucket records (as Redpanda does); the node default when the bucket has none."""
    try:
        count = await broker.tiered.remote_partition_count(name)
    except Exception as error:
        raise AdminRequestError(ErrorCode.unknown_server_error,
                                f"cannot read the partition count of {name!r} from the bucket: {error}") from error
    return count if count else _DEFAULT


def _partitions_and_replication(context: RequestContext, topic_request: Any) -> tuple[int, int]:
    """Partition count and replication factor, from the counts or a manual assignment.
    Raises AdminRequestError / TopicError with Kafka's codes."""
    partitions = topic_request.num_partitions
    replication_factor = topic_request.replication_factor
    if topic_request.name in INTERNAL_TOPICS:
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"creation of internal topic {topic_request.name!r} is prohibited")
    if topic_request.assignments:
        if partitions != _DEFAULT or replication_factor != _DEFAULT:
            raise AdminRequestError(
                ErrorCode.invalid_request,
                "both num_partitions/replication_factor and a manual replica assignment were given; "
                "use one or the other")
        return _from_assignment(context, topic_request.assignments)
    if partitions != _DEFAULT and not 1 <= partitions <= limits.partitions_per_topic_max:
        raise TopicError("invalid_partitions",
                         f"partitions must be 1..{limits.partitions_per_topic_max} (or -1 for the node "
                         f"default), got {partitions}")
    if replication_factor != _DEFAULT and replication_factor < 1:
        raise TopicError("invalid_replication_factor",
                         f"replication factor must be >= 1 (or -1 for the node default), got {replication_factor}")
    return partitions, replication_factor


def _from_assignment(context: RequestContext, assignments: Any) -> tuple[int, int]:
    indexes = sorted(assignment.partition_index for assignment in assignments)
    if indexes != list(range(len(indexes))):
        raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                f"partition indexes must be 0..{len(indexes) - 1} without gaps, got {indexes}")
    if len(indexes) > limits.partitions_per_topic_max:
        raise TopicError("invalid_partitions", f"at most {limits.partitions_per_topic_max} partitions")
    replica_counts = {len(assignment.broker_ids) for assignment in assignments}
    if len(replica_counts) != 1 or 0 in replica_counts:
        raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                "every partition must list the same, non-zero number of replicas")
    node_id = int(context.broker.node_id)
    for assignment in assignments:
        broker_ids = [int(broker_id) for broker_id in assignment.broker_ids]
        if len(set(broker_ids)) != len(broker_ids):
            raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                    f"partition {assignment.partition_index} lists a broker twice: {broker_ids}")
        unknown = [broker_id for broker_id in broker_ids if broker_id != node_id]
        if unknown:
            raise AdminRequestError(ErrorCode.invalid_replica_assignment,
                                    f"partition {assignment.partition_index} names unknown broker(s) {unknown}; "
                                    f"the cluster has broker {node_id}")
    return len(indexes), replica_counts.pop()


def _recovery_requested(context: RequestContext, configs: dict[str, str | None]) -> bool:
    requested = any(canonical_name(name) == "shoal.remote.recovery" and str(value).lower() == "true"
                    for name, value in configs.items())
    if requested and context.broker.tiered is None:
        raise InvalidTopicConfig(
            "shoal.remote.recovery=true needs tiered storage, which is not running on this node "
            "(is cloud_storage configured?)")
    return requested


def _success(context: RequestContext, module: Any, topic: Topic, validate_only: bool) -> Any:
    version = context.api_version
    configs = None
    if version >= 5:
        descriptions = describe_topic_configs(context.broker.config, topic.name, topic.configs)
        configs = describe_entries(module.CreatableTopicConfigs, None, descriptions,
                                   include_synonyms=False, include_documentation=False)
    return build(
        module.CreatableTopicResult,
        name=topic.name,
        topic_id=None if validate_only else topic.topic_id,
        error_code=ErrorCode.none,
        error_message=None,
        num_partitions=topic.partitions,
        replication_factor=topic.replication_factor,
        configs=configs,
    )


def _failure(module: Any, name: str, error: Exception) -> Any:
    error_code, message = error_of(error)
    return build(
        module.CreatableTopicResult,
        name=name,
        topic_id=None,
        error_code=error_code,
        error_message=message,
        num_partitions=-1,
        replication_factor=-1,
        configs=None,
    )
