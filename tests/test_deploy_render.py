"""What the Terraform module renders: one 3-node cluster whose nodes share the seeds and the
bucket prefix, with cloud-init whose shoal.yaml files Shoal's own loader accepts, and
install steps that start a real node.

Rendering is done by Terraform itself (cidrhost in the provider-free module
shoal_node_addresses, templatefile/yamlencode in shoal_node_config, both applied offline
and wired as modules/shoal_cluster wires them); nothing here re-implements it.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from broker.config import load_config
from tests.deploy_support import REPO, TERRAFORM_ROOT, http_ok, port_open, terraform, terraform_runner  # noqa: F401 (terraform: a fixture)
from tests.support import free_port
USER_DATA_BYTES_MAX = 16 * 1024  # EC2 rejects larger user data
NODE_READY_SECONDS_MAX = 30
NODE_STOP_SECONDS_MAX = 30
INSTALL_SECONDS_MAX = 180


CLUSTER_SUBNET_CIDR_BLOCKS = ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
CLUSTER_ADDRESSES = ["10.0.1.10", "10.0.2.10", "10.0.3.10"]  # host number 10 of each subnet
CLUSTER_COLD_TIER = "s3://shoal-123456789012-eu-west-1/shoal"  # one prefix: the cluster name
CLUSTER_TIERS = {
    "default": {"local_retention_ms": "6h", "local_retention_bytes": "100GiB", "retention_ms": "7d", "retention_bytes": "-1"},
    "year": {"local_retention_ms": "6h", "retention_ms": "365d", "retention_bytes": -1, "upload_compression": "zstd"},
}
CLUSTER_TOPIC_TIERS = [{"pattern": "billing.*", "tier": "year"}, {"pattern": "audit.*", "tier": "year"}]
CLUSTER_NODE_INPUTS = {  # what modules/shoal_cluster passes to every node's shoal_node_config
    "cloud_storage_url": CLUSTER_COLD_TIER,
    "cloud_storage_region": "eu-west-1",
    "cloud_storage_settings": {"upload_interval": "5m", "cache_size": "50GiB"},
    "tiers": CLUSTER_TIERS,
    "topic_tiers": CLUSTER_TOPIC_TIERS,
    "log_settings": {"segment_bytes": "256MiB"},
}


@pytest.fixture(scope="module")
def cluster(terraform: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The three nodes the AWS module would render: addresses from the subnets' CIDR
    blocks, then each node's config from all of them."""
    return terraform_runner.render_cluster(terraform, tmp_path_factory.mktemp("render"), 3,
                                           CLUSTER_SUBNET_CIDR_BLOCKS, CLUSTER_NODE_INPUTS)


@pytest.fixture(scope="module")
def cluster_nodes(cluster: dict) -> list[dict[str, str]]:
    return cluster["nodes"]


def files_of(cloud_init: str) -> dict[str, dict]:
    assert cloud_init.startswith("#cloud-config\n")
    document = yaml.safe_load(cloud_init)
    return {entry["path"]: entry for entry in document["write_files"]}


def test_cloud_init_is_valid_user_data(cluster_nodes: list[dict[str, str]]) -> None:
    for node in cluster_nodes:
        assert len(node["cloud_init"].encode()) < USER_DATA_BYTES_MAX
        document = yaml.safe_load(node["cloud_init"])
        assert {"python3", "python3-venv", "mdadm", "xfsprogs"} <= set(document["packages"])
        commands = [" ".join(command) for command in document["runcmd"]]
        assert commands.index("systemctl enable --now shoal-data-disk.service") \
            < commands.index("/usr/local/sbin/shoal-install") \
            < commands.index("systemctl enable --now shoal.service")
        files = files_of(node["cloud_init"])
        assert files["/etc/shoal/shoal.yaml"]["content"] == node["shoal_yaml"]
        assert files["/usr/local/sbin/shoal-install"]["content"] == node["install_script"]
        assert files["/etc/systemd/system/shoal.service"]["content"] == node["systemd_unit"]


def load_rendered_configs(nodes: list[dict[str, str]], directory: Path) -> list:
    configs = []
    for index, node in enumerate(nodes):
        path = directory / f"shoal-{index}.yaml"
        path.write_text(files_of(node["cloud_init"])["/etc/shoal/shoal.yaml"]["content"])
        configs.append(load_config(path, environ={}))
    return configs


def test_cluster_addresses_are_fixed_from_the_subnets(cluster: dict) -> None:
    assert cluster["addresses"] == CLUSTER_ADDRESSES
    assert cluster["subnet_indexes"] == [0, 1, 2]
    for node_id, node in enumerate(cluster["nodes"]):
        assert node["rpc_address"] == f"{CLUSTER_ADDRESSES[node_id]}:33145"
        assert node["cluster_seeds"] == [f"{address}:33145" for address in CLUSTER_ADDRESSES]


def test_rendered_configs_form_one_cluster(cluster_nodes: list[dict[str, str]], tmp_path: Path) -> None:
    configs = load_rendered_configs(cluster_nodes, tmp_path)
    assert [config.node_id for config in configs] == [0, 1, 2]
    assert len({tuple(config.cluster.seeds) for config in configs}) == 1, "the same seeds on every node"
    assert len({config.cloud_storage.url for config in configs}) == 1, "one cold tier for the cluster"
    assert {config.default_replication_factor for config in configs} == {3}
    for config in configs:  # the controller requires its own rpc address among the seeds
        assert config.cluster.rpc_listen in config.cluster.seeds
    assert sorted(str(config.cluster.rpc_listen) for config in configs) == sorted(str(seed) for seed in configs[0].cluster.seeds)


def test_rendered_shoal_yaml_files_load_with_shoals_config_loader(cluster_nodes: list[dict[str, str]], tmp_path: Path) -> None:
    configs = load_rendered_configs(cluster_nodes, tmp_path)
    seeds = [f"{address}:33145" for address in CLUSTER_ADDRESSES]
    for node_id, config in enumerate(configs):
        assert config.node_id == node_id
        assert str(config.cluster.rpc_listen) == f"{CLUSTER_ADDRESSES[node_id]}:33145"
        assert [str(seed) for seed in config.cluster.seeds] == seeds
        assert str(config.kafka_listen) == "0.0.0.0:9092"
        assert str(config.kafka_advertise) == f"{CLUSTER_ADDRESSES[node_id]}:9092"
        assert str(config.data_dir) == "/var/lib/shoal"
        assert config.cloud_storage.url == CLUSTER_COLD_TIER
        assert config.cloud_storage.region == "eu-west-1"
        assert config.cloud_storage.endpoint is None
        assert config.cloud_storage.access_key is None and config.cloud_storage.secret_key is None
        assert config.cloud_storage.upload_interval_ms == 5 * 60_000
        assert config.tiers["year"].retention_ms == 365 * 86_400_000
        assert config.tiers["year"].local_retention_ms == 6 * 3_600_000
        assert config.tiers["year"].retention_bytes == -1
        assert config.tiers["year"].upload_compression == "zstd"
        assert config.tiers["default"].local_retention_bytes == 100 * 1024**3
        assert config.topic_tiers == (("billing.*", "year"), ("audit.*", "year"))  # order kept
        assert config.tier_for_topic("audit.login").name == "year"
        assert config.tier_for_topic("orders").name == "default"
        assert config.log.segment_bytes == 256 * 1024**2
        assert config.default_replication_factor == 3


def test_smaller_and_larger_clusters_render_their_addresses_seeds_and_replication_factor(terraform: str, tmp_path: Path) -> None:
    """Two nodes cap the default replication factor at 2; five nodes over three subnets
    take the next host number in a subnet already used; explicit private_ips win."""
    two = terraform_runner.render_cluster(terraform, tmp_path / "two", 2, CLUSTER_SUBNET_CIDR_BLOCKS, CLUSTER_NODE_INPUTS)
    assert two["addresses"] == ["10.0.1.10", "10.0.2.10"]
    assert [config.default_replication_factor for config in load_rendered_configs(two["nodes"], tmp_path / "two")] == [2, 2]

    five = terraform_runner.render_cluster(terraform, tmp_path / "five", 5, CLUSTER_SUBNET_CIDR_BLOCKS, CLUSTER_NODE_INPUTS,
                                           {"first_host_number": 20})
    assert five["addresses"] == ["10.0.1.20", "10.0.2.20", "10.0.3.20", "10.0.1.21", "10.0.2.21"]
    assert five["subnet_indexes"] == [0, 1, 2, 0, 1]
    configs = load_rendered_configs(five["nodes"], tmp_path / "five")
    assert {tuple(str(seed) for seed in config.cluster.seeds) for config in configs} == {
        tuple(f"{address}:33145" for address in five["addresses"])}
    assert [str(config.cluster.rpc_listen) for config in configs] == [f"{address}:33145" for address in five["addresses"]]
    assert {config.default_replication_factor for config in configs} == {3}

    explicit = ["10.0.1.200", "10.0.2.200", "10.0.3.200"]
    given = terraform_runner.render_cluster(terraform, tmp_path / "given", 3, CLUSTER_SUBNET_CIDR_BLOCKS, CLUSTER_NODE_INPUTS,
                                            {"private_ips": explicit})
    assert given["addresses"] == explicit
    assert given["nodes"][1]["cluster_seeds"] == [f"{address}:33145" for address in explicit]


def test_rendered_systemd_unit_restarts_and_stops_cleanly(cluster_nodes: list[dict[str, str]]) -> None:
    unit = cluster_nodes[0]["systemd_unit"]
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["ExecStart"] == "/opt/shoal/venv/bin/shoal start --config /etc/shoal/shoal.yaml"
    assert settings["Restart"] == "always"
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["LimitNOFILE"]) >= 1_000_000
    assert int(settings["TimeoutStopSec"]) >= 30
    assert settings["User"] == "shoal"
    assert settings["Requires"] == "shoal-data-disk.service"


def test_rendered_shell_scripts_parse(cluster_nodes: list[dict[str, str]], tmp_path: Path) -> None:
    files = files_of(cluster_nodes[0]["cloud_init"])
    for path in ("/usr/local/sbin/shoal-install", "/usr/local/sbin/shoal-prepare-data-disk"):
        script = tmp_path / Path(path).name
        script.write_text(files[path]["content"])
        for shell in ("sh", "bash"):
            completed = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert completed.returncode == 0, f"{shell} -n {path}: {completed.stderr}"
        assert files[path]["permissions"] == "0755"
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        for path in ("/usr/local/sbin/shoal-install", "/usr/local/sbin/shoal-prepare-data-disk"):
            completed = subprocess.run([shellcheck, "--shell=sh", str(tmp_path / Path(path).name)],
                                       capture_output=True, text=True)
            assert completed.returncode == 0, completed.stdout


# ---------------------------------------------------------------------------------------
# The install steps, run for real in a temporary root.

def wait_until(predicate, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds}s")


@pytest.fixture
def moto_endpoint(tmp_path: Path):
    """A real S3 HTTP endpoint (moto_server) on a free port, with the test bucket."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), 30, "moto_server ready", server)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="shoal-deploy-test")
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def advertised_brokers(kafka_port: int) -> set[tuple[int, str, int]]:
    """(node id, host, port) of every broker in a real client's Metadata response."""
    from confluent_kafka.admin import AdminClient
    metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=10)
    return {(broker.id, broker.host, broker.port) for broker in metadata.brokers.values()}


def copy_source_tree(destination: Path) -> Path:
    """What `pip install shoal==...` would get: the project's packaging files and packages."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, destination / name)
    for package in ("broker", "tiered", "shadow_indexing"):
        shutil.copytree(REPO / package, destination / package, ignore=ignore)
    return destination


def create_virtualenv_sharing_dependencies(venv: Path) -> None:
    """A virtualenv like the one shoal-install creates, made fast for the test: instead of
    downloading Shoal's dependencies it sees this interpreter's site-packages (after its
    own), so pip installs only Shoal itself into it."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "shoal-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def write_files_under(root: Path, cloud_init: str) -> dict[str, Path]:
    """cloud-init's write_files, each under root unless its path is already inside it."""
    written = {}
    for path, entry in files_of(cloud_init).items():
        target = Path(path) if Path(path).is_relative_to(root) else root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
        target.chmod(int(entry["permissions"], 8))
        written[path] = target
    return written


def exec_start_of(unit: str) -> list[str]:
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])


def test_rendered_install_steps_start_a_real_node(terraform: str, tmp_path: Path, moto_endpoint: str) -> None:
    root = tmp_path / "machine"
    source = copy_source_tree(tmp_path / "source")
    install_dir, data_dir, config_path = root / "opt" / "shoal", root / "var" / "lib" / "shoal", root / "etc" / "shoal" / "shoal.yaml"
    kafka_port, admin_port, rpc_port = free_port(), free_port(), free_port()
    [node] = terraform_runner.render_node_configs(terraform, tmp_path / "render", [{
        "node_id": 0,
        "node_addresses": ["127.0.0.1"],
        "listen_host": "127.0.0.1",
        "kafka_port": kafka_port,
        "admin_port": admin_port,
        "rpc_port": rpc_port,
        "data_dir": str(data_dir),
        "config_path": str(config_path),
        "install_dir": str(install_dir),
        "service_user": getpass.getuser(),
        "data_disk_mode": "none",
        "shoal_pip_spec": str(source),
        # Offline and quick: dependencies come from the test's own environment.
        "pip_extra_args": ["--no-deps", "--no-index", "--no-build-isolation", "--ignore-installed"],
        "cloud_storage_url": "s3://shoal-deploy-test/cluster",
        "cloud_storage_endpoint": moto_endpoint,
        "cloud_storage_region": "us-east-1",
        "tiers": CLUSTER_TIERS,
        "topic_tiers": CLUSTER_TOPIC_TIERS,
    }])
    written = write_files_under(root, node["cloud_init"])
    assert written[str(config_path)] == config_path  # the config lands where ExecStart reads it
    create_virtualenv_sharing_dependencies(install_dir / "venv")

    # cloud-init runs runcmd from /; a checkout in the working directory would shadow the install
    install = subprocess.run(["sh", str(written["/usr/local/sbin/shoal-install"])], capture_output=True, text=True,
                             timeout=INSTALL_SECONDS_MAX, cwd=root)
    assert install.returncode == 0, f"shoal-install failed:\n{install.stdout}\n{install.stderr}"
    installed_broker = subprocess.run([str(install_dir / "venv" / "bin" / "python"), "-c", "import broker; print(broker.__file__)"],
                                      capture_output=True, text=True, check=True, cwd=root).stdout.strip()
    assert Path(installed_broker).is_relative_to(install_dir), "the node must run the copy shoal-install installed"

    command = exec_start_of(node["systemd_unit"])
    assert command[:2] == [str(install_dir / "venv" / "bin" / "shoal"), "start"]
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONUNBUFFERED": "1"}
    environment = {key: value for key, value in environment.items() if not key.startswith("SHOAL_")}
    log_path = tmp_path / "node.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=data_dir, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: port_open(kafka_port), NODE_READY_SECONDS_MAX, "Kafka API on the rendered port", process)
            assert advertised_brokers(kafka_port) == {(0, "127.0.0.1", kafka_port)}
            wait_until(lambda: http_ok(f"http://127.0.0.1:{admin_port}/v1/status/ready"), NODE_READY_SECONDS_MAX,
                       "/v1/status/ready on the rendered admin port", process)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=NODE_STOP_SECONDS_MAX) == 0, "a clean SIGTERM stop exits 0"
        except BaseException:
            print(log_path.read_text()[-4000:])
            raise
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
