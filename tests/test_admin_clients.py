"""Admin operations through real Kafka admin clients (confluent-kafka's AdminClient on
librdkafka, kafka-python's KafkaAdminClient) against one real broker process."""

from __future__ import annotations

import itertools

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions, NewTopic)

from tests.support import module_broker

_names = itertools.count()
REQUEST_TIMEOUT_S = 10


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


node = module_broker("admin-clients", cloud_storage=None, default_partitions=3)


@pytest.fixture(scope="module")
def admin(node):
    return AdminClient({"bootstrap.servers": node.bootstrap, "socket.timeout.ms": 10_000})


@pytest.fixture(scope="module")
def python_admin(node):
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=10_000)
    try:
        yield client
    finally:
        client.close()


def create_error(admin, topic: NewTopic, validate_only: bool = False) -> KafkaError | None:
    future = admin.create_topics([topic], validate_only=validate_only, request_timeout=REQUEST_TIMEOUT_S)[topic.topic]
    try:
        future.result()
    except KafkaException as error:
        return error.args[0]
    return None


def topic_configs(admin, name: str) -> dict[str, ConfigEntry]:
    future = admin.describe_configs([ConfigResource("topic", name)], request_timeout=REQUEST_TIMEOUT_S)
    (result,) = future.values()
    return result.result()


def partition_count(admin, name: str) -> int:
    return len(admin.list_topics(name, timeout=REQUEST_TIMEOUT_S).topics[name].partitions)


# -- confluent-kafka (librdkafka) ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_confluent_create_describe_alter_delete(admin):
    name = unique("ck")
    assert create_error(admin, NewTopic(name, 2, 1, config={"retention.ms": "60000"})) is None
    assert partition_count(admin, name) == 2
    configs = topic_configs(admin, name)
    assert configs["retention.ms"].value == "60000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    incremental = ConfigResource("topic", name, incremental_configs=[
        ConfigEntry("segment.ms", "120000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    for future in admin.incremental_alter_configs([incremental], request_timeout=REQUEST_TIMEOUT_S).values():
        future.result()
    configs = topic_configs(admin, name)
    assert configs["segment.ms"].value == "120000"
    assert configs["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    legacy = ConfigResource("topic", name, set_config={"retention.bytes": "8192"})
    for future in admin.alter_configs([legacy], request_timeout=REQUEST_TIMEOUT_S).values():
        future.result()
    explicit = {key for key, entry in topic_configs(admin, name).items()
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}
    assert explicit == {"retention.bytes"}  # the legacy alter replaced segment.ms too

    admin.create_partitions([NewPartitions(name, 5)], request_timeout=REQUEST_TIMEOUT_S)[name].result()
    assert partition_count(admin, name) == 5
    description = admin.describe_topics(TopicCollection([name]), request_timeout=REQUEST_TIMEOUT_S)[name].result()
    assert len(description.partitions) == 5

    admin.delete_topics([name], request_timeout=REQUEST_TIMEOUT_S)[name].result()
    assert name not in admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics


def test_kafka_configs_without_effect_are_accepted_stored_and_still_validated(admin):
    """Tools that copy a topic's whole config (MirrorMaker, Terraform providers) send Kafka
    configs Shoal does not act on; Kafka accepts them, so Shoal stores them too."""
    name = unique("ck-noop")
    copied = {"flush.ms": "1000", "segment.index.bytes": "4096", "unclean.leader.election.enable": "false",
              "min.cleanable.dirty.ratio": "0.3", "follower.replication.throttled.replicas": ""}
    assert create_error(admin, NewTopic(name, 1, 1, config=copied)) is None
    configs = topic_configs(admin, name)
    for key, value in copied.items():
        assert (configs[key].value, configs[key].source) == (value, ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["preallocate"].value == "false"  # Kafka's default, described like any other
    error = create_error(admin, NewTopic(unique("ck-noop-bad"), 1, 1, config={"min.cleanable.dirty.ratio": "2"}))
    assert error is not None and error.code() == KafkaError.INVALID_CONFIG
    assert "min.cleanable.dirty.ratio" in error.str()
    admin.delete_topics([name], request_timeout=REQUEST_TIMEOUT_S)[name].result()


def test_confluent_error_codes(admin):
    name = unique("ck-err")
    assert create_error(admin, NewTopic(name, 1, 1)) is None
    assert create_error(admin, NewTopic(name, 1, 1)).code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert create_error(admin, NewTopic(unique("ck-rf"), 1, 3)).code() == KafkaError.INVALID_REPLICATION_FACTOR
    compact = create_error(admin, NewTopic(unique("ck-compact"), 1, 1, config={"cleanup.policy": "compact"}))
    assert compact.code() == KafkaError.INVALID_CONFIG
    assert "compaction is not supported" in compact.str()
    validated = unique("ck-validate")
    assert create_error(admin, NewTopic(validated, 2, 1), validate_only=True) is None
    assert validated not in admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics

    with pytest.raises(KafkaException) as smaller:
        admin.create_partitions([NewPartitions(name, 1)], request_timeout=REQUEST_TIMEOUT_S)[name].result()
    assert smaller.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    missing = unique("ck-missing")
    with pytest.raises(KafkaException) as unknown:
        admin.delete_topics([missing], request_timeout=REQUEST_TIMEOUT_S)[missing].result()
    assert unknown.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    append = ConfigResource("topic", name, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)])
    with pytest.raises(KafkaException) as not_a_list:
        for future in admin.incremental_alter_configs([append], request_timeout=REQUEST_TIMEOUT_S).values():
            future.result()
    assert not_a_list.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_confluent_defaults_cluster_and_broker_configs(admin, node):
    name = unique("ck-defaults")
    assert create_error(admin, NewTopic(name)) is None  # -1 partitions / replication: node defaults
    assert partition_count(admin, name) == 3
    cluster = admin.describe_cluster(request_timeout=REQUEST_TIMEOUT_S).result()
    assert [(n.id, n.port) for n in cluster.nodes] == [(0, node.kafka_port)]
    assert cluster.controller.id == 0 and cluster.cluster_id
    future = admin.describe_configs([ConfigResource("broker", "0")], request_timeout=REQUEST_TIMEOUT_S)
    (broker_configs,) = [f.result() for f in future.values()]
    assert broker_configs["num.partitions"].value == "3"
    assert broker_configs["num.partitions"].is_read_only


# -- kafka-python ---------------------------------------------------------------------------------

def test_kafka_python_admin_round_trip(python_admin):
    from kafka.admin import ConfigResource as PyConfigResource
    from kafka.admin import ConfigResourceType
    from kafka.admin import NewPartitions as PyNewPartitions
    from kafka.admin import NewTopic as PyNewTopic
    from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError

    name = unique("kp")
    created = python_admin.create_topics([PyNewTopic(name, 2, 1, topic_configs={"retention.ms": "5000"})])
    (entry,) = created["topics"]
    assert entry["error_code"] == 0 and entry["num_partitions"] == 2
    assert entry["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    with pytest.raises(TopicAlreadyExistsError):
        python_admin.create_topics([PyNewTopic(name, 2, 1)])
    with pytest.raises(InvalidConfigurationError):
        python_admin.create_topics([PyNewTopic(unique("kp-compact"), 1, 1,
                                               topic_configs={"cleanup.policy": "compact"})])

    resource = PyConfigResource(ConfigResourceType.TOPIC, name, configs={"segment.ms": "60000"})
    assert python_admin.alter_configs([resource]) == {"topic": {name: "OK"}}
    legacy = PyConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.bytes": "4096"})
    assert python_admin.alter_configs([legacy], incremental=False) == {"topic": {name: "OK"}}
    modified = python_admin.describe_configs([PyConfigResource(ConfigResourceType.TOPIC, name)])["topic"][name]
    assert {key: value["value"] for key, value in modified.items()} == {
        "retention.ms": "5000", "segment.ms": "60000", "retention.bytes": "4096"}

    python_admin.create_partitions({name: PyNewPartitions(4)})
    log_dirs = python_admin.describe_log_dirs()
    (directory,) = log_dirs[0]["log_dirs"]
    partitions = {t["name"]: len(t["partitions"]) for t in directory["topics"]}
    assert partitions[name] == 4
    cluster = python_admin.describe_cluster()
    assert cluster["controller_id"] == 0 and len(cluster["brokers"]) == 1
    deleted = python_admin.delete_topics([name])
    assert [t["error_code"] for t in deleted["topics"]] == [0]
