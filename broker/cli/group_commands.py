"""`shoal group list|describe|reset-offsets|delete` through AdminClient."""

from __future__ import annotations

import argparse
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from broker.cli import cluster_queries, output
from broker.cli.command_parser import add_command, add_group
from broker.cli.connection import (
    EXIT_OK, CommandError, ConnectionSettings, admin_client, error_of, fetch_metadata, kafka_error_text,
    report, settings_from, wait_for,
)
from broker.cli.offset_spec import (
    PartitionPosition, ResetError, ResetStrategy, parse_datetime_ms, reset_target,
)

PartitionKey = tuple[str, int]
# States in which a group has no members, so its offsets may be changed from outside.
INACTIVE_STATES = ("EMPTY", "DEAD", "UNKNOWN")


def register(subparsers):
    groups = add_group(subparsers, "group", "list, describe, reset and delete consumer groups",
                       "Inspect and manage consumer groups on any Kafka-API broker.")
    _register_list(groups)
    _register_describe(groups)
    _register_reset_offsets(groups)
    _register_delete(groups)
    return groups


def _text(exception: KafkaException) -> str:
    error = error_of(exception)
    return kafka_error_text(error) if error is not None else str(exception)


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None)
    return name if name else str(state or "UNKNOWN")


def _connected_admin(arguments: argparse.Namespace) -> tuple[Any, ConnectionSettings, Any]:
    settings = settings_from(arguments)
    admin, errors = admin_client(settings)
    metadata = fetch_metadata(admin, settings, errors)
    return admin, settings, metadata


# ---------------------------------------------------------------------------------------
# list


def _register_list(groups) -> None:
    parser = add_command(
        groups, "list", "list consumer groups",
        "List the consumer groups the brokers know, with their state.",
        """
        shoal group list
        shoal group list --format json
        """,
        run_list)
    output.format_option(parser)


def run_list(arguments: argparse.Namespace) -> int:
    admin, settings, _ = _connected_admin(arguments)
    try:
        result = wait_for(admin.list_consumer_groups(request_timeout=settings.timeout_seconds), settings)
    except KafkaException as exception:
        raise CommandError(f"cannot list groups: {_text(exception)}") from None
    for failure in result.errors or []:
        report(f"warning: a broker did not list its groups: {failure}")
    rows = sorted(({"group": listing.group_id, "state": _state_name(listing.state)} for listing in result.valid),
                  key=lambda row: row["group"])
    if arguments.format == "json":
        output.emit_json(rows)
    else:
        output.emit(output.table(("GROUP", "STATE"), [(row["group"], row["state"]) for row in rows]))
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# describe


def _register_describe(groups) -> None:
    parser = add_command(
        groups, "describe", "show a group's members, committed offsets and lag",
        """
        Show a consumer group: state, assignment protocol, coordinator, each member with
        its assigned partitions, and for every partition the group has committed or been
        assigned: the committed offset, the partition's end (high watermark) and the lag.
        """,
        """
        shoal group describe billing
        shoal group describe billing --format json | jq .total_lag
        """,
        run_describe)
    parser.add_argument("group", metavar="GROUP", help="group id")
    output.format_option(parser)


def describe_group(admin: Any, settings: ConnectionSettings, group: str) -> Any:
    futures = admin.describe_consumer_groups([group], request_timeout=settings.timeout_seconds)
    try:
        return wait_for(futures[group], settings)
    except KafkaException as exception:
        error = error_of(exception)
        if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            raise _group_missing(group) from None
        raise CommandError(f"cannot describe group '{group}': {_text(exception)}") from None


def _group_missing(group: str) -> CommandError:
    return CommandError(f"group '{group}' does not exist (GROUP_ID_NOT_FOUND)")


def _member_document(member: Any) -> dict[str, Any]:
    partitions = member.assignment.topic_partitions if member.assignment else []
    return {
        "member_id": member.member_id,
        "client_id": member.client_id,
        "host": member.host,
        "instance_id": member.group_instance_id,
        "assignment": [{"topic": tp.topic, "partition": tp.partition} for tp in partitions],
    }


def _end_offsets(admin: Any, settings: ConnectionSettings, metadata: Any,
                 keys: list[PartitionKey]) -> dict[PartitionKey, int]:
    """High watermarks of the partitions that still exist (a deleted topic has none)."""
    existing = [key for key in keys if key[0] in metadata.topics and key[1] in metadata.topics[key[0]].partitions]
    return {key: high for key, (_, high) in cluster_queries.watermarks(admin, settings, existing).items()}


def run_describe(arguments: argparse.Namespace) -> int:
    admin, settings, metadata = _connected_admin(arguments)
    description = describe_group(admin, settings, arguments.group)
    committed = cluster_queries.committed_offsets(admin, settings, arguments.group)
    members = [_member_document(member) for member in description.members]
    if _state_name(description.state) == "DEAD" and not members and not committed:
        raise _group_missing(arguments.group)
    owner = {(item["topic"], item["partition"]): member["member_id"]
             for member in members for item in member["assignment"]}
    keys = sorted(set(committed) | set(owner))
    ends = _end_offsets(admin, settings, metadata, keys)
    partitions = [_partition_document(key, committed.get(key), ends.get(key), owner.get(key)) for key in keys]
    coordinator = description.coordinator
    document = {
        "group": arguments.group,
        "state": _state_name(description.state),
        "protocol": description.partition_assignor or None,
        "coordinator": {"id": coordinator.id, "host": coordinator.host, "port": coordinator.port}
        if coordinator is not None else None,
        "members": members,
        "partitions": partitions,
        "total_lag": sum(partition["lag"] or 0 for partition in partitions),
    }
    if arguments.format == "json":
        output.emit_json(document)
    else:
        output.emit(_describe_text(document))
    return EXIT_OK


def _partition_document(key: PartitionKey, committed: int | None, end: int | None,
                        member: str | None) -> dict[str, Any]:
    lag = max(0, end - committed) if committed is not None and end is not None else None
    return {"topic": key[0], "partition": key[1], "committed": committed, "end": end, "lag": lag,
            "member_id": member}


def _describe_text(document: dict[str, Any]) -> str:
    coordinator = document["coordinator"]
    summary = output.fields((
        ("GROUP", document["group"]),
        ("STATE", document["state"]),
        ("PROTOCOL", document["protocol"]),
        ("COORDINATOR", f"{coordinator['id']} ({coordinator['host']}:{coordinator['port']})" if coordinator else None),
        ("MEMBERS", len(document["members"])),
        ("TOTAL LAG", document["total_lag"]),
    ))
    sections = [summary]
    if document["members"]:
        sections.append(output.table(
            ("MEMBER-ID", "CLIENT-ID", "HOST", "INSTANCE-ID", "ASSIGNMENT"),
            [(member["member_id"], member["client_id"], member["host"], member["instance_id"],
              [f"{item['topic']}[{item['partition']}]" for item in member["assignment"]])
             for member in document["members"]]))
    if document["partitions"]:
        sections.append(output.table(
            ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER-ID"),
            [(row["topic"], row["partition"], row["committed"], row["end"], row["lag"], row["member_id"])
             for row in document["partitions"]]))
    return "\n\n".join(sections)


# ---------------------------------------------------------------------------------------
# reset-offsets


def _register_reset_offsets(groups) -> None:
    parser = add_command(
        groups, "reset-offsets", "move a group's committed offsets",
        """
        Move the committed offsets of GROUP for the given topics (or every topic the
        group has committed with --all-topics). Prints the plan (current and new offset
        per partition); nothing changes without --execute. The group must have no active
        members: stop its consumers first. New offsets are kept within each partition's
        low and high watermark.
        """,
        """
        shoal group reset-offsets app --topic orders --to-earliest
        shoal group reset-offsets app --topic orders:0,1 --to-offset 1200 --execute
        shoal group reset-offsets app --topic orders --to-datetime 2024-05-01T08:00Z
        shoal group reset-offsets app --all-topics --shift-by -100 --execute
        """,
        run_reset_offsets,
        usage="%(prog)s [options] GROUP\n"
              "       (--topic TOPIC[:P,...] | --all-topics)\n"
              "       (--to-earliest | --to-latest | --to-offset N | --to-datetime ISO8601 |\n"
              "        --shift-by N) [--execute]")
    parser.add_argument("group", metavar="GROUP", help="group id")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--topic", dest="topics", action="append", type=_topic_selection, metavar="TOPIC[:P,...]",
                       help="topic to reset, optionally only some partitions; repeatable")
    which.add_argument("--all-topics", action="store_true", help="every topic the group has committed offsets for")
    strategy = parser.add_mutually_exclusive_group(required=True)
    strategy.add_argument("--to-earliest", action="store_const", dest="strategy",
                          const=ResetStrategy("to-earliest"), help="the first offset still stored")
    strategy.add_argument("--to-latest", action="store_const", dest="strategy",
                          const=ResetStrategy("to-latest"), help="the end: skip everything not yet read")
    strategy.add_argument("--to-offset", type=_strategy("to-offset"), dest="strategy", metavar="N",
                          help="this offset in every selected partition")
    strategy.add_argument("--to-datetime", type=_datetime_strategy, dest="strategy", metavar="ISO8601",
                          help="the first offset at or after this time (UTC unless a zone is given)")
    strategy.add_argument("--shift-by", type=_strategy("shift-by"), dest="strategy", metavar="N",
                          help="move the committed offset by N (negative: back)")
    parser.add_argument("--execute", action="store_true", help="apply the plan (default: only print it)")
    output.format_option(parser)


def _topic_selection(text: str) -> tuple[str, list[int] | None]:
    name, separator, partitions = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"expected TOPIC or TOPIC:P,P..., got {text!r}")
    if not separator:
        return name, None
    try:
        return name, [int(part) for part in partitions.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOPIC:P,P... with partition numbers, got {text!r}") from None


def _strategy(kind: str):
    def parse(text: str) -> ResetStrategy:
        try:
            return ResetStrategy(kind, int(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return parse


def _datetime_strategy(text: str) -> ResetStrategy:
    return ResetStrategy("to-datetime", parse_datetime_ms(text))


def run_reset_offsets(arguments: argparse.Namespace) -> int:
    admin, settings, metadata = _connected_admin(arguments)
    _require_inactive(describe_group(admin, settings, arguments.group), arguments.group)
    committed = cluster_queries.committed_offsets(admin, settings, arguments.group)
    keys = _selected_partitions(arguments, metadata, committed)
    plan = _plan(admin, settings, arguments.strategy, keys, committed)
    _print_plan(arguments, plan)
    if not arguments.execute:
        if arguments.format == "text":
            output.emit("\ndry run: nothing changed; add --execute to apply")
        return EXIT_OK
    _apply(admin, settings, arguments.group, plan)
    if arguments.format == "text":
        output.emit(f"\nreset {len(plan)} partition{'s' if len(plan) != 1 else ''} of group '{arguments.group}'")
    return EXIT_OK


def _require_inactive(description: Any, group: str) -> None:
    state = _state_name(description.state)
    if description.members or state not in INACTIVE_STATES:
        raise CommandError(
            f"group '{group}' is not empty (state {state}, {len(description.members)} members); "
            "stop its consumers before resetting offsets")


def _selected_partitions(arguments: argparse.Namespace, metadata: Any,
                         committed: dict[PartitionKey, int]) -> list[PartitionKey]:
    if arguments.all_topics:
        topics = sorted({topic for topic, _ in committed})
        if not topics:
            raise CommandError(f"group '{arguments.group}' has no committed offsets; name topics with --topic")
        selections: list[tuple[str, list[int] | None]] = [(topic, None) for topic in topics]
    else:
        selections = arguments.topics
    keys: list[PartitionKey] = []
    for topic, partitions in selections:
        keys.extend(cluster_queries.partition_keys(metadata, topic, partitions))
    return sorted(set(keys))


def _plan(admin: Any, settings: ConnectionSettings, strategy: ResetStrategy, keys: list[PartitionKey],
          committed: dict[PartitionKey, int]) -> list[dict[str, Any]]:
    marks = cluster_queries.watermarks(admin, settings, keys)
    at_time = (cluster_queries.offsets_at_timestamp(admin, settings, keys, strategy.value)
               if strategy.kind == "to-datetime" else {})
    plan = []
    for key in keys:
        position = PartitionPosition(key[0], key[1], low=marks[key][0], high=marks[key][1],
                                     committed=committed.get(key), offset_at_timestamp=at_time.get(key))
        try:
            target = reset_target(strategy, position)
        except ResetError as error:
            raise CommandError(str(error)) from None
        plan.append({"topic": key[0], "partition": key[1], "current": committed.get(key), "new": target})
    return plan


def _print_plan(arguments: argparse.Namespace, plan: list[dict[str, Any]]) -> None:
    if arguments.format == "json":
        output.emit_json({"group": arguments.group, "strategy": arguments.strategy.describe(),
                          "executed": arguments.execute, "partitions": plan})
        return
    output.emit(output.table(("TOPIC", "PARTITION", "CURRENT", "NEW"),
                             [(row["topic"], row["partition"], row["current"], row["new"]) for row in plan]))


def _apply(admin: Any, settings: ConnectionSettings, group: str, plan: list[dict[str, Any]]) -> None:
    offsets = [TopicPartition(row["topic"], row["partition"], row["new"]) for row in plan]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)],
                                                 request_timeout=settings.timeout_seconds)
    try:
        result = wait_for(futures[group], settings)
    except KafkaException as exception:
        raise CommandError(f"cannot reset offsets of group '{group}': {_text(exception)}") from None
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        first = failed[0]
        raise CommandError(f"cannot reset offsets of group '{group}' at {first.topic}[{first.partition}]: "
                           f"{kafka_error_text(first.error)} ({len(failed)} partitions failed)")


# ---------------------------------------------------------------------------------------
# delete


def _register_delete(groups) -> None:
    parser = add_command(
        groups, "delete", "delete consumer groups and their committed offsets",
        "Delete consumer groups that have no active members, with their committed offsets.",
        """
        shoal group delete billing
        shoal group delete billing reporting
        """,
        run_delete)
    parser.add_argument("groups", metavar="GROUP", nargs="+", help="group ids")


def run_delete(arguments: argparse.Namespace) -> int:
    admin, settings, _ = _connected_admin(arguments)
    names = list(dict.fromkeys(arguments.groups))
    futures = admin.delete_consumer_groups(names, request_timeout=settings.timeout_seconds)
    exit_code = EXIT_OK
    for name in names:
        try:
            wait_for(futures[name], settings)
            output.emit(f"deleted group '{name}'")
        except KafkaException as exception:
            error = error_of(exception)
            if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                exit_code = report(str(_group_missing(name)))
            else:
                exit_code = report(f"cannot delete group '{name}': {_text(exception)}")
    return exit_code
