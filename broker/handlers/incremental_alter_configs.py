"""IncrementalAlterConfigs (44): SET, DELETE, APPEND and SUBTRACT on a topic's explicit
configs. APPEND/SUBTRACT apply only to list-type configs (cleanup.policy); elsewhere they
get INVALID_CONFIG, as in Kafka. Broker configs are static and refused with INVALID_REQUEST."""

from __future__ import annotations

from typing import Any, Callable

from kio.schema.errors import ErrorCode

from broker.handlers.admin_support import AdminRequestError, alter_configs_response, response_module
from broker.handlers.context import RequestContext
from broker.topic_config import (
    DEFINITIONS, InvalidTopicConfig, canonical_name, effective_values, is_list_config, split_list_value)
from broker.topic_table import Topic

API_KEY = 44
MIN_VERSION = 0
MAX_VERSION = 1

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)

    def merged_for(resource: Any) -> Callable[[Topic], dict[str, str]]:
        return lambda topic: merged_configs(context, topic, resource.configs)

    return await alter_configs_response(module, "IncrementalAlterConfigsResponse", context, request, merged_for)


def merged_configs(context: RequestContext, topic: Topic, entries: Any) -> dict[str, str]:
    """The topic's explicit configs after applying every operation in order."""
    configs = dict(topic.configs)
    for entry in entries:
        name = canonical_name(entry.name)
        if name not in DEFINITIONS:
            raise InvalidTopicConfig(f"unknown topic config {entry.name!r}")
        operation = int(entry.config_operation)
        if operation == DELETE:
            configs.pop(name, None)
            continue
        if entry.value is None:
            raise AdminRequestError(ErrorCode.invalid_request, f"{entry.name}: a value is required")
        if operation == SET:
            configs[name] = entry.value
        elif operation in (APPEND, SUBTRACT):
            configs[name] = _list_operation(context, topic, configs, entry, name, operation)
        else:
            raise AdminRequestError(ErrorCode.invalid_request,
                                    f"{entry.name}: unknown config operation {operation} "
                                    f"(SET=0, DELETE=1, APPEND=2, SUBTRACT=3)")
    return configs


def _list_operation(context: RequestContext, topic: Topic, configs: dict[str, str], entry: Any,
                    name: str, operation: int) -> str:
    verb = "append" if operation == APPEND else "subtract"
    if not is_list_config(name):
        raise InvalidTopicConfig(f"config value {verb} is not allowed for config key {entry.name!r}: "
                                 f"it is not a list")
    current = split_list_value(effective_values(context.broker.config, topic.name, configs)[name])
    items = split_list_value(entry.value)
    if operation == APPEND:
        result = current + [item for item in items if item not in current]
    else:
        result = [item for item in current if item not in items]
    return ",".join(result)
