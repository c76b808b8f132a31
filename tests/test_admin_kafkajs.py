"""kafkajs 2.x admin client (CreateTopics v3, DeleteTopics v1, CreatePartitions v1,
DescribeConfigs v2, AlterConfigs v1) against a real `shoal start`. The scenario is
tests/js/admin.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import BrokerProcess

JS_DIRECTORY = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (JS_DIRECTORY / "node_modules" / "kafkajs").is_dir(),
    reason="node or kafkajs missing (./dev test installs them: cd tests/js && npm install)")


def test_kafkajs_admin_scenario(tmp_path):
    process = BrokerProcess(tmp_path / "node0", extra_config={"cloud_storage": None}).start()
    try:
        settings = {"brokers": [process.bootstrap], "topic": "kafkajs-admin"}
        completed = subprocess.run([NODE, "admin.js", json.dumps(settings)], cwd=JS_DIRECTORY,
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr[-3000:] + "\nbroker log:\n" + process.log_text()
        report = json.loads(completed.stdout.strip().splitlines()[-1])
    finally:
        process.close()
    assert report["created"] is True
    assert report["duplicate"] is False  # kafkajs' answer to TOPIC_ALREADY_EXISTS
    assert report["compact"]["type"] == "INVALID_CONFIG"
    assert report["configsBefore"]["retention.ms"] == {"value": "60000", "isDefault": False, "source": 1}
    assert report["configsBefore"]["segment.ms"]["isDefault"] is True
    assert report["configsAfter"]["segment.ms"]["value"] == "120000"
    assert report["configsAfter"]["retention.ms"]["isDefault"] is True  # AlterConfigs replaced the whole set
    assert report["partitions"] == 4
    assert [broker["nodeId"] for broker in report["cluster"]["brokers"]] == [0]
    assert report["cluster"]["controller"] == 0
    assert "kafkajs-admin" not in report["topicsAfterDelete"]
