"""SyncGroup (14): the leader sends every member's assignment; each member waits until the
assignment is stored, then gets its own part. The coordinator never looks inside
assignments, so any client-side assignor works (range, roundrobin, sticky,
cooperative-sticky). v3 adds group.instance.id, v5 the protocol type and name (checked
against the group's, and echoed back)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.group import SyncResult
from broker.groups.membership import SyncRequest
from broker.groups.wire import coordinator_of, wait_for_callback
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 14
MIN_VERSION = 0
MAX_VERSION = 5


async def handle(context: RequestContext, request: Any) -> Any:
    coordinator = coordinator_of(context)
    if coordinator is None:
        return _response(context, SyncResult(ErrorCode.coordinator_load_in_progress))
    sync = SyncRequest(
        group_id=request.group_id, generation_id=request.generation_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments={item.member_id: bytes(item.assignment) for item in request.assignments})
    result = await wait_for_callback(lambda respond: coordinator.membership.sync_group(sync, respond))
    return _response(context, result)


def _response(context: RequestContext, result: SyncResult) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    return build(response_class, throttle_time=NO_THROTTLE, error_code=ErrorCode(result.error),
                 protocol_type=result.protocol_type, protocol_name=result.protocol_name,
                 assignment=result.assignment)
