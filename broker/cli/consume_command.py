"""`shoal consume`: read a topic from an offset, the end, or a point in time, and print
each message in a format. Without --group it assigns partitions itself (offsets resolved
from watermarks / offsets_for_times); with --group it joins the group and commits."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from broker import limits
from broker.cli import cluster_queries
from broker.cli.command_parser import add_command
from broker.cli.connection import (
    EXIT_FAILURE, EXIT_OK, CommandError, ConnectionSettings, ErrorCollector, client_config,
    fetch_metadata, is_unknown_topic, kafka_error_text, positive_seconds, settings_from, topic_missing,
)
from broker.cli.message_format import ConsumedRecord, FormatError, renderer_for
from broker.cli.offset_spec import (
    PartitionPosition, StartOffset, parse_datetime_ms, parse_start_offset, start_offset,
)

# Group id of a consumer that only assigns partitions: librdkafka needs one, it never joins.
ASSIGN_ONLY_GROUP_ID = "shoal-cli"


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "consume", "read messages from a topic",
        """
        Read messages from TOPIC and print them, one per line. Without --group every
        partition (or those given with -p) is read from the -o offset (default: earliest)
        and nothing is committed. With --group the consumer joins the group, starts at
        the group's committed offsets (-o earliest|latest when it has none) and commits
        what it printed. SIGINT (Ctrl-C) or SIGTERM stops it cleanly: the consumer is
        closed, so with --group it commits what it printed and leaves the group at once
        (exit status 130 or 143); a second signal ends it at once.

        Formats: text (the value; --print-key / --print-headers put the key, then the
        headers, before it, tab-separated), json (one object per message), or a template
        with %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms), %h headers,
        %K / %S key / value length (-1 for null), %% a percent sign; \\t \\n escapes.
        A null key or value prints as nothing in text and templates, as null in json.
        """,
        """
        shoal consume orders -e                    # everything there is, then exit
        shoal consume orders -o -10 -e             # the last 10 of each partition
        shoal consume orders -p 0 -o 1200 -n 5 --format '%o %k %v'
        shoal consume orders -o @1714564800000 -n 100
        shoal consume orders --from-timestamp 2024-05-01T12:00:00Z --format json
        shoal consume orders -g billing -o latest  # as a member of group billing
        """,
        run_consume)
    parser.add_argument("topic", metavar="TOPIC", help="topic to read")
    parser.add_argument("-p", "--partition", dest="partitions", type=int, action="append", metavar="N",
                        help="read only this partition, repeatable (default: all)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("-o", "--offset", type=parse_start_offset, metavar="OFFSET",
                       help="where to start: earliest, latest, N, -N (N before the end of each "
                            "partition) or @TIMESTAMP_MS (default: earliest)")
    start.add_argument("--from-timestamp", type=parse_datetime_ms, metavar="ISO8601",
                       help="start at the first message at or after this time (UTC unless a zone is given)")
    parser.add_argument("-n", "--count", type=_positive_int, metavar="COUNT", help="exit after COUNT messages")
    parser.add_argument("-e", "--exit-at-end", action="store_true",
                        help="exit once every partition has been read up to its end")
    parser.add_argument("-g", "--group", metavar="GROUP", help="consume as a member of this consumer group")
    parser.add_argument("--format", default="text", metavar="FORMAT",
                        help="text (default), json, or a template like '%%p:%%o %%k=%%v'")
    parser.add_argument("--print-key", action="store_true",
                        help="text format: print the key first, before the headers and the value")
    parser.add_argument("--print-headers", action="store_true",
                        help="text format: print the headers (k=v,...) before the value, after the key")
    parser.add_argument("--timeout-exit", type=positive_seconds, metavar="SECONDS",
                        help="exit when no message arrives for this long (non-zero if -n was not reached)")


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return number


def _start_spec(arguments: argparse.Namespace) -> StartOffset:
    if arguments.from_timestamp is not None:
        return StartOffset("timestamp", arguments.from_timestamp)
    return arguments.offset or StartOffset("earliest")


def _check_group_options(arguments: argparse.Namespace, spec: StartOffset) -> None:
    if arguments.group is None:
        return
    if arguments.partitions:
        raise CommandError("-p/--partition cannot be used with --group (the group assigns partitions)")
    if spec.kind not in ("earliest", "latest"):
        raise CommandError("with --group, -o takes only earliest or latest (where to start without a "
                           "committed offset); use 'shoal group reset-offsets' to move the group")


def consumer_settings(arguments: argparse.Namespace, spec: StartOffset) -> dict[str, Any]:
    in_group = arguments.group is not None
    settings = {
        "group.id": arguments.group if in_group else ASSIGN_ONLY_GROUP_ID,
        "enable.auto.commit": in_group,
        # offsets are stored only for printed messages, so -n never commits past them
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest" if spec.kind == "latest" else "earliest",
        "enable.partition.eof": True,
    }
    if arguments.exit_at_end:
        # the end is seen when a fetch comes back empty: do not let the broker hold it long
        settings["fetch.wait.max.ms"] = limits.cli_end_fetch_wait_ms
    return settings


def run_consume(arguments: argparse.Namespace) -> int:
    try:
        renderer = renderer_for(arguments.format, arguments.print_key, arguments.print_headers)
    except FormatError as error:
        raise CommandError(str(error)) from None
    spec = _start_spec(arguments)
    _check_group_options(arguments, spec)
    settings = settings_from(arguments)
    errors = ErrorCollector()
    stop = StopSignals()
    consumer = Consumer(client_config(settings, errors, consumer_settings(arguments, spec)))
    try:
        loop = ConsumeLoop(consumer, renderer, arguments, stop)
        _start_reading(consumer, loop, arguments, settings, errors, spec)
        stop.install()  # not earlier: setup blocks inside librdkafka, where no Python handler runs
        exit_code = loop.run()
    finally:
        consumer.close()  # commits what was printed and sends LeaveGroup
        stop.restore()
    return stop.exit_code(exit_code)


def _start_reading(consumer: Consumer, loop: "ConsumeLoop", arguments: argparse.Namespace,
                   settings: ConnectionSettings, errors: ErrorCollector, spec: StartOffset) -> None:
    """Assign the partitions at their start offsets, or subscribe as a group member."""
    metadata = fetch_metadata(consumer, settings, errors, topic=arguments.topic)
    if arguments.group is None:
        keys = cluster_queries.partition_keys(metadata, arguments.topic, arguments.partitions)
        assignment = _assignment(consumer, settings, keys, spec)
        loop.assigned.update(keys)
        consumer.assign(assignment)
    else:
        cluster_queries.topic_metadata(metadata, arguments.topic)
        consumer.subscribe([arguments.topic], on_assign=loop.on_assign, on_revoke=loop.on_revoke)


class StopSignals:
    """Once installed, SIGTERM and SIGINT ask the consume loop to stop instead of killing
    the process, so the consumer gets closed: killed, a group member would linger until its
    session timed out. A second signal kills the process (the default action), also while
    close() waits inside librdkafka, where no Python handler runs."""

    signals = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for number in self.signals:
            if signal.getsignal(number) is not signal.SIG_IGN:  # `cmd &` in a script ignores SIGINT
                self._previous[number] = signal.signal(number, self._on_signal)

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _on_signal(self, number: int, frame: Any) -> None:
        self.received = number
        for handled in self._previous:
            signal.signal(handled, signal.SIG_DFL)

    def exit_code(self, exit_code: int) -> int:
        """128 + the signal's number (the shell's convention) once a signal arrived."""
        return exit_code if self.received is None else 128 + self.received


# ---------------------------------------------------------------------------------------
# start offsets without a group


def _assignment(consumer: Consumer, settings: ConnectionSettings, keys: list[tuple[str, int]],
                spec: StartOffset) -> list[TopicPartition]:
    if spec.kind in ("earliest", "latest"):
        logical = OFFSET_BEGINNING if spec.kind == "earliest" else OFFSET_END
        return [TopicPartition(topic, partition, logical) for topic, partition in keys]
    at_timestamp = _offsets_for_time(consumer, settings, keys, spec.value) if spec.kind == "timestamp" else {}
    assignment = []
    for topic, partition in keys:
        low, high = _watermarks(consumer, settings, topic, partition)
        position = PartitionPosition(topic, partition, low, high,
                                     offset_at_timestamp=at_timestamp.get((topic, partition)))
        assignment.append(TopicPartition(topic, partition, start_offset(spec, position)))
    return assignment


def _watermarks(consumer: Consumer, settings: ConnectionSettings, topic: str, partition: int) -> tuple[int, int]:
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                              timeout=settings.timeout_seconds, cached=False)
    except KafkaException as exception:
        raise CommandError(f"cannot read the offsets of {topic}[{partition}]: "
                           f"{kafka_error_text(exception.args[0])}") from None


def _offsets_for_time(consumer: Consumer, settings: ConnectionSettings, keys: list[tuple[str, int]],
                      timestamp_ms: int) -> dict[tuple[str, int], int]:
    request = [TopicPartition(topic, partition, timestamp_ms) for topic, partition in keys]
    found = consumer.offsets_for_times(request, timeout=settings.timeout_seconds)
    for topic_partition in found:
        if topic_partition.error is not None:
            raise CommandError(f"cannot find offsets by time in {topic_partition.topic}"
                               f"[{topic_partition.partition}]: {kafka_error_text(topic_partition.error)}")
    return {(tp.topic, tp.partition): tp.offset for tp in found}


# ---------------------------------------------------------------------------------------
# the loop


def record_of(message: Any) -> ConsumedRecord:
    timestamp_type, timestamp = message.timestamp()
    return ConsumedRecord(
        topic=message.topic(), partition=message.partition(), offset=message.offset(),
        timestamp_ms=timestamp if timestamp_type else None, timestamp_type=timestamp_type,
        key=message.key(), value=message.value(), headers=list(message.headers() or []),
    )


class ConsumeLoop:
    """Polls in bounded batches, prints, and decides when to stop (-n, -e, --timeout-exit,
    a signal)."""

    def __init__(self, consumer: Consumer, renderer: Any, arguments: argparse.Namespace,
                 stop: StopSignals) -> None:
        self.consumer = consumer
        self.stop = stop
        self.renderer = renderer
        self.count = arguments.count
        self.exit_at_end = arguments.exit_at_end
        self.idle_seconds = arguments.timeout_exit
        self.in_group = arguments.group is not None
        self.assigned: set[tuple[str, int]] = set()
        self.at_end: set[tuple[str, int]] = set()
        self.printed = 0
        self.last_warning: str | None = None
        self.stdout = sys.stdout.buffer

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.discard((tp.topic, tp.partition))
            self.at_end.discard((tp.topic, tp.partition))

    def run(self) -> int:
        last_message_at = time.monotonic()
        while not self._count_reached() and self.stop.received is None:
            batch = self.consumer.consume(num_messages=self._batch_size(),
                                          timeout=limits.cli_poll_interval_seconds)
            if self._handle(batch):
                last_message_at = time.monotonic()
            if self.exit_at_end and self.assigned and self.assigned <= self.at_end:
                return EXIT_OK
            if self.idle_seconds is not None and time.monotonic() - last_message_at >= self.idle_seconds:
                return self._idle_exit()
        return EXIT_OK

    def _count_reached(self) -> bool:
        return self.count is not None and self.printed >= self.count

    def _batch_size(self) -> int:
        if self.count is None:
            return limits.cli_consume_batch_messages_max
        return max(1, min(limits.cli_consume_batch_messages_max, self.count - self.printed))

    def _handle(self, batch: list[Any]) -> bool:
        """Print the batch's messages; True when at least one was printed."""
        printed_before = self.printed
        for message in batch:
            if message.error() is not None:
                self._handle_event(message)
                continue
            if self._count_reached():
                break
            self.stdout.write(self.renderer.render(record_of(message)))
            self.at_end.discard((message.topic(), message.partition()))
            if self.in_group:
                self.consumer.store_offsets(message=message)
            self.printed += 1
        self.stdout.flush()
        return self.printed > printed_before

    def _handle_event(self, message: Any) -> None:
        error: KafkaError = message.error()
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add((message.topic(), message.partition()))
            return
        if error.fatal() or is_unknown_topic(error):
            if is_unknown_topic(error):
                raise topic_missing(message.topic() or "?")
            raise CommandError(kafka_error_text(error))
        text = kafka_error_text(error)
        if text != self.last_warning:  # transient (broker restarting, ...): the client retries
            print(f"shoal: warning: {text}", file=sys.stderr)
            self.last_warning = text

    def _idle_exit(self) -> int:
        if self.count is not None and self.printed < self.count:
            print(f"shoal: no message for {self.idle_seconds:g} s; got {self.printed} of {self.count}",
                  file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
