"""The node's one ticker: every periodic background job (log housekeeping, tiered storage,
group timers, and the controller and replication timers) runs on it, at its own period,
on the event loop, driven by the injected clock.

A job is a function of `now_ms` that may return an awaitable. A job whose previous run is
still going is skipped for that tick (work never piles up). A job that raises
InvariantViolation stops the node (the failure handler logs and exits non-zero); any other
exception is logged and counted, and the job runs again at its next period."""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from broker.clock import Clock
from broker.invariant import InvariantViolation

log = logging.getLogger("shoal.ticker")

Job = Callable[[int], "Awaitable[None] | None"]


@dataclass
class _Scheduled:
    name: str
    period_ms: int
    job: Job
    next_due_ms: int
    running: asyncio.Task | None = None
    failures: int = field(default=0)


class Ticker:
    def __init__(self, clock: Clock, on_invariant_violation: Callable[[str, BaseException], None]) -> None:
        self._clock = clock
        self._on_invariant_violation = on_invariant_violation
        self._jobs: dict[str, _Scheduled] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def every(self, name: str, period_ms: int, job: Job) -> None:
        """Run `job(now_ms)` every `period_ms` (first run one period from now)."""
        if name in self._jobs:
            raise ValueError(f"ticker job {name!r} is already scheduled")
        self._jobs[name] = _Scheduled(name, period_ms, job, self._clock.monotonic_ms() + period_ms)
        self._wake.set()

    def cancel(self, name: str) -> None:
        scheduled = self._jobs.pop(name, None)
        if scheduled is not None and scheduled.running is not None:
            scheduled.running.cancel()

    def failures(self, name: str) -> int:
        """How many runs of job `name` raised (metrics, tests)."""
        return self._jobs[name].failures if name in self._jobs else 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ticker")

    async def stop(self) -> None:
        tasks = [scheduled.running for scheduled in self._jobs.values() if scheduled.running is not None]
        if self._task is not None:
            tasks.append(self._task)
            self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = self._clock.monotonic_ms()
            for scheduled in list(self._jobs.values()):
                if now >= scheduled.next_due_ms:
                    scheduled.next_due_ms = now + scheduled.period_ms
                    self._run_job(scheduled)
            next_due = min((scheduled.next_due_ms for scheduled in self._jobs.values()), default=now + 1000)
            self._wake.clear()
            sleep = asyncio.ensure_future(self._clock.sleep_ms(max(1, next_due - now)))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleep, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                woken.cancel()

    def _run_job(self, scheduled: _Scheduled) -> None:
        if scheduled.running is not None and not scheduled.running.done():
            return  # the previous run is still going
        try:
            result = scheduled.job(self._clock.now_ms())
        except BaseException as error:  # noqa: BLE001 - sorted out in _failed
            self._failed(scheduled, error)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            scheduled.running = task
            task.add_done_callback(lambda done, scheduled=scheduled: self._finished(scheduled, done))

    def _finished(self, scheduled: _Scheduled, task: asyncio.Task) -> None:
        if scheduled.running is task:
            scheduled.running = None
        if not task.cancelled() and task.exception() is not None:
            self._failed(scheduled, task.exception())

    def _failed(self, scheduled: _Scheduled, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError):
            return
        if isinstance(error, InvariantViolation):
            self._on_invariant_violation(scheduled.name, error)
            return
        if not isinstance(error, Exception):
            raise error
        scheduled.failures += 1
        log.error("background job %s failed (%d failure(s) so far)", scheduled.name, scheduled.failures,
                  exc_info=error)
