"""A token bucket limiting upload bytes per second for the whole node.

`await acquire(n)` takes n bytes of budget, sleeping on the injected clock while the bucket
is in debt. A rate of -1 means unlimited. Bursts are capped at one second of budget.
"""

from __future__ import annotations

from broker.clock import Clock


class BandwidthLimiter:
    def __init__(self, bytes_per_second: int, clock: Clock) -> None:
        self._rate = bytes_per_second
        self._clock = clock
        self._tokens = float(max(bytes_per_second, 0))
        self._refilled_ms = clock.monotonic_ms()

    @property
    def unlimited(self) -> bool:
        return self._rate <= 0

    async def acquire(self, byte_count: int) -> None:
        if self.unlimited:
            return
        self._refill()
        self._tokens -= byte_count
        if self._tokens < 0:
            await self._clock.sleep_ms(int(-self._tokens * 1000 / self._rate) + 1)
            self._refill()

    def _refill(self) -> None:
        now = self._clock.monotonic_ms()
        elapsed_ms = max(0, now - self._refilled_ms)
        self._refilled_ms = now
        self._tokens = min(float(self._rate), self._tokens + elapsed_ms * self._rate / 1000)
