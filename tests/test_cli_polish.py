"""Small things a user of `shoal` and `./dev` notices: a group consumer stopped by SIGTERM
or SIGINT leaves its group at once; --print-key prints the key before the headers; with
-K a line without the separator is sent whole as the value with no key (kcat -K); `./dev`
runs pip only when pyproject.toml changed. Real `shoal` subprocesses against a real broker
process; the dev script runs over a stand-in venv that records what it was asked to do."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.support import REPO, SHOAL, create_topic, module_broker, wait_until

REQUEST_TIMEOUT_S = 10
_names = itertools.count()

cli_broker = module_broker("cli-polish")


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def shoal_arguments(broker, *arguments: str) -> list[str]:
    return SHOAL + list(arguments) + ["-b", broker.bootstrap, "--timeout", "10"]


def clean_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}


def shoal_ok(broker, *arguments: str, input_bytes: bytes = b"") -> str:
    result = subprocess.run(shoal_arguments(broker, *arguments), cwd=REPO, env=clean_environment(),
                            input=input_bytes, capture_output=True, timeout=30)
    assert result.returncode == 0, (arguments, result.stderr.decode())
    return result.stdout.decode()


@pytest.fixture(scope="module")
def admin(cli_broker):
    return AdminClient({"bootstrap.servers": cli_broker.bootstrap, "socket.timeout.ms": 10_000})


def group_state(admin, group: str) -> tuple[str, int]:
    """(state name, member count) as DescribeGroups reports them."""
    (future,) = admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S).values()
    try:
        description = future.result()
    except KafkaException as error:
        return f"error {error.args[0].name()}", -1
    return description.state.name, len(description.members)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_group_consumer_leaves_its_group_when_stopped_by_a_signal(cli_broker, admin, stop_signal):
    topic, group = unique("leave"), unique("leave-group")
    create_topic(cli_broker.bootstrap, topic, 1)
    consumer = subprocess.Popen(shoal_arguments(cli_broker, "consume", topic, "-g", group), cwd=REPO,
                                env=clean_environment(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: group_state(admin, group) == ("STABLE", 1),
                   lambda: f"group {group} is {group_state(admin, group)}, not STABLE with one member",
                   timeout_s=20)
        consumer.send_signal(stop_signal)
        # the session timeout (45 s) would have removed the member much later
        wait_until(lambda: group_state(admin, group)[1] == 0,
                   lambda: f"group {group} is still {group_state(admin, group)}", timeout_s=3)
        assert consumer.wait(timeout=10) == 128 + stop_signal, consumer.stderr.read().decode()
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(timeout=10)
        consumer.stderr.close()


def test_print_key_comes_before_the_headers(cli_broker):
    topic = unique("print-order")
    create_topic(cli_broker.bootstrap, topic, 1)
    shoal_ok(cli_broker, "produce", topic, "-k", "customer-7", "-H", "source=web", "-H", "bare", "first")
    assert shoal_ok(cli_broker, "consume", topic, "-e", "--print-key", "--print-headers") == (
        "customer-7\tsource=web,bare\tfirst\n")
    assert shoal_ok(cli_broker, "consume", topic, "-e", "--print-headers") == "source=web,bare\tfirst\n"


def test_key_separator_line_without_it_is_all_value_with_no_key(cli_broker):
    topic = unique("key-separator")
    create_topic(cli_broker.bootstrap, topic, 1)
    assert shoal_ok(cli_broker, "produce", topic, "-K", ":", input_bytes=b"k1:v1\nno separator\n:empty key\n") == (
        f"delivered 3 messages to '{topic}'\n")
    shoal_ok(cli_broker, "produce", topic, "-K", ":", "-k", "fixed", input_bytes=b"plain\n")
    lines = shoal_ok(cli_broker, "consume", topic, "-e", "--format", "json").splitlines()
    assert [(record["key"], record["value"]) for record in map(json.loads, lines)] == [
        ("k1", "v1"), (None, "no separator"), ("", "empty key"), ("fixed", "plain")]


def test_format_line_that_does_not_match_is_still_refused(cli_broker):
    topic = unique("format-mismatch")
    create_topic(cli_broker.bootstrap, topic, 1)
    result = subprocess.run(shoal_arguments(cli_broker, "produce", topic, "-f", "%k\\t%v"), cwd=REPO,
                            env=clean_environment(), input=b"no tab\n", capture_output=True, timeout=30)
    assert result.returncode == 1
    assert "message 1 skipped: the line does not match the format" in result.stderr.decode()


# ---------------------------------------------------------------------------------------
# ./dev: pip only when pyproject.toml changed


STAND_IN = """#!/bin/sh
echo "{name} $*" >> {log}
"""
STAND_IN_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ]; then echo "python $*" >> {log}; exit 0; fi
exec {python} "$@"
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the dev script beside a pyproject.toml, with a venv whose pip, shoal and
    `python -m` only log their arguments (python -c is the real interpreter), and a kcat on
    PATH so that `./dev test` installs no tools."""
    root = tmp_path / "checkout"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(REPO / "dev", root / "dev")
    (root / "pyproject.toml").write_text('[project]\nname = "stand-in"\n')
    log = tmp_path / "calls.log"
    log.touch()
    tools = tmp_path / "tools"
    tools.mkdir()
    for path, text in ((bin_dir / "pip", STAND_IN.format(name="pip", log=log)),
                       (bin_dir / "shoal", STAND_IN.format(name="shoal", log=log)),
                       (bin_dir / "python", STAND_IN_PYTHON.format(log=log, python=sys.executable)),
                       (tools / "kcat", "#!/bin/sh\n")):
        path.write_text(text)
        path.chmod(0o755)
    return root


def run_dev(checkout: Path, *arguments: str) -> list[str]:
    """Runs ./dev; returns the stand-ins' calls it made."""
    log = checkout.parent / "calls.log"
    before = log.read_text().splitlines()
    environment = clean_environment()
    environment.pop("PYTHON", None)
    environment["PATH"] = f"{checkout.parent / 'tools'}:{environment['PATH']}"
    result = subprocess.run([str(checkout / "dev"), *arguments], env=environment, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()[len(before):]


def test_dev_installs_only_when_pyproject_changes(checkout):
    assert run_dev(checkout, "start", "--version") == ["pip install --quiet -e .", "shoal start --version"]
    assert run_dev(checkout, "start", "--version") == ["shoal start --version"]
    (checkout / "module.py").write_text("# code changes need no install: it is editable\n")
    assert run_dev(checkout, "start") == ["shoal start"]

    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write('dependencies = ["pyyaml"]\n')
    assert run_dev(checkout, "start") == ["pip install --quiet -e .", "shoal start"]


def test_dev_test_has_its_own_stamp_that_covers_start(checkout):
    assert run_dev(checkout, "test", "-q") == ["pip install --quiet -e .[test]", "python -m pytest -q"]
    assert run_dev(checkout, "test", "-q") == ["python -m pytest -q"]
    assert run_dev(checkout, "start") == ["shoal start"]  # .[test] installed the project too

    (checkout / ".venv" / "bin" / "shoal").unlink()  # uninstalled behind the stamp's back
    assert run_dev(checkout, "test") == ["pip install --quiet -e .[test]", "python -m pytest"]
