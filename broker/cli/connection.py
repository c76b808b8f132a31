"""What every client command shares: the connection options (-b, -X, --timeout), the
librdkafka settings built from them, one-line error messages, and the reachability check
that turns "no broker answers" into a clear error instead of a hang: at once when every
broker refused the connection, within --timeout when they do not answer at all.

The Kafka protocol itself is spoken by confluent-kafka (librdkafka): a well-kept client
that every broker is tested against, so the CLI behaves like the clients users run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from broker import limits

BROKERS_ENVIRONMENT_VARIABLE = "SHOAL_BROKERS"
DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_TIMEOUT_SECONDS = 10.0

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

# librdkafka's own log lines (connection refused, retries) would drown the one line we
# print; keep only critical ones unless the user asks for debug output with -X debug=...
QUIET_LIBRDKAFKA_LOG_LEVEL = 2

# librdkafka reports refused connections only through error_cb, served between calls, and
# its metadata call blocks for its whole timeout; so the reachability check asks in slices,
# the first this long, each twice the one before (a slow but live broker still answers).
REACHABILITY_FIRST_SLICE_SECONDS = 0.1

# Errors of a metadata request meaning "no broker answered", not an error a broker returned.
_CONNECTION_ERRORS = (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                      KafkaError._RESOLVE)


class CommandError(Exception):
    """A failure to report as one line `shoal: <message>` with exit code 1."""


@dataclass(frozen=True)
class ConnectionSettings:
    brokers: str
    timeout_seconds: float
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def timeout_ms(self) -> int:
        return max(1, int(self.timeout_seconds * 1000))


# ---------------------------------------------------------------------------------------
# options


def key_value(text: str) -> tuple[str, str]:
    """argparse type for `key=value` (the value may contain '=' and may be empty)."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return name, value


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _add_connection_options(group, prefix: str = "") -> None:
    # Defaults are applied in settings_from, so a value given before the command
    # (`shoal -b H topic list`) is not overwritten by the command's own default.
    group.add_argument(
        "-b", "--brokers", dest=f"{prefix}brokers", metavar="HOST:PORT[,...]",
        help=f"bootstrap brokers (default: ${BROKERS_ENVIRONMENT_VARIABLE} or {DEFAULT_BROKERS})")
    group.add_argument(
        "-X", "--property", dest=f"{prefix}properties", metavar="KEY=VALUE", type=key_value,
        action="append", default=[],
        help="librdkafka client property, repeatable (e.g. -X security.protocol=SSL)")
    group.add_argument(
        "--timeout", dest=f"{prefix}timeout", metavar="SECONDS", type=positive_seconds,
        help=f"give up on the brokers after this long (default: {DEFAULT_TIMEOUT_SECONDS:g})")


def connection_options() -> argparse.ArgumentParser:
    """Parent parser giving every client command the same connection options."""
    parent = argparse.ArgumentParser(add_help=False)
    _add_connection_options(parent.add_argument_group("connection"))
    return parent


def global_connection_options(parser: argparse.ArgumentParser) -> None:
    """The same options on `shoal` itself, for every client command after them."""
    _add_connection_options(parser.add_argument_group("connection (client commands)"), prefix="global_")


def settings_from(arguments: argparse.Namespace) -> ConnectionSettings:
    """Command options win over options before the command, then $SHOAL_BROKERS, then defaults."""
    properties = dict(getattr(arguments, "global_properties", None) or [])
    properties.update(arguments.properties)
    return ConnectionSettings(
        brokers=(arguments.brokers or getattr(arguments, "global_brokers", None)
                 or os.environ.get(BROKERS_ENVIRONMENT_VARIABLE) or DEFAULT_BROKERS),
        timeout_seconds=arguments.timeout or getattr(arguments, "global_timeout", None) or DEFAULT_TIMEOUT_SECONDS,
        properties=properties,
    )


# ---------------------------------------------------------------------------------------
# client configuration


class ErrorCollector:
    """librdkafka error_cb: keeps the last connection error to explain a timeout."""

    def __init__(self) -> None:
        self.last_message: str | None = None
        self.all_brokers_down = False

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_brokers_down = True  # "1/1 brokers are down" says less than the error before it
            return
        self.last_message = error.str()

    def reason(self) -> str:
        if self.last_message:
            return _clean_connection_message(self.last_message)
        return "the connection was closed without an answer" if self.all_brokers_down else "no answer"


def client_config(settings: ConnectionSettings, errors: ErrorCollector,
                  defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka config: our defaults, then the command's, then the user's -X properties."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.brokers,
        "client.id": "shoal-cli",
        "socket.connection.setup.timeout.ms": max(1000, settings.timeout_ms),
        "error_cb": errors,
    }
    if "debug" not in settings.properties:
        config["log_level"] = QUIET_LIBRDKAFKA_LOG_LEVEL
    config.update(defaults or {})
    config.update(settings.properties)
    return config


# ---------------------------------------------------------------------------------------
# errors


def kafka_error_name(error: KafkaError) -> str:
    """The Kafka protocol name of a broker error (UNKNOWN_TOPIC_OR_PARTITION), or
    librdkafka's name of a local one (_TRANSPORT)."""
    code = error.code()
    if code > 0:
        # imported here: kio's error table costs ~0.15 s to import, paid only on an error
        from kio.schema.errors import ErrorCode

        try:
            return ErrorCode(code).name.upper()
        except ValueError:  # a code newer than kio knows
            pass
    return error.name()


def kafka_error_text(error: KafkaError) -> str:
    """librdkafka's text without its 'Broker: ' prefix, then the error name."""
    text = re.sub(r"^(Broker|Local): ", "", error.str() or "").strip()
    name = kafka_error_name(error)
    return f"{text} ({name})" if text else name


def error_of(exception: BaseException) -> KafkaError | None:
    if isinstance(exception, KafkaException) and exception.args and isinstance(exception.args[0], KafkaError):
        return exception.args[0]
    return None


def is_unknown_topic(error: KafkaError) -> bool:
    return error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


def topic_missing(topic: str) -> CommandError:
    return CommandError(f"topic '{topic}' does not exist (UNKNOWN_TOPIC_OR_PARTITION)")


def _clean_connection_message(message: str) -> str:
    message = re.sub(r"^\S+/(bootstrap|\d+): ", "", message)
    return re.sub(r" \(after \d+ms in state \w+(, \d+ identical error\(s\) suppressed)?\)$", "", message)


def unreachable(settings: ConnectionSettings, errors: ErrorCollector) -> CommandError:
    return CommandError(
        f"cannot reach any broker at {settings.brokers} within {settings.timeout_seconds:g} s: {errors.reason()}")


# ---------------------------------------------------------------------------------------
# talking to the cluster


def fetch_metadata(client: Any, settings: ConnectionSettings, errors: ErrorCollector,
                   topic: str | None = None) -> Any:
    """Cluster metadata, or a CommandError saying the brokers cannot be reached: as soon as
    librdkafka reports every broker down (each refused the connection or closed it), else
    when --timeout has passed (addresses that do not answer at all)."""
    deadline = time.monotonic() + settings.timeout_seconds
    slice_seconds = REACHABILITY_FIRST_SLICE_SECONDS
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            return client.list_topics(topic=topic, timeout=min(slice_seconds, remaining))
        except KafkaException as exception:
            error = error_of(exception)
            if hasattr(client, "poll"):
                client.poll(0)  # deliver pending error_cb calls: they hold the reason
            if error is None or error.code() not in _CONNECTION_ERRORS:
                raise
            if errors.all_brokers_down or time.monotonic() >= deadline:
                raise unreachable(settings, errors) from None
        slice_seconds *= 2


def wait_for(future: concurrent.futures.Future, settings: ConnectionSettings) -> Any:
    """Result of an admin future; librdkafka enforces request_timeout, this is a backstop."""
    try:
        return future.result(timeout=settings.timeout_seconds + limits.cli_answer_grace_seconds)
    except concurrent.futures.TimeoutError:
        raise CommandError(
            f"no answer from {settings.brokers} within {settings.timeout_seconds:g} s") from None


def admin_client(settings: ConnectionSettings) -> tuple[Any, ErrorCollector]:
    errors = ErrorCollector()
    return AdminClient(client_config(settings, errors)), errors


# ---------------------------------------------------------------------------------------
# running a command


def guarded(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every expected failure into one line on stderr and an exit code."""

    @functools.wraps(function)
    def run(arguments: argparse.Namespace) -> int:
        try:
            return function(arguments)
        except CommandError as failure:
            return report(str(failure))
        except KafkaException as exception:
            error = error_of(exception)
            return report(kafka_error_text(error) if error is not None else str(exception))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_OK

    return run


def report(message: str) -> int:
    print(f"shoal: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _silence_stdout() -> None:
    """After `shoal consume | head`, stop Python complaining when it flushes stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
