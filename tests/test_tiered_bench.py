"""Opt-in (SHOAL_BENCH=1): a small run of benchmarks/tiered_bench.py so the benchmark that
produces docs/benchmarks.md keeps working. Full runs: see docs/benchmarks.md."""

import asyncio

import pytest

from benchmarks.tiered_bench import broker_run, library_run


@pytest.mark.bench
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_library_benchmark_runs_and_reads_everything_back(tmp_path, backend):
    result = asyncio.run(library_run(backend, megabytes=16, segment_mib=4, chunk_kib=1024, workdir=tmp_path))
    assert result["cold_read_mib_per_s"] > 0 and result["warm_read_mib_per_s"] > 0
    assert result["warm_read_requests_per_gib"] == {}  # a warm cache serves everything
    assert result["archive_requests_per_gib"]["put"] > 0


@pytest.mark.bench
def test_broker_benchmark_consumes_every_message(tmp_path):
    result = broker_run("local", megabytes=16, segment_mib=2, workdir=tmp_path)
    assert result["received"] == result["messages"]
    assert result["local_start_offset"] > result["messages"] // 2  # history mostly in the bucket
