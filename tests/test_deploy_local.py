"""The local path (deploy/local): the docker-compose file with MinIO, and the loopback
script that runs Shoal nodes against moto_server without Docker.

No Docker engine runs here, so the compose file is checked by parsing it and loading
every Shoal config it mounts with Shoal's own loader; the loopback script runs for real.
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
    return {name: service for name, service in compose["services"].items() if name.startswith("shoal-")}


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


def test_compose_shoal_configs_load_and_fit_the_compose_file(compose: dict) -> None:
    nodes = shoal_services(compose)
    configs = {name: load_config(mounted_config(service), environ={}) for name, service in nodes.items()}
    assert sorted(config.node_id for config in configs.values()) == [0, 1, 2]
    seeds = {tuple(str(seed) for seed in config.cluster.seeds) for config in configs.values()}
    assert seeds == {("shoal-0:33145", "shoal-1:33145", "shoal-2:33145")}
    prefixes = {config.cloud_storage.url for config in configs.values()}
    assert len(prefixes) == 3, "independent nodes need their own bucket prefix"
    for name, config in configs.items():
        service = nodes[name]
        assert str(config.cluster.rpc_listen) == f"{service['hostname']}:33145"
        assert config.cloud_storage.url.startswith("s3://shoal/")
        assert config.cloud_storage.endpoint == "http://minio:9000"
        assert config.cloud_storage.access_key is None, "credentials belong in the environment"
        assert str(config.data_dir) == "/var/lib/shoal"
        assert any(volume.endswith(":/var/lib/shoal") for volume in service["volumes"])
        published = {int(port.split(":")[0]) for port in service["ports"]}
        assert config.kafka_advertise.host == "localhost" and config.kafka_advertise.port in published
        assert config.kafka_listen.port == config.kafka_advertise.port
        healthcheck = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{config.admin_listen.port}/v1/status/ready" in healthcheck


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


def test_run_cluster_writes_configs_shoal_accepts(tmp_path: Path) -> None:
    run_cluster = load_run_cluster()
    arguments = run_cluster.parse_arguments(["--nodes", "3", "--data-dir", str(tmp_path), "--bucket", "shoal-local"])
    nodes = run_cluster.plan_nodes(arguments)
    configs = []
    for node in nodes:
        path = tmp_path / f"node-{node.node_id}.yaml"
        path.write_text(yaml.safe_dump(run_cluster.node_config(node, nodes, arguments, "http://127.0.0.1:9000")))
        configs.append(load_config(path, environ={}))
    assert [config.node_id for config in configs] == [0, 1, 2]
    assert [config.kafka_listen.port for config in configs] == [9092, 9093, 9094]
    assert [config.admin_listen.port for config in configs] == [9644, 9645, 9646]
    assert len({config.cloud_storage.url for config in configs}) == 3
    assert len({config.data_dir for config in configs}) == 3
    assert all(len(config.cluster.seeds) == 3 for config in configs)


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


def test_run_cluster_starts_three_nodes_on_loopback_and_stops_them_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("moto.server")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    # The nodes run this checkout even if the venv's editable install points elsewhere.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, str(LOCAL / "run-cluster"), "--nodes", "3", "--ephemeral-ports", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=tmp_path)
    try:
        lines = read_lines_until(process, "bootstrap servers:", CLUSTER_READY_SECONDS_MAX)
        ready = [line for line in lines if re.match(r"node \d ready: ", line)]
        assert len(ready) == 3
        admin_urls = [re.search(r"admin (http://\S+),", line).group(1) for line in ready]
        kafka_ports = [int(re.search(r"kafka 127\.0\.0\.1:(\d+)", line).group(1)) for line in ready]
        assert all(http_ok(f"{url}/v1/status/ready") for url in admin_urls)
        assert all(port_open(port) for port in kafka_ports)
        assert "not a replicated cluster" in lines[-1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=CLUSTER_STOP_SECONDS_MAX) == 0
        remaining = process.stdout.read()
        assert remaining.count("stopped (exit 0)") == 3, remaining
        assert not any(port_open(port) for port in kafka_ports)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
