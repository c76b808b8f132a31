"""DeleteGroups (42): remove empty groups and their committed offsets (tombstones in
__consumer_offsets). NON_EMPTY_GROUP while a group has members, GROUP_ID_NOT_FOUND for
unknown groups."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of, element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 42
MIN_VERSION = 0
MAX_VERSION = 2


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    result_class = element_type(response_class, "results")
    group_ids = list(dict.fromkeys(request.groups_names))
    coordinator = coordinator_of(context)
    if coordinator is None:
        errors = {group_id: ErrorCode.coordinator_load_in_progress for group_id in group_ids}
    else:
        errors = await coordinator.delete_groups(group_ids)
    results = tuple(build(result_class, group_id=group_id, error_code=errors[group_id]) for group_id in group_ids)
    return build(response_class, throttle_time=NO_THROTTLE, results=results)
