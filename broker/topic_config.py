"""Topic configs: the Kafka names Shoal understands, their defaults, validation, the
Redpanda aliases of the tiered-storage names, and resolution into a PartitionLogConfig.

Explicit per-topic values are stored as strings exactly as Kafka admin clients send them;
everything else comes from the node config (tier) or Kafka's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from broker import limits
from broker.config import NodeConfig, TierConfig
from broker.storage.api import PartitionLogConfig


class InvalidTopicConfig(ValueError):
    """Maps to Kafka INVALID_CONFIG (40); str() is the message sent to the client."""


def _long(minimum: int) -> Callable[[str, str], str]:
    def check(name: str, value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            raise InvalidTopicConfig(f"{name}={value!r}: expected an integer") from None
        if number < minimum:
            raise InvalidTopicConfig(f"{name}={value!r}: expected an integer >= {minimum}")
        return str(number)
    return check


def _choice(*choices: str) -> Callable[[str, str], str]:
    def check(name: str, value: str) -> str:
        if value not in choices:
            raise InvalidTopicConfig(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value
    return check


def _boolean(name: str, value: str) -> str:
    if value.lower() not in ("true", "false"):
        raise InvalidTopicConfig(f"{name}={value!r}: expected true or false")
    return value.lower()


def _cleanup_policy(name: str, value: str) -> str:
    policies = {part.strip() for part in value.split(",") if part.strip()}
    if "compact" in policies:
        raise InvalidTopicConfig(
            f"{name}={value!r}: log compaction is not supported by Shoal yet; use 'delete'")
    if policies != {"delete"}:
        raise InvalidTopicConfig(f"{name}={value!r}: expected 'delete'")
    return "delete"


def _tier_name(name: str, value: str) -> str:
    return value  # checked against the node's tiers in validate_topic_configs


@dataclass(frozen=True)
class ConfigDefinition:
    name: str
    validate: Callable[[str, str], str]
    read_only: bool = False
    sensitive: bool = False
    documentation: str = ""


DEFINITIONS: dict[str, ConfigDefinition] = {
    definition.name: definition
    for definition in (
        ConfigDefinition("cleanup.policy", _cleanup_policy, documentation="only 'delete' (compaction not yet supported)"),
        ConfigDefinition("retention.ms", _long(-1)),
        ConfigDefinition("retention.bytes", _long(-1)),
        ConfigDefinition("segment.bytes", _long(limits.segment_bytes_min)),
        ConfigDefinition("segment.ms", _long(1)),
        ConfigDefinition("max.message.bytes", _long(0)),
        ConfigDefinition("message.timestamp.type", _choice("CreateTime", "LogAppendTime")),
        ConfigDefinition("compression.type", _choice("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd")),
        ConfigDefinition("min.insync.replicas", _long(1)),
        ConfigDefinition("message.timestamp.difference.max.ms", _long(0)),
        ConfigDefinition("remote.storage.enable", _boolean),
        ConfigDefinition("local.retention.bytes", _long(-2)),
        ConfigDefinition("local.retention.ms", _long(-2)),
        ConfigDefinition("shoal.remote.recovery", _boolean),
        ConfigDefinition("shoal.tier", _tier_name),
    )
}

# Redpanda names accepted on input and stored under the Shoal/KIP-405 name.
ALIASES: dict[str, str] = {
    "retention.local.target.bytes": "local.retention.bytes",
    "retention.local.target.ms": "local.retention.ms",
    "redpanda.remote.recovery": "shoal.remote.recovery",
    "redpanda.remote.write": "remote.storage.enable",
    "redpanda.remote.read": "remote.storage.enable",
}


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def validate_topic_configs(configs: Mapping[str, str | None], node: NodeConfig) -> dict[str, str]:
    """Canonical, validated explicit configs. Raises InvalidTopicConfig naming the key."""
    result: dict[str, str] = {}
    for raw_name, raw_value in configs.items():
        name = canonical_name(raw_name)
        definition = DEFINITIONS.get(name)
        if definition is None:
            raise InvalidTopicConfig(f"unknown topic config {raw_name!r}")
        if raw_value is None:
            raise InvalidTopicConfig(f"{raw_name}: a value is required")
        value = definition.validate(raw_name, str(raw_value))
        if name == "shoal.tier" and value not in node.tiers:
            raise InvalidTopicConfig(
                f"shoal.tier={value!r}: expected one of the node's tiers: {', '.join(sorted(node.tiers))}")
        if name == "max.message.bytes" and int(value) > limits.message_bytes_max:
            raise InvalidTopicConfig(f"max.message.bytes={value}: expected at most {limits.message_bytes_max}")
        result[name] = value
    return result


def default_values(node: NodeConfig, topic: str, explicit: Mapping[str, str]) -> dict[str, str]:
    """Value of every known config for a topic when not set explicitly (node/tier/Kafka)."""
    tier = node.tier_for_topic(topic, explicit.get("shoal.tier"))
    remote_default = node.cloud_storage is not None and node.cloud_storage.remote_write_default
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(tier.retention_ms),
        "retention.bytes": str(tier.retention_bytes),
        "segment.bytes": str(node.log.segment_bytes),
        "segment.ms": str(node.log.segment_ms),
        "max.message.bytes": str(limits.message_bytes_default),
        "message.timestamp.type": "CreateTime",
        "compression.type": "producer",
        "min.insync.replicas": "1",
        "message.timestamp.difference.max.ms": str(2**63 - 1),
        "remote.storage.enable": "true" if remote_default else "false",
        "local.retention.bytes": str(tier.local_retention_bytes),
        "local.retention.ms": str(tier.local_retention_ms),
        "shoal.remote.recovery": "false",
        "shoal.tier": tier.name,
    }


def effective_values(node: NodeConfig, topic: str, explicit: Mapping[str, str]) -> dict[str, str]:
    values = default_values(node, topic, explicit)
    values.update(explicit)
    return values


def tier_of(node: NodeConfig, topic: str, explicit: Mapping[str, str]) -> TierConfig:
    return node.tier_for_topic(topic, explicit.get("shoal.tier"))


def partition_log_config(node: NodeConfig, topic: str, explicit: Mapping[str, str]) -> PartitionLogConfig:
    values = effective_values(node, topic, explicit)
    remote = values["remote.storage.enable"] == "true" and node.cloud_storage is not None
    retention_bytes = int(values["retention.bytes"])
    retention_ms = int(values["retention.ms"])
    # KIP-405: -2 means "same as the total retention".
    local_bytes = int(values["local.retention.bytes"])
    local_ms = int(values["local.retention.ms"])
    return PartitionLogConfig(
        segment_bytes=int(values["segment.bytes"]),
        segment_ms=int(values["segment.ms"]),
        retention_bytes=retention_bytes,
        retention_ms=retention_ms,
        local_retention_bytes=retention_bytes if local_bytes == -2 else local_bytes,
        local_retention_ms=retention_ms if local_ms == -2 else local_ms,
        remote_storage_enable=remote,
        max_message_bytes=int(values["max.message.bytes"]),
        flush_fsync=node.log.flush == "fsync",
        flush_interval_ms=node.log.flush_interval_ms,
    )
