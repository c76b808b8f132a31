"""The `shoal` client commands as subprocesses against a real broker process: topics,
produce/consume round trips (keys, headers, null values, codecs, offsets, timestamps),
configs, and consumer groups (describe, reset-offsets, delete)."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from broker.handlers.registry import HANDLERS
from tests.support import REPO, SHOAL, BrokerProcess, module_broker

METADATA, PRODUCE, FETCH, LIST_OFFSETS, CREATE_TOPICS, DELETE_TOPICS = 3, 0, 1, 2, 19, 20
DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 44
GROUP_APIS = (10, 11, 12, 14, 8, 9, 13, 16, 15, 42)  # coordinator..leave, list/describe/delete


def served(*api_keys: int):
    missing = [key for key in api_keys if key not in HANDLERS]
    return pytest.mark.skipif(bool(missing), reason=f"the broker does not serve API keys {missing} yet")


ROUND_TRIP_APIS = (METADATA, PRODUCE, FETCH, LIST_OFFSETS, CREATE_TOPICS)
pytestmark = served(*ROUND_TRIP_APIS)

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


cli_broker = module_broker("cli")


class Shoal:
    """Runs `shoal ...` against one broker; every call bounded in time."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.environment = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
        self.environment["SHOAL_BROKERS"] = broker.bootstrap

    def run(self, *arguments: str, input_bytes: bytes | None = None, timeout_s: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(SHOAL + list(arguments) + ["--timeout", "10"], cwd=REPO, env=self.environment,
                              input=input_bytes, capture_output=True, timeout=timeout_s)

    def ok(self, *arguments: str, input_bytes: bytes | None = None) -> str:
        result = self.run(*arguments, input_bytes=input_bytes)
        assert result.returncode == 0, (arguments, result.stderr.decode(), self.broker.log_text()[-2000:])
        return result.stdout.decode()

    def fails(self, *arguments: str, input_bytes: bytes | None = None) -> str:
        result = self.run(*arguments, input_bytes=input_bytes)
        stderr = result.stderr.decode()
        assert result.returncode == 1, (arguments, result.stdout.decode(), stderr)
        assert stderr.startswith("shoal: "), stderr
        return stderr

    def json(self, *arguments: str) -> object:
        return json.loads(self.ok(*arguments, "--format", "json"))

    def consume_json(self, topic: str, *arguments: str) -> list[dict]:
        text = self.ok("consume", topic, "--format", "json", *arguments)
        return [json.loads(line) for line in text.splitlines()]

    def start(self, *arguments: str) -> subprocess.Popen:
        return subprocess.Popen(SHOAL + list(arguments), cwd=REPO, env=self.environment,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def shoal(cli_broker):
    return Shoal(cli_broker)


def new_topic(shoal: Shoal, prefix: str, partitions: int = 1, *configs: str) -> str:
    name = unique(prefix)
    arguments = ["topic", "create", name, "-p", str(partitions)]
    for config in configs:
        arguments += ["-c", config]
    assert shoal.ok(*arguments) == f"created topic '{name}'\n"
    return name


# --- topics ---------------------------------------------------------------------------------


def test_topic_create_list_and_errors(shoal):
    name = new_topic(shoal, "orders", 3, "retention.ms=86400000")
    assert "TOPIC_ALREADY_EXISTS" in shoal.fails("topic", "create", name)
    assert shoal.ok("topic", "create", name, "--if-not-exists") == f"topic '{name}' already exists\n"
    listed = {row["name"]: row for row in shoal.json("topic", "list")}
    assert listed[name] == {"name": name, "partitions": 3, "replicas": 1}
    text = shoal.ok("topic", "list").splitlines()
    assert text[0].split() == ["NAME", "PARTITIONS", "REPLICAS"]
    assert [name, "3", "1"] in [line.split() for line in text]
    assert shoal.fails("topic", "describe", "no-such-topic") == (
        "shoal: topic 'no-such-topic' does not exist (UNKNOWN_TOPIC_OR_PARTITION)\n")


@served(DESCRIBE_CONFIGS)
def test_topic_describe_shows_partitions_offsets_and_config_sources(shoal):
    name = new_topic(shoal, "described", 2, "retention.ms=86400000")
    shoal.ok("produce", name, "-p", "1", "a", "b", "c")
    document = shoal.json("topic", "describe", name)
    assert document["name"] == name
    assert [(p["partition"], p["low"], p["high"]) for p in document["partitions"]] == [(0, 0, 0), (1, 0, 3)]
    assert all(p["leader"] == 0 and p["replicas"] == [0] and p["in_sync_replicas"] == [0]
               for p in document["partitions"])
    configs = {config["name"]: config for config in document["configs"]}
    assert configs["retention.ms"]["value"] == "86400000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["source"] != "DYNAMIC_TOPIC_CONFIG"
    text = shoal.ok("topic", "describe", name)
    assert "PARTITION  LEADER  REPLICAS  IN-SYNC  LOW  HIGH" in text
    assert any(line.split() == ["1", "0", "0", "0", "0", "3"] for line in text.splitlines())
    assert any(line.split() == ["retention.ms", "86400000", "DYNAMIC_TOPIC_CONFIG"] for line in text.splitlines())


@served(DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS)
def test_topic_alter_config_sets_and_deletes(shoal):
    name = new_topic(shoal, "configured", 1)

    def config(key: str) -> dict:
        return {c["name"]: c for c in shoal.json("topic", "describe", name)["configs"]}[key]

    assert shoal.ok("topic", "alter-config", name, "--set", "retention.ms=3600000",
                    "--set", "segment.bytes=1048576") == (
        f"updated topic '{name}': set retention.ms=3600000, set segment.bytes=1048576\n")
    assert config("retention.ms")["value"] == "3600000"
    assert config("segment.bytes")["source"] == "DYNAMIC_TOPIC_CONFIG"
    shoal.ok("topic", "alter-config", name, "--delete", "retention.ms")
    assert config("retention.ms")["source"] != "DYNAMIC_TOPIC_CONFIG"
    assert config("segment.bytes")["value"] == "1048576"
    failure = shoal.fails("topic", "alter-config", name, "--set", "cleanup.policy=compact")
    assert failure.startswith(f"shoal: cannot change configs of topic '{name}': ")
    assert "INVALID_CONFIG" in failure and failure.count("\n") == 1
    assert "does not exist (UNKNOWN_TOPIC_OR_PARTITION)" in shoal.fails(
        "topic", "alter-config", "no-such-topic", "--set", "retention.ms=1")


@served(DELETE_TOPICS)
def test_topic_delete(shoal):
    first, second = new_topic(shoal, "doomed"), new_topic(shoal, "doomed")
    assert shoal.ok("topic", "delete", first, second) == f"deleted topic '{first}'\ndeleted topic '{second}'\n"
    names = {row["name"] for row in shoal.json("topic", "list")}
    assert first not in names and second not in names
    assert shoal.fails("topic", "delete", first) == (
        f"shoal: topic '{first}' does not exist (UNKNOWN_TOPIC_OR_PARTITION)\n")
    assert shoal.ok("topic", "delete", first, "--if-exists") == ""


# --- produce and consume --------------------------------------------------------------------


def test_keys_headers_and_null_values_round_trip(shoal):
    name = new_topic(shoal, "round-trip")
    assert shoal.ok("produce", name, "-k", "customer-7", "-H", "source=web", "-H", "empty=", "-H", "bare",
                    "first", "second") == f"delivered 2 messages to '{name}'\n"
    verbose = shoal.ok("produce", name, "-f", "%k\\t%v", "-Z", "-v", input_bytes=b"k3\tthird\nk4\t\n\tfifth\n")
    assert verbose.splitlines() == [
        "message 1: partition 0, offset 2", "message 2: partition 0, offset 3",
        "message 3: partition 0, offset 4", f"delivered 3 messages to '{name}'"]
    records = shoal.consume_json(name, "-e")
    assert [(r["offset"], r["key"], r["value"]) for r in records] == [
        (0, "customer-7", "first"), (1, "customer-7", "second"), (2, "k3", "third"),
        (3, "k4", None), (4, None, "fifth")]
    assert records[0]["headers"] == [{"key": "source", "value": "web"}, {"key": "empty", "value": ""},
                                     {"key": "bare", "value": None}]
    assert records[2]["headers"] == []
    assert all(r["topic"] == name and r["partition"] == 0 and r["timestamp_type"] == "CreateTime"
               for r in records)
    text = shoal.ok("consume", name, "-e", "--print-key", "--print-headers")
    assert text.splitlines()[0] == "customer-7\tsource=web,empty=,bare\tfirst"
    template = shoal.ok("consume", name, "-e", "--format", "%o|%k|%v|%K|%S")
    assert template.splitlines() == ["0|customer-7|first|10|5", "1|customer-7|second|10|6",
                                     "2|k3|third|2|5", "3|k4||2|-1", "4||fifth|-1|5"]


def test_stdin_lines_binary_values_and_key_separator(shoal):
    name = new_topic(shoal, "stdin")
    lines = b"plain line\n\xff\xfebinary\nlast without newline"
    shoal.ok("produce", name, input_bytes=lines)
    shoal.ok("produce", name, "-K", "::", input_bytes=b"a::b::c\n")
    records = shoal.consume_json(name, "-e")
    assert [r["value"] for r in records] == ["plain line", "//5iaW5hcnk=", "last without newline", "b::c"]
    assert records[1]["value_encoding"] == "base64" and records[3]["key"] == "a"
    raw = shoal.run("consume", name, "-e", "--format", "%v").stdout
    assert raw.splitlines() == [b"plain line", b"\xff\xfebinary", b"last without newline", b"b::c"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec_round_trips(shoal, codec):
    name = new_topic(shoal, f"codec-{codec}")
    values = [f"{codec} message {number} " + "x" * number for number in range(50)]
    shoal.ok("produce", name, "--compression", codec, "--acks", "1", input_bytes="\n".join(values).encode())
    assert shoal.ok("consume", name, "-e").splitlines() == values


def test_consume_from_offset_end_latest_and_count(shoal):
    name = new_topic(shoal, "offsets")
    shoal.ok("produce", name, *[f"m{number}" for number in range(10)])
    assert shoal.ok("consume", name, "-o", "4", "-n", "3").splitlines() == ["m4", "m5", "m6"]
    assert shoal.ok("consume", name, "-o", "-2", "-e").splitlines() == ["m8", "m9"]
    assert shoal.ok("consume", name, "-o", "-50", "-n", "1").splitlines() == ["m0"]
    assert shoal.ok("consume", name, "-o", "latest", "-e") == ""
    assert shoal.ok("consume", name, "-o", "earliest", "-n", "2", "--format", "%o:%v").splitlines() == [
        "0:m0", "1:m1"]
    started = time.monotonic()
    result = shoal.run("consume", name, "-o", "8", "-n", "5", "--timeout-exit", "1")
    assert result.returncode == 1 and time.monotonic() - started < 15
    assert result.stdout.decode().splitlines() == ["m8", "m9"]
    assert result.stderr.decode() == "shoal: no message for 1 s; got 2 of 5\n"


def test_consume_from_a_timestamp(shoal):
    name = new_topic(shoal, "timestamps")
    base = (int(time.time()) - 3600) * 1000  # an hour ago, well inside retention
    lines = "".join(f"{base + 1000 * number} t{number}\n" for number in range(5))
    shoal.ok("produce", name, "-f", "%T %v", input_bytes=lines.encode())
    assert shoal.ok("consume", name, "-o", f"@{base + 2000}", "-e").splitlines() == ["t2", "t3", "t4"]
    assert shoal.ok("consume", name, "-o", f"@{base + 1500}", "-n", "1", "--format", "%T %v").splitlines() == [
        f"{base + 2000} t2"]
    moment = datetime.datetime.fromtimestamp((base + 3000) / 1000, tz=datetime.timezone.utc)
    assert shoal.ok("consume", name, "--from-timestamp", moment.isoformat(), "-e").splitlines() == ["t3", "t4"]
    assert shoal.ok("consume", name, "-o", f"@{base + 99_000}", "-e") == ""


def delivered_partitions(verbose_output: str) -> dict[int, int]:
    """{message number: partition} from `produce -v` lines 'message N: partition P, offset O'."""
    found = {}
    for line in verbose_output.splitlines():
        if line.startswith("message "):
            number, rest = line[len("message "):].split(": partition ")
            found[int(number)] = int(rest.split(",")[0])
    return found


def test_partitions_keys_and_partition_selection(shoal):
    name = new_topic(shoal, "partitioned", 3)
    keyed = shoal.ok("produce", name, "-v", "-f", "%k=%v",
                     input_bytes="".join(f"key{n}=v{n}\n" for n in range(30)).encode())
    partition_of = delivered_partitions(keyed)
    assert sorted(partition_of) == list(range(1, 31))
    assert len(set(partition_of.values())) > 1  # the keys spread over the partitions
    again = shoal.ok("produce", name, "-v", "-k", "key0", "again")
    assert delivered_partitions(again) == {1: partition_of[1]}  # same key, same partition
    shoal.ok("produce", name, "-p", "2", "pinned")
    everything = shoal.consume_json(name, "-e")
    assert len(everything) == 32
    only_two = shoal.consume_json(name, "-p", "2", "-e")
    assert {r["partition"] for r in only_two} == {2} and only_two[-1]["value"] == "pinned"
    assert "has no partition 7" in shoal.fails("produce", name, "-p", "7", "x")
    assert "has no partition 9" in shoal.fails("consume", name, "-p", "9", "-e")


def test_a_delivery_failure_is_reported_per_message_and_exits_non_zero(shoal):
    name = new_topic(shoal, "small", 1, "max.message.bytes=200")
    result = shoal.run("produce", name, "x" * 1000)
    assert result.returncode == 1
    assert result.stderr.decode() == "shoal: message 1 not delivered: Message size too large (MESSAGE_TOO_LARGE)\n"
    assert result.stdout.decode() == f"delivered 0 of 1 messages to '{name}'; 1 failed\n"
    assert shoal.ok("produce", name, "--acks", "0", "-v", "fits") == (
        f"message 1: partition 0, offset unknown (acks=0)\ndelivered 1 message to '{name}'\n")


def test_consume_of_a_missing_topic_is_one_clear_line(shoal):
    assert shoal.fails("consume", "no-such-topic", "-e") == (
        "shoal: topic 'no-such-topic' does not exist (UNKNOWN_TOPIC_OR_PARTITION)\n")


# --- groups ---------------------------------------------------------------------------------


def committed(shoal: Shoal, group: str) -> dict[int, int | None]:
    return {row["partition"]: row["committed"] for row in shoal.json("group", "describe", group)["partitions"]}


@served(*GROUP_APIS)
def test_group_consume_describe_reset_and_delete(shoal):
    name = new_topic(shoal, "grouped", 2)
    shoal.ok("produce", name, "-p", "0", *[f"a{n}" for n in range(6)])
    shoal.ok("produce", name, "-p", "1", *[f"b{n}" for n in range(4)])
    group = unique("billing")
    read = shoal.ok("consume", name, "-g", group, "-e").splitlines()
    assert sorted(read) == sorted([f"a{n}" for n in range(6)] + [f"b{n}" for n in range(4)])
    assert group in {row["group"] for row in shoal.json("group", "list")}

    document = shoal.json("group", "describe", group)
    assert document["state"] == "EMPTY" and document["members"] == []
    assert [(p["partition"], p["committed"], p["end"], p["lag"]) for p in document["partitions"]] == [
        (0, 6, 6, 0), (1, 4, 4, 0)]
    text = shoal.ok("group", "describe", group)
    assert "TOTAL LAG    0" in text and "COMMITTED" in text

    plan = shoal.ok("group", "reset-offsets", group, "--topic", name, "--to-earliest")
    assert "dry run: nothing changed" in plan
    assert [line.split() for line in plan.splitlines()[1:3]] == [[name, "0", "6", "0"], [name, "1", "4", "0"]]
    assert committed(shoal, group) == {0: 6, 1: 4}

    shoal.ok("group", "reset-offsets", group, "--topic", f"{name}:0", "--to-offset", "2", "--execute")
    assert committed(shoal, group) == {0: 2, 1: 4}
    shoal.ok("group", "reset-offsets", group, "--all-topics", "--shift-by", "-1", "--execute")
    assert committed(shoal, group) == {0: 1, 1: 3}
    lagging = shoal.json("group", "describe", group)
    assert lagging["total_lag"] == 6
    shoal.ok("group", "reset-offsets", group, "--topic", name, "--to-latest", "--execute")
    assert committed(shoal, group) == {0: 6, 1: 4}
    shoal.ok("group", "reset-offsets", group, "--topic", f"{name}:1", "--to-datetime", "2000-01-01", "--execute")
    assert committed(shoal, group) == {0: 6, 1: 0}
    assert shoal.ok("consume", name, "-g", group, "-n", "1") == "b0\n"
    assert committed(shoal, group) == {0: 6, 1: 1}

    assert shoal.ok("group", "delete", group) == f"deleted group '{group}'\n"
    assert shoal.fails("group", "describe", group) == f"shoal: group '{group}' does not exist (GROUP_ID_NOT_FOUND)\n"


@served(*GROUP_APIS)
def test_reset_offsets_refuses_a_group_with_active_members(shoal):
    name = new_topic(shoal, "busy", 1)
    shoal.ok("produce", name, "x")
    group = unique("busy")
    consumer = shoal.start("consume", name, "-g", group, "-X", "client.id=cli-e2e")
    try:
        deadline = time.monotonic() + 20
        document = {}
        while time.monotonic() < deadline:
            result = shoal.run("group", "describe", group, "--format", "json")
            document = json.loads(result.stdout) if result.returncode == 0 else {}
            if document.get("state") == "STABLE" and document["members"]:
                break
            time.sleep(0.2)
        assert document.get("state") == "STABLE", document
        member = document["members"][0]
        assert member["client_id"] == "cli-e2e"  # -X reached librdkafka
        assert member["assignment"] == [{"topic": name, "partition": 0}]
        failure = shoal.fails("group", "reset-offsets", group, "--topic", name, "--to-earliest", "--execute")
        assert failure == (f"shoal: group '{group}' is not empty (state STABLE, 1 members); "
                           "stop its consumers before resetting offsets\n")
    finally:
        consumer.send_signal(signal.SIGINT)
        try:
            stdout, _ = consumer.communicate(timeout=20)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait(timeout=10)
    assert stdout == b"x\n"
