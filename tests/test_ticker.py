"""The node's one ticker: periods, no pile-up of slow jobs, failures logged and retried,
a broken invariant handed to the node's failure handler; and a broken invariant in a
request stops a real node with a non-zero exit instead of closing one connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

from broker.clock import SYSTEM_CLOCK
from broker.invariant import InvariantViolation
from broker.ticker import Ticker
from tests.support import REPO, free_port


def run(coroutine):
    return asyncio.run(coroutine)


def test_jobs_run_at_their_own_periods_and_slow_jobs_do_not_pile_up() -> None:
    async def scenario() -> tuple[int, int]:
        fast_runs: list[int] = []
        slow_started = 0

        async def slow(now_ms: int) -> None:
            nonlocal slow_started
            slow_started += 1
            await asyncio.sleep(0.5)

        ticker = Ticker(SYSTEM_CLOCK, on_invariant_violation=lambda where, error: None)
        ticker.every("fast", 10, fast_runs.append)
        ticker.every("slow", 10, slow)
        ticker.start()
        await asyncio.sleep(0.3)
        await ticker.stop()
        return len(fast_runs), slow_started

    fast_runs, slow_started = run(scenario())
    assert fast_runs >= 10  # ~30 periods of 10 ms in 0.3 s, with room for a loaded machine
    assert slow_started == 1  # still running: later ticks skip it


def test_a_failing_job_is_counted_and_runs_again_an_invariant_goes_to_the_handler() -> None:
    async def scenario() -> tuple[int, list[str]]:
        fatal: list[str] = []
        calls = 0

        def flaky(now_ms: int) -> None:
            nonlocal calls
            calls += 1
            raise OSError("disk hiccup")

        async def broken(now_ms: int) -> None:
            raise InvariantViolation("offsets went backwards")

        ticker = Ticker(SYSTEM_CLOCK, on_invariant_violation=lambda where, error: fatal.append(f"{where}: {error}"))
        ticker.every("flaky", 10, flaky)
        ticker.every("broken", 10, broken)
        ticker.start()
        deadline = asyncio.get_running_loop().time() + 5
        while (calls < 3 or not fatal) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        failures = ticker.failures("flaky")
        await ticker.stop()
        return failures, fatal

    failures, fatal = run(scenario())
    assert failures >= 3
    assert fatal and fatal[0] == "broken: offsets went backwards"


def test_an_invariant_violated_in_a_request_stops_the_node_with_exit_1(tmp_path) -> None:
    """A real node whose Metadata handler is made to break an invariant: the request does
    not just close its connection, the whole node stops and exits 1."""
    kafka_port, admin_port = free_port(), free_port()
    script = tmp_path / "node.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from broker.handlers import metadata
        from broker.invariant import invariant

        async def broken(context, request):
            invariant(False, "metadata saw an impossible state")

        metadata.handle = broken
        from broker.cli.main import main
        sys.exit(main(["start", "--config", {str(tmp_path / "node.yaml")!r}]))
    """))
    (tmp_path / "node.yaml").write_text(
        f"data_dir: {tmp_path / 'data'}\nkafka_api: {{listen: 127.0.0.1:{kafka_port}}}\n"
        f"admin_api: {{listen: 127.0.0.1:{admin_port}}}\n")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    environment["PYTHONPATH"] = str(REPO)
    node = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        from tests.support import api_versions_ok, wait_until

        wait_until(lambda: api_versions_ok("127.0.0.1", kafka_port) or node.poll() is not None, "node up", 20)
        _send_metadata_request(kafka_port)
        exit_code = node.wait(timeout=20)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    output = node.stdout.read()
    assert exit_code == 1, output
    assert "invariant violated in metadata v1" in output and "metadata saw an impossible state" in output, output


def _send_metadata_request(port: int) -> None:
    """A Metadata v1 request for all topics over a raw socket (no client retries)."""
    import socket
    import struct

    body = struct.pack(">hhih", 3, 1, 7, 5) + b"probe" + struct.pack(">i", -1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        try:
            sock.recv(4)
        except OSError:
            pass
