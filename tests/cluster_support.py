"""Real clusters of `shoal start` processes on loopback for tests: N nodes with their own
Kafka, admin and rpc ports and data dirs, the same `cluster.seeds`, started together
(a node waits for a majority of the controller group before it serves)."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support import BrokerProcess, free_port, wait_until


class Cluster:
    def __init__(self, directory: Path, size: int = 3, extra_config: dict | None = None) -> None:
        self.directory = Path(directory)
        rpc_ports = [free_port() for _ in range(size)]
        seeds = [f"127.0.0.1:{port}" for port in rpc_ports]
        self.nodes: list[BrokerProcess] = []
        for node_id in range(size):
            config = {"cluster": {"rpc_listen": seeds[node_id], "seeds": seeds},
                      "default_replication_factor": min(3, size)}
            config.update(extra_config or {})
            self.nodes.append(BrokerProcess(self.directory / f"node{node_id}", config, node_id=node_id))

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout_s: float = 45.0) -> "Cluster":
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready(timeout_s)
        return self

    def restart(self, node_id: int, timeout_s: float = 45.0) -> None:
        self.nodes[node_id].start(timeout_s)

    def close(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.stop()
            finally:
                node.kill()

    def admin_json(self, node_id: int, path: str) -> dict:
        node = self.nodes[node_id]
        with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def partition_states(self, node_id: int) -> list[dict]:
        return self.admin_json(node_id, "/v1/cluster")["replicas"]

    def leader_of(self, topic: str, partition: int, among: list[int] | None = None) -> int | None:
        """The node that leads topic-partition and serves clients, asking each live node."""
        for node_id in among if among is not None else range(len(self.nodes)):
            node = self.nodes[node_id]
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                for replica in self.partition_states(node_id):
                    if (replica["topic"], replica["partition"]) == (topic, partition) and \
                            replica["role"] == "leader" and replica["ready"]:
                        return node_id
            except OSError:
                continue
        return None

    def wait_for_leader(self, topic: str, partition: int, among: list[int] | None = None,
                        timeout_s: float = 20.0) -> int:
        found: list[int] = []

        def has_leader() -> bool:
            leader = self.leader_of(topic, partition, among)
            if leader is not None:
                found.append(leader)
            return leader is not None

        wait_until(has_leader, f"a ready leader of {topic}-{partition}", timeout_s, 0.1)
        return found[-1]


@contextmanager
def running_cluster(directory: Path, size: int = 3, extra_config: dict | None = None) -> Iterator[Cluster]:
    cluster = Cluster(directory, size, extra_config)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
