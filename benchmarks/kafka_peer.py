"""An Apache Kafka broker (KRaft, one combined broker+controller node) on free loopback
ports: the peer Shoal is measured against.

The broker's jars come from Maven Central through `mvn dependency:copy-dependencies`
(benchmarks/pom.xml) into benchmarks/.kafka/lib, which is git-ignored. Where Maven
Central cannot be reached, `ensure_kafka_jars()` raises KafkaUnavailable with the reason.

    python -m benchmarks.kafka_peer          # resolve, format, start; Ctrl-C stops it by PID
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
POM = BENCHMARKS / "pom.xml"
KAFKA_HOME = BENCHMARKS / ".kafka"
KAFKA_LIB = KAFKA_HOME / "lib"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
BROKER_MAIN_CLASS = "kafka.Kafka"
MAVEN_RESOLVE_TIMEOUT_S = 600  # a first resolution downloads ~60 MiB of jars
BROKER_READY_TIMEOUT_S = 90  # JVM start + KRaft self-election on 2 shared cores
BROKER_STOP_TIMEOUT_S = 60  # controlled shutdown of a combined node


class KafkaUnavailable(RuntimeError):
    """The Kafka broker cannot be had on this machine (no java, no mvn, no Maven Central)."""


def kafka_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("</kafka.version>", 1)[0].strip()


def _jar_marker() -> Path:
    return KAFKA_LIB / f".resolved-{kafka_version()}"


def ensure_kafka_jars(timeout_s: float = MAVEN_RESOLVE_TIMEOUT_S) -> Path:
    """Resolve the broker's jars once; later calls reuse benchmarks/.kafka/lib."""
    if _jar_marker().exists():
        return KAFKA_LIB
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaUnavailable(f"`{tool}` is not installed")
    if KAFKA_LIB.exists():
        shutil.rmtree(KAFKA_LIB)
    command = ["mvn", "-q", "-B", "-U", "-f", str(POM), "dependency:copy-dependencies"]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise KafkaUnavailable(f"Maven did not resolve Kafka {kafka_version()} within {timeout_s:.0f}s") from None
    if completed.returncode != 0:
        raise KafkaUnavailable(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{kafka_version()}: "
            + _first_error_line(completed.stdout + completed.stderr))
    _jar_marker().write_text(kafka_version() + "\n")
    return KAFKA_LIB


def _first_error_line(output: str) -> str:
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    if "Unknown host" in output:
        host = re.search(r"Unknown host ([^:\s]+)", output)
        return f"Maven Central is unreachable (unknown host {host.group(1) if host else '?'})"
    for line in output.splitlines():
        if "[ERROR]" in line:
            return line.replace("[ERROR]", "").strip()[:400]
    return output.strip()[-400:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def server_properties(node_id: int, broker_port: int, controller_port: int, log_dir: Path) -> str:
    """A single combined node with Kafka's defaults where the benchmark does not care."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


class KafkaBroker:
    """One Kafka process: `start()` formats its storage and waits until it serves;
    `stop()` sends SIGTERM to its PID and waits (SIGKILL after BROKER_STOP_TIMEOUT_S)."""

    def __init__(self, work_dir: Path | None = None, heap: str = "1G") -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="kafka-peer-"))
        self.heap = heap
        self.node_id = 1
        self.broker_port = free_port()
        self.controller_port = free_port()
        self.log_path = self.work_dir / "kafka.out"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _classpath(self) -> str:
        return str(KAFKA_LIB / "*")

    def _java(self, main_class: str, *arguments: str) -> list[str]:
        return ["java", f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
                "-cp", self._classpath(), main_class, *arguments]

    def _write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        config_path = self.work_dir / "server.properties"
        config_path.write_text(server_properties(
            self.node_id, self.broker_port, self.controller_port, self.work_dir / "data"))
        return config_path

    def _format_storage(self, config_path: Path) -> None:
        command = self._java(STORAGE_TOOL_CLASS, "format", "-t", random_cluster_id(),
                             "-c", str(config_path), "--ignore-formatted")
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{completed.stdout}{completed.stderr}")

    def start(self, timeout_s: float = BROKER_READY_TIMEOUT_S) -> "KafkaBroker":
        ensure_kafka_jars()
        config_path = self._write_config()
        self._format_storage(config_path)
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(self._java(BROKER_MAIN_CLASS, str(config_path)),
                                        stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log_file.close()
        self._wait_until_serving(timeout_s)
        return self

    def _wait_until_serving(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kafka exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                metadata = admin.list_topics(timeout=2)
                if metadata.brokers:
                    return
            except Exception:  # KafkaException while the node elects itself
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"kafka not serving within {timeout_s}s:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=BROKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return self.process.returncode


def main() -> int:
    try:
        broker = KafkaBroker().start()
    except KafkaUnavailable as reason:
        print(f"kafka unavailable: {reason}", file=sys.stderr)
        return 1
    print(f"kafka {kafka_version()} serving on {broker.bootstrap} (pid {broker.pid}); Ctrl-C stops it",
          flush=True)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.sigwait(stop_signals)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
