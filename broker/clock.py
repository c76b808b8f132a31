"""Injected time. Everything that waits or timestamps takes a Clock, so tests can drive
the archiver, retention, group timeouts and long-polls with a simulated clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def monotonic_ms(self) -> int: ...

    async def sleep_ms(self, duration_ms: int) -> None: ...


class SystemClock:
    """Wall clock for timestamps, monotonic clock for timeouts."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    async def sleep_ms(self, duration_ms: int) -> None:
        await asyncio.sleep(max(0, duration_ms) / 1000.0)


class ManualClock:
    """A clock that only moves when the test says so (sleeps return at once after
    advancing time by the requested amount)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms
        self._monotonic_ms = 0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic_ms(self) -> int:
        return self._monotonic_ms

    def advance_ms(self, duration_ms: int) -> None:
        self._now_ms += duration_ms
        self._monotonic_ms += duration_ms

    async def sleep_ms(self, duration_ms: int) -> None:
        self.advance_ms(max(0, duration_ms))
        await asyncio.sleep(0)


SYSTEM_CLOCK = SystemClock()
