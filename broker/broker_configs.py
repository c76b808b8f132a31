"""The node's configuration under Kafka's broker config names, for DescribeConfigs on a
BROKER resource (AdminClient, kafka-ui and similar tools ask for these).

Shoal's broker configs are static: they come from the node config file / environment,
so every entry is read-only, with source STATIC_BROKER_CONFIG when the operator changed
it and DEFAULT_CONFIG when it is the embedded default. The documentation of each entry
names the Shoal node config key that sets it.

Besides Kafka's names, `shoal.admin.api.url` gives the URL of the node's admin HTTP API,
so a Kafka client that knows only the Kafka address finds it (`shoal tier status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from broker import limits
from broker.config import NodeConfig, TierConfig
from broker.topic_config import (
    ConfigDescription, ConfigSource, ConfigSynonym, ConfigType, embedded_node_config, node_level_source)


@dataclass(frozen=True)
class BrokerConfigDefinition:
    name: str  # Kafka's broker config name
    config_type: ConfigType
    value_of: Callable[[NodeConfig], str | None]
    documentation: str
    # Identity and addresses are always the operator's own, never a shared default.
    per_node: bool = False


def _default_tier(node: NodeConfig) -> TierConfig:
    return node.tiers.get("default", TierConfig("default"))


def _listener(address) -> str:
    return f"PLAINTEXT://{address.host}:{address.port}"


ADMIN_API_URL_CONFIG = "shoal.admin.api.url"
# A listen host that means "every interface" is no address to connect to; the admin API is
# then reached on the host clients are given for Kafka.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def admin_api_url(node: NodeConfig, bound_port: int | None = None) -> str | None:
    """http://HOST:PORT of the node's admin API: the port it bound when known (the config
    may say 0), else the configured one; None when neither is a real port."""
    port = bound_port or node.admin_listen.port
    if not port:
        return None
    host = node.admin_listen.host
    if host in _WILDCARD_HOSTS:
        host = node.kafka_advertise.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _admin_api_url_definition(bound_port: int | None) -> BrokerConfigDefinition:
    return BrokerConfigDefinition(
        ADMIN_API_URL_CONFIG, ConfigType.STRING, lambda node: admin_api_url(node, bound_port),
        "admin_api.listen (the URL of this node's admin HTTP API, with the port it listens on)",
        per_node=True)


BROKER_CONFIGS: tuple[BrokerConfigDefinition, ...] = (
    BrokerConfigDefinition("broker.id", ConfigType.INT, lambda node: str(node.node_id), "node_id",
                           per_node=True),
    BrokerConfigDefinition("node.id", ConfigType.INT, lambda node: str(node.node_id), "node_id", per_node=True),
    BrokerConfigDefinition("broker.rack", ConfigType.STRING, lambda node: None, "racks are not supported yet"),
    BrokerConfigDefinition("listeners", ConfigType.STRING, lambda node: _listener(node.kafka_listen),
                           "kafka_api.listen", per_node=True),
    BrokerConfigDefinition("advertised.listeners", ConfigType.STRING,
                           lambda node: _listener(node.kafka_advertise), "kafka_api.advertise",
                           per_node=True),
    BrokerConfigDefinition("log.dirs", ConfigType.STRING, lambda node: str((node.data_dir / "topics").absolute()),
                           "data_dir (partitions live under <data_dir>/topics)", per_node=True),
    BrokerConfigDefinition("auto.create.topics.enable", ConfigType.BOOLEAN,
                           lambda node: str(node.auto_create_topics).lower(), "auto_create_topics"),
    BrokerConfigDefinition("num.partitions", ConfigType.INT, lambda node: str(node.default_partitions),
                           "default_partitions"),
    BrokerConfigDefinition("default.replication.factor", ConfigType.INT,
                           lambda node: str(node.default_replication_factor), "default_replication_factor"),
    BrokerConfigDefinition("delete.topic.enable", ConfigType.BOOLEAN, lambda node: "true",
                           "topics can always be deleted"),
    BrokerConfigDefinition("log.cleanup.policy", ConfigType.LIST, lambda node: "delete",
                           "only 'delete'; compaction is not supported yet"),
    BrokerConfigDefinition("log.retention.ms", ConfigType.LONG,
                           lambda node: str(_default_tier(node).retention_ms), "tiers.default.retention_ms"),
    BrokerConfigDefinition("log.retention.bytes", ConfigType.LONG,
                           lambda node: str(_default_tier(node).retention_bytes), "tiers.default.retention_bytes"),
    BrokerConfigDefinition("log.local.retention.ms", ConfigType.LONG,
                           lambda node: str(_default_tier(node).local_retention_ms),
                           "tiers.default.local_retention_ms"),
    BrokerConfigDefinition("log.local.retention.bytes", ConfigType.LONG,
                           lambda node: str(_default_tier(node).local_retention_bytes),
                           "tiers.default.local_retention_bytes"),
    BrokerConfigDefinition("log.segment.bytes", ConfigType.INT, lambda node: str(node.log.segment_bytes),
                           "log.segment_bytes"),
    BrokerConfigDefinition("log.roll.ms", ConfigType.LONG, lambda node: str(node.log.segment_ms),
                           "log.segment_ms"),
    BrokerConfigDefinition("log.flush.interval.ms", ConfigType.LONG,
                           lambda node: "0" if node.log.flush == "fsync" else str(node.log.flush_interval_ms),
                           "log.flush (fsync: every acknowledged write is fsynced) and log.flush_interval"),
    BrokerConfigDefinition("message.max.bytes", ConfigType.INT, lambda node: str(limits.message_bytes_default),
                           "default max.message.bytes of topics"),
    BrokerConfigDefinition("compression.type", ConfigType.STRING, lambda node: "producer",
                           "default compression.type of topics"),
    BrokerConfigDefinition("min.insync.replicas", ConfigType.INT, lambda node: "1",
                           "default min.insync.replicas of topics"),
    BrokerConfigDefinition("log.message.timestamp.type", ConfigType.STRING, lambda node: "CreateTime",
                           "default message.timestamp.type of topics"),
    BrokerConfigDefinition("remote.log.storage.system.enable", ConfigType.BOOLEAN,
                           lambda node: str(node.cloud_storage is not None).lower(), "cloud_storage (present or not)"),
    BrokerConfigDefinition("group.initial.rebalance.delay.ms", ConfigType.INT,
                           lambda node: str(node.group_initial_rebalance_delay_ms), "group_initial_rebalance_delay"),
    BrokerConfigDefinition("group.min.session.timeout.ms", ConfigType.INT,
                           lambda node: str(limits.group_min_session_timeout_ms), "fixed in Shoal"),
    BrokerConfigDefinition("group.max.session.timeout.ms", ConfigType.INT,
                           lambda node: str(limits.group_max_session_timeout_ms), "fixed in Shoal"),
    BrokerConfigDefinition("offsets.topic.replication.factor", ConfigType.SHORT,
                           lambda node: str(node.default_replication_factor), "default_replication_factor"),
    BrokerConfigDefinition("socket.request.max.bytes", ConfigType.INT,
                           lambda node: str(limits.request_frame_bytes_max), "fixed in Shoal"),
)


def describe_broker_configs(node: NodeConfig, admin_port: int | None = None) -> list[ConfigDescription]:
    """Every broker config of this node, read-only, with its source. `admin_port` is the
    port the admin API bound (the node's `admin_port`), for `shoal.admin.api.url`."""
    embedded = embedded_node_config()
    definitions = BROKER_CONFIGS + (_admin_api_url_definition(admin_port),)
    return [_describe(definition, node, embedded) for definition in definitions]


def _describe(definition: BrokerConfigDefinition, node: NodeConfig, embedded: NodeConfig) -> ConfigDescription:
    value = definition.value_of(node)
    embedded_value = definition.value_of(embedded)
    if definition.per_node:
        source = ConfigSource.STATIC_BROKER_CONFIG
    else:
        source = node_level_source(str(value), str(embedded_value))
    synonyms = [ConfigSynonym(definition.name, value, source)]
    if source is ConfigSource.STATIC_BROKER_CONFIG and not definition.per_node:
        synonyms.append(ConfigSynonym(definition.name, embedded_value, ConfigSource.DEFAULT_CONFIG))
    return ConfigDescription(
        name=definition.name,
        value=value,
        source=source,
        read_only=True,
        sensitive=False,
        config_type=definition.config_type,
        documentation=f"Shoal node config: {definition.documentation}",
        synonyms=tuple(synonyms),
    )
