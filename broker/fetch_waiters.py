"""Long-poll wake-up for Fetch: a waiting fetch sleeps on the partitions it reads and is
woken as soon as any of them gets new data (a log's append listener calls `notify`), not
at the end of its max_wait.

A woken fetch re-reads and decides itself whether min_bytes is now met; waking is cheap
(an asyncio.Event per waiting fetch) and never loses a notification, because a fetch
registers before its last read and the event stays set until it looks."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Iterable

from broker import limits

PartitionKey = tuple[str, int]


class FetchWaiter:
    def __init__(self, registry: "FetchWaiters", partitions: tuple[PartitionKey, ...]) -> None:
        self._registry = registry
        self.partitions = partitions
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout_ms: int) -> bool:
        """True when woken (new data somewhere), False on timeout. Clears the wake-up."""
        if timeout_ms <= 0 and not self._event.is_set():
            return False
        try:
            await asyncio.wait_for(self._event.wait(), timeout_ms / 1000.0)
        except asyncio.TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._registry.remove(self)

    def __enter__(self) -> "FetchWaiter":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class FetchWaiters:
    """Waiting fetches by partition. Bounded by limits.fetch_waiters_max."""

    def __init__(self, waiters_max: int = limits.fetch_waiters_max) -> None:
        self._by_partition: dict[PartitionKey, set[FetchWaiter]] = defaultdict(set)
        self._count = 0
        self._waiters_max = waiters_max

    def __len__(self) -> int:
        return self._count

    def register(self, partitions: Iterable[PartitionKey]) -> FetchWaiter | None:
        """A waiter on these partitions, or None when too many fetches already wait (the
        caller answers at once)."""
        if self._count >= self._waiters_max:
            return None
        waiter = FetchWaiter(self, tuple(dict.fromkeys(partitions)))
        for key in waiter.partitions:
            self._by_partition[key].add(waiter)
        self._count += 1
        return waiter

    def remove(self, waiter: FetchWaiter) -> None:
        removed = False
        for key in waiter.partitions:
            waiters = self._by_partition.get(key)
            if waiters is not None and waiter in waiters:
                waiters.discard(waiter)
                removed = True
                if not waiters:
                    del self._by_partition[key]
        if removed:
            self._count -= 1

    def notify(self, topic: str, partition: int) -> None:
        """New data (high watermark moved) on topic/partition: wake its waiters."""
        for waiter in self._by_partition.get((topic, partition), ()):
            waiter.wake()

    def notify_all(self) -> None:
        """Wake everyone (topic deleted, shutdown): they re-read and answer."""
        for waiters in self._by_partition.values():
            for waiter in waiters:
                waiter.wake()
