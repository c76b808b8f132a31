"""Shared test helpers: free ports and real `shoal start` processes."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SHOAL = [sys.executable, "-m", "broker.cli.main"]


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

    def start(self, timeout_s: float = 20.0) -> "BrokerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        log_file = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        self.process = subprocess.Popen(
            SHOAL + ["start", "--config", str(self.config_path)],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=env)
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
