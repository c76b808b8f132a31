"""Start-up guards with real `shoal start` processes: one node per data directory (the
second refuses before touching a segment, nothing acknowledged is lost), listeners bound
before any log is opened, a taken port names its listener, misspelled SHOAL_* variables
and an unusable data_dir stop start-up with one line naming the key; and a deleted
topic's committed offsets go with it, so a re-created topic is consumed from its start."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from tests.support import REPO, SHOAL, BrokerProcess, create_topic, free_port, running_broker, wait_until


def produce_acked(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    delivered: list[object] = []
    for value in values:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda error, message: delivered.append(error or message.offset()))
    assert producer.flush(15) == 0
    assert all(isinstance(result, int) for result in delivered), delivered


def consume_all(bootstrap: str, topic: str, group: str | None = None, expected: int | None = None,
                timeout_s: float = 20.0) -> list[bytes]:
    """Values of partition 0 from the group's position (or the earliest offset) to the end."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group or f"reader-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "enable.partition.eof": True, "session.timeout.ms": 6000,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == message.error()._PARTITION_EOF and (
                        expected is None or len(values) >= expected):
                    break
                continue
            values.append(message.value())
        if group is not None and values:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def run_start(config: dict, config_path: Path, env: dict[str, str] | None = None,
              timeout_s: float = 20.0) -> subprocess.CompletedProcess:
    """`shoal start` expected to refuse: returns its exit code and output."""
    config_path.write_text(yaml.safe_dump(config))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    environment.update(env or {})
    return subprocess.run(SHOAL + ["start", "--config", str(config_path)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout_s)


def node_config(data_dir: Path, kafka_port: int | None = None, admin_port: int | None = None) -> dict:
    return {
        "data_dir": str(data_dir),
        "kafka_api": {"listen": f"127.0.0.1:{kafka_port or free_port()}"},
        "admin_api": {"listen": f"127.0.0.1:{admin_port or free_port()}"},
    }


def directory_snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file below `directory` but the lock file."""
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in directory.rglob("*") if path.is_file() and path.name != ".lock"}


def test_second_node_on_a_data_dir_refuses_and_nothing_is_lost(tmp_path: Path) -> None:
    data_dir = tmp_path / "node0"
    first = BrokerProcess(data_dir).start()
    try:
        create_topic(first.bootstrap, "orders", 1)
        produce_acked(first.bootstrap, "orders", [b"a0", b"a1", b"a2"])
        before = directory_snapshot(data_dir)

        refused = run_start(node_config(data_dir), tmp_path / "second.yaml")

        assert refused.returncode == 1, refused
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert str(data_dir) in lines[0] and f"pid {first.process.pid}" in lines[0], lines[0]
        assert directory_snapshot(data_dir) == before  # nothing read-modified, recovered or created
        produce_acked(first.bootstrap, "orders", [b"a3", b"a4"])
    finally:
        first.kill()  # kill -9: the kernel drops the lock with the process
    with running_broker(data_dir) as restarted:
        assert consume_all(restarted.bootstrap, "orders", expected=5) == [b"a0", b"a1", b"a2", b"a3", b"a4"]


def test_listeners_are_bound_before_logs_are_opened(tmp_path: Path) -> None:
    with running_broker(tmp_path / "busy") as busy:
        for taken, key in ((dict(admin_port=busy.admin_port), "admin_api.listen"),
                           (dict(kafka_port=busy.kafka_port), "kafka_api.listen")):
            data_dir = tmp_path / f"fresh-{key}"
            refused = run_start(node_config(data_dir, **taken), tmp_path / f"{key}.yaml")
            assert refused.returncode == 1, refused
            line = refused.stderr.strip()
            assert "\n" not in line and key in line and "address already in use" in line, line
            assert not (data_dir / "topics").exists()  # failed before any log was opened
            assert not (data_dir / "controller").exists()


def test_misspelled_environment_variable_stops_start_up(tmp_path: Path) -> None:
    refused = run_start(node_config(tmp_path / "node"), tmp_path / "typo.yaml",
                        env={"SHOAL_KAFKA_API_LISTNE": "127.0.0.1:1"})
    assert refused.returncode == 2, refused
    line = refused.stderr.strip()
    assert "\n" not in line and "SHOAL_KAFKA_API_LISTNE" in line and "SHOAL_KAFKA_API_LISTEN" in line, line
    assert not (tmp_path / "node").exists()


def test_data_dir_that_is_a_file_names_the_key(tmp_path: Path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("not a directory")
    refused = run_start(node_config(a_file), tmp_path / "file.yaml")
    assert refused.returncode == 1, refused
    line = refused.stderr.strip()
    assert "\n" not in line and "data_dir" in line and str(a_file) in line, line
    assert "Errno" not in line


def test_recreated_topic_is_consumed_from_its_start_by_an_old_group(tmp_path: Path) -> None:
    with running_broker(tmp_path / "node0") as node:
        create_topic(node.bootstrap, "events", 1)
        produce_acked(node.bootstrap, "events", [f"old-{index}".encode() for index in range(5)])
        assert len(consume_all(node.bootstrap, "events", group="billing", expected=5)) == 5

        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        for future in admin.delete_topics(["events"], request_timeout=15).values():
            future.result(20)
        wait_until(lambda: "events" not in admin.list_topics(timeout=5).topics, "topic deleted", 15)
        create_topic(node.bootstrap, "events", 1)
        fresh = [f"new-{index}".encode() for index in range(8)]  # more than the old position (5)
        produce_acked(node.bootstrap, "events", fresh)

        assert consume_all(node.bootstrap, "events", group="billing", expected=8) == fresh
        node.stop()
        node.start()
        produce_acked(node.bootstrap, "events", [b"new-8"])
        assert consume_all(node.bootstrap, "events", group="billing", expected=1) == [b"new-8"]
