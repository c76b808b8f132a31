"""py-spy sampling of a running broker process during the benchmark's workloads.

Samples only the thread holding the GIL (`--gil`): where Python spends CPU, not where it
waits (fsync in worker threads, epoll). Writes <prefix>.txt (collapsed stacks, py-spy's
`raw` format; speedscope and flamegraph.pl read it) and summarises the functions with the
most samples on top of the stack (self time) and anywhere on it (inclusive time).

    python -m benchmarks.profiling benchmarks/results/profile-shoal-fsync.txt
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SAMPLING_RATE_HZ = 200
PROFILER_STOP_TIMEOUT_S = 60  # py-spy writes its output after SIGINT
TOP_FUNCTIONS_SHOWN = 15


def py_spy_command() -> str:
    beside_python = Path(sys.executable).parent / "py-spy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    return found


class ProfileSession:
    def __init__(self, pid: int, output_prefix: Path) -> None:
        self.pid = pid
        self.output_prefix = output_prefix
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.output_prefix.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [py_spy_command(), "record", "--pid", str(self.pid), "--rate", str(SAMPLING_RATE_HZ),
             "--nonblocking", "--gil", "--format", "raw", "--output", str(self.output_prefix.with_suffix(".txt"))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, list[tuple[str, float]]]:
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=PROFILER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        collapsed = self.output_prefix.with_suffix(".txt")
        if not collapsed.exists():
            return {}
        text = collapsed.read_text()
        return {"self": top_self_time(text), "inclusive": inclusive_time(text)}


def _stacks(collapsed_stacks: str) -> Iterator[tuple[list[str], int]]:
    """(frames, sample count) of each well-formed line of py-spy's collapsed-stack text."""
    for line in collapsed_stacks.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack.split(";"), int(count_text)


def _most_sampled(samples_by_function: collections.Counter[str], total: int, limit: int) -> list[tuple[str, float]]:
    if total == 0:
        return []
    return [(function, 100.0 * count / total) for function, count in samples_by_function.most_common(limit)]


def top_self_time(collapsed_stacks: str, limit: int = TOP_FUNCTIONS_SHOWN) -> list[tuple[str, float]]:
    """(function, percent of samples) for the frames most often on top of the stack."""
    samples_by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(collapsed_stacks):
        total += count
        samples_by_function[_without_line_number(frames[-1])] += count
    return _most_sampled(samples_by_function, total, limit)


_ROOT_FRAMES = ("<frozen runpy>", "asyncio/runners.py", "broker/cli/", "<module>")  # on every stack


def inclusive_time(collapsed_stacks: str, limit: int = TOP_FUNCTIONS_SHOWN) -> list[tuple[str, float]]:
    """(function, percent of samples) for the frames most often anywhere on the stack."""
    samples_by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(collapsed_stacks):
        total += count
        for function in {_without_line_number(frame) for frame in frames}:
            if not any(root in function for root in _ROOT_FRAMES):
                samples_by_function[function] += count
    return _most_sampled(samples_by_function, total, limit)


def _without_line_number(frame: str) -> str:
    """'append (broker/storage/log.py:120)' -> 'append (broker/storage/log.py)'."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


if __name__ == "__main__":
    text = Path(sys.argv[1]).read_text()
    print("self time:")
    for function, share in top_self_time(text, 25):
        print(f"{share:5.1f}%  {function}")
    print("\ninclusive time:")
    for function, share in inclusive_time(text, 25):
        print(f"{share:5.1f}%  {function}")
