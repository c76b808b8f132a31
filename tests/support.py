"""Shared test helpers: free ports and real `shoal start` processes."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHOAL = [sys.executable, "-m", "broker.cli.main"]
BASE_TIMESTAMP_MS = 1_700_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_versions_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Kafka ApiVersions v0 round trip succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            body = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
            payload = _recv_exactly(sock, size)
            return struct.unpack(">ih", payload[:6]) == (1, 0)
    except OSError:
        return False


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def wait_until(condition, what="condition", timeout_s: float = 30.0, interval_s: float = 0.05) -> None:
    """Polls `condition` until true or the deadline. `what` is a string or a function giving
    one, called only on failure (to show the state at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what() if callable(what) else what}")


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    """Creates a topic (replication factor 1) with confluent-kafka's AdminClient and waits for it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, partitions, 1, config=config or {})
    for future in admin.create_topics([topic], request_timeout=15).values():
        future.result(20)


def sample_messages(count: int, tag: str, value_repeat_cycle: int) -> list[tuple]:
    """(key, value, headers, timestamp) tuples for client round trips: null values, null keys
    (never both: clients need one), empty header values, and value sizes that cycle
    through `value_repeat_cycle` lengths (so batches mix sizes)."""
    messages = []
    for index in range(count):
        value = None if index % 5 == 2 else f"value-{tag}-{index}-".encode() * (index % value_repeat_cycle + 1)
        key = None if index % 7 == 3 and value is not None else f"key-{tag}-{index}".encode()
        headers = [("trace", f"t{index}".encode()), ("empty", b"")] if index % 2 else []
        messages.append((key, value, headers, BASE_TIMESTAMP_MS + index))
    return messages


class BrokerProcess:
    """A real `shoal start` subprocess on free ports with its own data dir."""

    def __init__(self, data_dir: Path, extra_config: dict | None = None, node_id: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.kafka_port = free_port()
        self.admin_port = free_port()
        self.config = {
            "node_id": node_id,
            "data_dir": str(self.data_dir),
            "kafka_api": {"listen": f"127.0.0.1:{self.kafka_port}"},
            "admin_api": {"listen": f"127.0.0.1:{self.admin_port}"},
            "group_initial_rebalance_delay": "200ms",
        }
        for key, value in (extra_config or {}).items():
            self.config[key] = value
        self.config_path = self.data_dir.parent / f"{self.data_dir.name}.yaml"
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start(self, timeout_s: float = 20.0, wait: bool = True) -> "BrokerProcess":
        """Start the process; with wait, return once it answers ApiVersions."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        log_file = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        self.process = subprocess.Popen(
            SHOAL + ["start", "--config", str(self.config_path)],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        log_file.close()
        return self.wait_ready(timeout_s) if wait else self

    def wait_ready(self, timeout_s: float = 20.0) -> "BrokerProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.log_text()}")
            if api_versions_ok("127.0.0.1", self.kafka_port):
                return self
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"broker not ready in {timeout_s}s:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """kill -9, like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        """SIGTERM, then SIGKILL whatever is left (also when stop() raised)."""
        try:
            self.stop()
        finally:
            self.kill()


@contextmanager
def running_broker(data_dir: Path, extra_config: dict | None = None, node_id: int = 0) -> Iterator[BrokerProcess]:
    """A started BrokerProcess, closed (SIGTERM, then SIGKILL) when the block ends."""
    process = BrokerProcess(data_dir, extra_config, node_id).start()
    try:
        yield process
    finally:
        process.close()


def module_broker(name: str, **config):
    """A module-scoped fixture: one broker process (config keys as in a node's YAML) shared
    by every test of the module, in a temporary directory named after `name`. Use it as
    `broker = module_broker("kcat")`; the fixture takes the name it is assigned to."""

    @pytest.fixture(scope="module")
    def shared_broker(tmp_path_factory) -> Iterator[BrokerProcess]:
        with running_broker(tmp_path_factory.mktemp(name) / "node0", config) as process:
            yield process

    return shared_broker
