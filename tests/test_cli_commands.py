"""The `shoal` client commands as subprocesses, without a broker: help that reads like a
finished tool, usage errors, and one clear line (not a hang) when no broker answers."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.support import REPO, SHOAL, free_port

CLIENT_COMMANDS = [
    ["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
    ["topic", "alter-config"], ["produce"], ["consume"],
    ["group", "list"], ["group", "describe"], ["group", "reset-offsets"], ["group", "delete"],
]
# A runnable invocation of every command; each must first reach the brokers.
REACHING_INVOCATIONS = [
    ["topic", "create", "orders"], ["topic", "list"], ["topic", "describe", "orders"],
    ["topic", "delete", "orders"], ["topic", "alter-config", "orders", "--set", "retention.ms=1"],
    ["produce", "orders", "v"], ["consume", "orders", "-n", "1"],
    ["group", "list"], ["group", "describe", "g"],
    ["group", "reset-offsets", "g", "--topic", "orders", "--to-earliest"], ["group", "delete", "g"],
]


def shoal(*arguments: str, environment: dict[str, str] | None = None,
          input_bytes: bytes | None = None, timeout_s: float = 30) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    env["COLUMNS"] = "80"
    env.update(environment or {})
    return subprocess.run(SHOAL + list(arguments), cwd=REPO, env=env, input=input_bytes,
                          capture_output=True, timeout=timeout_s)


def start_all(invocations: list[list[str]], environment: dict[str, str] | None = None) -> list[subprocess.Popen]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    env.update(environment or {})
    return [subprocess.Popen(SHOAL + invocation, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for invocation in invocations]


def finish_all(processes: list[subprocess.Popen], timeout_s: float) -> list[tuple[int, str, str]]:
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout_s)
            results.append((process.returncode, stdout.decode(), stderr.decode()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return results


# --- help -----------------------------------------------------------------------------------


def test_top_level_help_lists_the_client_commands():
    result = shoal("--help")
    assert result.returncode == 0
    for command in ("start", "topic", "produce", "consume", "group"):
        assert f"    {command} " in result.stdout.decode()


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=" ".join)
def test_every_command_has_a_description_examples_and_the_connection_options(command):
    result = shoal(*command, "--help")
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "examples:\n  shoal " + " ".join(command) in text
    for option in ("-b HOST:PORT[,...], --brokers", "-X KEY=VALUE, --property", "--timeout SECONDS"):
        assert option in text
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert too_wide == []


@pytest.mark.parametrize("group", ["topic", "group"])
def test_a_command_group_without_subcommand_prints_its_help(group):
    result = shoal(group)
    assert result.returncode == 2
    assert "COMMAND" in result.stdout.decode() and "describe" in result.stdout.decode()


# --- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("arguments, message", [
    (["consume", "orders", "-o", "soon"], "expected earliest, latest, an offset N"),
    (["consume", "orders", "--from-timestamp", "yesterday"], "expected an ISO 8601 date-time"),
    (["consume", "orders", "-n", "0"], "expected a positive number"),
    (["consume", "orders", "-o", "5", "--from-timestamp", "2024-01-01"], "not allowed with argument"),
    (["topic", "create", "orders", "-p", "0"], "expected a positive number"),
    (["topic", "create", "orders", "-c", "retention.ms"], "expected key=value"),
    (["topic", "list", "-X", "debug"], "expected key=value"),
    (["topic", "list", "--timeout", "0"], "expected a positive number of seconds"),
    (["produce", "orders", "--acks", "2"], "invalid choice"),
    (["produce", "orders", "--compression", "brotli"], "invalid choice"),
    (["produce", "orders", "-f", "%k", "-K", ":"], "not allowed with argument"),
    (["group", "reset-offsets", "g", "--topic", "orders"], "one of the arguments --to-earliest"),
    (["group", "reset-offsets", "g", "--to-latest"], "one of the arguments --topic --all-topics"),
    (["group", "reset-offsets", "g", "--topic", "orders:x", "--to-latest"], "with partition numbers"),
    (["produce"], "shoal produce: error: the following arguments are required: TOPIC\n"),
    (["consume", "orders", "extra"], "shoal consume: error: unrecognized arguments: extra"),
])
def test_usage_errors_exit_2_naming_the_problem(arguments, message):
    result = shoal(*arguments)
    assert result.returncode == 2
    assert message in result.stderr.decode()


@pytest.mark.parametrize("arguments, message", [
    (["consume", "orders", "--format", "yaml"], "unknown format 'yaml'"),
    (["consume", "orders", "--format", "%q"], "unknown field '%q'"),
    (["consume", "orders", "-g", "billing", "-o", "-5"], "with --group, -o takes only earliest or latest"),
    (["consume", "orders", "-g", "billing", "-p", "0"], "-p/--partition cannot be used with --group"),
    (["produce", "orders", "-f", "%k"], "an input format needs %v"),
    (["topic", "alter-config", "orders"], "nothing to change"),
])
def test_bad_requests_are_refused_before_connecting_with_one_line(arguments, message):
    # -b points nowhere: these must fail on their own, quickly, without trying the brokers
    result = shoal(*arguments, "-b", f"127.0.0.1:{free_port()}", "--timeout", "30")
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert stderr.startswith("shoal: ") and message in stderr and stderr.count("\n") == 1


# --- no broker -------------------------------------------------------------------------------


def test_every_command_reports_unreachable_brokers_within_the_timeout():
    port = free_port()  # bound then released: nothing listens there
    invocations = [invocation + ["-b", f"127.0.0.1:{port}", "--timeout", "1"] for invocation in REACHING_INVOCATIONS]
    started = time.monotonic()
    results = finish_all(start_all(invocations), timeout_s=30)
    elapsed = time.monotonic() - started
    for invocation, (code, stdout, stderr) in zip(REACHING_INVOCATIONS, results):
        assert code == 1, (invocation, stderr)
        assert stderr == (f"shoal: cannot reach any broker at 127.0.0.1:{port} within 1 s: "
                          f"Connect to ipv4#127.0.0.1:{port} failed: Connection refused\n"), invocation
        assert stdout == ""
    assert elapsed < 15  # all ran at once; each gives up after ~1 s plus interpreter start


def test_options_may_come_between_and_after_positionals():
    port = free_port()
    result = shoal("produce", "orders", "-k", "key", "v1", "v2", "-H", "h=1", "-b", f"127.0.0.1:{port}",
                   "--timeout", "0.5", "v3")
    assert result.returncode == 1  # parsed fine: it got as far as trying the brokers
    assert f"cannot reach any broker at 127.0.0.1:{port} within 0.5 s" in result.stderr.decode()


def test_connection_options_may_come_before_the_command_and_the_command_wins():
    first, second = free_port(), free_port()
    before = shoal("-b", f"127.0.0.1:{first}", "--timeout", "0.5", "topic", "list")
    assert f"cannot reach any broker at 127.0.0.1:{first} within 0.5 s" in before.stderr.decode()
    both = shoal("-b", f"127.0.0.1:{first}", "--timeout", "20", "topic", "list",
                 "-b", f"127.0.0.1:{second}", "--timeout", "0.5")
    assert f"cannot reach any broker at 127.0.0.1:{second} within 0.5 s" in both.stderr.decode()
    properties = shoal("-X", "no.such.property=1", "topic", "list", "-X", "client.id=x")
    assert properties.returncode == 1
    assert properties.stderr.decode() == 'shoal: No such configuration property: "no.such.property" (_INVALID_ARG)\n'


def test_top_level_help_shows_the_connection_options_and_examples():
    text = shoal("--help").stdout.decode()
    assert "connection (client commands):" in text and "examples:\n  shoal start" in text
    assert [line for line in text.splitlines() if len(line) > 80] == []


def test_brokers_default_to_the_environment_variable():
    port = free_port()
    result = shoal("topic", "list", "--timeout", "1", environment={"SHOAL_BROKERS": f"127.0.0.1:{port}"})
    assert result.returncode == 1
    assert f"cannot reach any broker at 127.0.0.1:{port} within 1 s" in result.stderr.decode()


def test_a_listener_that_never_answers_gives_a_clear_error_not_a_hang():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        invocations = [["topic", "list"], ["produce", "orders", "v"], ["consume", "orders"]]
        started = time.monotonic()
        results = finish_all(start_all([invocation + ["-b", address, "--timeout", "1.5"]
                                        for invocation in invocations]), timeout_s=30)
        elapsed = time.monotonic() - started
    for code, _, stderr in results:
        assert code == 1
        assert stderr.startswith(f"shoal: cannot reach any broker at {address} within 1.5 s: ")
        assert stderr.count("\n") == 1
    assert elapsed < 15
