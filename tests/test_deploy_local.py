"""The local path (deploy/local): the docker-compose file with MinIO, and the loopback
script that runs a Shoal cluster against moto_server without Docker.

No Docker engine runs here, so the compose file is checked by parsing it and loading
every Shoal config it mounts with Shoal's own loader. The loopback script's configs for a
3-node cluster are checked the same way, and the script starts a real 3-node cluster that
takes a replicated topic, acks=all writes and reads through different nodes.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker.config import load_config
from tests.deploy_support import http_ok, port_open

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "deploy" / "local"
CLUSTER_READY_SECONDS_MAX = 90
CLUSTER_STOP_SECONDS_MAX = 60


def load_run_cluster():
    loader = importlib.machinery.SourceFileLoader("shoal_deploy_run_cluster", str(LOCAL / "run-cluster"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((LOCAL / "docker-compose.yml").read_text())


def shoal_services(compose: dict) -> dict[str, dict]:
    """The Shoal nodes (shoal-<id>), not the shoal-network service holding their namespace."""
    return {name: service for name, service in compose["services"].items() if re.fullmatch(r"shoal-\d+", name)}


def mounted_config(service: dict) -> Path:
    [mount] = [volume for volume in service["volumes"] if volume.split(":")[1] == "/etc/shoal/shoal.yaml"]
    return LOCAL / mount.split(":")[0]


def test_compose_runs_minio_and_three_shoal_nodes(compose: dict) -> None:
    services = compose["services"]
    assert services["minio"]["image"].split(":")[1].startswith("RELEASE."), "pin the MinIO release"
    assert "mc mb --ignore-existing local/shoal" in " ".join(services["minio-create-bucket"]["entrypoint"])
    nodes = shoal_services(compose)
    assert sorted(nodes) == ["shoal-0", "shoal-1", "shoal-2"]
    for service in nodes.values():
        assert service["depends_on"]["minio-create-bucket"]["condition"] == "service_completed_successfully"
        assert service["build"]["dockerfile"] == "deploy/local/Dockerfile"
        assert (LOCAL / service["build"]["context"]).resolve() == REPO
        assert service["environment"]["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert service["environment"]["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]


def test_compose_nodes_share_one_network_namespace(compose: dict) -> None:
    """Each node advertises 127.0.0.1:<its port>: that works for the host's clients and for
    the other nodes only because all three live in the shoal-network service's namespace,
    which publishes the Kafka ports (a service in another's namespace cannot publish)."""
    holder = compose["services"]["shoal-network"]
    for name, service in shoal_services(compose).items():
        assert service["network_mode"] == "service:shoal-network", name
        assert service["depends_on"]["shoal-network"]["condition"] == "service_started"
        assert "ports" not in service and "hostname" not in service, f"{name}: not allowed with network_mode service"
    assert sorted(holder["ports"]) == ["9092:9092", "9093:9093", "9094:9094"]
    assert holder.get("init") is True, "sleep as PID 1 would ignore SIGTERM"


def test_compose_shoal_configs_load_and_form_one_cluster(compose: dict) -> None:
    nodes = shoal_services(compose)
    configs = {name: load_config(mounted_config(service), environ={}) for name, service in nodes.items()}
    assert sorted(config.node_id for config in configs.values()) == [0, 1, 2]
    seeds = {tuple(str(seed) for seed in config.cluster.seeds) for config in configs.values()}
    assert seeds == {("127.0.0.1:33145", "127.0.0.1:33146", "127.0.0.1:33147")}
    assert {config.cloud_storage.url for config in configs.values()} == {"s3://shoal/local"}, "one cold tier"
    assert {config.default_replication_factor for config in configs.values()} == {3}
    published = {int(port.split(":")[0]) for port in compose["services"]["shoal-network"]["ports"]}
    in_namespace: set[int] = set()
    for name, config in configs.items():
        service = nodes[name]
        assert config.cluster.rpc_listen in config.cluster.seeds
        assert config.cloud_storage.endpoint == "http://minio:9000"
        assert config.cloud_storage.access_key is None, "credentials belong in the environment"
        assert str(config.data_dir) == "/var/lib/shoal"
        assert any(volume.endswith(":/var/lib/shoal") for volume in service["volumes"])
        assert config.kafka_advertise.host == "127.0.0.1" and config.kafka_advertise.port in published
        assert config.kafka_listen.port == config.kafka_advertise.port
        assert config.kafka_listen.host == "0.0.0.0", "published ports arrive on the namespace's interface"
        healthcheck = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{config.admin_listen.port}/v1/status/ready" in healthcheck
        ports = {config.kafka_listen.port, config.admin_listen.port, config.cluster.rpc_listen.port}
        assert not ports & in_namespace, f"{name}: a port another node of the namespace uses"
        in_namespace |= ports


def test_dockerfile_copies_what_the_package_needs() -> None:
    dockerfile = (LOCAL / "Dockerfile").read_text()
    copied = [source for line in dockerfile.splitlines() if line.startswith("COPY ")
              for source in line.split()[1:-1]]
    assert {"pyproject.toml", "broker", "tiered", "shadow_indexing"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which the repository lacks"
    assert 'ENTRYPOINT ["shoal", "start"]' in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile


def test_compose_file_passes_docker_compose_config_where_available() -> None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True).returncode == 0:
            completed = subprocess.run([*command, "-f", str(LOCAL / "docker-compose.yml"), "config", "--quiet"],
                                       capture_output=True, text=True, timeout=60)
            assert completed.returncode == 0, completed.stderr
            return
    pytest.skip("no docker compose here (the Docker client has no compose plugin); the file is checked by parsing")


def run_cluster_configs(run_cluster, arguments: argparse.Namespace, directory: Path) -> list:
    nodes = run_cluster.plan_nodes(arguments)
    configs = []
    for node in nodes:
        path = directory / f"node-{node.node_id}.yaml"
        path.write_text(yaml.safe_dump(run_cluster.node_config(node, nodes, arguments, "http://127.0.0.1:9000")))
        configs.append(load_config(path, environ={}))
    return configs


def test_run_cluster_writes_configs_of_one_cluster_shoal_accepts(tmp_path: Path) -> None:
    run_cluster = load_run_cluster()
    arguments = run_cluster.parse_arguments(["--nodes", "3", "--data-dir", str(tmp_path), "--bucket", "shoal-local"])
    configs = run_cluster_configs(run_cluster, arguments, tmp_path)
    assert [config.node_id for config in configs] == [0, 1, 2]
    assert [config.kafka_listen.port for config in configs] == [9092, 9093, 9094]
    assert [config.admin_listen.port for config in configs] == [9644, 9645, 9646]
    assert [str(config.cluster.rpc_listen) for config in configs] == ["127.0.0.1:33145", "127.0.0.1:33146", "127.0.0.1:33147"]
    assert {tuple(str(seed) for seed in config.cluster.seeds) for config in configs} == {
        ("127.0.0.1:33145", "127.0.0.1:33146", "127.0.0.1:33147")}
    assert {config.cloud_storage.url for config in configs} == {"s3://shoal-local/local"}, "one cold tier"
    assert len({config.data_dir for config in configs}) == 3
    assert {config.default_replication_factor for config in configs} == {3}


def test_run_cluster_ephemeral_ports_prefix_and_replication_factor_cap(tmp_path: Path) -> None:
    run_cluster = load_run_cluster()
    arguments = run_cluster.parse_arguments(["--nodes", "5", "--ephemeral-ports", "--data-dir", str(tmp_path),
                                             "--prefix", "/team-a/"])
    configs = run_cluster_configs(run_cluster, arguments, tmp_path)
    ports = [port for config in configs
             for port in (config.kafka_listen.port, config.admin_listen.port, config.cluster.rpc_listen.port)]
    assert len(set(ports)) == len(ports) == 15
    assert {config.cloud_storage.url for config in configs} == {"s3://shoal-local/team-a"}
    assert {config.default_replication_factor for config in configs} == {3}
    assert all(config.cluster.rpc_listen in config.cluster.seeds and len(config.cluster.seeds) == 5 for config in configs)
    (tmp_path / "single").mkdir()
    single_arguments = run_cluster.parse_arguments(["--nodes", "1", "--data-dir", str(tmp_path / "single")])
    [single] = run_cluster_configs(run_cluster, single_arguments, tmp_path / "single")
    assert single.default_replication_factor == 1
    assert [str(seed) for seed in single.cluster.seeds] == [str(single.cluster.rpc_listen)]


def read_lines_until(process: subprocess.Popen, marker: str, seconds: float) -> list[str]:
    lines, deadline = [], time.monotonic() + seconds
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if not line:
            time.sleep(0.1)
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"no line with {marker!r} within {seconds}s; output:\n" + "\n".join(lines)
                         + "".join(process.stdout.readlines()))


def consume_all(bootstrap: str, topic: str, expected: int, seconds: float) -> list[bytes]:
    """Partition 0 of topic from offset 0 until expected values are read (or the deadline)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "deploy-local-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_cluster_starts_a_three_node_cluster_on_loopback_and_stops_it_cleanly(tmp_path: Path) -> None:
    """The script starts all three nodes before waiting for any (each waits for a majority
    of the controller group); the cluster then takes a topic through one node, acks=all
    writes through another and reads through the third."""
    pytest.importorskip("moto.server")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    # The nodes run this checkout even if the venv's editable install points elsewhere.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, str(LOCAL / "run-cluster"), "--nodes", "3", "--ephemeral-ports", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=tmp_path)
    try:
        lines = read_lines_until(process, "bootstrap servers:", CLUSTER_READY_SECONDS_MAX)
        ready = [re.match(r"node (\d) ready: kafka (127\.0\.0\.1:\d+), admin (http://\S+), "
                          r"rpc (127\.0\.0\.1:\d+) \(pid (\d+)\)", line) for line in lines]
        ready = [match for match in ready if match]
        assert [int(match.group(1)) for match in ready] == [0, 1, 2]
        kafka = [match.group(2) for match in ready]
        rpc = [match.group(4) for match in ready]
        pids = [int(match.group(5)) for match in ready]
        assert all(http_ok(f"{match.group(3)}/v1/status/ready") for match in ready)
        [summary] = [line for line in lines if line.startswith("cluster of 3 Shoal node(s):")]
        assert f"seeds {','.join(rpc)};" in summary and "docs/replication.md" in summary
        for node_id in range(3):
            config = load_config(tmp_path / f"node-{node_id}" / "shoal.yaml", environ={})
            assert [str(seed) for seed in config.cluster.seeds] == rpc
            assert config.cloud_storage.url == "s3://shoal-local/local"

        topic = "deploy-local"
        admin = AdminClient({"bootstrap.servers": kafka[0]})
        for future in admin.create_topics([NewTopic(topic, 1, 3)], request_timeout=15).values():
            future.result(20)
        producer = Producer({"bootstrap.servers": kafka[1], "acks": "all", "enable.idempotence": True,
                             "message.timeout.ms": 20000})
        failures: list = []
        for index in range(100):
            producer.produce(topic, value=f"{index:03d}".encode(), partition=0,
                             on_delivery=lambda error, message: error is not None and failures.append(error))
        assert producer.flush(25) == 0 and not failures, failures
        assert consume_all(kafka[2], topic, 100, 20) == [f"{index:03d}".encode() for index in range(100)]
        for address in kafka:
            metadata = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10)
            assert sorted(metadata.brokers) == [0, 1, 2]
            assert sorted(metadata.topics[topic].partitions[0].replicas) == [0, 1, 2]

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=CLUSTER_STOP_SECONDS_MAX) == 0
        remaining = process.stdout.read()
        for node_id in range(3):
            assert remaining.count(f"node {node_id} stopped (exit 0)") == 1, remaining
        assert not any(pid_alive(pid) for pid in pids)
        assert not any(port_open(int(address.rsplit(":", 1)[1])) for address in kafka)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
