"""kafkajs 2.x (Produce <= 7, Fetch <= 11, Metadata <= 6, ApiVersions v2 first) against a
real `shoal start`: an idempotent producer, admin offset lookups (latest, by timestamp) and
a consumer group reading everything back exactly. The scenario is tests/js/produce_consume.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import BrokerProcess, module_broker

JS_DIRECTORY = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (JS_DIRECTORY / "node_modules" / "kafkajs").is_dir(),
    reason="node or kafkajs missing (./dev test installs them: cd tests/js && npm install)")


broker = module_broker("kafkajs")


def run_scenario(broker: BrokerProcess, topic: str, codec: str, count: int) -> dict:
    settings = {"brokers": [broker.bootstrap], "topic": topic, "count": count, "codec": codec}
    completed = subprocess.run([NODE, "produce_consume.js", json.dumps(settings)], cwd=JS_DIRECTORY,
                               capture_output=True, text=True, timeout=90)
    assert completed.returncode == 0, completed.stderr[-3000:] + "\nbroker log:\n" + broker.log_text()
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_kafkajs_produce_offsets_and_group_consume(broker, codec):
    count = 40
    report = run_scenario(broker, f"kafkajs-{codec}", codec, count)
    assert report["acknowledged"] == [0, count // 2]
    assert report["latest"] == [{"partition": 0, "offset": str(count), "high": str(count), "low": "0"}]
    assert report["byTime"] == [{"partition": 0, "offset": "5"}]
    received = sorted(report["received"], key=lambda message: message["offset"])
    assert [message["offset"] for message in received] == list(range(count))
    got = [{key: message[key] for key in ("key", "value", "headers", "timestamp")} for message in received]
    assert got == report["expected"]
