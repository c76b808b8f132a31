"""Shared by the admin API handlers (create/delete topics, partitions, configs, cluster,
log dirs): building a response entity of the request's version, mapping the topic
lifecycle's exceptions to Kafka error codes, and config descriptions to kio entities.

Not a handler itself (no API_KEY); registry.py does not list it.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from types import ModuleType
from typing import Any, Iterable

from kio.index import UnknownEntity, load_response_schema
from kio.schema.errors import ErrorCode

from broker.invariant import invariant
from broker.protocol import kio_build
from broker.protocol.kio_build import NO_THROTTLE  # noqa: F401 (re-exported for the admin handlers)
from broker.topic_config import ConfigDescription, InvalidTopicConfig
from broker.topic_table import TopicError

# Kafka's ConfigResource types (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4


class AdminRequestError(Exception):
    """A per-entry failure of an admin request: a Kafka error code and a message."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


def response_module(api_key: int, api_version: int) -> ModuleType:
    """The kio module holding the response class and its nested entity classes."""
    return sys.modules[load_response_schema(api_key, api_version).__module__]


# Above every version kio knows of any API (Kafka's highest is below 20).
_VERSIONS_SCANNED = 32


@functools.cache
def _field_names_of_any_version(api_key: int, entity_name: str) -> frozenset[str]:
    """Field names the entity has in at least one response version of the API."""
    names: set[str] = set()
    for version in range(_VERSIONS_SCANNED):
        try:
            module = response_module(api_key, version)
        except UnknownEntity:  # kio has no such version
            continue
        entity = getattr(module, entity_name, None)
        if entity is not None:
            names.update(field.name for field in dataclasses.fields(entity))
    return frozenset(names)


def build(entity_class: type, **values: Any) -> Any:
    """An entity of this version from values named for the newest version: fields the
    version lacks are dropped (e.g. topic_id before CreateTopics v7). A name no version
    of the entity has is a bug, caught here rather than silently dropped."""
    known = _field_names_of_any_version(int(entity_class.__api_key__), entity_class.__name__)
    unknown = set(values) - known
    invariant(not unknown, "fields unknown to every version", entity_class.__name__, sorted(unknown))
    return kio_build.build(entity_class, **values)


def error_of(exception: Exception) -> tuple[ErrorCode, str]:
    """Kafka error code and message for what the topic lifecycle raises."""
    if isinstance(exception, AdminRequestError):
        return exception.error_code, str(exception)
    if isinstance(exception, TopicError):
        return ErrorCode[exception.error_name], str(exception)
    if isinstance(exception, InvalidTopicConfig):
        return ErrorCode.invalid_config, str(exception)
    raise exception


def describe_entries(entity_class: type, synonym_class: type | None, descriptions: Iterable[ConfigDescription],
                     *, include_synonyms: bool, include_documentation: bool) -> tuple[Any, ...]:
    """Config descriptions as DescribeConfigs / CreateTopics v5+ entries of one version."""
    entries = []
    for description in descriptions:
        values: dict[str, Any] = dict(
            name=description.name,
            value=None if description.sensitive else description.value,
            read_only=description.read_only,
            config_source=int(description.source),
            is_sensitive=description.sensitive,
        )
        if synonym_class is not None:
            values["synonyms"] = tuple(
                synonym_class(name=synonym.name, value=synonym.value, source=int(synonym.source))
                for synonym in description.synonyms) if include_synonyms else ()
            values["config_type"] = int(description.config_type)
            values["documentation"] = description.documentation if include_documentation else None
        entries.append(build(entity_class, **values))
    return tuple(entries)


def duplicates(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for name in names:
        (repeated if name in seen else seen).add(name)
    return repeated


# ---------------------------------------------------------------------------------------
# AlterConfigs / IncrementalAlterConfigs: one resource at a time


async def alter_resource(context: Any, resource: Any, new_topic_configs: Any, validate_only: bool) -> None:
    """Apply one resource of an (Incremental)AlterConfigs request. `new_topic_configs(topic)`
    returns the topic's complete new explicit config set. Raises what error_of() maps."""
    entry_names = [entry.name for entry in resource.configs]
    repeated = duplicates(entry_names)
    if repeated:
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"config key(s) given more than once: {', '.join(sorted(repeated))}")
    if resource.resource_type == RESOURCE_BROKER:
        _refuse_broker_changes(context, resource)
        return
    if resource.resource_type != RESOURCE_TOPIC:
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"resource type {resource.resource_type} is not supported by Shoal "
                                f"(topics: 2, brokers: 4)")
    topic = context.broker.topics.get(resource.resource_name)
    if topic is None:
        raise TopicError("unknown_topic_or_partition", f"topic {resource.resource_name!r} does not exist")
    if topic.internal:
        # Shoal's own choice (Kafka allows it): retention or cleanup.policy there would
        # delete or strand the group coordinator's committed offsets.
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"the configs of internal topic {topic.name!r} are managed by Shoal and "
                                f"cannot be changed")
    await context.broker.set_topic_configs(topic.name, new_topic_configs(topic), validate_only=validate_only)


def _refuse_broker_changes(context: Any, resource: Any) -> None:
    if resource.resource_name not in ("", str(context.broker.node_id)):
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"unexpected broker id {resource.resource_name!r}: this is broker "
                                f"{context.broker.node_id}")
    if resource.configs:
        names = ", ".join(entry.name for entry in resource.configs)
        raise AdminRequestError(ErrorCode.invalid_request,
                                f"cannot update broker configs dynamically ({names}): Shoal's broker "
                                f"configs come from the node config file; see docs/configuration.md")


async def alter_configs_response(module: ModuleType, response_class_name: str, context: Any, request: Any,
                                 new_topic_configs_for: Any) -> Any:
    """The whole (Incremental)AlterConfigs flow: every resource altered (or validated) in
    request order, each with its own error. `new_topic_configs_for(resource)` returns the
    function alter_resource() needs."""
    repeated = duplicates(f"{resource.resource_type}/{resource.resource_name}" for resource in request.resources)
    responses = []
    for resource in request.resources:
        error_code, message = ErrorCode.none, None
        try:
            if f"{resource.resource_type}/{resource.resource_name}" in repeated:
                raise AdminRequestError(ErrorCode.invalid_request,
                                        f"resource {resource.resource_name!r} appears more than once")
            await alter_resource(context, resource, new_topic_configs_for(resource), request.validate_only)
        except (TopicError, InvalidTopicConfig, AdminRequestError) as error:
            error_code, message = error_of(error)
        responses.append(build(module.AlterConfigsResourceResponse, error_code=error_code,
                               error_message=message, resource_type=resource.resource_type,
                               resource_name=resource.resource_name))
    return build(getattr(module, response_class_name), throttle_time=NO_THROTTLE, responses=tuple(responses))


def advertised_address(broker: Any) -> tuple[str, int]:
    """Host and port clients should use; port 0 in the config means the port bound at start."""
    advertise = broker.config.kafka_advertise
    return advertise.host, advertise.port or int(broker.kafka_port or 0)
