"""`shoal tier status` asks the node it is pointed at: two real nodes on loopback with their
own Kafka and admin ports (the loopback cluster of deploy/local/run-cluster), the admin
URL each reports as the broker config `shoal.admin.api.url`, `--admin URL`, and errors
that name the URL, also for a 404 from an HTTP server that is not Shoal."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from broker.broker_configs import ADMIN_API_URL_CONFIG, admin_api_url
from broker.config import Address, NodeConfig
from tests.support import REPO, SHOAL, BrokerProcess, create_topic, free_port, running_broker, wait_until


def shoal(*arguments: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    return subprocess.run(SHOAL + list(arguments), cwd=REPO, env=env, capture_output=True, text=True, timeout=30)


def tiered_topics(node: BrokerProcess) -> set[str]:
    url = f"http://127.0.0.1:{node.admin_port}/v1/tiered/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        return {entry["topic"] for entry in json.loads(response.read())["partitions"]}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Two independent nodes (ids 0 and 1), each with one topic of its own."""
    directory = tmp_path_factory.mktemp("tier-status")
    with running_broker(directory / "node0", node_id=0) as first, \
            running_broker(directory / "node1", node_id=1) as second:
        for node, topic in ((first, "on-node-0"), (second, "on-node-1")):
            create_topic(node.bootstrap, topic, 1)
            wait_until(lambda: topic in tiered_topics(node), f"{topic} in the tiered status")
        yield first, second


def test_each_node_reports_its_admin_url_as_a_read_only_broker_config(nodes):
    for node_id, node in enumerate(nodes):
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        resource = ConfigResource("broker", str(node_id))
        configs = admin.describe_configs([resource], request_timeout=10)[resource].result(15)
        entry = configs[ADMIN_API_URL_CONFIG]
        assert entry.value == f"http://127.0.0.1:{node.admin_port}"
        assert entry.is_read_only


def test_tier_status_reads_the_node_at_the_given_kafka_address(nodes):
    first, second = nodes
    for node, own_topic, other_topic in ((second, "on-node-1", "on-node-0"), (first, "on-node-0", "on-node-1")):
        result = shoal("-b", node.bootstrap, "tier", "status")
        assert result.returncode == 0, result.stderr
        assert f"ADMIN     http://127.0.0.1:{node.admin_port}\n" in result.stdout
        assert str(node.data_dir) in result.stdout  # its store: file://<data_dir>/cloud
        assert own_topic in result.stdout and other_topic not in result.stdout
    as_json = shoal("tier", "status", "-b", second.bootstrap, "--format", "json")
    status = json.loads(as_json.stdout)
    assert status["store"].endswith(f"{second.data_dir.name}/cloud")
    assert [entry["topic"] for entry in status["partitions"]] == ["on-node-1"]


def test_topic_recover_asks_the_bucket_of_the_node_at_the_given_address(nodes):
    _, second = nodes
    result = shoal("-b", second.bootstrap, "topic", "recover", "never-archived")
    assert result.returncode == 1
    assert result.stderr.startswith(f"shoal: the bucket of the node at http://127.0.0.1:{second.admin_port} "
                                    f"holds no topic 'never-archived' (no topic manifest for 'never-archived' in ")
    assert str(second.data_dir) in result.stderr and result.stderr.count("\n") == 1


def test_admin_option_needs_no_kafka_listener(nodes):
    _, second = nodes
    nothing_there = f"127.0.0.1:{free_port()}"
    for admin in (f"http://127.0.0.1:{second.admin_port}/", f"127.0.0.1:{second.admin_port}"):
        result = shoal("-b", nothing_there, "tier", "status", "--admin", admin)
        assert result.returncode == 0, result.stderr
        assert "on-node-1" in result.stdout and "on-node-0" not in result.stdout


def test_an_unreachable_admin_api_is_named_in_the_error():
    url = f"http://127.0.0.1:{free_port()}"
    result = shoal("tier", "status", "--admin", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"shoal: cannot reach the admin API at {url}: ")
    assert result.stderr.count("\n") == 1


class _NotFoundEverywhere(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *arguments) -> None:
        pass


def test_a_404_from_another_http_server_is_not_reported_as_no_tiered_storage():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = shoal("tier", "status", "--admin", url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert result.returncode == 1
    assert result.stderr == f"shoal: not a Shoal admin API at {url} (GET /v1/tiered/status answered HTTP 404)\n"


def test_a_node_without_cold_tier_says_so_naming_its_admin_url(tmp_path):
    with running_broker(tmp_path / "node0", {"cloud_storage": None}) as node:
        result = shoal("-b", node.bootstrap, "tier", "status")
    assert result.returncode == 1
    assert result.stderr == (f"shoal: the node at http://127.0.0.1:{node.admin_port} runs no tiered storage "
                             f"(no cloud_storage configured?)\n")


def test_admin_url_uses_the_bound_port_and_a_reachable_host():
    node = NodeConfig(data_dir=Path("unused"), admin_listen=Address("0.0.0.0", 0),
                      kafka_advertise=Address("broker-1.example.com", 9092))
    assert admin_api_url(node) is None  # port 0 and the bound port not given: no URL to offer
    assert admin_api_url(node, bound_port=9650) == "http://broker-1.example.com:9650"
    on_loopback = NodeConfig(admin_listen=Address("::1", 9644))
    assert admin_api_url(on_loopback) == "http://[::1]:9644"
