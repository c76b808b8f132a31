"""A small run of the benchmark (benchmarks/run.py) against Apache Kafka and Shoal in both
flush modes. Opt-in (SHOAL_BENCH=1). It asserts sanity only: every message acknowledged
and read back intact from each broker; speed is never judged. The Kafka side skips with
the reason when its jars cannot be resolved (no Maven Central here)."""

from __future__ import annotations

import pytest

from benchmarks import kafka_peer, run, workloads

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]

SMALL_PLAN = run.WorkloadPlan(messages=3000, size_bytes=1024, compressions=("none", "lz4"),
                              latency_rate=200, latency_seconds=2.0)


@pytest.fixture(scope="module")
def payloads() -> workloads.PayloadSource:
    return workloads.PayloadSource(SMALL_PLAN.size_bytes)


@pytest.mark.parametrize("target", run.TARGETS)
def test_every_message_delivered_and_read_back(target, payloads):
    if target == "kafka":
        try:
            kafka_peer.ensure_kafka_jars()
        except kafka_peer.KafkaUnavailable as reason:
            pytest.skip(f"Apache Kafka not available here: {reason}")
    result = run.run_target(target, SMALL_PLAN, payloads, profile=False)

    assert result.unavailable is None and result.failure is None, result.failure or result.unavailable
    assert run.sanity_problems(result, SMALL_PLAN) == []
    for compression in SMALL_PLAN.compressions:
        assert result.produce[compression].delivered == SMALL_PLAN.messages
    assert result.consume.messages == SMALL_PLAN.messages
    assert result.consume.digest == result.produce["none"].digest
    assert result.latency.received == result.latency.sent == SMALL_PLAN.latency_rate * SMALL_PLAN.latency_seconds
    report = run.markdown_report([result], SMALL_PLAN, [])
    assert "| produce lz4, msgs/s |" in report
