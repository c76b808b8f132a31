import subprocess
import sys

import pytest

from broker.config import ConfigError, load_config, parse_duration_ms, parse_size
from tests.support import REPO


def test_embedded_defaults_give_a_single_node_with_local_cold_tier():
    config = load_config(environ={})
    assert str(config.kafka_listen) == "127.0.0.1:9092"
    assert str(config.kafka_advertise) == "127.0.0.1:9092"
    assert str(config.admin_listen) == "127.0.0.1:9644"
    assert config.cloud_storage.url == "file://shoal-data/cloud"
    assert config.tiers["default"].local_retention_ms == 6 * 3600 * 1000
    assert config.tiers["default"].retention_bytes == -1


def test_yaml_file_and_environment_overrides(tmp_path):
    path = tmp_path / "shoal.yaml"
    path.write_text(
        "node_id: 3\n"
        "data_dir: /var/lib/shoal\n"
        "kafka_api: {listen: 0.0.0.0:9092, advertise: broker3.internal:9092}\n"
        "cloud_storage: {url: s3://my-bucket/shoal, endpoint: http://127.0.0.1:9000, region: eu-west-1}\n"
        "tiers:\n  archive: {local_retention_ms: 1h, retention_ms: 365d, retention_bytes: 2TiB}\n"
        "topic_tiers: {'audit.*': archive}\n")
    config = load_config(path, environ={"SHOAL_KAFKA_API_ADVERTISE": "public.example:19092",
                                        "SHOAL_NODE_ID": "4"})
    assert config.node_id == 4
    assert str(config.kafka_advertise) == "public.example:19092"
    assert config.cloud_storage.url == "s3://my-bucket/shoal"
    assert config.tier_for_topic("audit.login").retention_ms == 365 * 86_400_000
    assert config.tier_for_topic("audit.login").retention_bytes == 2 * 1024**4
    assert config.tier_for_topic("orders").name == "default"


@pytest.mark.parametrize("text,expected", [("512MiB", 512 * 1024**2), ("7", 7), (-1, -1), ("1GiB", 1024**3)])
def test_sizes(text, expected):
    assert parse_size("k", text) == expected


@pytest.mark.parametrize("text,expected", [("6h", 21_600_000), ("250", 250), ("7d", 604_800_000), ("30s", 30_000)])
def test_durations(text, expected):
    assert parse_duration_ms("k", text) == expected


@pytest.mark.parametrize("yaml_text,key", [
    ("node_id: -1\n", "node_id"),
    ("kafka_api: {listen: nonsense}\n", "kafka_api.listen"),
    ("tiers: {default: {retention_ms: forever}}\n", "tiers.default.retention_ms"),
    ("topic_tiers: {'x.*': missing}\n", "topic_tiers.x.*"),
    ("cloud_storage: {url: ftp://x}\n", "cloud_storage.url"),
    ("bogus_key: 1\n", "bogus_key"),
])
def test_bad_config_names_the_key(tmp_path, yaml_text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.key == key
    assert "\n" not in str(raised.value)


def test_shoal_start_with_bad_config_exits_nonzero_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kafka_api: {listen: 127.0.0.1:notaport}\n")
    result = subprocess.run([sys.executable, "-m", "broker.cli.main", "start", "--config", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "kafka_api.listen" in lines[0] and "notaport" in lines[0] and "host:port" in lines[0]


def test_bad_environment_value_is_reported_with_its_key():
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"SHOAL_ADMIN_API_LISTEN": "9644"})
    assert raised.value.key == "admin_api.listen"
