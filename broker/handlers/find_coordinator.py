"""FindCoordinator (10): this node coordinates every group (single node).

v4 (KIP-699) batches keys: one answer per coordinator key. While the coordinator is still
replaying __consumer_offsets, group keys get COORDINATOR_NOT_AVAILABLE (clients retry).
Transaction keys are answered with this node too, so a transactional producer meets
InitProducerId's answer about transactions instead of retrying this lookup forever."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.wire import coordinator_of, element_type
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type

API_KEY = 10
MIN_VERSION = 0
MAX_VERSION = 4

GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    key_type = int(getattr(request, "key_type", GROUP_KEY_TYPE))
    if context.api_version >= 4:
        coordinator_class = element_type(response_class, "coordinators")
        coordinators = tuple(build(coordinator_class, **_lookup(context, key, key_type))
                             for key in request.coordinator_keys)
        return build(response_class, throttle_time=NO_THROTTLE, coordinators=coordinators)
    return build(response_class, throttle_time=NO_THROTTLE, **_lookup(context, request.key, key_type))


def _lookup(context: RequestContext, key: str, key_type: int) -> dict[str, Any]:
    broker = context.broker
    if key_type not in (GROUP_KEY_TYPE, TRANSACTION_KEY_TYPE):
        return _failure(key, ErrorCode.invalid_request, f"unknown coordinator key type {key_type}")
    if key_type == GROUP_KEY_TYPE and coordinator_of(context) is None:
        return _failure(key, ErrorCode.coordinator_not_available, "the group coordinator is loading")
    advertise = broker.config.kafka_advertise
    return dict(key=key, error_code=ErrorCode.none, error_message=None,
                node_id=broker.node_id, host=advertise.host, port=advertise.port)


def _failure(key: str, error: ErrorCode, message: str) -> dict[str, Any]:
    return dict(key=key, error_code=error, error_message=message, node_id=-1, host="", port=-1)
