"""AlterConfigs (33), the legacy whole-set alter: a topic's explicit configs become exactly
the ones in the request (an omitted config returns to its default), as in Kafka.
Broker configs are static in Shoal and refused with INVALID_REQUEST."""

from __future__ import annotations

from typing import Any, Callable

from broker.handlers.admin_support import alter_configs_response, response_module
from broker.handlers.context import RequestContext
from broker.topic_table import Topic

API_KEY = 33
MIN_VERSION = 0
MAX_VERSION = 2


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    return await alter_configs_response(module, "AlterConfigsResponse", context, request, _replacement_for)


def _replacement_for(resource: Any) -> Callable[[Topic], dict[str, str]]:
    def replacement(topic: Topic) -> dict[str, str]:
        # A null value means "not set": the config returns to its default.
        return {entry.name: entry.value for entry in resource.configs if entry.value is not None}
    return replacement
