"""DescribeConfigs (32): topic configs (explicit, node or default, with sources and
synonyms) and the node's broker configs (read-only, see broker/broker_configs.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from kio.schema.errors import ErrorCode

from broker.broker_configs import describe_broker_configs
from broker.handlers.admin_support import (
    NO_THROTTLE, RESOURCE_BROKER, RESOURCE_TOPIC, AdminRequestError, build, describe_entries, error_of,
    response_module)
from broker.handlers.context import RequestContext
from broker.topic_config import ConfigDescription, canonical_name, describe_topic_configs
from broker.topic_table import TopicError

API_KEY = 32
MIN_VERSION = 1  # kio (Kafka 4 schemas) starts at 1; librdkafka sends 1, newer clients more
MAX_VERSION = 4


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    include_documentation = bool(getattr(request, "include_documentation", False))
    results = []
    for resource in request.resources:
        try:
            descriptions = _describe(context, resource)
        except (TopicError, AdminRequestError) as error:
            error_code, message = error_of(error)
            results.append(build(module.DescribeConfigsResult, error_code=error_code, error_message=message,
                                 resource_type=resource.resource_type, resource_name=resource.resource_name,
                                 configs=()))
            continue
        configs = describe_entries(module.DescribeConfigsResourceResult, module.DescribeConfigsSynonym,
                                   descriptions, include_synonyms=request.include_synonyms,
                                   include_documentation=include_documentation)
        results.append(build(module.DescribeConfigsResult, error_code=ErrorCode.none, error_message=None,
                             resource_type=resource.resource_type, resource_name=resource.resource_name,
                             configs=configs))
    return build(module.DescribeConfigsResponse, throttle_time=NO_THROTTLE, results=tuple(results))


def _describe(context: RequestContext, resource: Any) -> list[ConfigDescription]:
    if resource.resource_type == RESOURCE_TOPIC:
        descriptions = _topic_configs(context, resource.resource_name)
    elif resource.resource_type == RESOURCE_BROKER:
        descriptions = _broker_configs(context, resource.resource_name)
    else:
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"resource type {resource.resource_type} is not supported by Shoal "
                                f"(topics: 2, brokers: 4)")
    return _only_requested(descriptions, resource.configuration_keys)


def _topic_configs(context: RequestContext, name: str) -> list[ConfigDescription]:
    topic = context.broker.topics.get(name)
    if topic is None:
        raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
    return describe_topic_configs(context.broker.config, topic.name, topic.configs)


def _broker_configs(context: RequestContext, name: str) -> list[ConfigDescription]:
    if name == "":
        return []  # cluster-wide dynamic defaults: Shoal has none
    if name != str(context.broker.node_id):
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"unexpected broker id {name!r}: this is broker {context.broker.node_id}")
    return describe_broker_configs(context.broker.config, admin_port=context.broker.admin_port)


def _only_requested(descriptions: list[ConfigDescription], keys: Any) -> list[ConfigDescription]:
    """All configs when keys is null or empty (as Kafka); else those named (a Redpanda alias
    answers under the name it was asked by); unknown names are left out, as Kafka does."""
    if not keys:
        return descriptions
    by_name = {description.name: description for description in descriptions}
    selected = []
    for key in keys:
        description = by_name.get(key) or by_name.get(canonical_name(key))
        if description is not None:
            selected.append(description if description.name == key else _renamed(description, key))
    return selected


def _renamed(description: ConfigDescription, name: str) -> ConfigDescription:
    return dataclasses.replace(description, name=name)
