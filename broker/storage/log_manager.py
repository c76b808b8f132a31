"""LogManager: every partition log of this node under <data_dir>/topics/<topic>/<partition>/.

`start()` recovers every partition found on disk; `create()` opens or creates one;
`get()` finds one; `delete()` closes one and removes its files; `tick(now_ms)` runs
housekeeping (roll, relaxed fsync, retention) on each; `close()` flushes and closes all.
The manager owns the worker threads that fsync (shared by all partitions) and runs on the
event loop that owns the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from broker import limits
from broker.clock import Clock
from broker.ids import Offset
from broker.invariant import InvariantViolation
from broker.storage.api import PartitionLogConfig
from broker.storage.flusher import sync_directory
from broker.storage.partition_log import DiskPartitionLog
from broker.storage.probe import LogProbe

log = logging.getLogger("shoal.storage")

PartitionKey = tuple[str, int]


class LogManager:
    def __init__(self, data_dir: Path, clock: Clock,
                 config_for: Callable[[str, int], PartitionLogConfig]) -> None:
        """`config_for(topic, partition)` resolves the config of a partition found on disk
        at start (and of one created without an explicit config)."""
        self.data_dir = Path(data_dir)
        self.topics_directory = self.data_dir / "topics"
        self._clock = clock
        self._config_for = config_for
        self._logs: dict[PartitionKey, DiskPartitionLog] = {}
        self._opening: dict[PartitionKey, asyncio.Task[DiskPartitionLog]] = {}
        self._executor = ThreadPoolExecutor(max_workers=limits.fsync_threads_max,
                                            thread_name_prefix="shoal-storage")

    def partition_directory(self, topic: str, partition: int) -> Path:
        return self.topics_directory / topic / str(partition)

    async def start(self) -> None:
        """Recover every partition on disk (a few in parallel, each in worker threads)."""
        self.topics_directory.mkdir(parents=True, exist_ok=True)
        limiter = asyncio.Semaphore(limits.partition_recovery_concurrency_max)

        async def recover(topic: str, partition: int) -> None:
            async with limiter:
                await self.create(topic, partition)

        await asyncio.gather(*(recover(topic, partition) for topic, partition in self._partitions_on_disk()))
        log.info("recovered %d partition logs under %s", len(self._logs), self.topics_directory)

    def _partitions_on_disk(self) -> list[PartitionKey]:
        found = []
        for topic_directory in sorted(self.topics_directory.iterdir()):
            if not topic_directory.is_dir():
                continue
            for partition_directory in sorted(topic_directory.iterdir()):
                if partition_directory.is_dir() and partition_directory.name.isdigit():
                    found.append((topic_directory.name, int(partition_directory.name)))
        return found

    async def create(self, topic: str, partition: int, config: PartitionLogConfig | None = None,
                     *, start_offset: Offset = Offset(0)) -> DiskPartitionLog:
        """The log of topic/partition, opened (recovered) or created; idempotent, and
        concurrent calls for one partition share one open."""
        key = (topic, partition)
        if key in self._logs:
            return self._logs[key]
        if key not in self._opening:
            self._opening[key] = asyncio.get_running_loop().create_task(
                self._open(topic, partition, config, start_offset))
        return await asyncio.shield(self._opening[key])

    async def _open(self, topic: str, partition: int, config: PartitionLogConfig | None,
                    start_offset: Offset) -> DiskPartitionLog:
        key = (topic, partition)
        try:
            partition_log = await DiskPartitionLog.open(
                topic, partition, self.partition_directory(topic, partition),
                config or self._config_for(topic, partition), self._clock, self._executor, start_offset)
            self._logs[key] = partition_log
            return partition_log
        finally:
            del self._opening[key]

    def get(self, topic: str, partition: int) -> DiskPartitionLog | None:
        return self._logs.get((topic, partition))

    def __iter__(self) -> Iterator[DiskPartitionLog]:
        return iter(list(self._logs.values()))

    def __len__(self) -> int:
        return len(self._logs)

    async def delete(self, topic: str, partition: int) -> None:
        """Close the partition's log and remove its directory (topic deletion)."""
        partition_log = self._logs.pop((topic, partition), None)
        if partition_log is not None:
            await partition_log.close()
        directory = self.partition_directory(topic, partition)
        await asyncio.get_running_loop().run_in_executor(self._executor, _remove_partition_directory, directory)

    async def tick(self, now_ms: int) -> None:
        """Housekeeping on every partition; one partition's I/O error does not stop the rest."""
        for partition_log in list(self._logs.values()):
            try:
                await partition_log.housekeeping(now_ms)
            except InvariantViolation:
                raise
            except Exception:
                log.exception("housekeeping of %s/%d failed", partition_log.topic, partition_log.partition)

    def probe_totals(self) -> LogProbe:
        """Counters summed over every partition (for the metrics exporter)."""
        total = LogProbe()
        for partition_log in self._logs.values():
            for name, value in vars(partition_log.probe).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    async def close(self) -> None:
        for task in list(self._opening.values()):
            await asyncio.gather(task, return_exceptions=True)
        logs = list(self._logs.values())
        results = await asyncio.gather(*(partition_log.close() for partition_log in logs), return_exceptions=True)
        for partition_log, result in zip(logs, results):
            if isinstance(result, BaseException):
                log.error("closing %s/%d failed: %r", partition_log.topic, partition_log.partition, result)
        self._logs.clear()
        self._executor.shutdown(wait=True)


def _remove_partition_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    topic_directory = directory.parent
    try:
        topic_directory.rmdir()  # only when it was the topic's last partition
    except OSError:
        pass
    if topic_directory.is_dir():
        sync_directory(topic_directory)
    elif topic_directory.parent.is_dir():
        sync_directory(topic_directory.parent)
