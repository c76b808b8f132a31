"""Every topic config a Kafka 3.9 / 4.x broker accepts (its TopicConfig / LogConfig names,
the ones 4.0 removed included) is accepted by CreateTopics and reported by DescribeConfigs,
through confluent-kafka's AdminClient against one real broker process; values Kafka
refuses get INVALID_CONFIG."""

from __future__ import annotations

import itertools

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from tests.support import module_broker

REQUEST_TIMEOUT_S = 10
_names = itertools.count()

# Kafka's topic config names, each with a valid value other than Kafka's default.
KAFKA_TOPIC_CONFIGS: dict[str, str] = {
    "cleanup.policy": "delete",
    "compression.type": "zstd",
    "compression.gzip.level": "9",
    "compression.lz4.level": "1",
    "compression.zstd.level": "-5",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "10",
    "flush.ms": "1000",
    "follower.replication.throttled.replicas": "0:0",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "1048576",
    "local.retention.ms": "60000",
    "max.compaction.lag.ms": "60000",
    "max.message.bytes": "2097152",
    "message.downconversion.enable": "false",  # removed in Kafka 4.0
    "message.format.version": "0.10.0-IV1",  # removed in Kafka 4.0; librdkafka's tests set it
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "3600000",
    "message.timestamp.difference.max.ms": "3600000",  # removed in Kafka 4.0
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "1000",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "true",
    "retention.bytes": "10485760",
    "retention.ms": "3600000",
    "segment.bytes": "1048576",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "100",
    "segment.ms": "600000",
    "unclean.leader.election.enable": "true",
}

node = module_broker("topic-config-names")


@pytest.fixture(scope="module")
def admin(node):
    return AdminClient({"bootstrap.servers": node.bootstrap, "socket.timeout.ms": 10_000})


def create_error(admin, name: str, config: dict[str, str]) -> KafkaError | None:
    topic = NewTopic(name, 1, 1, config=config)
    try:
        admin.create_topics([topic], request_timeout=REQUEST_TIMEOUT_S)[name].result()
    except KafkaException as error:
        return error.args[0]
    return None


def described(admin, name: str) -> dict:
    (future,) = admin.describe_configs([ConfigResource("topic", name)], request_timeout=REQUEST_TIMEOUT_S).values()
    return future.result()


@pytest.mark.parametrize("config_name", sorted(KAFKA_TOPIC_CONFIGS))
def test_kafka_topic_config_is_accepted_and_described(admin, config_name):
    name = f"names-{next(_names)}"
    value = KAFKA_TOPIC_CONFIGS[config_name]
    assert create_error(admin, name, {config_name: value}) is None
    entry = described(admin, name)[config_name]
    assert (entry.value, entry.source) == (value, ConfigSource.DYNAMIC_TOPIC_CONFIG.value)


def test_every_kafka_topic_config_is_described_by_default(admin):
    name = f"names-{next(_names)}"
    assert create_error(admin, name, {}) is None
    configs = described(admin, name)
    assert set(KAFKA_TOPIC_CONFIGS) <= set(configs)
    assert configs["message.format.version"].value == "3.0-IV1"  # Kafka 3.x's default


@pytest.mark.parametrize("version", ["0.8.2", "0.10.0", "0.10.0.1", "2.8", "2.8.1", "3.0-IV1", "3.9"])
def test_message_format_version_takes_kafka_version_strings(admin, version):
    name = f"names-{next(_names)}"
    assert create_error(admin, name, {"message.format.version": version}) is None
    assert described(admin, name)["message.format.version"].value == version


@pytest.mark.parametrize(("config_name", "value"), [
    ("message.format.version", "garbage"),
    ("message.format.version", "3.0-IV9"),
    ("compression.gzip.level", "0"),
    ("compression.lz4.level", "18"),
    ("compression.zstd.level", "23"),
    ("remote.log.copy.disable", "true"),
    ("remote.log.delete.on.disable", "maybe"),
])
def test_value_kafka_or_shoal_refuses_gets_invalid_config(admin, config_name, value):
    name = f"names-{next(_names)}"
    error = create_error(admin, name, {config_name: value})
    assert error is not None and error.code() == KafkaError.INVALID_CONFIG, error
    assert config_name in error.str()
    assert name not in admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
