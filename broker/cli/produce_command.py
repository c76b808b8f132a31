"""`shoal produce`: send values from the command line or stdin (one per line) with a
Producer, then report what was delivered; non-zero exit if anything was not."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Iterator

from confluent_kafka import KafkaError, Producer

from broker import limits
from broker.cli import cluster_queries, output
from broker.cli.command_parser import add_command
from broker.cli.connection import (
    EXIT_FAILURE, EXIT_OK, CommandError, ConnectionSettings, ErrorCollector, client_config,
    fetch_metadata, is_unknown_topic, kafka_error_text, report, settings_from, topic_missing,
)
from broker.cli.message_format import FormatError, InputRecord, LineParser

COMPRESSION_CHOICES = ("none", "gzip", "snappy", "lz4", "zstd")
ACKS_CHOICES = ("0", "1", "all", "-1")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "produce", "send messages to a topic",
        """
        Send messages to TOPIC: each VALUE argument is one message; without VALUE
        arguments every line read from stdin is one message (end with Ctrl-D). Lines can
        carry a key (and partition/timestamp) with --format or --key-separator. With
        --key-separator a line without the separator is sent whole as the value with no
        key (-k's key if given), as kcat -K does; with --format a line that does not match
        is not sent and counts as a failure. Prints a summary (and each message's partition
        and offset with -v); exits non-zero if any message was not delivered within
        --timeout.

        Input format fields: %k key, %v value, %p partition, %T timestamp (ms since epoch),
        %% a percent sign; escapes \\t \\n \\\\.
        """,
        """
        shoal produce orders 'first order' 'second order'
        shoal produce orders -k customer-42 -H source=web -H trace=abc '{"id": 1}'
        printf 'k1\\tv1\\nk2\\tv2\\n' | shoal produce orders -f '%k\\t%v' -v
        cat events.txt | shoal produce events -K : --compression zstd --acks 1
        shoal produce orders -k customer-42 -Z ''      # a tombstone: null value
        """,
        run_produce)
    parser.add_argument("topic", metavar="TOPIC", help="topic to send to")
    parser.add_argument("values", metavar="VALUE", nargs="*", default=[], help="message values (default: lines from stdin)")
    parser.add_argument("-k", "--key", help="key of every message (default: none)")
    parser.add_argument("-H", "--header", dest="headers", action="append", default=[], type=_header,
                        metavar="KEY=VALUE", help="header on every message, repeatable")
    parser.add_argument("-p", "--partition", type=int, metavar="N",
                        help="send to this partition (default: by key hash, like the Java client)")
    parser.add_argument("--compression", choices=COMPRESSION_CHOICES, default="none",
                        help="compression codec (default: none)")
    parser.add_argument("--acks", choices=ACKS_CHOICES, default="all",
                        help="acknowledgement the broker must give: 0, 1 or all (default: all)")
    line_format = parser.add_mutually_exclusive_group()
    line_format.add_argument("-f", "--format", metavar="FORMAT",
                             help="how to split an input line, e.g. '%%k\\t%%v' (default: the line is the value)")
    line_format.add_argument("-K", "--key-separator", metavar="SEPARATOR",
                             help="split each input line into key and value at the first SEPARATOR; "
                                  "a line without it is all value, with no key")
    parser.add_argument("-Z", "--null-empty", action="store_true",
                        help="send an empty key or value as null (a tombstone for an empty value)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the partition and offset of every delivered message")


def _header(text: str) -> tuple[str, bytes | None]:
    name, separator, value = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, os.fsencode(value) if separator else None


# ---------------------------------------------------------------------------------------


class DeliveryTracker:
    """Counts delivery reports; prints failures (the first few) and, with -v, successes."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.delivered = 0
        self.failed = 0

    def on_delivery(self, number: int, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.fail(f"message {number} not delivered: {kafka_error_text(error)}")
            return
        self.delivered += 1
        if self.verbose:
            offset = message.offset()
            shown = "unknown (acks=0)" if offset is None or offset < 0 else offset
            output.emit(f"message {number}: partition {message.partition()}, offset {shown}")

    def fail(self, message: str) -> None:
        self.failed += 1
        if self.failed <= limits.cli_delivery_errors_shown_max:
            report(message)


def _line_parser(arguments: argparse.Namespace) -> LineParser | None:
    try:
        if arguments.format is not None:
            return LineParser.from_format(arguments.format, arguments.null_empty)
        if arguments.key_separator is not None:
            return LineParser.from_key_separator(arguments.key_separator, arguments.null_empty)
    except FormatError as error:
        raise CommandError(str(error)) from None
    return None


def _input_records(arguments: argparse.Namespace, parser: LineParser | None) -> Iterator[InputRecord | None]:
    """Records to send; None for a line that does not match the format."""
    lines = (os.fsencode(value) for value in arguments.values) if arguments.values else _stdin_lines()
    for line in lines:
        if parser is not None:
            yield parser.parse(line)
        else:
            yield InputRecord(value=None if arguments.null_empty and not line else line)


def _stdin_lines() -> Iterator[bytes]:
    if sys.stdin.isatty():
        print("shoal: type one message per line; end with Ctrl-D", file=sys.stderr)
    for line in sys.stdin.buffer:
        yield line[:-1] if line.endswith(b"\n") else line


def producer_settings(arguments: argparse.Namespace, settings: ConnectionSettings) -> dict[str, Any]:
    return {
        "acks": arguments.acks,
        "compression.type": arguments.compression,
        "linger.ms": limits.cli_produce_linger_ms,
        "message.timeout.ms": settings.timeout_ms,
        "topic.metadata.propagation.max.ms": settings.timeout_ms,
        # the Java client's key hashing, so keyed messages land where Java producers put them
        "partitioner": "murmur2_random",
    }


def run_produce(arguments: argparse.Namespace) -> int:
    line_parser = _line_parser(arguments)
    settings = settings_from(arguments)
    errors = ErrorCollector()
    producer = Producer(client_config(settings, errors, producer_settings(arguments, settings)))
    _check_topic(fetch_metadata(producer, settings, errors, topic=arguments.topic), arguments)
    tracker = DeliveryTracker(arguments.verbose)
    count = 0
    for count, record in enumerate(_input_records(arguments, line_parser), start=1):
        if record is None:
            tracker.fail(f"message {count} skipped: the line does not match the format")
            continue
        _send(producer, arguments, record, functools.partial(tracker.on_delivery, count))
    undelivered = producer.flush(settings.timeout_seconds + limits.cli_answer_grace_seconds)
    return _summary(arguments.topic, count, tracker, undelivered, settings)


def _check_topic(metadata: Any, arguments: argparse.Namespace) -> None:
    topic = metadata.topics.get(arguments.topic)
    if topic is not None and topic.error is not None and is_unknown_topic(topic.error):
        raise topic_missing(arguments.topic)
    if arguments.partition is not None and topic is not None and topic.partitions:
        cluster_queries.partition_keys(metadata, arguments.topic, [arguments.partition])


def _send(producer: Producer, arguments: argparse.Namespace, record: InputRecord, on_delivery) -> None:
    message: dict[str, Any] = {
        "value": record.value,
        "key": record.key if record.key is not None else _fixed_key(arguments),
        "headers": arguments.headers or None,
        "on_delivery": on_delivery,
    }
    partition = record.partition if record.partition is not None else arguments.partition
    if partition is not None:
        message["partition"] = partition
    if record.timestamp_ms is not None:
        message["timestamp"] = record.timestamp_ms
    while True:
        try:
            producer.produce(arguments.topic, **message)
            break
        except BufferError:  # the client's queue is full: let it send, then retry
            producer.poll(limits.cli_poll_interval_seconds)
    producer.poll(0)


def _fixed_key(arguments: argparse.Namespace) -> bytes | None:
    if arguments.key is None or (arguments.null_empty and arguments.key == ""):
        return None
    return os.fsencode(arguments.key)


def _summary(topic: str, count: int, tracker: DeliveryTracker, undelivered: int,
             settings: ConnectionSettings) -> int:
    if undelivered:
        tracker.failed += undelivered
        report(f"{undelivered} messages not delivered within {settings.timeout_seconds:g} s")
    if tracker.failed > limits.cli_delivery_errors_shown_max:
        report(f"{tracker.failed - limits.cli_delivery_errors_shown_max} more failures not shown")
    if tracker.failed:
        output.emit(f"delivered {tracker.delivered} of {count} messages to '{topic}'; {tracker.failed} failed")
        return EXIT_FAILURE
    output.emit(f"delivered {tracker.delivered} message{'s' if tracker.delivered != 1 else ''} to '{topic}'")
    return EXIT_OK
