"""DeleteTopics (20): delete topics by name (v1-5) or by name or topic id (v6)."""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.admin_support import NO_THROTTLE, AdminRequestError, build, error_of, response_module
from broker.handlers.context import RequestContext
from broker.topic_table import INTERNAL_TOPICS, TopicError

API_KEY = 20
MIN_VERSION = 1  # kio (Kafka 4 schemas) starts at 1; every client we target sends >= 1
MAX_VERSION = 6

_ZERO_UUID = uuid.UUID(int=0)


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    if context.api_version >= 6:
        targets = [(state.name, state.topic_id) for state in request.topics]
    else:
        targets = [(name, None) for name in request.topic_names]
    results = tuple([await _delete_one(context, module, name, topic_id) for name, topic_id in targets])
    return build(module.DeleteTopicsResponse, throttle_time=NO_THROTTLE, responses=results)


async def _delete_one(context: RequestContext, module: Any, name: str | None, topic_id: uuid.UUID | None) -> Any:
    broker = context.broker
    try:
        name, topic_id = _resolve(context, name, topic_id)
        if name in INTERNAL_TOPICS:
            raise AdminRequestError(ErrorCode.topic_authorization_failed,
                                    f"internal topic {name!r} cannot be deleted")
        await broker.delete_topic(name)
    except (TopicError, AdminRequestError) as error:
        error_code, message = error_of(error)
        return build(module.DeletableTopicResult, name=name, topic_id=topic_id,
                     error_code=error_code, error_message=message)
    return build(module.DeletableTopicResult, name=name, topic_id=topic_id,
                 error_code=ErrorCode.none, error_message=None)


def _resolve(context: RequestContext, name: str | None,
             topic_id: uuid.UUID | None) -> tuple[str, uuid.UUID | None]:
    """(name, id) of the topic to delete; by id when an id is given (v6), else by name."""
    topics = context.broker.topics
    if topic_id is not None and topic_id != _ZERO_UUID:
        topic = topics.by_id(topic_id)
        if topic is None:
            raise AdminRequestError(ErrorCode.unknown_topic_id, f"no topic has id {topic_id}")
        if name is not None and name != topic.name:
            raise AdminRequestError(ErrorCode.invalid_request,
                                    f"topic id {topic_id} belongs to {topic.name!r}, not {name!r}")
        return topic.name, topic.topic_id
    if name is None:
        raise AdminRequestError(ErrorCode.invalid_request, "neither a topic name nor a topic id was given")
    topic = topics.get(name)
    if topic is None:
        raise TopicError("unknown_topic_or_partition", f"topic {name!r} does not exist")
    return topic.name, topic.topic_id
