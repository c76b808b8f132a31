"""`shoal tier status` and `shoal topic recover NAME` (tiered storage; owned by tiered/).

`tier status` reads the node's admin API (`GET /v1/tiered/status`). `topic recover`
creates the topic with `shoal.remote.recovery=true` through the Kafka protocol, with the
partition count the bucket records (asked from the admin API unless -p is given), then
shows each partition's restored offset range as the broker serves it.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from broker.cli import output
from broker.cli.command_parser import add_command, add_group
from broker.cli.connection import (
    EXIT_OK, CommandError, ConnectionSettings, admin_client, client_config, error_of, fetch_metadata,
    kafka_error_text, key_value, settings_from, wait_for, ErrorCollector,
)

ADMIN_ENVIRONMENT_VARIABLE = "SHOAL_ADMIN"
DEFAULT_ADMIN_PORT = 9644


def register(subparsers):
    tier = add_group(subparsers, "tier", "tiered storage status",
                     "Inspect tiered storage (the cold tier in the bucket) on a Shoal node.")
    parser = add_command(
        tier, "status", "per-partition archiving status",
        """
        Per partition: last archived offset, first offset in the bucket, local start offset,
        upload lag (bytes and time not yet in the bucket), bytes in each tier, last error.
        Reads the node's admin API.
        """,
        """
        shoal tier status
        shoal tier status --admin http://10.0.0.5:9644 --format json
        """,
        run_status)
    _admin_option(parser)
    output.format_option(parser)
    return tier


def register_topic_subcommands(topic_subparsers) -> None:
    parser = add_command(
        topic_subparsers, "recover", "restore a topic's history from the bucket",
        """
        Create topic NAME on this (empty) cluster with shoal.remote.recovery=true: its
        history in the bucket becomes readable with the original offsets and timestamps,
        and new writes continue after the last archived offset. The partition count is the
        one recorded in the bucket unless -p is given.
        """,
        """
        shoal topic recover orders
        shoal topic recover orders -p 6 -c local.retention.ms=3600000
        """,
        run_recover)
    parser.add_argument("name", metavar="NAME", help="topic name")
    parser.add_argument("-p", "--partitions", type=int, default=None, metavar="N",
                        help="number of partitions (default: as recorded in the bucket)")
    parser.add_argument("-c", "--topic-config", dest="topic_configs", type=key_value, action="append",
                        default=[], metavar="KEY=VALUE", help="extra topic config, repeatable")
    _admin_option(parser)


def _admin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", metavar="URL", default=os.environ.get(ADMIN_ENVIRONMENT_VARIABLE),
                        help=f"the node's admin API (default: ${ADMIN_ENVIRONMENT_VARIABLE}, else "
                             f"http://<first broker host>:{DEFAULT_ADMIN_PORT})")


def _admin_url(arguments: argparse.Namespace, settings: ConnectionSettings) -> str:
    if arguments.admin:
        return arguments.admin.rstrip("/")
    host = settings.brokers.split(",")[0].rpartition(":")[0] or "127.0.0.1"
    return f"http://{host}:{DEFAULT_ADMIN_PORT}"


def _get_json(url: str, timeout_seconds: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise CommandError(f"{url}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise CommandError(f"cannot reach the admin API at {url}: {getattr(error, 'reason', error)}") from None


# ---------------------------------------------------------------------------------------


def run_status(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    status = _get_json(_admin_url(arguments, settings) + "/v1/tiered/status", settings.timeout_seconds)
    if status is None:
        raise CommandError("this node runs no tiered storage (no cloud_storage configured?)")
    if arguments.format == "json":
        output.emit_json(status)
        return EXIT_OK
    output.emit(output.fields([
        ("STORE", status["store"]),
        ("REQUESTS", _counts(status["requests"])),
        ("ERRORS", _counts(status["request_errors"]) or 0),
        ("CACHE", f"{status['cache']['size_bytes']}/{status['cache']['capacity_bytes']} bytes, "
                  f"{status['cache']['hits']} hits, {status['cache']['misses']} misses"),
    ]))
    output.emit("")
    output.emit(output.table(
        ("TOPIC", "PARTITION", "ARCHIVED", "REMOTE-START", "LOCAL-START", "HWM", "LAG-BYTES", "LAG-MS",
         "LOCAL-BYTES", "REMOTE-BYTES", "LAST-ERROR"),
        [(entry["topic"], entry["partition"], entry["archived_offset"], entry["remote_start_offset"],
          entry["local_start_offset"], entry["high_watermark"], entry["upload_lag_bytes"],
          entry["upload_lag_ms"], entry["bytes_local"], entry["bytes_remote"], entry["last_error"] or None)
         for entry in status["partitions"]]))
    return EXIT_OK


def _counts(counts: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def run_recover(arguments: argparse.Namespace) -> int:
    from confluent_kafka.admin import NewTopic

    settings = settings_from(arguments)
    partitions = arguments.partitions or _partitions_in_bucket(arguments, settings)
    admin, errors = admin_client(settings)
    fetch_metadata(admin, settings, errors)
    configs = dict(arguments.topic_configs)
    configs["shoal.remote.recovery"] = "true"
    output.emit(f"recovering '{arguments.name}' ({partitions} partitions) from the bucket")
    topic = NewTopic(arguments.name, num_partitions=partitions, config=configs)
    futures = admin.create_topics([topic], request_timeout=settings.timeout_seconds,
                                  operation_timeout=settings.timeout_seconds)
    try:
        wait_for(futures[arguments.name], settings)
    except Exception as exception:  # KafkaException, or a timeout from wait_for
        error = error_of(exception)
        raise CommandError(f"cannot recover '{arguments.name}': "
                           f"{kafka_error_text(error) if error is not None else exception}") from None
    _show_restored_ranges(arguments.name, partitions, settings)
    return EXIT_OK


def _partitions_in_bucket(arguments: argparse.Namespace, settings: ConnectionSettings) -> int:
    query = urllib.parse.urlencode({"name": arguments.name})
    found = _get_json(f"{_admin_url(arguments, settings)}/v1/tiered/remote-topic?{query}", settings.timeout_seconds)
    if found is None:
        raise CommandError(f"the bucket holds no topic '{arguments.name}' (or pass -p N)")
    return int(found["partition_count"])


def _show_restored_ranges(topic: str, partitions: int, settings: ConnectionSettings) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(settings, ErrorCollector(), {"group.id": "shoal-recover-probe"}))
    try:
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=settings.timeout_seconds)
            output.emit(f"  partition {partition}: offsets {low}..{high - 1} readable "
                        f"({partition + 1}/{partitions} done)")
    finally:
        consumer.close()
