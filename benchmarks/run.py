"""Shoal's benchmark: identical confluent-kafka workloads against Apache Kafka and Shoal,
reported as a markdown table of absolute figures and Shoal/Kafka ratios.

    .venv/bin/python -m benchmarks.run                      # full run (200k x 1 KiB)
    .venv/bin/python -m benchmarks.run --messages 20000     # quicker
    .venv/bin/python -m benchmarks.run --profile            # also py-spy the Shoal process

Targets: `kafka` (Apache Kafka, KRaft, one node, its defaults: no fsync per write),
`shoal-fsync` (Shoal's default: acks wait for fsync, group commit) and `shoal-relaxed`
(`log: {flush: relaxed}`, the mode that matches Kafka's default). Results go to stdout and
to benchmarks/results/ (markdown, JSON, profiles).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import confluent_kafka

from benchmarks import kafka_peer
from benchmarks import workloads
from benchmarks.profiling import ProfileSession

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("kafka", "shoal-fsync", "shoal-relaxed")
TARGET_LABELS = {
    "kafka": "Kafka {version} (no fsync, its default)",
    "shoal-fsync": "Shoal fsync (default)",
    "shoal-relaxed": "Shoal relaxed (no fsync per ack)",
}


@dataclass
class TargetRun:
    target: str
    produce: dict[str, workloads.ProduceResult] = field(default_factory=dict)
    consume: workloads.ConsumeResult | None = None
    latency: workloads.LatencyResult | None = None
    unavailable: str | None = None
    failure: str | None = None
    profile_top: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadPlan:
    messages: int
    size_bytes: int
    compressions: tuple[str, ...]
    latency_rate: int
    latency_seconds: float


# ---------------------------------------------------------------------------------------
# brokers


class ShoalBroker:
    """`shoal start` on free ports in a temporary data dir, in the given flush mode."""

    def __init__(self, flush: str) -> None:
        from tests.support import BrokerProcess

        self.work_dir = Path(tempfile.mkdtemp(prefix=f"shoal-bench-{flush}-"))
        self.process = BrokerProcess(self.work_dir / "node0", {"log": {"flush": flush}})

    @property
    def bootstrap(self) -> str:
        return self.process.bootstrap

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def start(self) -> "ShoalBroker":
        self.process.start(timeout_s=60)
        return self

    def stop(self) -> None:
        try:
            self.process.stop()
        finally:
            self.process.kill()
            shutil.rmtree(self.work_dir, ignore_errors=True)


def start_broker(target: str):
    if target == "kafka":
        return kafka_peer.KafkaBroker().start()
    return ShoalBroker(flush=target.split("-", 1)[1]).start()


# ---------------------------------------------------------------------------------------
# running


def run_target(target: str, plan: WorkloadPlan, payloads: workloads.PayloadSource,
               profile: bool) -> TargetRun:
    run = TargetRun(target)
    try:
        broker = start_broker(target)
    except kafka_peer.KafkaUnavailable as reason:
        run.unavailable = str(reason)
        return run
    profiler = ProfileSession(broker.pid, RESULTS / f"profile-{target}") if profile and target != "kafka" else None
    try:
        if profiler:
            profiler.start()
        run_workloads(run, broker.bootstrap, plan, payloads)
    except Exception as error:  # reported in the table, never hidden
        run.failure = f"{type(error).__name__}: {error}"
    finally:
        if profiler:
            run.profile_top = profiler.stop()
        broker.stop()
    return run


def run_workloads(run: TargetRun, bootstrap: str, plan: WorkloadPlan,
                  payloads: workloads.PayloadSource) -> None:
    for compression in plan.compressions:
        topic = f"bench-produce-{compression}"
        workloads.create_topic(bootstrap, topic)
        print(f"  {run.target}: produce {plan.messages} x {plan.size_bytes} B, {compression}", flush=True)
        run.produce[compression] = workloads.produce_throughput(
            bootstrap, topic, plan.messages, payloads, compression)
    source_compression = plan.compressions[0]
    print(f"  {run.target}: consume from earliest ({source_compression} topic)", flush=True)
    run.consume = workloads.consume_throughput(
        bootstrap, f"bench-produce-{source_compression}", plan.messages)
    workloads.create_topic(bootstrap, "bench-latency")
    print(f"  {run.target}: latency at {plan.latency_rate} msg/s for {plan.latency_seconds}s", flush=True)
    run.latency = workloads.end_to_end_latency(
        bootstrap, "bench-latency", plan.latency_rate, plan.latency_seconds, payloads)


def sanity_problems(run: TargetRun, plan: WorkloadPlan) -> list[str]:
    """Everything delivered and read back intact; speed is never judged here."""
    if run.unavailable:
        return []
    problems = [f"{run.target}: {run.failure}"] if run.failure else []
    for compression, produced in run.produce.items():
        if produced.delivered != plan.messages or produced.errors:
            problems.append(f"{run.target}: produce {compression}: {produced.delivered}/{plan.messages} "
                            f"acknowledged, {produced.errors} errors ({produced.first_error})")
    if run.consume and run.produce:
        expected = run.produce[plan.compressions[0]]
        if run.consume.messages != plan.messages or run.consume.digest != expected.digest:
            problems.append(f"{run.target}: consume read {run.consume.messages}/{plan.messages}, "
                            f"digest {'matches' if run.consume.digest == expected.digest else 'differs'}")
    if run.latency and (run.latency.received != run.latency.sent or run.latency.errors):
        problems.append(f"{run.target}: latency run received {run.latency.received}/{run.latency.sent}, "
                        f"{run.latency.errors} errors")
    return problems


# ---------------------------------------------------------------------------------------
# report


def machine_description() -> dict[str, str]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    return {"cpus": str(os.cpu_count()), "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
            "cpu_model": cpu_model, "kernel": platform.release()}


def fsync_latency_ms(samples: int = 100) -> tuple[float, float]:
    """p50 and p99 of fdatasync after a 1 KiB append in a temp file: what one durable
    acknowledgement costs at least on this disk."""
    durations = []
    with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()) as probe:
        for _ in range(samples):
            probe.write(b"x" * 1024)
            probe.flush()
            started = time.perf_counter()
            os.fdatasync(probe.fileno())
            durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return durations[samples // 2], durations[int(samples * 0.99)]


def software_versions() -> dict[str, str]:
    from broker import __version__ as shoal_version

    java = subprocess.run(["java", "-version"], capture_output=True, text=True) if shutil.which("java") else None
    return {
        "shoal": shoal_version,
        "kafka": kafka_peer.kafka_version(),
        "java": java.stderr.splitlines()[0] if java and java.stderr else "not installed",
        "python": platform.python_version(),
        "confluent-kafka": _text_version(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
    }


def _text_version(version: str | tuple) -> str:
    return version[0] if isinstance(version, tuple) else version


def metric_rows(plan: WorkloadPlan) -> list[tuple[str, Callable[[TargetRun], float], bool]]:
    """(label, extractor, higher_is_better) for each table row."""
    rows = []
    for compression in plan.compressions:
        rows.append((f"produce {compression}, msgs/s",
                     lambda run, c=compression: run.produce[c].messages_per_second, True))
        rows.append((f"produce {compression}, MB/s",
                     lambda run, c=compression: run.produce[c].megabytes_per_second, True))
    rows.append((f"consume from earliest ({plan.compressions[0]}), msgs/s", lambda run: run.consume.messages_per_second, True))
    rows.append((f"consume from earliest ({plan.compressions[0]}), MB/s", lambda run: run.consume.megabytes_per_second, True))
    for label, samples, fraction in (("end-to-end p50, ms", "end_to_end_ms", 0.50),
                                     ("end-to-end p99, ms", "end_to_end_ms", 0.99),
                                     ("produce ack p50, ms", "acknowledge_ms", 0.50),
                                     ("produce ack p99, ms", "acknowledge_ms", 0.99)):
        rows.append((f"{label} @ {plan.latency_rate} msg/s",
                     lambda run, s=samples, f=fraction: run.latency.percentile(getattr(run.latency, s), f), False))
    return rows


def cell(run: TargetRun, extractor) -> float | None:
    if run.unavailable:
        return None
    try:
        return extractor(run)
    except (KeyError, AttributeError, TypeError):
        return None


def format_number(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def format_ratio(shoal: float | None, kafka: float | None) -> str:
    if not shoal or not kafka or shoal != shoal or kafka != kafka:
        return "n/a"
    return f"{shoal / kafka:.2f}x"


def markdown_report(runs: list[TargetRun], plan: WorkloadPlan, problems: list[str]) -> str:
    by_target = {run.target: run for run in runs}
    versions = software_versions()
    machine = machine_description()
    columns = [run.target for run in runs]
    shoal_targets = [target for target in columns if target.startswith("shoal")]
    header = [TARGET_LABELS[target].format(version=versions["kafka"]) for target in columns]
    if "kafka" in by_target:
        header += [f"{TARGET_LABELS[target].split(' (')[0]} / Kafka" for target in shoal_targets]
    fsync_p50, fsync_p99 = fsync_latency_ms()
    lines = [
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory']} RAM, Linux {machine['kernel']}; "
        f"broker and client share the machine (load average {os.getloadavg()[0]:.2f} at the end); "
        f"fdatasync after a 1 KiB append here: p50 {fsync_p50:.2f} ms, p99 {fsync_p99:.2f} ms.",
        f"Versions: Shoal {versions['shoal']}, Apache Kafka {versions['kafka']} ({versions['java']}), "
        f"Python {versions['python']}, confluent-kafka {versions['confluent-kafka']} "
        f"(librdkafka {versions['librdkafka']}).",
        f"Workload: {plan.messages:,} messages x {plan.size_bytes} B values, one partition, acks=all, "
        f"linger.ms=5, batch.size=1000000; latency: {plan.latency_rate} msg/s for "
        f"{plan.latency_seconds:.0f} s, linger.ms=0, consumer in the same process.",
        "",
        "| workload | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    for label, extractor, _higher_is_better in metric_rows(plan):
        values = [cell(by_target[target], extractor) for target in columns]
        row = [format_number(value) for value in values]
        if "kafka" in by_target:
            kafka_value = cell(by_target["kafka"], extractor)
            row += [format_ratio(cell(by_target[target], extractor), kafka_value) for target in shoal_targets]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Ratios are Shoal/Kafka: above 1 is better for throughput rows, below 1 is better for latency rows.")
    for run in runs:
        if run.unavailable:
            lines.append(f"- {run.target}: not measured: {run.unavailable}")
    for problem in problems:
        lines.append(f"- PROBLEM {problem}")
    if any(run.profile_top for run in runs):
        lines.append("")
        lines.append("Profiled run: py-spy sampled the Shoal process, so these figures are lower than unprofiled ones.")
    for run in runs:
        for kind, title in (("self", "self time (on top of the stack)"), ("inclusive", "inclusive time (anywhere on the stack)")):
            if run.profile_top.get(kind):
                lines += ["", f"py-spy --gil, {run.target}, {title}, % of samples holding the GIL:", ""]
                lines += [f"- {share:5.1f}%  {name}" for name, share in run.profile_top[kind]]
    return "\n".join(lines) + "\n"


def json_report(runs: list[TargetRun], plan: WorkloadPlan) -> str:
    def encode(run: TargetRun) -> dict:
        data = asdict(run)
        if run.latency:
            data["latency"] = {
                "sent": run.latency.sent, "received": run.latency.received, "errors": run.latency.errors,
                **{f"{name}_p{int(fraction * 100)}": run.latency.percentile(getattr(run.latency, name), fraction)
                   for name in ("end_to_end_ms", "acknowledge_ms") for fraction in (0.5, 0.99)}}
        return data

    return json.dumps({"plan": asdict(plan), "machine": machine_description(),
                       "versions": software_versions(), "runs": [encode(run) for run in runs]}, indent=2)


# ---------------------------------------------------------------------------------------
# command line


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, from " + ", ".join(TARGETS))
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024, help="value size in bytes")
    parser.add_argument("--compressions", default="none,lz4", help="first one is also read back")
    parser.add_argument("--latency-rate", type=int, default=1000, help="messages per second")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true", help="py-spy record the Shoal process")
    parser.add_argument("--output", type=Path, help="markdown file (default: benchmarks/results/<time>.md)")
    return parser.parse_args(argv)


def run_benchmark(targets: list[str], plan: WorkloadPlan, profile: bool = False) -> tuple[list[TargetRun], list[str]]:
    payloads = workloads.PayloadSource(plan.size_bytes)
    runs = []
    for target in targets:
        print(f"{target}:", flush=True)
        runs.append(run_target(target, plan, payloads, profile))
    problems = [problem for run in runs for problem in sanity_problems(run, plan)]
    return runs, problems


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    targets = [target.strip() for target in arguments.targets.split(",") if target.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        print(f"unknown targets: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if arguments.profile and shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        print("--profile needs py-spy: pip install py-spy (or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    plan = WorkloadPlan(arguments.messages, arguments.size,
                        tuple(c.strip() for c in arguments.compressions.split(",")),
                        arguments.latency_rate, arguments.latency_seconds)
    runs, problems = run_benchmark(targets, plan, arguments.profile)
    report = markdown_report(runs, plan, problems)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = arguments.output or RESULTS / f"{stamp}.md"
    output.write_text(report)
    (RESULTS / f"{stamp}.json").write_text(json_report(runs, plan))
    print()
    print(report)
    print(f"written to {output}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
