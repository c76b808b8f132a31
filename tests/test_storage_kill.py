"""kill -9 while appending: every batch acknowledged (append() returned) before the kill is
present and intact after recovery. A real child process, a real SIGKILL, a real reopen;
three rounds on the same directory, so recovery of a crashed log is itself crashed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading

from broker.ids import Offset
from broker.records import iter_records, validate_batch
from tests.storage_support import log_config, open_log, run
from tests.support import REPO

CHILD = r"""
import asyncio, sys
from pathlib import Path
from broker.clock import SYSTEM_CLOCK
from broker.ids import LeaderEpoch
from broker.records import Compression, NewRecord, build_batch, read_header
from broker.storage.partition_log import DiskPartitionLog
from tests.storage_support import log_config

async def producer(partition_log, writer, round_number):
    for sequence in range(1_000_000):
        value = b"%d:%d:%d;" % (round_number, writer, sequence) * 30
        batch = build_batch([NewRecord(b"w%d" % writer, value, (), SYSTEM_CLOCK.now_ms())] * 3,
                            compression=Compression.LZ4 if sequence % 2 else Compression.NONE)
        crc = read_header(batch).crc
        result = await partition_log.append(batch, leader_epoch=LeaderEpoch(round_number))
        sys.stdout.write(f"{result.base_offset} {result.last_offset} {crc}\n")
        sys.stdout.flush()

async def main(directory, round_number):
    partition_log = await DiskPartitionLog.open("kill", 0, Path(directory), log_config(segment_bytes=32 * 1024), SYSTEM_CLOCK)
    sys.stdout.write(f"ready {partition_log.log_end_offset}\n")
    sys.stdout.flush()
    await asyncio.gather(*(producer(partition_log, writer, round_number) for writer in range(4)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

ROUNDS = 3
CHILD_READY_TIMEOUT_S = 30


def start_child(directory, round_number):
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(round_number)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)


def acknowledged_until_killed(process, run_for_s):
    """SIGKILL the child run_for_s after it is ready; its complete output lines are the
    acknowledgements (a line is printed only after append() returned). Timers bound every
    wait, so a stuck child cannot hang the test."""
    startup_guard = threading.Timer(CHILD_READY_TIMEOUT_S, process.kill)
    startup_guard.start()
    ready = process.stdout.readline()
    startup_guard.cancel()
    assert ready.startswith(b"ready"), ready + process.stderr.read()
    killer = threading.Timer(run_for_s, process.send_signal, args=(signal.SIGKILL,))
    killer.start()
    try:
        output, _ = process.communicate(timeout=run_for_s + 30)
    finally:
        killer.cancel()
    assert process.returncode == -signal.SIGKILL, process.returncode
    complete = [line for line in output.splitlines(keepends=True) if line.endswith(b"\n")]
    return [tuple(int(field) for field in line.split()) for line in complete]


def stored_batches(directory):
    """base offset -> (last offset, crc) of every batch after recovery, each batch's CRC
    and records checked, offsets contiguous from 0."""
    async def scan():
        partition_log = await open_log(directory, log_config(segment_bytes=32 * 1024))
        try:
            found = {}
            offset = Offset(0)
            while offset < partition_log.high_watermark:
                for region in partition_log.read(offset, 1 << 20):
                    data = region.read_bytes()
                    position = 0
                    while position < len(data):
                        header = validate_batch(data, position, end=len(data))
                        assert header.base_offset == offset, (header.base_offset, offset)
                        assert len(list(iter_records(data[position: position + header.size]))) == 3
                        found[header.base_offset] = (header.last_offset, header.crc)
                        offset = Offset(header.last_offset + 1)
                        position += header.size
            return found, partition_log.probe.recovery_cut_bytes
        finally:
            await partition_log.close()
    return run(scan())


def test_every_acknowledged_batch_survives_kill_minus_9(tmp_path):
    chance = random.Random()
    directory = tmp_path / "kill" / "0"
    all_acknowledged = []
    for round_number in range(1, ROUNDS + 1):
        process = start_child(directory, round_number)
        try:
            acknowledged = acknowledged_until_killed(process, run_for_s=chance.uniform(0.2, 0.8))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        assert acknowledged, "the child acknowledged nothing before the kill"
        all_acknowledged.extend(acknowledged)
        stored, _ = stored_batches(directory)
        missing = [entry for entry in all_acknowledged if stored.get(entry[0]) != (entry[1], entry[2])]
        assert not missing, f"round {round_number}: {len(missing)} acknowledged batches lost or changed: {missing[:5]}"
    assert len({entry[0] for entry in all_acknowledged}) == len(all_acknowledged)
