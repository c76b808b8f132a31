"""`shoal` client commands give up on refused connections at once, not after --timeout,
and still wait the whole --timeout for an address that accepts but never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import time

from tests.support import REPO, SHOAL, free_port


def timed_shoal(*arguments: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    started = time.monotonic()
    result = subprocess.run(SHOAL + list(arguments), cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    return result, time.monotonic() - started


def test_a_refused_address_fails_in_seconds_not_after_the_timeout():
    address = f"127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    result, elapsed = timed_shoal("-b", address, "topic", "list", "--timeout", "30")
    assert result.returncode == 1
    assert result.stderr.startswith(f"shoal: cannot reach any broker at {address} ")
    assert "Connection refused" in result.stderr and result.stderr.count("\n") == 1
    assert elapsed < 8


def test_a_refused_address_beside_a_live_one_does_not_fail(broker):
    refused = f"127.0.0.1:{free_port()}"
    for brokers in (f"{refused},{broker.bootstrap}", f"{broker.bootstrap},{refused}"):
        result, _ = timed_shoal("-b", brokers, "topic", "list", "--timeout", "10")
        assert result.returncode == 0, (brokers, result.stderr)


def test_an_address_that_never_answers_still_gets_the_whole_timeout():
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        result, elapsed = timed_shoal("-b", address, "topic", "list", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.startswith(f"shoal: cannot reach any broker at {address} within 2 s: ")
    assert elapsed >= 1.9
