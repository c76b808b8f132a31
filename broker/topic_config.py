"""Topic configs: the Kafka names Shoal understands, their defaults, validation, the
Redpanda aliases of the tiered-storage names, and resolution into a PartitionLogConfig.

Explicit per-topic values are stored as strings exactly as Kafka admin clients send them;
everything else comes from the node config (tier) or Kafka's defaults.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum
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


class ConfigType(IntEnum):
    """Kafka's config value types (DescribeConfigs v3+ `config_type`)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """Where a described value comes from (Kafka's DescribeConfigs `config_source`)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1  # set on the topic (CreateTopics / AlterConfigs)
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4  # from the node config file / environment
    DEFAULT_CONFIG = 5  # Shoal's embedded default


@dataclass(frozen=True)
class ConfigDefinition:
    name: str
    validate: Callable[[str, str], str]
    read_only: bool = False
    sensitive: bool = False
    documentation: str = ""
    config_type: ConfigType = ConfigType.STRING
    # The Kafka broker config that supplies the default (DescribeConfigs synonyms).
    broker_synonym: str | None = None


DEFINITIONS: dict[str, ConfigDefinition] = {
    definition.name: definition
    for definition in (
        ConfigDefinition(
            "cleanup.policy", _cleanup_policy, config_type=ConfigType.LIST,
            broker_synonym="log.cleanup.policy",
            documentation="Only 'delete' is supported; 'compact' is refused until compaction exists."),
        ConfigDefinition(
            "retention.ms", _long(-1), config_type=ConfigType.LONG, broker_synonym="log.retention.ms",
            documentation="Age after which data is deleted (both tiers together when remote storage "
                          "is on); -1 keeps data forever. Default: the topic's tier retention_ms."),
        ConfigDefinition(
            "retention.bytes", _long(-1), config_type=ConfigType.LONG, broker_synonym="log.retention.bytes",
            documentation="Bytes kept per partition (both tiers together when remote storage is on); "
                          "-1 is unbounded. Default: the topic's tier retention_bytes."),
        ConfigDefinition(
            "segment.bytes", _long(limits.segment_bytes_min), config_type=ConfigType.INT,
            broker_synonym="log.segment.bytes",
            documentation="Segment file size at which the active segment is rolled."),
        ConfigDefinition(
            "segment.ms", _long(1), config_type=ConfigType.LONG, broker_synonym="log.roll.ms",
            documentation="Age at which the active segment is rolled even if not full."),
        ConfigDefinition(
            "max.message.bytes", _long(0), config_type=ConfigType.INT, broker_synonym="message.max.bytes",
            documentation="Largest record batch accepted; larger ones get MESSAGE_TOO_LARGE."),
        ConfigDefinition(
            "message.timestamp.type", _choice("CreateTime", "LogAppendTime"),
            broker_synonym="log.message.timestamp.type",
            documentation="CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time."),
        ConfigDefinition(
            "compression.type", _choice("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
            broker_synonym="compression.type",
            documentation="'producer' stores batches as produced; a codec recompresses to that codec."),
        ConfigDefinition(
            "min.insync.replicas", _long(1), config_type=ConfigType.INT, broker_synonym="min.insync.replicas",
            documentation="Replicas that must acknowledge an acks=all produce."),
        ConfigDefinition(
            "message.timestamp.difference.max.ms", _long(0), config_type=ConfigType.LONG,
            broker_synonym="log.message.timestamp.difference.max.ms",
            documentation="Largest allowed difference between a CreateTime timestamp and the broker's clock."),
        ConfigDefinition(
            "remote.storage.enable", _boolean, config_type=ConfigType.BOOLEAN,
            documentation="Archive to and read from the cold tier (alias redpanda.remote.write / "
                          "redpanda.remote.read). Default: cloud_storage.remote_write_default."),
        ConfigDefinition(
            "local.retention.bytes", _long(-2), config_type=ConfigType.LONG,
            broker_synonym="log.local.retention.bytes",
            documentation="Hot-tier bytes kept per partition (alias retention.local.target.bytes); "
                          "-2 means the same as retention.bytes."),
        ConfigDefinition(
            "local.retention.ms", _long(-2), config_type=ConfigType.LONG,
            broker_synonym="log.local.retention.ms",
            documentation="Hot-tier age (alias retention.local.target.ms); -2 means the same as retention.ms."),
        ConfigDefinition(
            "shoal.remote.recovery", _boolean, config_type=ConfigType.BOOLEAN,
            documentation="At topic creation: restore the topic's history from the bucket "
                          "(alias redpanda.remote.recovery)."),
        ConfigDefinition(
            "shoal.tier", _tier_name,
            documentation="Name of a tier from the node config; overrides the topic_tiers globs."),
    )
}

LONG_MAX = 2**63 - 1


def _ratio(name: str, value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise InvalidTopicConfig(f"{name}={value!r}: expected a number between 0 and 1") from None
    if not 0 <= number <= 1:
        raise InvalidTopicConfig(f"{name}={value!r}: expected a number between 0 and 1")
    return value


def _replica_list(name: str, value: str) -> str:
    if value.strip() not in ("", "*") and not all(
            ":" in item and all(part.strip().isdigit() for part in item.split(":"))
            for item in value.split(",")):
        raise InvalidTopicConfig(f"{name}={value!r}: expected '', '*' or partition:broker pairs")
    return value


def _int_range(*ranges: tuple[int, int]) -> Callable[[str, str], str]:
    """An integer inside one of the inclusive `ranges` (Kafka's Range / Either validators)."""
    expected = " or ".join(str(low) if low == high else f"{low}..{high}" for low, high in ranges)

    def check(name: str, value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            raise InvalidTopicConfig(f"{name}={value!r}: expected an integer {expected}") from None
        if not any(low <= number <= high for low, high in ranges):
            raise InvalidTopicConfig(f"{name}={value!r}: expected an integer {expected}")
        return str(number)
    return check


def _false_only(reason: str) -> Callable[[str, str], str]:
    """A boolean whose `true` asks for behaviour Shoal lacks: refused rather than ignored."""
    def check(name: str, value: str) -> str:
        value = _boolean(name, value)
        if value == "true":
            raise InvalidTopicConfig(f"{name}=true is not supported by Shoal: {reason}")
        return value
    return check


# Kafka 3.9's MetadataVersion releases with their inter-broker versions (IV0..IVn-1; 0 = the
# release has none): the values message.format.version accepts.
_KAFKA_RELEASE_INTER_VERSIONS: dict[str, int] = {
    "0.8.0": 0, "0.8.1": 0, "0.8.2": 0, "0.9.0": 0, "0.10.0": 2, "0.10.1": 3, "0.10.2": 1,
    "0.11.0": 3, "1.0": 1, "1.1": 1, "2.0": 2, "2.1": 3, "2.2": 2, "2.3": 2, "2.4": 2,
    "2.5": 1, "2.6": 1, "2.7": 3, "2.8": 2, "3.0": 2, "3.1": 1, "3.2": 1, "3.3": 4, "3.4": 1,
    "3.5": 3, "3.6": 3, "3.7": 5, "3.8": 1, "3.9": 1,
}
_KAFKA_VERSION_STRINGS = frozenset(
    [*_KAFKA_RELEASE_INTER_VERSIONS]
    + [f"{release}-IV{index}" for release, count in _KAFKA_RELEASE_INTER_VERSIONS.items() for index in range(count)])


def _kafka_version(name: str, value: str) -> str:
    """Kafka's MetadataVersion.fromVersionString: '0.10.0', '0.10.0-IV1', '2.8', '3.0-IV1';
    segments past the release are ignored ('0.10.0.1', '2.8.1')."""
    segments = value.split(".")
    release_segments = 3 if value.startswith("0.") else 2
    key = value if len(segments) <= release_segments else ".".join(segments[:release_segments])
    if key not in _KAFKA_VERSION_STRINGS:
        raise InvalidTopicConfig(
            f"{name}={value!r}: expected a Kafka version such as 0.10.0, 2.8 or 3.0-IV1 (at most 3.9)")
    return value


# Kafka topic configs Shoal accepts and stores (so tools that copy a topic's whole config,
# such as MirrorMaker or Terraform providers, keep working) but that change nothing here:
# (name, validator, type, Kafka's default, why it has no effect).
_ACCEPTED_WITHOUT_EFFECT: tuple[tuple[str, Callable[[str, str], str], ConfigType, str, str], ...] = (
    ("flush.messages", _long(1), ConfigType.LONG, str(LONG_MAX),
     "acknowledged data is already fsynced per log.flush"),
    ("flush.ms", _long(0), ConfigType.LONG, str(LONG_MAX),
     "acknowledged data is already fsynced per log.flush"),
    ("index.interval.bytes", _long(0), ConfigType.INT, "4096",
     "the index interval is fixed (limits.index_interval_bytes)"),
    ("segment.index.bytes", _long(4), ConfigType.INT, "10485760",
     "index files grow with their segment"),
    ("segment.jitter.ms", _long(0), ConfigType.LONG, "0", "segments roll without jitter"),
    ("file.delete.delay.ms", _long(0), ConfigType.LONG, "60000",
     "deleted segments linger a fixed limits.segment_delete_delay_ms"),
    ("preallocate", _boolean, ConfigType.BOOLEAN, "false", "segments are never preallocated"),
    ("unclean.leader.election.enable", _boolean, ConfigType.BOOLEAN, "false",
     "one replica per partition: there is no election"),
    ("message.downconversion.enable", _boolean, ConfigType.BOOLEAN, "true",
     "only magic v2 batches are served"),
    ("delete.retention.ms", _long(0), ConfigType.LONG, "86400000", "compaction is not supported yet"),
    ("min.cleanable.dirty.ratio", _ratio, ConfigType.DOUBLE, "0.5", "compaction is not supported yet"),
    ("min.compaction.lag.ms", _long(0), ConfigType.LONG, "0", "compaction is not supported yet"),
    ("max.compaction.lag.ms", _long(1), ConfigType.LONG, str(LONG_MAX), "compaction is not supported yet"),
    ("message.timestamp.before.max.ms", _long(0), ConfigType.LONG, str(LONG_MAX),
     "message.timestamp.difference.max.ms is the bound Shoal checks"),
    ("message.timestamp.after.max.ms", _long(0), ConfigType.LONG, str(LONG_MAX),
     "message.timestamp.difference.max.ms is the bound Shoal checks"),
    ("leader.replication.throttled.replicas", _replica_list, ConfigType.LIST, "",
     "no replication yet"),
    ("follower.replication.throttled.replicas", _replica_list, ConfigType.LIST, "",
     "no replication yet"),
    ("message.format.version", _kafka_version, ConfigType.STRING, "3.0-IV1",
     "batches are stored and served in the v2 format (Kafka ignores it too since 3.0)"),
    ("compression.gzip.level", _int_range((-1, -1), (1, 9)), ConfigType.INT, "-1",
     "recompression uses a fixed level per codec"),
    ("compression.lz4.level", _int_range((1, 17)), ConfigType.INT, "9",
     "recompression uses a fixed level per codec"),
    ("compression.zstd.level", _int_range((-131072, 22)), ConfigType.INT, "3",
     "recompression uses a fixed level per codec"),
    ("remote.log.copy.disable", _false_only("archiving cannot be paused per topic"), ConfigType.BOOLEAN,
     "false", "false is what Shoal does; true is refused"),
    ("remote.log.delete.on.disable", _false_only("disabling remote storage does not delete the bucket's data"),
     ConfigType.BOOLEAN, "false", "false is what Shoal does; true is refused"),
)
for _name, _validate, _type, _default, _reason in _ACCEPTED_WITHOUT_EFFECT:
    DEFINITIONS[_name] = ConfigDefinition(
        _name, _validate, config_type=_type,
        documentation=f"Accepted and stored for compatibility with Kafka tools; no effect: {_reason}.")

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
        **{name: default for name, _, _, default, _ in _ACCEPTED_WITHOUT_EFFECT},
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


# ---------------------------------------------------------------------------------------
# Describing configs (DescribeConfigs, CreateTopics v5+, the admin HTTP API)


@dataclass(frozen=True)
class ConfigSynonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True)
class ConfigDescription:
    """One config of a resource as Kafka's DescribeConfigs reports it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    sensitive: bool
    config_type: ConfigType
    documentation: str
    synonyms: tuple[ConfigSynonym, ...]  # highest precedence first, the value's own source included


@functools.cache
def embedded_node_config() -> NodeConfig:
    """The node config Shoal runs with when nothing is configured: what DEFAULT_CONFIG means."""
    from broker.config import load_config

    return load_config(None, environ={})


def node_level_source(value: str, embedded_value: str) -> ConfigSource:
    """A value supplied by the node: STATIC_BROKER_CONFIG when the operator changed it from
    the embedded default, DEFAULT_CONFIG otherwise."""
    if value == embedded_value:
        return ConfigSource.DEFAULT_CONFIG
    return ConfigSource.STATIC_BROKER_CONFIG


def describe_topic_configs(node: NodeConfig, topic: str,
                           explicit: Mapping[str, str]) -> list[ConfigDescription]:
    """Every known config of `topic`, in DEFINITIONS order, with its source and synonyms."""
    node_values = default_values(node, topic, explicit)
    embedded_values = default_values(embedded_node_config(), topic, {})
    return [
        _describe_topic_config(definition, explicit.get(name), node_values[name], embedded_values[name])
        for name, definition in DEFINITIONS.items()
    ]


def _describe_topic_config(definition: ConfigDefinition, explicit_value: str | None,
                           node_value: str, embedded_value: str) -> ConfigDescription:
    synonym_name = definition.broker_synonym or definition.name
    node_source = node_level_source(node_value, embedded_value)
    synonyms: list[ConfigSynonym] = []
    if explicit_value is not None:
        synonyms.append(ConfigSynonym(definition.name, explicit_value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
    if node_source is ConfigSource.STATIC_BROKER_CONFIG:
        synonyms.append(ConfigSynonym(synonym_name, node_value, ConfigSource.STATIC_BROKER_CONFIG))
    synonyms.append(ConfigSynonym(synonym_name, embedded_value, ConfigSource.DEFAULT_CONFIG))
    return ConfigDescription(
        name=definition.name,
        value=explicit_value if explicit_value is not None else node_value,
        source=ConfigSource.DYNAMIC_TOPIC_CONFIG if explicit_value is not None else node_source,
        read_only=definition.read_only,
        sensitive=definition.sensitive,
        config_type=definition.config_type,
        documentation=definition.documentation,
        synonyms=tuple(synonyms),
    )


def is_list_config(name: str) -> bool:
    definition = DEFINITIONS.get(canonical_name(name))
    return definition is not None and definition.config_type is ConfigType.LIST


def split_list_value(value: str | None) -> list[str]:
    """A LIST config's items (Kafka's comma-separated form)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]
