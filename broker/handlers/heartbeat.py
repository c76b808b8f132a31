"""Heartbeat (12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.
v3 adds group.instance.id (FENCED_INSTANCE_ID when another member holds it)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 12
MIN_VERSION = 0
MAX_VERSION = 4


async def handle(context: RequestContext, request: Any) -> Any:
    coordinator = coordinator_of(context)
    if coordinator is None:
        error = ErrorCode.coordinator_load_in_progress
    else:
        error = coordinator.membership.heartbeat(request.group_id, request.member_id,
                                                 getattr(request, "group_instance_id", None),
                                                 request.generation_id)
    return build(response_type(API_KEY, context.api_version), throttle_time=NO_THROTTLE, error_code=error)
