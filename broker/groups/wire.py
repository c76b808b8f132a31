"""Small helpers the group API handlers share: reaching the coordinator, turning the
coordinator's callbacks into awaitables, kio field conversions."""

from __future__ import annotations

import asyncio
import typing
from typing import Any, Callable, TypeVar

from broker.groups.coordinator import GroupCoordinator
from broker.protocol.kio_build import build

Result = TypeVar("Result")


def coordinator_of(context: Any) -> GroupCoordinator | None:
    """The node's coordinator once it has loaded __consumer_offsets, else None."""
    coordinator = context.broker.groups
    if coordinator is None or not coordinator.loaded:
        return None
    return coordinator


async def wait_for_callback(start: Callable[[Callable[[Result], None]], None]) -> Result:
    """Run `start(respond)` and wait until the coordinator calls respond(result) once."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()

    def respond(result: Result) -> None:
        if not future.done():
            future.set_result(result)

    start(respond)
    return await future


def client_host(context: Any) -> str:
    """Kafka's member client_host: '/' + the peer's address."""
    peer = context.connection.peer
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return "/" + host.strip("[]")


def element_type(entity_type: type, field_name: str) -> type:
    """The entity class of the elements of a tuple field (kio nests one class per version)."""
    hints = typing.get_type_hints(entity_type)
    for argument in typing.get_args(hints[field_name]):
        if isinstance(argument, type) and hasattr(argument, "__dataclass_fields__"):
            return argument
        for inner in typing.get_args(argument):
            if isinstance(inner, type) and hasattr(inner, "__dataclass_fields__"):
                return inner
    raise TypeError(f"{entity_type.__name__}.{field_name} holds no entities")


def partition_error_topics(response_class: type, request_topics: Any, errors: dict[tuple[str, int], Any]) -> tuple:
    """The response's `topics`: each requested topic and partition with its error code from
    `errors` (keyed by (topic, partition)), in request order (OffsetCommit, OffsetDelete)."""
    topic_class = element_type(response_class, "topics")
    partition_class = element_type(topic_class, "partitions")
    return tuple(
        build(topic_class, name=topic.name, partitions=tuple(
            build(partition_class, partition_index=partition.partition_index,
                  error_code=errors[(topic.name, partition.partition_index)])
            for partition in topic.partitions))
        for topic in request_topics)
