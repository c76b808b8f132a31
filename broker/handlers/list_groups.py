"""ListGroups (16): every group this node coordinates (including simple, offset-only
groups, whose protocol type is ""). v4 (KIP-518) filters by state, case-insensitively."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 16
MIN_VERSION = 0
MAX_VERSION = 4


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    coordinator = context.broker.groups
    if coordinator is None:
        error, listings = ErrorCode.coordinator_load_in_progress, []
    else:
        error, listings = coordinator.list_groups(tuple(getattr(request, "states_filter", ())))
    group_class = element_type(response_class, "groups")
    groups = tuple(build(group_class, group_id=listing.group_id, protocol_type=listing.protocol_type,
                         group_state=listing.state)
                   for listing in listings)
    return build(response_class, throttle_time=NO_THROTTLE, error_code=error, groups=groups)
