"""The partitions this node serves: hands out `Partition` objects by (topic, index).

A partition is served once its log is open (`serve`), and no longer once its topic is
deleted (`stop_serving`). A partition whose log is still opening (a topic created a moment
ago) can be waited for with `wait_for`: produce and fetch to a new topic do not fail while
its files are being created."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

from broker.clock import Clock
from broker.fetch_waiters import FetchWaiters
from broker.metrics import BrokerProbe
from broker.partition import ColdTier, Partition
from broker.producer_state import ProducerStateManager
from broker.topic_table import TopicTable

PartitionKey = tuple[str, int]


class PartitionManager:
    def __init__(self, topics: Callable[[], TopicTable | None], producers: Callable[[], ProducerStateManager | None],
                 cold_tier: ColdTier, fetch_waiters: FetchWaiters, probe: BrokerProbe, clock: Clock) -> None:
        self._topics = topics
        self._producers = producers
        self.cold_tier = cold_tier
        self._fetch_waiters = fetch_waiters
        self._probe = probe
        self._clock = clock
        self._serving: dict[PartitionKey, Partition] = {}
        self._listeners: dict[PartitionKey, tuple[Callable[[], None], Callable[[], None]]] = {}
        self._pending: dict[PartitionKey, asyncio.Task] = {}

    def __iter__(self) -> Iterator[Partition]:
        return iter(list(self._serving.values()))

    def __len__(self) -> int:
        return len(self._serving)

    def keys(self) -> list[PartitionKey]:
        return list(self._serving)

    def get(self, topic: str, index: int) -> Partition | None:
        """The served partition, or None (no such partition here, or still opening)."""
        return self._serving.get((topic, index))

    async def wait_for(self, topic: str, index: int) -> Partition | None:
        """The partition, waiting for its log to open if it was just created; None when
        it does not exist (or failed to open: the failure is logged where it happened)."""
        key = (topic, index)
        partition = self._serving.get(key)
        if partition is not None:
            return partition
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.gather(asyncio.shield(pending), return_exceptions=True)
        return self._serving.get(key)

    async def topic_ready(self, topic: str) -> None:
        """Wait until every partition of `topic` queued for opening so far is served."""
        pending = [task for (name, _), task in self._pending.items() if name == topic]
        if pending:
            await asyncio.gather(*(asyncio.shield(task) for task in pending), return_exceptions=True)

    def opening(self, key: PartitionKey, task: asyncio.Task) -> None:
        """`task` opens the log of `key` and then calls `serve`."""
        self._pending[key] = task
        task.add_done_callback(lambda done: self._forget_pending(key, done))

    def _forget_pending(self, key: PartitionKey, task: asyncio.Task) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]

    def serve(self, topic: str, index: int, partition_log: Any) -> Partition:
        """Serve an open log: rebuild its producer state from the log, wake waiting fetches
        when its high watermark moves."""
        key = (topic, index)
        producers = self._producers()
        producer_state = producers.rebuild(topic, index, partition_log.iter_batch_headers(partition_log.log_start_offset),
                                           self._clock.now_ms())
        entry = self._topic_entry(topic)
        topic_id = entry.topic_id if entry is not None else None
        partition = Partition(topic, index, partition_log, producer_state,
                              lambda: self._topic_entry(topic, topic_id), self.cold_tier, self._clock)
        wake_fetches = lambda: self._fetch_waiters.notify(topic, index)  # noqa: E731

        def high_watermark_moved() -> None:
            wake_fetches()
            partition.commit_moved()

        partition_log.add_append_listener(high_watermark_moved)
        if partition_log.config.external_commit:
            partition_log.add_durable_listener(wake_fetches)  # followers' long-polls fetch new data
        self._listeners[key] = (high_watermark_moved, wake_fetches)
        self._serving[key] = partition
        self._probe.partitions.set(len(self._serving))
        return partition

    def stop_serving(self, topic: str, index: int) -> None:
        key = (topic, index)
        partition = self._serving.pop(key, None)
        listeners = self._listeners.pop(key, None)
        if partition is not None and listeners is not None:
            partition.log.remove_append_listener(listeners[0])
            partition.log.remove_durable_listener(listeners[1])
            partition.replica = None
            partition.commit_moved()  # writes waiting for a commit here are answered
        self._probe.partitions.set(len(self._serving))

    def _topic_entry(self, topic: str, topic_id: Any = None):
        """The topic table's entry of `topic` (of that id when given: a topic re-created
        under the same name is another topic)."""
        topics = self._topics()
        entry = topics.get(topic) if topics is not None else None
        if entry is None or (topic_id is not None and entry.topic_id != topic_id):
            return None
        return entry
