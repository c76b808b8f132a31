"""JoinGroup (11): waits until the group's rebalance completes (or answers at once with an
error, MEMBER_ID_REQUIRED for KIP-394 clients on v4+, or the current generation).

v0 has no rebalance timeout (the session timeout is used, like Kafka); v5 adds
group.instance.id (static membership); v7 adds the protocol type in the response and
makes the protocol name nullable (older versions get "" when there is none)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.group import JoinResult
from broker.groups.membership import JoinRequest
from broker.groups.wire import client_host, coordinator_of, element_type, wait_for_callback
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build, milliseconds
from broker.protocol.messages import response_type

API_KEY = 11
MIN_VERSION = 0
MAX_VERSION = 7

FIRST_VERSION_REQUIRING_MEMBER_ID = 4  # KIP-394


async def handle(context: RequestContext, request: Any) -> Any:
    coordinator = coordinator_of(context)
    if coordinator is None:
        return _response(context, JoinResult(ErrorCode.coordinator_load_in_progress, request.member_id))
    session_timeout_ms = milliseconds(request.session_timeout)
    rebalance_timeout_ms = milliseconds(getattr(request, "rebalance_timeout", request.session_timeout))
    if rebalance_timeout_ms < 0:
        rebalance_timeout_ms = session_timeout_ms
    join = JoinRequest(
        group_id=request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=context.client_id, client_host=client_host(context),
        session_timeout_ms=session_timeout_ms, rebalance_timeout_ms=rebalance_timeout_ms,
        protocol_type=request.protocol_type,
        protocols=tuple((protocol.name, bytes(protocol.metadata)) for protocol in request.protocols),
        require_known_member_id=context.api_version >= FIRST_VERSION_REQUIRING_MEMBER_ID)
    result = await wait_for_callback(lambda respond: coordinator.membership.join_group(join, respond))
    return _response(context, result)


def _response(context: RequestContext, result: JoinResult) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    member_class = element_type(response_class, "members")
    members = tuple(build(member_class, member_id=member.member_id,
                          group_instance_id=member.group_instance_id, metadata=member.metadata)
                    for member in result.members)
    protocol_name = result.protocol_name
    if protocol_name is None and context.api_version < 7:
        protocol_name = ""
    return build(response_class, throttle_time=NO_THROTTLE, error_code=ErrorCode(result.error),
                 generation_id=result.generation_id, protocol_type=result.protocol_type,
                 protocol_name=protocol_name, leader=result.leader_id,
                 member_id=result.member_id, members=members)
