"""`shoal topic create|list|describe|delete|alter-config` through AdminClient."""

from __future__ import annotations

import argparse
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourceType,
)

from broker.cli import cluster_queries, output
from broker.cli.command_parser import add_command, add_group
from broker.cli.connection import (
    EXIT_OK, CommandError, ConnectionSettings, admin_client, error_of, fetch_metadata,
    is_unknown_topic, kafka_error_text, key_value, report, settings_from, topic_missing, wait_for,
)


def register(subparsers):
    """Adds `shoal topic ...`; returns the topic subparsers so other modules can extend it."""
    topics = add_group(subparsers, "topic", "create, list, describe, delete and configure topics",
                       "Create, list, describe, delete and configure topics on any Kafka-API broker.")
    _register_create(topics)
    _register_list(topics)
    _register_describe(topics)
    _register_delete(topics)
    _register_alter_config(topics)
    return topics


def _partition_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if count == 0 or count < -1:
        raise argparse.ArgumentTypeError(f"expected a positive number (or -1 for the broker default), got {text!r}")
    return count


# ---------------------------------------------------------------------------------------
# create


def _register_create(topics) -> None:
    parser = add_command(
        topics, "create", "create a topic",
        """
        Create a topic. Partitions and replication factor default to the broker's
        settings (Shoal: default_partitions / default_replication_factor). Topic configs use
        Kafka names (retention.ms, segment.bytes, remote.storage.enable, ...).
        """,
        """
        shoal topic create orders
        shoal topic create orders -p 6 -r 3 -c retention.ms=86400000
        shoal topic create audit -c remote.storage.enable=true \\
            -c local.retention.ms=3600000 --if-not-exists
        """,
        run_create)
    parser.add_argument("name", metavar="NAME", help="topic name")
    parser.add_argument("-p", "--partitions", type=_partition_count, default=-1, metavar="N",
                        help="number of partitions (default: the broker's)")
    parser.add_argument("-r", "--replicas", type=_partition_count, default=-1, metavar="N",
                        help="replication factor (default: the broker's)")
    parser.add_argument("-c", "--topic-config", dest="topic_configs", type=key_value, action="append",
                        default=[], metavar="KEY=VALUE", help="topic config, repeatable")
    parser.add_argument("--if-not-exists", action="store_true",
                        help="succeed without change when the topic already exists")


def run_create(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    fetch_metadata(admin, settings, errors)
    topic = NewTopic(arguments.name, num_partitions=arguments.partitions,
                     replication_factor=arguments.replicas, config=dict(arguments.topic_configs))
    futures = admin.create_topics([topic], **_admin_timeouts(settings))
    try:
        wait_for(futures[arguments.name], settings)
    except KafkaException as exception:
        error = error_of(exception)
        if error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS and arguments.if_not_exists:
            output.emit(f"topic '{arguments.name}' already exists")
            return EXIT_OK
        raise CommandError(f"cannot create topic '{arguments.name}': {_text(exception)}") from None
    output.emit(f"created topic '{arguments.name}'")
    return EXIT_OK


def _admin_timeouts(settings: ConnectionSettings) -> dict[str, float]:
    # operation_timeout: wait (broker side) until the change has reached every broker.
    return {"request_timeout": settings.timeout_seconds, "operation_timeout": settings.timeout_seconds}


def _text(exception: KafkaException) -> str:
    error = error_of(exception)
    return kafka_error_text(error) if error is not None else str(exception)


# ---------------------------------------------------------------------------------------
# list


def _register_list(topics) -> None:
    parser = add_command(
        topics, "list", "list topics",
        "List the cluster's topics with their partition count and replication factor.",
        """
        shoal topic list
        shoal topic list --internal --format json
        """,
        run_list)
    parser.add_argument("-i", "--internal", action="store_true",
                        help="include internal topics (names starting with '__')")
    output.format_option(parser)


def _replication_factor(topic: Any) -> int:
    partitions = list(topic.partitions.values())
    return len(partitions[0].replicas) if partitions else 0


def run_list(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    metadata = fetch_metadata(admin, settings, errors)
    rows = [
        {"name": name, "partitions": len(topic.partitions), "replicas": _replication_factor(topic)}
        for name, topic in sorted(metadata.topics.items())
        if arguments.internal or not name.startswith("__")
    ]
    if arguments.format == "json":
        output.emit_json(rows)
    else:
        output.emit(output.table(("NAME", "PARTITIONS", "REPLICAS"),
                                 [(row["name"], row["partitions"], row["replicas"]) for row in rows]))
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# describe


def _register_describe(topics) -> None:
    parser = add_command(
        topics, "describe", "show a topic's partitions, offsets and configs",
        """
        Show a topic's partitions (leader, replicas, in-sync replicas, low and high
        watermark) and every topic config with its value and source (DYNAMIC_TOPIC_CONFIG
        for values set on the topic, DEFAULT_CONFIG / STATIC_BROKER_CONFIG otherwise).
        """,
        """
        shoal topic describe orders
        shoal topic describe orders --format json | jq '.partitions[].high'
        """,
        run_describe)
    parser.add_argument("name", metavar="NAME", help="topic name")
    output.format_option(parser)


def run_describe(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    metadata = fetch_metadata(admin, settings, errors)
    topic = cluster_queries.topic_metadata(metadata, arguments.name)
    keys = cluster_queries.partition_keys(metadata, arguments.name)
    offsets = cluster_queries.watermarks(admin, settings, keys)
    document = {
        "name": arguments.name,
        "partitions": [_partition_document(topic.partitions[partition], offsets[(arguments.name, partition)])
                       for _, partition in keys],
        "configs": _topic_configs(admin, settings, arguments.name),
    }
    if arguments.format == "json":
        output.emit_json(document)
    else:
        output.emit(_describe_text(document, _replication_factor(topic)))
    return EXIT_OK


def _partition_document(partition: Any, watermarks: tuple[int, int]) -> dict[str, Any]:
    return {
        "partition": partition.id,
        "leader": partition.leader,
        "replicas": list(partition.replicas),
        "in_sync_replicas": list(partition.isrs),
        "low": watermarks[0],
        "high": watermarks[1],
    }


def _topic_configs(admin: Any, settings: ConnectionSettings, name: str) -> list[dict[str, Any]]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    futures = admin.describe_configs([resource], request_timeout=settings.timeout_seconds)
    try:
        entries = wait_for(futures[resource], settings)
    except KafkaException as exception:
        error = error_of(exception)
        if error is not None and is_unknown_topic(error):
            raise topic_missing(name) from None
        raise CommandError(f"cannot read configs of topic '{name}': {_text(exception)}") from None
    return [
        {"name": entry.name, "value": None if entry.is_sensitive else entry.value,
         "source": _source_name(entry.source), "read_only": entry.is_read_only,
         "sensitive": entry.is_sensitive}
        for entry in sorted(entries.values(), key=lambda entry: entry.name)
    ]


def _source_name(source: Any) -> str:
    try:
        return ConfigSource(source).name
    except ValueError:
        return str(source)


def _describe_text(document: dict[str, Any], replicas: int) -> str:
    summary = output.fields((("NAME", document["name"]), ("PARTITIONS", len(document["partitions"])),
                             ("REPLICAS", replicas)))
    partitions = output.table(
        ("PARTITION", "LEADER", "REPLICAS", "IN-SYNC", "LOW", "HIGH"),
        [(p["partition"], p["leader"], p["replicas"], p["in_sync_replicas"], p["low"], p["high"])
         for p in document["partitions"]])
    configs = output.table(
        ("CONFIG", "VALUE", "SOURCE"),
        [(c["name"], "(sensitive)" if c["sensitive"] else c["value"], c["source"]) for c in document["configs"]])
    return "\n\n".join((summary, partitions, configs))


# ---------------------------------------------------------------------------------------
# delete


def _register_delete(topics) -> None:
    parser = add_command(
        topics, "delete", "delete topics",
        "Delete one or more topics and all their data (hot and cold tier).",
        """
        shoal topic delete orders
        shoal topic delete orders payments --if-exists
        """,
        run_delete)
    parser.add_argument("names", metavar="NAME", nargs="+", help="topic names")
    parser.add_argument("--if-exists", action="store_true", help="a topic that does not exist is not an error")


def run_delete(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    fetch_metadata(admin, settings, errors)
    names = list(dict.fromkeys(arguments.names))
    futures = admin.delete_topics(names, **_admin_timeouts(settings))
    exit_code = EXIT_OK
    for name in names:
        try:
            wait_for(futures[name], settings)
            output.emit(f"deleted topic '{name}'")
        except KafkaException as exception:
            error = error_of(exception)
            if error is not None and is_unknown_topic(error):
                if arguments.if_exists:
                    continue
                exit_code = report(str(topic_missing(name)))
            else:
                exit_code = report(f"cannot delete topic '{name}': {_text(exception)}")
    return exit_code


# ---------------------------------------------------------------------------------------
# alter-config


def _register_alter_config(topics) -> None:
    parser = add_command(
        topics, "alter-config", "set or remove topic configs",
        """
        Change a topic's configs incrementally (IncrementalAlterConfigs): --set gives a
        config an explicit value, --delete returns it to its default. Configs not named
        keep their values.
        """,
        """
        shoal topic alter-config orders --set retention.ms=3600000
        shoal topic alter-config orders --set segment.bytes=16777216 -b kafka:9092
        shoal topic alter-config orders --delete retention.ms
        """,
        run_alter_config)
    parser.add_argument("name", metavar="NAME", help="topic name")
    parser.add_argument("--set", dest="set_configs", type=key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="set a config, repeatable")
    parser.add_argument("--delete", dest="delete_configs", action="append", default=[], metavar="KEY",
                        help="remove a config (back to its default), repeatable")


def run_alter_config(arguments: argparse.Namespace) -> int:
    if not arguments.set_configs and not arguments.delete_configs:
        raise CommandError("nothing to change: give --set KEY=VALUE and/or --delete KEY")
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    cluster_queries.topic_metadata(fetch_metadata(admin, settings, errors), arguments.name)
    changes = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in arguments.set_configs]
    changes += [ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE)
                for name in arguments.delete_configs]
    resource = ConfigResource(ResourceType.TOPIC, arguments.name, incremental_configs=changes)
    futures = admin.incremental_alter_configs([resource], request_timeout=settings.timeout_seconds)
    try:
        wait_for(futures[resource], settings)
    except KafkaException as exception:
        error = error_of(exception)
        if error is not None and is_unknown_topic(error):
            raise topic_missing(arguments.name) from None
        raise CommandError(f"cannot change configs of topic '{arguments.name}': {_text(exception)}") from None
    described = [f"set {name}={value}" for name, value in arguments.set_configs]
    described += [f"deleted {name}" for name in arguments.delete_configs]
    output.emit(f"updated topic '{arguments.name}': {', '.join(described)}")
    return EXIT_OK
