"""DescribeGroups (15): state, protocol and members of groups. Member metadata and
assignments are filled only in state Stable (like Kafka); an unknown group is described
as Dead with no error. v3 adds authorized operations (without ACLs: everything Shoal
supports on a group), v4 group.instance.id."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import GroupDescription
from broker.groups.wire import element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 15
MIN_VERSION = 0
MAX_VERSION = 5

OPERATIONS_NOT_REQUESTED = -(2**31)  # Kafka's Integer.MIN_VALUE marker
_READ, _DELETE, _DESCRIBE = 3, 6, 8  # Kafka AclOperation codes valid on a group
GROUP_OPERATIONS = (1 << _READ) | (1 << _DELETE) | (1 << _DESCRIBE)


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    group_class = element_type(response_class, "groups")
    operations = (GROUP_OPERATIONS if getattr(request, "include_authorized_operations", False)
                  else OPERATIONS_NOT_REQUESTED)
    groups = tuple(_group_entry(group_class, _describe(context, group_id), operations)
                   for group_id in request.groups)
    return build(response_class, throttle_time=NO_THROTTLE, groups=groups)


def _describe(context: RequestContext, group_id: str) -> GroupDescription:
    coordinator = context.broker.groups
    if coordinator is None:
        return GroupDescription(ErrorCode.coordinator_load_in_progress, group_id, "", "", "", ())
    return coordinator.describe_group(group_id)


def _group_entry(group_class: type, description: GroupDescription, operations: int) -> Any:
    member_class = element_type(group_class, "members")
    members = tuple(build(member_class, member_id=member.member_id,
                          group_instance_id=member.group_instance_id, client_id=member.client_id,
                          client_host=member.client_host, member_metadata=member.metadata,
                          member_assignment=member.assignment)
                    for member in description.members)
    return build(group_class, error_code=description.error, group_id=description.group_id,
                 group_state=description.state, protocol_type=description.protocol_type,
                 protocol_data=description.protocol_name, members=members,
                 authorized_operations=operations)
