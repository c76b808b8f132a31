"""Test support for tiered storage and shadow indexing (tests/test_tiered_*.py, test_shadow_*.py).

- `moto_s3`: a real S3 HTTP endpoint (moto_server subprocess on a free port, killed by PID).
- `FailingS3Proxy`: a TCP proxy in front of it that answers 503 SlowDown on demand (an
  endpoint that fails rather than hangs; SIGSTOP of moto_server is the hanging one).
- `FileSegmentLog`: a small file-backed log that writes real Kafka segment files (v2
  batches from broker.records.build_batch, with CRC32C) and honours the parts of the
  broker.storage.api.PartitionLog seam the archiver uses (segments, roll, high watermark,
  set_archived_offset, delete_records_before / delete_records_offset, local retention
  that never deletes unarchived segments). The
  library tests use it so they need nothing from broker/storage; end-to-end tests use the
  real broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from broker.config import CloudStorageConfig, NodeConfig, TierConfig
from broker.ids import LeaderEpoch, Offset
from broker.records import NewRecord, build_batch, iter_records, read_header
from broker.storage.api import OffsetOutOfRange, SegmentInfo
from tests.support import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


class MotoServer:
    """moto_server as a subprocess: a real S3 HTTP endpoint on 127.0.0.1."""

    access_key = "test"
    secret_key = "test"
    region = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def yaml_section(self, bucket: str, prefix: str = "shoal", **extra) -> dict:
        """The node config's cloud_storage section for this endpoint."""
        return {"url": f"s3://{bucket}/{prefix}", "endpoint": self.endpoint, "region": self.region,
                "access_key": self.access_key, "secret_key": self.secret_key, **extra}

    def start(self, timeout_s: float = 20.0) -> "MotoServer":
        environment = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
        self.process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=0.5)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("moto_server did not answer")

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def new_bucket(self) -> str:
        name = f"shoal-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def cloud_config(self, bucket: str, prefix: str = "cluster", **overrides) -> CloudStorageConfig:
        return CloudStorageConfig(url=f"s3://{bucket}/{prefix}", endpoint=self.endpoint, region=self.region,
                                  access_key=self.access_key, secret_key=self.secret_key, **overrides)


class ExternalS3(MotoServer):
    """An S3 endpoint the tester runs (MinIO, a real bucket's region endpoint), chosen with
    SHOAL_TEST_S3_ENDPOINT (+ SHOAL_TEST_S3_ACCESS_KEY / _SECRET_KEY / _REGION). Each test
    creates its own bucket, as with moto."""

    def __init__(self) -> None:
        self.endpoint = os.environ["SHOAL_TEST_S3_ENDPOINT"]
        self.access_key = os.environ.get("SHOAL_TEST_S3_ACCESS_KEY", "minioadmin")
        self.secret_key = os.environ.get("SHOAL_TEST_S3_SECRET_KEY", "minioadmin")
        self.region = os.environ.get("SHOAL_TEST_S3_REGION", "us-east-1")
        self.process = None

    def start(self, timeout_s: float = 20.0) -> "ExternalS3":
        return self

    def stop(self) -> None:
        return None


class FailingS3Proxy:
    """A TCP proxy in front of an S3 endpoint that can start failing on demand: passing, it
    forwards bytes both ways; failing, it answers every request `503 SlowDown` (what S3
    sends when it sheds load) and closes, and cuts the connections it was forwarding, so
    no kept-alive connection slips past. Threads, stopped by `stop()`."""

    _failure_body = b"<Error><Code>SlowDown</Code><Message>injected by the test</Message></Error>"
    _failure = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                + f"Content-Length: {len(_failure_body)}\r\n\r\n".encode() + _failure_body)

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.failing = threading.Event()
        self.failures_sent = 0
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name="s3-proxy", daemon=True)

    def start(self) -> "FailingS3Proxy":
        self._acceptor.start()
        return self

    def fail(self) -> None:
        self.failing.set()
        self._close_all()

    def recover(self) -> None:
        self.failing.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = self._answer_failure if self.failing.is_set() else self._forward
            threading.Thread(target=handler, args=(client,), daemon=True).start()

    def _answer_failure(self, client: socket.socket) -> None:
        with client:
            client.settimeout(2.0)
            received = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in received and len(received) < 65536:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                client.sendall(self._failure)
                self.failures_sent += 1

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        self._track(client)
        self._track(upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until either side closes, then close both."""
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="session")
def moto_s3():
    """The S3 endpoint of the suite: moto_server, or SHOAL_TEST_S3_ENDPOINT when set."""
    server = ExternalS3() if os.environ.get("SHOAL_TEST_S3_ENDPOINT") else MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def frozen_safe_moto():
    """A private moto_server per test, for tests that SIGSTOP it."""
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


def node_config(tmp_path: Path, cloud: CloudStorageConfig, **tier) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / "data", cloud_storage=cloud,
                      tiers={"default": TierConfig("default", **tier)})


def local_cloud(tmp_path: Path, **overrides) -> CloudStorageConfig:
    return CloudStorageConfig(url=f"file://{tmp_path / 'bucket'}", cache_dir=str(tmp_path / "cache"),
                              **overrides)


# ---------------------------------------------------------------------------------------


@dataclass
class _Segment:
    base_offset: int
    path: Path
    created_ms: int
    sealed: bool = False
    last_offset: int = -1
    base_timestamp_ms: int = -1
    max_timestamp_ms: int = -1
    size_bytes: int = 0


class FileSegmentLog:
    """Real segment files, a real high watermark, retention that respects archiving."""

    def __init__(self, directory: Path, topic: str, partition: int, clock, *,
                 segment_bytes: int = 4096, start_offset: int = 0, leader_epoch: int = 1,
                 local_retention_bytes: int = -1) -> None:
        self.topic = topic
        self.partition = partition
        self.directory = directory / topic / str(partition)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.segment_bytes = segment_bytes
        self.leader_epoch = leader_epoch
        self.local_retention_bytes = local_retention_bytes
        self.archived_offset = -1
        self.delete_records_offset = 0  # like PartitionLog.delete_records_offset
        self._next_offset = start_offset
        self._segments: list[_Segment] = []
        self._load_existing()
        if not self._segments:
            self._open_segment(start_offset)
        self.deleted_segments: list[int] = []
        self.roll_count = 0

    def _load_existing(self) -> None:
        for path in sorted(self.directory.glob("*.log")):
            data = path.read_bytes()
            segment = _Segment(int(path.stem), path, self.clock.now_ms(), sealed=True)
            position = 0
            while position < len(data):
                header = read_header(data, position)
                self._note_batch(segment, header, position + header.size)
                position += header.size
            segment.size_bytes = len(data)
            self._segments.append(segment)
        if self._segments:
            self._segments[-1].sealed = False
            last = max(segment.last_offset for segment in self._segments)
            self._next_offset = max(last + 1, self._segments[-1].base_offset)

    def _open_segment(self, base_offset: int) -> None:
        path = self.directory / f"{base_offset:020d}.log"
        path.touch()
        self._segments.append(_Segment(base_offset, path, self.clock.now_ms(), last_offset=base_offset - 1))

    @staticmethod
    def _note_batch(segment: _Segment, header, size_after: int) -> None:
        if segment.base_timestamp_ms < 0:
            segment.base_timestamp_ms = header.base_timestamp
        segment.last_offset = header.last_offset
        segment.max_timestamp_ms = max(segment.max_timestamp_ms, header.max_timestamp)
        segment.size_bytes = size_after

    # --- the seam ---------------------------------------------------------------------

    @property
    def log_start_offset(self) -> Offset:
        return Offset(max(self._segments[0].base_offset, self.delete_records_offset))

    @property
    def log_end_offset(self) -> Offset:
        return Offset(self._next_offset)

    @property
    def high_watermark(self) -> Offset:
        return Offset(self._next_offset)

    def append_records(self, count: int, value_bytes: int = 100, timestamp_ms: int | None = None) -> tuple[int, int]:
        """Append one batch of `count` records; returns (base_offset, last_offset)."""
        timestamp = self.clock.now_ms() if timestamp_ms is None else timestamp_ms
        records = [NewRecord(key=f"k{self._next_offset + index}".encode(),
                             value=value_for(self.topic, self.partition, self._next_offset + index, value_bytes),
                             timestamp_ms=timestamp) for index in range(count)]
        batch = build_batch(records, base_offset=self._next_offset, partition_leader_epoch=self.leader_epoch)
        active = self._segments[-1]
        if active.size_bytes > 0 and active.size_bytes + len(batch) > self.segment_bytes:
            self.roll()
            active = self._segments[-1]
        with open(active.path, "ab") as file:
            file.write(batch)
        header = read_header(batch)
        self._note_batch(active, header, active.size_bytes + len(batch))
        self._next_offset = header.last_offset + 1
        return header.base_offset, header.last_offset

    def segments(self) -> list[SegmentInfo]:
        return [SegmentInfo(
            base_offset=Offset(segment.base_offset), last_offset=Offset(segment.last_offset),
            base_timestamp_ms=segment.base_timestamp_ms, max_timestamp_ms=segment.max_timestamp_ms,
            size_bytes=segment.size_bytes, leader_epoch=LeaderEpoch(self.leader_epoch),
            log_path=segment.path, index_path=segment.path.with_suffix(".index"),
            timeindex_path=segment.path.with_suffix(".timeindex"), sealed=segment.sealed,
            created_ms=segment.created_ms) for segment in self._segments]

    def roll(self) -> None:
        active = self._segments[-1]
        if active.size_bytes == 0:
            return
        active.sealed = True
        self._open_segment(self._next_offset)
        self.roll_count += 1

    def set_archived_offset(self, offset: Offset) -> None:
        self.archived_offset = max(self.archived_offset, int(offset))

    def apply_local_retention(self) -> None:
        """Delete the oldest sealed segments beyond local_retention_bytes, never an unarchived one."""
        if self.local_retention_bytes < 0:
            return
        while len(self._segments) > 1:
            oldest = self._segments[0]
            total = sum(segment.size_bytes for segment in self._segments)
            if total - oldest.size_bytes < self.local_retention_bytes:
                return
            if oldest.last_offset > self.archived_offset:
                return  # not archived yet: keep it, whatever the retention says
            oldest.path.unlink()
            self.deleted_segments.append(oldest.base_offset)
            self._segments.pop(0)

    async def delete_records_before(self, offset: int) -> int:
        """Like PartitionLog.delete_records_before: the start moves to `offset` and whole
        segments below it go, archived or not (the cold tier must honour the offset itself);
        a no-op at or below the current start, which may lie above offsets still in the bucket."""
        if offset > self._next_offset:
            raise OffsetOutOfRange(offset)
        if offset <= self.log_start_offset:
            return int(self.log_start_offset)
        self.delete_records_offset = max(self.delete_records_offset, offset)
        if self._segments[-1].last_offset < offset and self._segments[-1].size_bytes > 0:
            self.roll()
        while len(self._segments) > 1 and self._segments[0].last_offset < offset:
            oldest = self._segments.pop(0)
            oldest.path.unlink()
            self.deleted_segments.append(oldest.base_offset)
        return int(self.log_start_offset)

    def read_local(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from the batch holding `offset`, like PartitionLog.read."""
        if offset < self.log_start_offset:
            raise OffsetOutOfRange(offset)
        output = bytearray()
        for segment in self._segments:
            if segment.last_offset < offset:
                continue
            data = segment.path.read_bytes()
            position = 0
            while position < len(data):
                header = read_header(data, position)
                if header.last_offset >= offset:
                    if output and len(output) + header.size > max_bytes:
                        return bytes(output)
                    output += data[position: position + header.size]
                position += header.size
        return bytes(output)


def value_for(topic: str, partition: int, offset: int, size: int) -> bytes:
    seed = f"{topic}/{partition}/{offset}:".encode()
    return (seed * (size // len(seed) + 1))[:size]


def decode_offsets(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, timestamp, value) of every record in a run of whole batches."""
    records = []
    position = 0
    while position < len(data):
        header = read_header(data, position)
        batch = data[position: position + header.size]
        records.extend((record.offset, record.timestamp, record.value) for record in iter_records(batch))
        position += header.size
    return records
