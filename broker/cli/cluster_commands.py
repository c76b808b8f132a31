"""`shoal cluster status`: the cluster as a node sees it, from its admin API
(`GET /v1/cluster`): the nodes and their liveness, the controller, every partition
replica that node holds (role, epoch, high watermark, log end), under-replicated and
leaderless partitions. The node is found as for `shoal tier status`."""

from __future__ import annotations

import argparse

from broker.cli import output
from broker.cli.command_parser import add_command, add_group
from broker.cli.connection import EXIT_OK, settings_from
from broker.cli.tier_commands import _admin_option, _admin_url, _get_json, _not_shoal


def register(subparsers):
    cluster = add_group(subparsers, "cluster", "cluster status",
                        "Inspect a Shoal cluster through one node's admin API.")
    parser = add_command(
        cluster, "status", "nodes, controller, replicas, under-replicated partitions",
        """
        The nodes and whether they are alive, the controller leader, under-replicated and
        leaderless partitions, and the replicas the asked node holds with their role,
        leader epoch, high watermark and log end.
        """,
        """
        shoal cluster status
        shoal -b 127.0.0.1:9093 cluster status --format json
        """,
        run_status)
    _admin_option(parser)
    output.format_option(parser)
    return cluster


def run_status(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    admin_url = _admin_url(arguments, settings)
    status = _get_json(admin_url, "/v1/cluster", settings.timeout_seconds)
    if not isinstance(status, dict) or not isinstance(status.get("brokers"), list):
        raise _not_shoal(admin_url, "/v1/cluster", "other JSON")
    if arguments.format == "json":
        output.emit_json(status)
        return EXIT_OK
    output.emit(output.fields([
        ("ADMIN", admin_url),
        ("CLUSTER", status["cluster_id"]),
        ("CONTROLLER", status["controller_id"]),
        ("UNDER-REPLICATED", ", ".join(status.get("under_replicated", [])) or 0),
        ("LEADERLESS", ", ".join(status.get("leaderless_partitions", [])) or 0),
    ]))
    output.emit("")
    output.emit(output.table(
        ("NODE", "KAFKA", "ALIVE"),
        [(entry["node_id"], entry.get("kafka_endpoint") or f"{entry.get('kafka_host')}:{entry.get('kafka_port')}",
          entry["is_alive"]) for entry in status["brokers"]]))
    replicas = status.get("replicas") or []
    if replicas:
        output.emit("")
        output.emit(output.table(
            ("TOPIC", "PARTITION", "ROLE", "EPOCH", "LEADER", "HWM", "LOG-END"),
            [(entry["topic"], entry["partition"], entry["role"], entry["epoch"], entry["leader"],
              entry["high_watermark"], entry["log_end_offset"]) for entry in replicas]))
    return EXIT_OK
