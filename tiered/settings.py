"""Per-topic tiered-storage settings: node tiers overlaid by the topic's Kafka configs.

`TopicTieredSettings` is what the archiver and retention need for one topic. The broker
gives TieredStorage a callable `settings_for(topic) -> TopicTieredSettings`; the usual way
to build one is `resolve_topic_settings(node_config, topic, topic_configs)`, which applies
the contract's precedence: topic config (KIP-405 name or Redpanda alias) > the topic's tier
(`shoal.tier`, else the first `topic_tiers` glob, else `default`) > built-in defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from broker.config import ConfigError, NodeConfig, parse_bool

# Kafka's sentinel for local.retention.*: "same as the total retention".
_SAME_AS_TOTAL = -2


@dataclass(frozen=True)
class TopicTieredSettings:
    remote_storage_enable: bool
    retention_bytes: int  # per partition, local + remote together; -1 unbounded
    retention_ms: int
    local_retention_bytes: int
    local_retention_ms: int
    tier_name: str = "default"
    upload_compression: str = "none"  # none | zstd | lz4
    partition_count: int = -1  # written to the topic manifest when known


def _first(configs: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if name in configs and configs[name] is not None:
            return str(configs[name])
    return None


def _integer(configs: Mapping[str, str], default: int, *names: str) -> int:
    value = _first(configs, *names)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(names[0], value, "an integer") from None


def remote_storage_enabled(node_config: NodeConfig, configs: Mapping[str, str]) -> bool:
    """`remote.storage.enable`, else Redpanda's remote.write (and remote.read), else the node default."""
    explicit = _first(configs, "remote.storage.enable")
    if explicit is not None:
        return parse_bool("remote.storage.enable", explicit)
    redpanda_write = _first(configs, "redpanda.remote.write")
    if redpanda_write is not None:
        return parse_bool("redpanda.remote.write", redpanda_write)
    return node_config.cloud_storage is not None and node_config.cloud_storage.remote_write_default


def recovery_requested(configs: Mapping[str, str]) -> bool:
    value = _first(configs, "shoal.remote.recovery", "redpanda.remote.recovery")
    return value is not None and parse_bool("shoal.remote.recovery", value)


def resolve_topic_settings(node_config: NodeConfig, topic: str, configs: Mapping[str, str],
                           partition_count: int = -1) -> TopicTieredSettings:
    tier = node_config.tier_for_topic(topic, _first(configs, "shoal.tier"))
    retention_bytes = _integer(configs, tier.retention_bytes, "retention.bytes")
    retention_ms = _integer(configs, tier.retention_ms, "retention.ms")
    local_bytes = _integer(configs, tier.local_retention_bytes, "local.retention.bytes",
                           "retention.local.target.bytes")
    local_ms = _integer(configs, tier.local_retention_ms, "local.retention.ms",
                        "retention.local.target.ms")
    return TopicTieredSettings(
        remote_storage_enable=node_config.cloud_storage is not None
        and remote_storage_enabled(node_config, configs),
        retention_bytes=retention_bytes,
        retention_ms=retention_ms,
        local_retention_bytes=retention_bytes if local_bytes == _SAME_AS_TOTAL else local_bytes,
        local_retention_ms=retention_ms if local_ms == _SAME_AS_TOTAL else local_ms,
        tier_name=tier.name,
        upload_compression=tier.upload_compression,
        partition_count=partition_count,
    )
