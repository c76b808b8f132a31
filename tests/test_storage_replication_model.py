"""Suffix truncation and the leader epoch cache against a model, and after crashes:

- a randomized model check (hypothesis, derandomized): writes with non-decreasing epochs,
  commits, truncations (never below the high watermark), DeleteRecords and reopens, each
  step compared with an in-memory list of (offsets, epoch, crc) and Kafka's epoch rules;
- Segment.forget_from gives exactly the state a recovery scan of the cut file builds;
- every intermediate file state a crash during truncate_to can leave recovers to a prefix
  of the old log, and a real child process killed with SIGKILL right after a truncation
  (while it appends a new epoch) reopens to the truncated log plus its new batches."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.ids import LeaderEpoch, Offset
from broker.records import NewRecord, build_batch, read_header
from broker.storage.segment import Segment, segment_path, write_index_files
from tests.storage_support import log_config, make_batch, open_log, run
from tests.support import REPO
from tests.test_storage_replication_primitives import stored_batches


@dataclass
class Model:
    """What the log must hold: batches (base, last, epoch, crc), its offsets, its epochs."""

    batches: list[tuple[int, int, int, int]] = field(default_factory=list)
    start: int = 0
    end: int = 0
    high_watermark: int = 0
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (epoch, start offset)

    def write(self, base: int, last: int, epoch: int, crc: int) -> None:
        self.batches.append((base, last, epoch, crc))
        self.end = last + 1
        if self.epochs and epoch > self.epochs[-1][0] and self.epochs[-1][1] == base:
            self.epochs.pop()  # the latest epoch held no batch any more (all deleted)
        if not self.epochs or epoch > self.epochs[-1][0]:
            self.epochs.append((epoch, base))

    def truncate(self, offset: int) -> int:
        target = next(base for base, last, _, _ in self.batches if last >= offset)
        self.batches = [batch for batch in self.batches if batch[0] < target]
        self.end = target
        self.epochs = [entry for entry in self.epochs if entry[1] < target]
        return target

    def move_start(self, offset: int) -> None:
        self.start = max(self.start, offset)
        covering = [entry for entry in self.epochs if entry[1] <= self.start]
        if covering:
            self.epochs = [(covering[-1][0], self.start)] + [entry for entry in self.epochs if entry[1] > self.start]

    def reopen(self) -> None:
        """A replica restarts: committed is what it deleted (up to the end of the batch
        holding the log start); epochs as the batch headers say."""
        self.high_watermark = next((last + 1 if base < self.start else base for base, last, _, _ in self.batches
                                    if last >= self.start), self.start)
        self.epochs = []
        for base, last, epoch, _ in self.batches:
            if last >= self.start and (not self.epochs or epoch > self.epochs[-1][0]):
                self.epochs.append((epoch, base))
        self.move_start(self.start)

    def visible(self) -> list[tuple[int, int, int, int]]:
        return [batch for batch in self.batches if batch[1] >= self.start]

    def end_offset_for(self, requested: int) -> tuple[int, int]:
        """Kafka's rules, spelled out independently of LeaderEpochCache."""
        if requested == -1:
            return -1, -1
        if self.epochs and requested == self.epochs[-1][0]:
            return requested, self.end
        higher = [entry for entry in self.epochs if entry[0] > requested]
        lower_or_equal = [entry for entry in self.epochs if entry[0] <= requested]
        if not higher:
            return -1, -1
        if not lower_or_equal:
            return requested, higher[0][1]
        return lower_or_equal[-1][0], higher[0][1]


KINDS = ["write"] * 6 + ["truncate"] * 2 + ["commit"] * 2 + ["delete", "reopen"]
OPERATIONS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10_000), st.integers(1, 4), st.booleans()),
                      min_size=25, max_size=80)  # (kind, where, records, new epoch)


# Logic, not durability, is checked here: on tmpfs when there is one, fsyncs cost nothing.
MEMORY_BACKED = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, flush_fsync=st.booleans())
def test_random_writes_truncations_and_reopens_match_a_model(operations, flush_fsync):
    config = log_config(external_commit=True, segment_bytes=1024, flush_fsync=flush_fsync)
    with tempfile.TemporaryDirectory(dir=MEMORY_BACKED) as directory:
        run(_check_against_model(Path(directory), config, operations))


async def _check_against_model(directory: Path, config, operations) -> None:
    model = Model()
    partition_log = await open_log(directory, config)
    epoch = 1
    for number, operation in enumerate(operations):
        kind = operation[0]
        if kind == "write":
            epoch += operation[3]
            batch = make_batch(number, records=operation[2], value_bytes=60)
            pending = partition_log.write(batch, leader_epoch=LeaderEpoch(epoch))
            await pending.durable()
            model.write(pending.base_offset, pending.last_offset, epoch, read_header(batch).crc)
        elif kind == "truncate":
            offset = model.high_watermark + operation[1] % (model.end - model.high_watermark + 1)
            expected = model.truncate(offset) if offset < model.end else model.end
            assert await partition_log.truncate_to(Offset(offset)) == expected
        elif kind == "commit":  # to a batch boundary, as replicas' log ends are
            boundaries = [model.high_watermark] + [last + 1 for _, last, _, _ in model.batches
                                                   if last + 1 > model.high_watermark]
            offset = boundaries[-1 - operation[1] % len(boundaries)]  # small numbers: commit most
            partition_log.advance_high_watermark(Offset(offset))
            model.high_watermark = offset
        elif kind == "delete":
            offset = model.high_watermark - operation[1] % (model.high_watermark - model.start + 1)
            await partition_log.delete_records_before(Offset(offset))
            model.move_start(offset)
        else:
            await partition_log.close()
            partition_log = await open_log(directory, config)
            model.reopen()
        _assert_matches(partition_log, model, operations[:number + 1])
    await partition_log.close()


def _assert_matches(partition_log, model: Model, history) -> None:
    offsets = (partition_log.log_start_offset, partition_log.high_watermark, partition_log.log_end_offset)
    assert offsets == (model.start, model.high_watermark, model.end), history
    assert partition_log.durable_end_offset == model.end, history
    assert stored_batches(partition_log) == model.visible(), history
    assert [tuple(entry) for entry in partition_log.leader_epoch_entries()] == model.epochs, history
    for requested in range(-1, (model.epochs[-1][0] if model.epochs else 0) + 2):
        assert partition_log.end_offset_for(LeaderEpoch(requested)) == model.end_offset_for(requested), (
            requested, history)


# -- Segment.forget_from ----------------------------------------------------------------------


SEGMENT_STATE = ("size_bytes", "last_offset", "base_timestamp_ms", "max_timestamp_ms", "offset_of_max_timestamp",
                 "leader_epoch", "epoch_starts", "last_batch_position", "_bytes_since_index_entry")


def segment_state(segment: Segment) -> dict:
    state = {name: getattr(segment, name) for name in SEGMENT_STATE}
    state["offset_index"] = (list(segment.offset_index.relative_offsets), list(segment.offset_index.positions))
    state["time_index"] = (list(segment.time_index.timestamps), list(segment.time_index.relative_offsets))
    return state


def test_forget_from_rebuilds_exactly_what_a_scan_of_the_cut_file_builds():
    """Every batch boundary of segments with many index entries and timestamps going up
    and down, opened by a scan, sealed, or trusted from index files; and of segments whose
    epoch changes inside (only a scan of foreign data gives one: never trusted)."""
    with tempfile.TemporaryDirectory(dir=MEMORY_BACKED) as directory:
        _check_forget_from(Path(directory), random.Random(7))


def _check_forget_from(tmp_path: Path, generator: random.Random) -> None:
    for layout in range(3):
        source = tmp_path / f"source{layout}"
        source.mkdir()
        boundaries, data, offset, epoch = [], bytearray(), 0, 1
        for _ in range(120):
            records = generator.randint(1, 4)
            timestamp = 1_000_000 + generator.randint(-5_000, 5_000) + 100 * offset
            epoch += layout > 0 and generator.random() < 0.05
            boundaries.append((offset, len(data)))
            data += build_batch([NewRecord(b"k", bytes(generator.randint(10, 120)), (), timestamp + index)
                                 for index in range(records)], base_offset=offset, partition_leader_epoch=epoch)
            offset += records
        segment_path(source, 0, ".log").write_bytes(data)
        for number, (cut_offset, cut_position) in enumerate(boundaries + [(offset, len(data))]):
            directory = tmp_path / f"cut{layout}-{number}"
            shutil.copytree(source, directory)
            segment, _ = Segment.recover_by_scan(directory, 0, 0)
            if number % 3:
                segment.seal()
            if number % 3 == 2:
                write_index_files(*segment.index_files_snapshot())
                segment.close()
                segment = Segment.open_trusted(directory, 0, 0) or Segment.recover_by_scan(directory, 0, 0)[0]
                assert segment.sealed == (layout == 0)
            assert segment.forget_from(cut_offset) == cut_position
            assert not segment.sealed
            os.truncate(segment.log_path, cut_position)
            expected, _ = Segment.recover_by_scan(directory, 0, 0)
            assert segment_state(segment) == segment_state(expected), (layout, cut_offset)
            segment.close()
            expected.close()
            shutil.rmtree(directory)


# -- crashes ---------------------------------------------------------------------------------


def test_every_intermediate_truncation_state_recovers_to_a_prefix(tmp_path):
    """truncate_to deletes later segments (then syncs the directory), then cuts the kept
    one: a crash leaves some later segments deleted, or all deleted and the kept one cut.
    Recovery turns each into a prefix of the old log that ends at or above the target."""
    config = log_config(external_commit=True, segment_bytes=1024)

    async def build() -> tuple[list, list]:
        partition_log = await open_log(tmp_path / "full", config)
        for tag in range(12):
            await partition_log.append(make_batch(tag), leader_epoch=LeaderEpoch(1 + tag // 5))
        batches, segments = stored_batches(partition_log), partition_log.segments()
        await partition_log.close()
        return batches, segments

    async def recovered(directory: Path) -> list:
        partition_log = await open_log(directory, config)
        batches = stored_batches(partition_log)
        assert [tuple(entry) for entry in partition_log.leader_epoch_entries()] == _epochs_of(batches)
        await partition_log.close()
        return batches

    full, segments = run(build())
    kept = segments[1]
    target = kept.base_offset + 3
    cut_position = next(position for position, batch in _walk(kept.log_path) if batch[0] == target)
    states = {
        "middle segment deleted": [segments[3]],
        "last segments deleted": segments[2:],
        "all deleted, kept cut": segments[2:],
    }
    for name, deleted in states.items():
        directory = tmp_path / name.replace(" ", "-")
        shutil.copytree(tmp_path / "full", directory)
        for info in deleted:
            (directory / info.log_path.name).unlink()
        if name.endswith("cut"):
            os.truncate(directory / kept.log_path.name, cut_position)
        batches = run(recovered(directory))
        assert batches == full[:len(batches)], name
        assert batches[-1][1] + 1 >= target, name


def _walk(path: Path) -> list:
    """(position, (base offset, last offset, epoch, crc)) of every batch in a segment file."""
    data, position, found = path.read_bytes(), 0, []
    while position < len(data):
        header = read_header(data, position)
        found.append((position, (header.base_offset, header.last_offset, header.partition_leader_epoch, header.crc)))
        position += header.size
    return found


def _epochs_of(batches: list) -> list[tuple[int, int]]:
    epochs: list[tuple[int, int]] = []
    for base, _, epoch, _ in batches:
        if not epochs or epoch > epochs[-1][0]:
            epochs.append((epoch, base))
    return epochs


CHILD = r"""
import asyncio, sys
from pathlib import Path
from broker.clock import SYSTEM_CLOCK
from broker.ids import LeaderEpoch, Offset
from broker.records import read_header
from broker.storage.partition_log import DiskPartitionLog
from tests.storage_support import log_config, make_batch

def say(*fields):
    sys.stdout.write(" ".join(str(field) for field in fields) + "\n")
    sys.stdout.flush()

async def main(directory, target):
    config = log_config(external_commit=True, segment_bytes=1024)
    partition_log = await DiskPartitionLog.open("kill", 0, Path(directory), config, SYSTEM_CLOCK)
    for tag in range(12):
        await partition_log.append(make_batch(tag), leader_epoch=LeaderEpoch(1))
    partition_log.advance_high_watermark(Offset(target))
    say("truncated", await partition_log.truncate_to(Offset(target)))
    for tag in range(100, 100_000):
        batch = make_batch(tag)
        result = await partition_log.append(batch, leader_epoch=LeaderEpoch(2))
        say(result.base_offset, result.last_offset, read_header(batch).crc)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

CHILD_TIMEOUT_S = 30
ACKNOWLEDGED_BEFORE_KILL = 5


def test_kill_minus_9_right_after_a_truncation_reopens_to_the_truncated_log(tmp_path):
    target = 9  # inside the second segment: later segments deleted, that one cut
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(target)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    guard = threading.Timer(CHILD_TIMEOUT_S, child.kill)
    guard.start()
    try:
        truncated = child.stdout.readline()
        assert truncated == b"truncated %d\n" % target, truncated + child.stderr.read()
        acknowledged = [child.stdout.readline() for _ in range(ACKNOWLEDGED_BEFORE_KILL)]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        guard.cancel()
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr.read())
    acknowledged = [tuple(int(field) for field in line.split()) for line in acknowledged]

    async def reopen() -> tuple[list, list]:
        partition_log = await open_log(tmp_path, log_config(external_commit=True, segment_bytes=1024))
        batches, epochs = stored_batches(partition_log), partition_log.leader_epoch_entries()
        await partition_log.close()
        return batches, epochs

    batches, epochs = run(reopen())
    assert [batch[2] for batch in batches if batch[0] < target] == [1] * (target // 3)
    after = [batch for batch in batches if batch[0] >= target]
    assert after and all(batch[2] == 2 for batch in after)  # no truncated epoch-1 batch came back
    assert [(base, last, crc) for base, last, _, crc in after[:len(acknowledged)]] == acknowledged
    assert [batch[0] for batch in batches] == list(range(0, batches[-1][1] + 1, 3))
    assert [tuple(entry) for entry in epochs] == [(1, 0), (2, target)]
