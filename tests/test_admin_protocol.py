"""The admin APIs at the protocol level, against a real broker process: every advertised
version of every admin API round-trips through kio (requests encoded by kio, responses
decoded by kio), and each Kafka error case answers with Kafka's code and a clear message."""

from __future__ import annotations

import datetime
import itertools
import uuid

import pytest
from kio.schema.errors import ErrorCode

from broker.handlers import (
    alter_configs, create_partitions, create_topics, delete_topics, describe_cluster, describe_configs,
    describe_log_dirs, incremental_alter_configs)
from broker.protocol.kio_build import build
from tests.support import BrokerProcess, module_broker
from tests.wire_client import WireClient, nested, request_class

TIMEOUT = datetime.timedelta(seconds=5)
TOPIC, BROKER = 2, 4
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


node = module_broker("admin", cloud_storage=None, default_partitions=2)  # no cold tier: these tests need none


@pytest.fixture
def client(node):
    with WireClient(node.kafka_port) as connection:
        yield connection


# -- request builders (any version; fields a version lacks are dropped) ----------------------

def create_request(version, topics, validate_only=False):
    request_type = request_class(create_topics.API_KEY, version)
    topic_type, config_type = nested(request_type, "CreatableTopic"), nested(request_type, "CreatableTopicConfig")
    entries = tuple(
        build(topic_type, name=name, num_partitions=partitions, replication_factor=replication, assignments=(),
              configs=tuple(build(config_type, name=key, value=value) for key, value in configs.items()))
        for name, partitions, replication, configs in topics)
    return build(request_type, topics=entries, timeout=TIMEOUT, validate_only=validate_only)


def create(client, name, partitions=1, replication=1, configs=None, version=create_topics.MAX_VERSION,
           validate_only=False):
    response = client.call(create_request(version, [(name, partitions, replication, configs or {})], validate_only))
    (result,) = response.topics
    return result


def delete_request(version, names=(), ids=()):
    request_type = request_class(delete_topics.API_KEY, version)
    if version >= 6:
        state = nested(request_type, "DeleteTopicState")
        topics = tuple(build(state, name=name, topic_id=None) for name in names) + tuple(
            build(state, name=None, topic_id=topic_id) for topic_id in ids)
        return build(request_type, topics=topics, timeout=TIMEOUT)
    return build(request_type, topic_names=tuple(names), timeout=TIMEOUT)


def partitions_request(version, name, count, validate_only=False, assignments=None):
    request_type = request_class(create_partitions.API_KEY, version)
    topic_type = nested(request_type, "CreatePartitionsTopic")
    assignment_type = nested(request_type, "CreatePartitionsAssignment")
    if assignments is not None:
        assignments = tuple(build(assignment_type, broker_ids=tuple(ids)) for ids in assignments)
    return build(request_type, topics=(build(topic_type, name=name, count=count, assignments=assignments),),
                 timeout=TIMEOUT, validate_only=validate_only)


def describe_request(version, resource_type, name, keys=None, synonyms=True, documentation=True):
    request_type = request_class(describe_configs.API_KEY, version)
    resource = build(nested(request_type, "DescribeConfigsResource"), resource_type=resource_type,
                     resource_name=name, configuration_keys=keys)
    return build(request_type, resources=(resource,), include_synonyms=synonyms,
                 include_documentation=documentation)


def describe(client, resource_type, name, keys=None, version=describe_configs.MAX_VERSION):
    (result,) = client.call(describe_request(version, resource_type, name, keys)).results
    return result


def alter_request(version, resource_type, name, configs, validate_only=False):
    request_type = request_class(alter_configs.API_KEY, version)
    entries = tuple(build(nested(request_type, "AlterableConfig"), name=key, value=value)
                    for key, value in configs.items())
    resource = build(nested(request_type, "AlterConfigsResource"), resource_type=resource_type,
                     resource_name=name, configs=entries)
    return build(request_type, resources=(resource,), validate_only=validate_only)


def incremental_request(version, resource_type, name, operations, validate_only=False):
    request_type = request_class(incremental_alter_configs.API_KEY, version)
    entries = tuple(build(nested(request_type, "AlterableConfig"), name=key, config_operation=operation, value=value)
                    for key, operation, value in operations)
    resource = build(nested(request_type, "AlterConfigsResource"), resource_type=resource_type,
                     resource_name=name, configs=entries)
    return build(request_type, resources=(resource,), validate_only=validate_only)


def incremental(client, name, *operations, resource_type=TOPIC):
    version = incremental_alter_configs.MAX_VERSION
    (result,) = client.call(incremental_request(version, resource_type, name, operations)).responses
    return result


def config_values(client, name):
    return {entry.name: (entry.value, entry.config_source) for entry in describe(client, TOPIC, name).configs}


# -- every advertised version round-trips -----------------------------------------------------

def _versions(module):
    return [(module, version) for version in range(module.MIN_VERSION, module.MAX_VERSION + 1)]


ALL_VERSIONS = [
    pytest.param(module, version, id=f"{module.__name__.rsplit('.', 1)[1]}-v{version}")
    for module in (create_topics, delete_topics, create_partitions, describe_configs, alter_configs,
                   incremental_alter_configs, describe_cluster, describe_log_dirs)
    for module, version in _versions(module)
]


def test_api_versions_advertises_every_admin_range(client):
    request = build(request_class(18, 3), client_software_name="admin-test", client_software_version="1")
    advertised = {int(key.api_key): (int(key.min_version), int(key.max_version)) for key in client.call(request).api_keys}
    for module in (create_topics, delete_topics, create_partitions, describe_configs, alter_configs,
                   incremental_alter_configs, describe_cluster, describe_log_dirs):
        assert advertised[module.API_KEY] == (module.MIN_VERSION, module.MAX_VERSION)
    assert advertised[describe_log_dirs.API_KEY][1] <= 4  # v5 makes kafka-python assume a Kafka 4.3 broker


@pytest.mark.parametrize(("module", "version"), ALL_VERSIONS)
def test_every_advertised_version_round_trips(client, module, version):
    name = unique(f"rt-{module.API_KEY}-{version}")
    assert create(client, name, 1, 1, {"retention.ms": "3600000"}).error_code == ErrorCode.none
    if module is create_topics:
        (result,) = client.call(create_request(version, [(unique("rt-create"), 2, 1, {"segment.ms": "60000"})])).topics
        assert result.error_code == ErrorCode.none
    elif module is delete_topics:
        if version >= 6:
            topic_id = create(client, unique("rt-by-id")).topic_id
            response = client.call(delete_request(version, names=[name], ids=[topic_id]))
        else:
            response = client.call(delete_request(version, names=[name]))
        assert all(result.error_code == ErrorCode.none for result in response.responses)
    elif module is create_partitions:
        (result,) = client.call(partitions_request(version, name, 3)).results
        assert result.error_code == ErrorCode.none
    elif module is describe_configs:
        (result,) = client.call(describe_request(version, TOPIC, name)).results
        assert result.error_code == ErrorCode.none
        assert ("retention.ms", "3600000") in {(entry.name, entry.value) for entry in result.configs}
    elif module is alter_configs:
        (result,) = client.call(alter_request(version, TOPIC, name, {"retention.ms": "7200000"})).responses
        assert result.error_code == ErrorCode.none
    elif module is incremental_alter_configs:
        (result,) = client.call(incremental_request(version, TOPIC, name, [("retention.ms", SET, "1")])).responses
        assert result.error_code == ErrorCode.none
    elif module is describe_cluster:
        request = build(request_class(module.API_KEY, version), include_cluster_authorized_operations=False,
                        endpoint_type=1)
        response = client.call(request)
        assert response.error_code == ErrorCode.none and len(response.brokers) == 1
    elif module is describe_log_dirs:
        request_type = request_class(module.API_KEY, version)
        topic_entry = build(nested(request_type, "DescribableLogDirTopic"), topic=name, partitions=(0,))
        (result,) = client.call(build(request_type, topics=(topic_entry,))).results
        assert [topic.name for topic in result.topics] == [name]


# -- CreateTopics ------------------------------------------------------------------------------

def test_create_with_node_defaults_returns_configs_and_id(client):
    name = unique("defaults")
    result = create(client, name, -1, -1, {"retention.ms": "60000"})
    assert result.error_code == ErrorCode.none
    assert (result.num_partitions, result.replication_factor) == (2, 1)  # default_partitions: 2
    assert result.topic_id is not None and result.topic_id != uuid.UUID(int=0)
    configs = {entry.name: (entry.value, entry.config_source) for entry in result.configs}
    assert configs["retention.ms"] == ("60000", 1)  # DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"] == ("delete", 5)  # DEFAULT_CONFIG


def test_create_errors_carry_kafka_codes_and_messages(client):
    name = unique("exists")
    assert create(client, name).error_code == ErrorCode.none
    cases = [
        (dict(name=name), ErrorCode.topic_already_exists, "already exists"),
        (dict(name=unique("zero"), partitions=0), ErrorCode.invalid_partitions, "partitions"),
        (dict(name=unique("rf0"), replication=0), ErrorCode.invalid_replication_factor, "replication factor"),
        (dict(name=unique("rf3"), replication=3), ErrorCode.invalid_replication_factor, "larger than"),
        (dict(name="bad/name"), ErrorCode.invalid_topic_exception, "may only contain"),
        (dict(name=unique("compact"), configs={"cleanup.policy": "compact"}), ErrorCode.invalid_config,
         "compaction is not supported"),
        (dict(name=unique("unknown"), configs={"no.such.config": "1"}), ErrorCode.invalid_config, "unknown"),
        (dict(name=unique("badvalue"), configs={"retention.ms": "soon"}), ErrorCode.invalid_config, "integer"),
        (dict(name="__consumer_offsets"), ErrorCode.invalid_request, "internal"),
        (dict(name=unique("recover"), configs={"redpanda.remote.recovery": "true"}), ErrorCode.invalid_config,
         "tiered storage"),
    ]
    for arguments, expected_code, message_part in cases:
        result = create(client, **arguments)
        assert result.error_code == expected_code, arguments
        assert message_part in result.error_message, (arguments, result.error_message)
        assert (result.num_partitions, result.configs) == (-1, None)


def test_create_validate_only_creates_nothing(client):
    name = unique("validate")
    result = create(client, name, 4, 1, {"retention.ms": "1000"}, validate_only=True)
    assert (result.error_code, result.num_partitions) == (ErrorCode.none, 4)
    assert describe(client, TOPIC, name).error_code == ErrorCode.unknown_topic_or_partition
    assert create(client, name, 0, 1, validate_only=True).error_code == ErrorCode.invalid_partitions


def test_duplicate_names_in_one_request_are_refused(client):
    name = unique("twice")
    response = client.call(create_request(create_topics.MAX_VERSION, [(name, 1, 1, {}), (name, 1, 1, {})]))
    assert [result.error_code for result in response.topics] == [ErrorCode.invalid_request] * 2


def test_redpanda_aliases_are_stored_under_the_kip405_names(client):
    name = unique("alias")
    result = create(client, name, configs={"retention.local.target.bytes": "4096", "redpanda.remote.read": "false"})
    assert result.error_code == ErrorCode.none
    configs = config_values(client, name)
    assert configs["local.retention.bytes"] == ("4096", 1)
    assert configs["remote.storage.enable"] == ("false", 1)
    aliased = describe(client, TOPIC, name, keys=("retention.local.target.bytes",))
    assert [(entry.name, entry.value) for entry in aliased.configs] == [("retention.local.target.bytes", "4096")]


# -- DeleteTopics -------------------------------------------------------------------------------

def test_delete_by_name_and_by_id(client):
    by_name, by_id = unique("del-name"), unique("del-id")
    create(client, by_name)
    topic_id = create(client, by_id).topic_id
    response = client.call(delete_request(6, names=[by_name, unique("never")], ids=[topic_id, uuid.uuid4()]))
    outcomes = [(result.name, result.error_code) for result in response.responses]
    assert outcomes[0] == (by_name, ErrorCode.none)
    assert outcomes[1][1] == ErrorCode.unknown_topic_or_partition
    assert outcomes[2] == (by_id, ErrorCode.none)
    assert outcomes[3] == (None, ErrorCode.unknown_topic_id)
    assert describe(client, TOPIC, by_id).error_code == ErrorCode.unknown_topic_or_partition
    assert create(client, by_name).error_code == ErrorCode.none  # the name is free again


# -- CreatePartitions ---------------------------------------------------------------------------

def test_create_partitions_errors_and_validate_only(client):
    name = unique("grow")
    create(client, name, 2)
    version = create_partitions.MAX_VERSION

    def outcome(count, **options):
        (result,) = client.call(partitions_request(version, name, count, **options)).results
        return result.error_code, result.error_message

    assert outcome(2)[0] == ErrorCode.invalid_partitions
    assert outcome(1)[0] == ErrorCode.invalid_partitions
    assert outcome(5, validate_only=True) == (ErrorCode.none, None)
    assert outcome(4, assignments=[[0], [7]])[0] == ErrorCode.invalid_replica_assignment
    assert outcome(4, assignments=[[0]])[0] == ErrorCode.invalid_replica_assignment
    assert outcome(4, assignments=[[0], [0]]) == (ErrorCode.none, None)
    assert outcome(4)[0] == ErrorCode.invalid_partitions  # already 4: validate_only changed nothing before
    (missing,) = client.call(partitions_request(version, unique("missing"), 3)).results
    assert missing.error_code == ErrorCode.unknown_topic_or_partition


# -- configs ------------------------------------------------------------------------------------

def test_incremental_set_delete_append_subtract(client):
    name = unique("incremental")
    create(client, name, configs={"retention.ms": "1000"})
    assert incremental(client, name, ("segment.ms", SET, "60000"), ("retention.ms", DELETE, None)).error_code == 0
    configs = config_values(client, name)
    assert configs["segment.ms"] == ("60000", 1)
    assert configs["retention.ms"][1] != 1  # back to its default
    append_long = incremental(client, name, ("retention.ms", APPEND, "5"))
    assert append_long.error_code == ErrorCode.invalid_config and "append" in append_long.error_message
    subtract_long = incremental(client, name, ("segment.ms", SUBTRACT, "5"))
    assert subtract_long.error_code == ErrorCode.invalid_config
    compact = incremental(client, name, ("cleanup.policy", APPEND, "compact"))
    assert compact.error_code == ErrorCode.invalid_config and "compaction" in compact.error_message
    assert incremental(client, name, ("cleanup.policy", SUBTRACT, "delete")).error_code == ErrorCode.invalid_config
    assert incremental(client, name, ("cleanup.policy", APPEND, "delete")).error_code == ErrorCode.none
    assert config_values(client, name)["cleanup.policy"] == ("delete", 1)
    assert incremental(client, name, ("segment.ms", 9, "1")).error_code == ErrorCode.invalid_request
    assert incremental(client, name, ("segment.ms", SET, None)).error_code == ErrorCode.invalid_request
    assert incremental(client, name, ("nope.nope", DELETE, None)).error_code == ErrorCode.invalid_config
    assert incremental(client, unique("absent"), ("segment.ms", SET, "1")).error_code == \
        ErrorCode.unknown_topic_or_partition


def test_legacy_alter_configs_replaces_the_whole_set(client):
    name = unique("legacy")
    create(client, name, configs={"retention.ms": "1000", "segment.ms": "60000"})
    (result,) = client.call(alter_request(alter_configs.MAX_VERSION, TOPIC, name, {"retention.bytes": "4096"})).responses
    assert result.error_code == ErrorCode.none
    explicit = {key: value for key, (value, source) in config_values(client, name).items() if source == 1}
    assert explicit == {"retention.bytes": "4096"}
    (invalid,) = client.call(alter_request(1, TOPIC, name, {"cleanup.policy": "compact"})).responses
    assert invalid.error_code == ErrorCode.invalid_config and "compaction" in invalid.error_message
    (validated,) = client.call(alter_request(1, TOPIC, name, {"segment.ms": "1"}, validate_only=True)).responses
    assert validated.error_code == ErrorCode.none
    assert config_values(client, name)["retention.bytes"] == ("4096", 1)  # validate_only changed nothing


def test_describe_topic_configs_sources_synonyms_and_documentation(client):
    name = unique("described")
    create(client, name, configs={"retention.ms": "123456"})
    result = describe(client, TOPIC, name)
    by_name = {entry.name: entry for entry in result.configs}
    retention = by_name["retention.ms"]
    assert (retention.value, retention.config_source, retention.read_only) == ("123456", 1, False)
    assert [synonym.source for synonym in retention.synonyms][0] == 1
    assert "log.retention.ms" in {synonym.name for synonym in retention.synonyms}
    assert retention.config_type == 5 and retention.documentation  # LONG
    assert by_name["cleanup.policy"].config_type == 7  # LIST
    only = describe(client, TOPIC, name, keys=("segment.bytes", "not.a.config"))
    assert [entry.name for entry in only.configs] == ["segment.bytes"]
    assert describe(client, TOPIC, unique("absent")).error_code == ErrorCode.unknown_topic_or_partition


def test_broker_resource_describes_static_read_only_configs(client, node):
    result = describe(client, BROKER, "0")
    by_name = {entry.name: entry for entry in result.configs}
    assert by_name["num.partitions"].value == "2"
    assert by_name["num.partitions"].config_source == 4  # STATIC_BROKER_CONFIG: set in the node config
    assert by_name["log.segment.bytes"].config_source == 5  # DEFAULT_CONFIG
    assert by_name["listeners"].value == f"PLAINTEXT://127.0.0.1:{node.kafka_port}"
    assert all(entry.read_only for entry in result.configs)
    assert describe(client, BROKER, "").configs == ()
    assert describe(client, BROKER, "7").error_code == ErrorCode.invalid_request
    changed = incremental(client, "0", ("log.retention.ms", SET, "1"), resource_type=BROKER)
    assert changed.error_code == ErrorCode.invalid_request and "node config" in changed.error_message
    assert incremental(client, "0", resource_type=BROKER).error_code == ErrorCode.none


# -- cluster and log dirs -----------------------------------------------------------------------

def test_describe_cluster(client, node):
    request_type = request_class(describe_cluster.API_KEY, describe_cluster.MAX_VERSION)
    response = client.call(build(request_type, include_cluster_authorized_operations=True, endpoint_type=1))
    assert response.error_code == ErrorCode.none
    assert response.controller_id == 0 and response.cluster_id
    assert [(b.broker_id, b.host, b.port) for b in response.brokers] == [(0, "127.0.0.1", node.kafka_port)]
    assert response.cluster_authorized_operations > 0
    controllers = client.call(build(request_type, include_cluster_authorized_operations=False, endpoint_type=2))
    assert controllers.error_code == ErrorCode.unsupported_endpoint_type


def test_describe_log_dirs_lists_partitions_and_volume(client, node):
    name = unique("dirs")
    create(client, name, 3)
    request_type = request_class(describe_log_dirs.API_KEY, describe_log_dirs.MAX_VERSION)
    (result,) = client.call(build(request_type, topics=None)).results
    assert result.log_dir == str((node.data_dir / "topics").absolute())
    assert result.total_bytes > 0 and 0 <= result.usable_bytes <= result.total_bytes
    topics = {topic.name: sorted(p.partition_index for p in topic.partitions) for topic in result.topics}
    assert topics[name] == [0, 1, 2]
    assert all(p.partition_size >= 0 and p.offset_lag >= 0 for topic in result.topics for p in topic.partitions)
    entry = build(nested(request_type, "DescribableLogDirTopic"), topic=name, partitions=(1, 9))
    (only,) = client.call(build(request_type, topics=(entry,))).results
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in only.topics] == [(name, [1])]


def test_recovery_request_reaches_tiered_storage(tmp_path):
    """With a cold tier, shoal.remote.recovery=true goes through tiered storage's recovery
    (an empty bucket: the topic starts empty with the node's default partition count)."""
    process = BrokerProcess(tmp_path / "node0").start()  # embedded defaults: file:// cold tier
    try:
        with WireClient(process.kafka_port) as connection:
            name = unique("recovered")
            result = create(connection, name, -1, -1, {"redpanda.remote.recovery": "true"})
            assert (result.error_code, result.error_message) == (ErrorCode.none, None)
            assert result.num_partitions == 1
            configs = config_values(connection, name)
            assert configs["shoal.remote.recovery"] == ("true", 1)
    finally:
        process.close()
