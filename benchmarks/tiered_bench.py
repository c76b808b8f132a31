"""Tiered-storage benchmark: archive throughput, historical read throughput from the bucket
with a cold and a warm cache, and S3 requests per GB archived / read.

Two levels:
  library   TieredStorage + RemoteReader over real segment files (tests/tiered_support.py),
            sequential 1 MiB reads, like a consumer's per-partition fetch.
  broker    a real `shoal start` node, confluent-kafka producer, then a fresh consumer
            from earliest reading a topic whose history is almost all in the bucket.
Backends: moto_server (a real S3 HTTP endpoint, in-memory, on this machine) and file://.

    .venv/bin/python -m benchmarks.tiered_bench --megabytes 256 [--levels library,broker]
                                                [--backends s3,local] [--json out.json]

Opt-in (not part of the test suite's default run); tests/test_tiered_bench.py runs a tiny
version under SHOAL_BENCH=1. Numbers go to docs/benchmarks.md with machine and date.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

GIB = 1024**3
MIB = 1024**2


def _requests_per_gib(requests: Counter, byte_count: int) -> dict:
    return {operation: round(count * GIB / max(byte_count, 1), 1) for operation, count in sorted(requests.items())}


async def library_run(backend: str, megabytes: int, segment_mib: int, chunk_kib: int, workdir: Path) -> dict:
    from broker.clock import SystemClock
    from shadow_indexing.cache import ChunkCache
    from shadow_indexing.reader import RemoteReader
    from tests.tiered_support import FileSegmentLog, MotoServer, local_cloud, node_config
    from tiered.service import TieredStorage
    from tiered.settings import TopicTieredSettings

    server = None
    if backend == "s3":
        server = MotoServer().start()
        cloud = server.cloud_config(server.new_bucket(), chunk_size_bytes=chunk_kib * 1024,
                                    cache_dir=str(workdir / "cache"), cache_size_bytes=4 * GIB)
    else:
        cloud = local_cloud(workdir, chunk_size_bytes=chunk_kib * 1024, cache_size_bytes=4 * GIB)
    try:
        clock = SystemClock()
        log = FileSegmentLog(workdir / "logs", "bench", 0, clock, segment_bytes=segment_mib * MIB)
        settings = TopicTieredSettings(remote_storage_enable=True, retention_bytes=-1, retention_ms=-1,
                                       local_retention_bytes=-1, local_retention_ms=-1, partition_count=1)
        tiered = TieredStorage(node_config(workdir, cloud), lambda: [log], lambda topic: settings, clock=clock)
        while log.log_end_offset * 1000 < megabytes * MIB:
            log.append_records(100, 1000)
        log.roll()
        archived_bytes = sum(segment.size_bytes for segment in log.segments())
        started = time.monotonic()
        while log.archived_offset < log.log_end_offset - 1:
            await tiered.tick(clock.now_ms())
            await tiered.drain()
        archive_seconds = time.monotonic() - started
        archive_requests = Counter(tiered.store.metrics.requests)

        async def sequential_read(reader: RemoteReader) -> tuple[float, int, Counter]:
            before = Counter(tiered.store.metrics.requests)
            offset, total = 0, 0
            began = time.monotonic()
            while offset < log.log_end_offset:
                data = await reader.read("bench", 0, offset, MIB)
                total += len(data)
                offset = _next_offset(data)
            seconds = time.monotonic() - began
            return seconds, total, Counter(tiered.store.metrics.requests) - before

        cold_cache = ChunkCache(workdir / "cold-cache", 4 * GIB)
        cold_reader = RemoteReader(tiered.store, tiered.manifest_for, cold_cache, chunk_size_bytes=chunk_kib * 1024)
        cold_seconds, read_bytes, cold_requests = await sequential_read(cold_reader)
        await asyncio.sleep(0.2)
        warm_seconds, _, warm_requests = await sequential_read(cold_reader)
        await cold_reader.close()
        await tiered.close()
        return {
            "level": "library", "backend": backend, "megabytes": round(archived_bytes / MIB, 1),
            "segment_mib": segment_mib, "chunk_kib": chunk_kib,
            "archive_mib_per_s": round(archived_bytes / MIB / archive_seconds, 1),
            "archive_requests_per_gib": _requests_per_gib(archive_requests, archived_bytes),
            "cold_read_mib_per_s": round(read_bytes / MIB / cold_seconds, 1),
            "cold_read_requests_per_gib": _requests_per_gib(cold_requests, read_bytes),
            "warm_read_mib_per_s": round(read_bytes / MIB / warm_seconds, 1),
            "warm_read_requests_per_gib": _requests_per_gib(warm_requests, read_bytes),
            "cache_hits": cold_cache.metrics.hits, "cache_misses": cold_cache.metrics.misses,
        }
    finally:
        if server is not None:
            server.stop()


def _next_offset(data: bytes) -> int:
    from broker.records import read_header

    position, last = 0, -1
    while position < len(data):
        header = read_header(data, position)
        last = header.last_offset
        position += header.size
    return last + 1


def broker_run(backend: str, megabytes: int, segment_mib: int, workdir: Path) -> dict:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.support import BrokerProcess
    from tests.tiered_support import MotoServer

    server = None
    cloud = {"upload_interval": "1s", "chunk_size": "1MiB", "cache_size": "4GiB"}
    if backend == "s3":
        server = MotoServer().start()
        cloud.update({"url": f"s3://{server.new_bucket()}/bench", "endpoint": server.endpoint,
                      "access_key": "test", "secret_key": "test"})
    else:
        cloud["url"] = f"file://{workdir / 'bucket'}"
    broker = BrokerProcess(workdir / "node", {"cloud_storage": cloud}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("bench", 1, 1, config={
            "segment.bytes": str(segment_mib * MIB), "local.retention.bytes": str(segment_mib * MIB),
            "remote.storage.enable": "true"})])["bench"].result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                             "acks": "all", "compression.type": "none"})
        value = b"x" * 1000
        count = megabytes * MIB // 1000
        started = time.monotonic()
        for index in range(count):
            while True:
                try:
                    producer.produce("bench", value=value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(300)
        produce_seconds = time.monotonic() - started
        _wait_archived(broker, count)
        time.sleep(2.5)  # local retention drops the archived segments

        def consume() -> tuple[float, int]:
            consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"bench-{time.monotonic_ns()}",
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                 "fetch.max.bytes": 8 * MIB, "max.partition.fetch.bytes": 4 * MIB})
            consumer.subscribe(["bench"])
            received, began = 0, None
            deadline = time.monotonic() + 600
            while received < count and time.monotonic() < deadline:
                for message in consumer.consume(1000, timeout=0.05):
                    if message.error() is None:
                        began = began or time.monotonic()
                        received += 1
            seconds = time.monotonic() - began
            consumer.close()
            return seconds, received

        status = _status(broker)
        cold_seconds, received = consume()
        warm_seconds, _ = consume()
        return {
            "level": "broker", "backend": backend, "megabytes": megabytes, "segment_mib": segment_mib,
            "messages": count, "received": received,
            "produce_mib_per_s": round(megabytes / produce_seconds, 1),
            "local_start_offset": status["local_start_offset"],
            "cold_consume_mib_per_s": round(received * 1000 / MIB / cold_seconds, 1),
            "warm_consume_mib_per_s": round(received * 1000 / MIB / warm_seconds, 1),
        }
    finally:
        broker.stop()
        broker.kill()
        if server is not None:
            server.stop()


def _status(broker) -> dict:
    """The bench partition's tiered status ({} before the first tiered tick saw it)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/v1/tiered/status", timeout=5) as response:
        partitions = json.loads(response.read())["partitions"]
    return next((entry for entry in partitions if entry["topic"] == "bench"), {})


def _wait_archived(broker, count: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = _status(broker)
        if status.get("archived_offset", -1) >= count - 1:
            return
        time.sleep(0.5)
    raise TimeoutError("archiving did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--segment-mib", type=int, default=16)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--levels", default="library,broker")
    parser.add_argument("--backends", default="s3,local")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    results = []
    for level in arguments.levels.split(","):
        for backend in arguments.backends.split(","):
            workdir = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
            try:
                if level == "library":
                    result = asyncio.run(library_run(backend, arguments.megabytes, arguments.segment_mib,
                                                     arguments.chunk_kib, workdir))
                else:
                    result = broker_run(backend, arguments.megabytes, arguments.segment_mib, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(json.dumps(result), flush=True)
            results.append(result)
    document = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
                "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"), "results": results}
    if arguments.json:
        arguments.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
