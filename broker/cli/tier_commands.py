"""`shoal tier status` and `shoal topic recover NAME` (tiered storage; owned by tiered/).

`tier status` reads the node's admin API (`GET /v1/tiered/status`). `topic recover`
creates the topic with `shoal.remote.recovery=true` through the Kafka protocol, with the
partition count the bucket records (asked from the admin API unless -p is given), then
shows each partition's restored offset range as the broker serves it.

The admin API is the one given with --admin (or $SHOAL_ADMIN), else the one the node at
the first -b address reports in its broker config `shoal.admin.api.url` (DescribeConfigs).
An answer is taken as Shoal's only in Shoal's JSON shapes, so a 404 from another HTTP
server is reported as such, not as "no tiered storage".
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from broker.broker_configs import ADMIN_API_URL_CONFIG
from broker.cli import output
from broker.cli.command_parser import add_command, add_group
from broker.cli.connection import (
    EXIT_OK, CommandError, ConnectionSettings, admin_client, client_config, error_of, fetch_metadata,
    kafka_error_text, key_value, settings_from, wait_for, ErrorCollector,
)

ADMIN_ENVIRONMENT_VARIABLE = "SHOAL_ADMIN"
# Bytes of an HTTP error body read to tell Shoal's JSON error from another server's page.
ADMIN_ERROR_BODY_BYTES_MAX = 64 * 1024


def register(subparsers):
    tier = add_group(subparsers, "tier", "tiered storage status",
                     "Inspect tiered storage (the cold tier in the bucket) on a Shoal node.")
    parser = add_command(
        tier, "status", "per-partition archiving status",
        """
        Per partition: last archived offset, first offset in the bucket, local start offset,
        upload lag (bytes and time not yet in the bucket), bytes in each tier, last error.
        Reads the admin API of the node at the first -b address (the node reports its
        URL as the broker config shoal.admin.api.url), or the one given with --admin.
        """,
        """
        shoal tier status
        shoal -b 127.0.0.1:9093 tier status
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
                        help=f"the node's admin API, e.g. http://10.0.0.5:9644 (default: "
                             f"${ADMIN_ENVIRONMENT_VARIABLE}, else the URL the node at the first -b "
                             f"address reports as {ADMIN_API_URL_CONFIG})")


class ShoalNotFound(Exception):
    """A 404 in the JSON shape of Shoal's admin API errors; the message is Shoal's."""


def _admin_url(arguments: argparse.Namespace, settings: ConnectionSettings) -> str:
    if arguments.admin:
        url = arguments.admin.strip().rstrip("/")
        return url if "://" in url else f"http://{url}"
    return _reported_admin_url(settings)


def _reported_admin_url(settings: ConnectionSettings) -> str:
    """The admin API URL the node at the first -b address reports in its broker configs."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin, errors = admin_client(settings)
    node_id, address = _asked_node(fetch_metadata(admin, settings, errors), settings)
    resource = ConfigResource(ResourceType.BROKER, str(node_id))
    futures = admin.describe_configs([resource], request_timeout=settings.timeout_seconds)
    try:
        configs = wait_for(futures[resource], settings)
    except Exception as exception:  # KafkaException, or a timeout from wait_for
        error = error_of(exception)
        raise CommandError(f"cannot read the broker configs of node {node_id} at {address}: "
                           f"{kafka_error_text(error) if error is not None else exception}") from None
    entry = configs.get(ADMIN_API_URL_CONFIG)
    if entry is None or not entry.value:
        raise CommandError(f"node {node_id} at {address} does not report {ADMIN_API_URL_CONFIG} "
                           f"(not a Shoal node?); pass --admin URL")
    return entry.value.rstrip("/")


def _asked_node(metadata: Any, settings: ConnectionSettings) -> tuple[int, str]:
    """The node advertised at the first -b address, else the only node there is (reached
    under another name); returns its id and host:port."""
    first_address = settings.brokers.split(",")[0].strip()
    addresses = {node_id: f"{broker.host}:{broker.port}" for node_id, broker in metadata.brokers.items()}
    for node_id, address in addresses.items():
        if address == first_address:
            return node_id, address
    if len(addresses) == 1:
        return next(iter(addresses.items()))
    raise CommandError(f"no node advertises {first_address} (nodes: "
                       f"{', '.join(sorted(addresses.values()))}); pass --admin URL or -b HOST:PORT of one")


def _get_json(admin_url: str, path: str, timeout_seconds: float) -> Any:
    """GET admin_url + path as JSON. Raises ShoalNotFound for Shoal's own 404, CommandError
    naming the URL for everything else that is not a JSON answer from Shoal."""
    url = admin_url + path
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        message = _shoal_error_message(error)
        if message is None:
            raise _not_shoal(admin_url, path, f"HTTP {error.code}") from None
        if error.code == 404:
            raise ShoalNotFound(message) from None
        raise CommandError(
            f"the admin API at {admin_url} answered HTTP {error.code} to GET {path}: {message}") from None
    except ValueError:  # urllib: unknown url type
        raise CommandError(f"bad admin API URL {admin_url!r}: expected http://HOST:PORT") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CommandError(f"cannot reach the admin API at {admin_url}: {reason}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise _not_shoal(admin_url, path, "no JSON") from None


def _not_shoal(admin_url: str, path: str, answer: str) -> CommandError:
    return CommandError(f"not a Shoal admin API at {admin_url} (GET {path} answered {answer})")


def _shoal_error_message(error: urllib.error.HTTPError) -> str | None:
    """The message of Shoal's JSON error body {"error": ..., "status": <code>}, else None."""
    try:
        body = json.loads(error.read(ADMIN_ERROR_BODY_BYTES_MAX))
    except (ValueError, OSError):
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("status") == error.code:
        return body["error"]
    return None


# ---------------------------------------------------------------------------------------


def run_status(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin_url = _admin_url(arguments, settings)
    try:
        status = _get_json(admin_url, "/v1/tiered/status", settings.timeout_seconds)
    except ShoalNotFound:
        raise CommandError(
            f"the node at {admin_url} runs no tiered storage (no cloud_storage configured?)") from None
    if not isinstance(status, dict) or not isinstance(status.get("partitions"), list):
        raise _not_shoal(admin_url, "/v1/tiered/status", "other JSON")
    if arguments.format == "json":
        output.emit_json(status)
        return EXIT_OK
    output.emit(output.fields([
        ("ADMIN", admin_url),
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
    admin_url = _admin_url(arguments, settings)
    try:
        found = _get_json(admin_url, f"/v1/tiered/remote-topic?{query}", settings.timeout_seconds)
    except ShoalNotFound as not_found:
        raise CommandError(f"the bucket of the node at {admin_url} holds no topic '{arguments.name}' "
                           f"({not_found}; or pass -p N)") from None
    if not isinstance(found, dict) or not isinstance(found.get("partition_count"), int):
        raise _not_shoal(admin_url, "/v1/tiered/remote-topic", "other JSON")
    return found["partition_count"]


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
