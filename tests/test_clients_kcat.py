"""kcat (Debian's, librdkafka 2.0.x) produces and consumes against a real `shoal start`
with every codec it offers, keys, headers and NULL values; and reads offsets by time."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support import BrokerProcess, module_broker

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None,
                                reason="kcat is not installed (./dev test installs it: apt-get install kcat)")


broker = module_broker("kcat")


def kcat(broker: BrokerProcess, *arguments: str, stdin: str | None = None) -> str:
    completed = subprocess.run([KCAT, "-b", broker.bootstrap, *arguments], input=stdin, capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_every_codec(broker, codec):
    topic = f"kcat-{codec}"
    lines = [f"key-{index}:value-{index}-{codec}" for index in range(40)] + ["null-value:"]
    kcat(broker, "-P", "-t", topic, "-K", ":", "-Z", "-z", codec, "-H", "origin=kcat", "-H", "codec=" + codec,
         stdin="\n".join(lines) + "\n")
    output = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-Z")
    messages = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert [message["offset"] for message in messages] == list(range(41))
    assert [(message["key"], message["payload"]) for message in messages[:40]] == [
        (f"key-{index}", f"value-{index}-{codec}") for index in range(40)]
    assert (messages[40]["key"], messages[40]["payload"]) == ("null-value", None)
    assert all(message["headers"] == ["origin", "kcat", "codec", codec] for message in messages)


def test_consume_from_a_timestamp_and_the_metadata_listing(broker):
    topic = "kcat-times"
    kcat(broker, "-P", "-t", topic, "-K", ":", stdin="".join(f"k{index}:v{index}\n" for index in range(5)))
    consumed = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J")
    stamps = [json.loads(line)["ts"] for line in consumed.splitlines()]
    from_third = kcat(broker, "-C", "-t", topic, "-o", f"s@{stamps[2]}", "-e", "-f", "%o\\n")
    first_at_or_after = min(index for index, stamp in enumerate(stamps) if stamp >= stamps[2])
    assert [int(offset) for offset in from_third.split()] == list(range(first_at_or_after, 5))
    listing = json.loads(kcat(broker, "-L", "-J"))
    assert listing["brokers"][0]["id"] == 0
    assert topic in {entry["topic"] for entry in listing["topics"]}
