"""kill -9 of the controller leader, with three real processes (`python -m broker.controller`):
the survivors elect a new leader and go on, and the killed node, restarted on its data
directory, has every command that was acknowledged to anyone, before or after the kill."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import REPO, free_port

pytestmark = pytest.mark.timeout(90)


class ControllerProcess:
    """One `python -m broker.controller` child: JSON requests on stdin, JSON lines back."""

    _ids = itertools.count(1)

    def __init__(self, node_id: int, addresses: list[str], data_dir: Path) -> None:
        self.node_id = node_id
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker.controller", "--node-id", str(node_id), "--listen", addresses[node_id],
             "--seeds", ",".join(addresses), "--data-dir", str(data_dir)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=os.environ | {"PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[dict] = queue.Queue()
        self.replies: dict[int, dict] = {}
        self.ready = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message:
                self.ready = True
            self.lines.put(message)

    def send(self, op: str, *args) -> int:
        request_id = next(self._ids)
        self.process.stdin.write(json.dumps({"id": request_id, "op": op, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        return request_id

    def reply(self, request_id: int, timeout_s: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while request_id not in self.replies:
            self.collect(deadline - time.monotonic())
        return self.replies.pop(request_id)

    def collect(self, wait_s: float) -> None:
        if wait_s <= 0:
            raise AssertionError(f"node {self.node_id}: no reply in time")
        try:
            message = self.lines.get(timeout=min(wait_s, 0.1))
        except queue.Empty:
            return
        if "reply" in message:
            self.replies[message["reply"]] = message

    def call(self, op: str, *args, timeout_s: float = 15.0) -> dict:
        return self.reply(self.send(op, *args), timeout_s)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(condition, what: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def agreed_leader(nodes: list[ControllerProcess]) -> ControllerProcess | None:
    statuses = {node.node_id: node.call("status")["result"] for node in nodes}
    leaders = [node for node in nodes if statuses[node.node_id]["leader"] and statuses[node.node_id]["ready"]]
    if len(leaders) != 1:
        return None
    address = statuses[leaders[0].node_id]["rpc_address"]
    return leaders[0] if all(status["leader_address"] == address for status in statuses.values()) else None


def committed_view(node: ControllerProcess) -> dict:
    state = node.call("snapshot")["result"]
    return {"cluster_id": state["cluster_id"], "topics": state["topics"],
            "producer_id_blocks": state["producer_id_blocks"], "next_producer_id": state["next_producer_id"]}


def test_kill_9_of_the_leader_loses_no_acknowledged_command(tmp_path):
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    nodes = [ControllerProcess(index, addresses, tmp_path / f"node{index}") for index in range(3)]
    acknowledged: dict[str, str] = {}  # topic -> topic id, for every create answered "none"
    try:
        wait_until(lambda: all(node.ready for node in nodes), "three ready controllers")
        leader = wait_until(lambda: agreed_leader(nodes), "one agreed leader")
        for node in nodes:
            assert node.call("register_broker", f"127.0.0.1:{9092 + node.node_id}")["result"][0] == "none"
        followers = [node for node in nodes if node is not leader]

        def create(node: ControllerProcess, name: str) -> int:
            return node.send("create_topic", name, 2, 2)

        def record(node: ControllerProcess, name: str, request_id: int) -> None:
            reply = node.reply(request_id)
            if reply.get("result", [None])[0] == "none":
                acknowledged[name] = reply["result"][1]["topic_id"]

        for index in range(6):
            writer = (leader, *followers)[index % 3]
            record(writer, f"before-{index}", create(writer, f"before-{index}"))
        # A burst on the leader, killed once a few have been answered: the answered ones must survive.
        burst = {f"burst-{index}": create(leader, f"burst-{index}") for index in range(20)}
        answered = 0
        while answered < 3:
            leader.collect(10)
            answered = sum(1 for request_id in burst.values() if request_id in leader.replies)
        leader.kill()
        for name, request_id in burst.items():
            if request_id in leader.replies:
                record(leader, name, request_id)
        assert len(acknowledged) >= 9

        new_leader = wait_until(lambda: agreed_leader(followers), "a new leader among the survivors", timeout_s=10)
        for index in range(4):
            writer = followers[index % 2]
            record(writer, f"after-{index}", create(writer, f"after-{index}"))
        assert all(f"after-{index}" in acknowledged for index in range(4)), new_leader.node_id

        restarted = ControllerProcess(leader.node_id, addresses, tmp_path / f"node{leader.node_id}")
        nodes[leader.node_id] = restarted
        wait_until(lambda: restarted.ready, "the killed node back and ready")
        expected = wait_until(lambda: committed_view(followers[0]) == committed_view(followers[1])
                              and committed_view(followers[0]), "the survivors agree")
        wait_until(lambda: committed_view(restarted) == expected, "the restarted node caught up")
        topics = expected["topics"]
        missing = {name: topic_id for name, topic_id in acknowledged.items()
                   if topics.get(name, {}).get("topic_id") != topic_id}
        assert missing == {}
    finally:
        for node in nodes:
            node.stop()
