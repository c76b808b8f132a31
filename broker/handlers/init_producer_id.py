"""InitProducerId (22), v0-v4: producer ids for idempotent producers.

Like Kafka for a null transactional id: every call gets a fresh producer id with epoch 0
(ids are never reused, see broker.producer_state.ProducerIdAllocator). From v3 a client may
send its current producer id and epoch (KIP-360); both must be set or both -1, else
INVALID_REQUEST, and an idempotent producer still gets a fresh id.

A transactional id asks for transactions, which Shoal does not support: UNSUPPORTED_VERSION
(35), the same answer every transaction API gets, which the Java, librdkafka and
kafka-python producers treat as fatal (no endless retries, no misleading "not authorized")."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.controller.controller import ControllerUnavailable
from broker.handlers.context import RequestContext
from broker.protocol.kio_build import NO_THROTTLE, build
from broker.protocol.messages import response_type
from broker.topic_table import TopicError

API_KEY = 22
MIN_VERSION = 0
MAX_VERSION = 4

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    error = _request_error(request)
    if error is not None:
        return build(response_class, throttle_time=NO_THROTTLE, error_code=error,
                     producer_id=NO_PRODUCER_ID, producer_epoch=NO_PRODUCER_EPOCH)
    try:
        producer_id = await context.broker.allocate_producer_id()
    except (ControllerUnavailable, TopicError):  # the controller cannot hand out a block now
        return build(response_class, throttle_time=NO_THROTTLE, error_code=ErrorCode.coordinator_not_available,
                     producer_id=NO_PRODUCER_ID, producer_epoch=NO_PRODUCER_EPOCH)
    return build(response_class, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 producer_id=producer_id, producer_epoch=0)


def _request_error(request: Any) -> ErrorCode | None:
    if request.transactional_id is not None:
        return ErrorCode.unsupported_version
    current_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    current_epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (current_id == NO_PRODUCER_ID) != (current_epoch == NO_PRODUCER_EPOCH):
        return ErrorCode.invalid_request
    return None
