"""Config descriptions (what DescribeConfigs and CreateTopics v5+ report): sources,
synonyms and types of topic configs, and the node's broker configs."""

from __future__ import annotations

from broker.broker_configs import describe_broker_configs
from broker.config import load_config
from broker.topic_config import (
    DEFINITIONS, ConfigSource, ConfigType, describe_topic_configs, is_list_config, split_list_value)


def node_config(tmp_path, **environment):
    return load_config(None, environ={"SHOAL_DATA_DIR": str(tmp_path), **environment})


def by_name(descriptions):
    return {description.name: description for description in descriptions}


def test_every_definition_is_described_with_type_and_documentation(tmp_path):
    described = by_name(describe_topic_configs(node_config(tmp_path), "orders", {}))
    assert list(described) == list(DEFINITIONS)
    assert all(description.documentation for description in described.values())
    assert described["cleanup.policy"].config_type is ConfigType.LIST
    assert described["remote.storage.enable"].config_type is ConfigType.BOOLEAN
    assert all(description.source is ConfigSource.DEFAULT_CONFIG for description in described.values())


def test_sources_follow_topic_then_node_then_embedded_default(tmp_path):
    node = node_config(tmp_path, SHOAL_TIERS_DEFAULT_RETENTION_MS="30d", SHOAL_LOG_SEGMENT_BYTES="1MiB")
    described = by_name(describe_topic_configs(node, "orders", {"segment.bytes": "4096"}))
    segment = described["segment.bytes"]
    assert (segment.value, segment.source) == ("4096", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert [(s.name, s.value, s.source) for s in segment.synonyms] == [
        ("segment.bytes", "4096", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.segment.bytes", str(1024 * 1024), ConfigSource.STATIC_BROKER_CONFIG),
        ("log.segment.bytes", str(128 * 1024 * 1024), ConfigSource.DEFAULT_CONFIG),
    ]
    retention = described["retention.ms"]
    assert (retention.value, retention.source) == (str(30 * 86_400_000), ConfigSource.STATIC_BROKER_CONFIG)
    assert described["retention.bytes"].source is ConfigSource.DEFAULT_CONFIG


def test_topic_tiers_pick_the_tier_values(tmp_path):
    node = node_config(tmp_path, SHOAL_TIERS_ARCHIVE_RETENTION_MS="365d",
                       SHOAL_TOPIC_TIERS='{"audit.*": archive}')
    audit = by_name(describe_topic_configs(node, "audit.logins", {}))
    assert audit["shoal.tier"].value == "archive"
    assert audit["retention.ms"].value == str(365 * 86_400_000)
    assert audit["retention.ms"].source is ConfigSource.STATIC_BROKER_CONFIG
    assert by_name(describe_topic_configs(node, "orders", {}))["shoal.tier"].value == "default"


def test_list_configs():
    assert is_list_config("cleanup.policy") and not is_list_config("retention.ms")
    assert not is_list_config("no.such.config")
    assert split_list_value(" delete, compact ,,") == ["delete", "compact"]
    assert split_list_value(None) == []


def test_broker_configs_are_read_only_with_static_or_default_source(tmp_path):
    node = node_config(tmp_path, SHOAL_DEFAULT_PARTITIONS="6", SHOAL_KAFKA_API_LISTEN="127.0.0.1:19999")
    described = by_name(describe_broker_configs(node))
    assert all(description.read_only for description in described.values())
    assert (described["num.partitions"].value, described["num.partitions"].source) == (
        "6", ConfigSource.STATIC_BROKER_CONFIG)
    assert described["default.replication.factor"].source is ConfigSource.DEFAULT_CONFIG
    assert described["listeners"].value == "PLAINTEXT://127.0.0.1:19999"
    assert described["log.dirs"].value == str((tmp_path / "topics").absolute())
    assert described["broker.rack"].value is None
    assert "node config" in described["num.partitions"].documentation
