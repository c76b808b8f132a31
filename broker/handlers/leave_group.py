"""LeaveGroup (13): members leave (v0-2: one member id; v3+: a batch of members, each by
member id or, for KIP-345 admin removal, by group.instance.id alone). For v0-2 the single
member's error becomes the top-level error, like Kafka."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of, element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 13
MIN_VERSION = 0
MAX_VERSION = 5

FIRST_BATCH_VERSION = 3


async def handle(context: RequestContext, request: Any) -> Any:
    batched = context.api_version >= FIRST_BATCH_VERSION
    leaving = ([(member.member_id, member.group_instance_id) for member in request.members]
               if batched else [(request.member_id, None)])
    coordinator = coordinator_of(context)
    if coordinator is None:
        group_error, member_errors = ErrorCode.coordinator_load_in_progress, []
    else:
        group_error, member_errors = coordinator.membership.leave_group(request.group_id, leaving)
    response_class = response_type(API_KEY, context.api_version)
    if not batched:
        if group_error == ErrorCode.none and member_errors:
            group_error = member_errors[0]
        return build(response_class, throttle_time=NO_THROTTLE, error_code=group_error)
    member_class = element_type(response_class, "members")
    members = tuple(build(member_class, member_id=member_id, group_instance_id=instance_id, error_code=error)
                    for (member_id, instance_id), error in zip(leaving, member_errors))
    return build(response_class, throttle_time=NO_THROTTLE, error_code=group_error, members=members)
