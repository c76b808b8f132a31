"""The leader epoch cache of one partition (Kafka's LeaderEpochFileCache) and its file,
`<partition dir>/leader-epoch-checkpoint`.

The cache is the list of (epoch, start offset): the first offset of each leader epoch
present in the log, both strictly increasing. It answers OffsetForLeaderEpoch and the
Fetch v12+ divergence check (`end_offset_for`), and which epoch wrote an offset. The log
keeps it in step with its batches:

- a batch whose leader epoch is larger than the latest adds (epoch, its base offset);
- suffix truncation to `offset` drops the entries starting at or above it;
- a log start move drops the entries wholly below the new start and moves the first
  remaining one's start up to it (Kafka's truncateFromStart).

Negative epochs (NO_EPOCH) are never cached, as Kafka skips them. A segment holds one
epoch (a new epoch rolls it), so the cache has at most one entry per segment.

The file is Kafka's text checkpoint format, written whole (tmp file, fsync, rename,
directory fsync):

    0                      format version
    <count>
    <epoch> <start_offset>   count lines

It mirrors what the batch headers say: recovery derives the cache from the recovered
segments and rewrites the file when it is missing, damaged or stale, so a crash between
a log change and the file write loses nothing.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from broker import limits
from broker.ids import NO_EPOCH, NO_OFFSET, LeaderEpoch, Offset
from broker.invariant import invariant
from broker.storage.api import EpochEntry

LEADER_EPOCH_FILE_NAME = "leader-epoch-checkpoint"
_FORMAT_VERSION = 0


class LeaderEpochCache:
    def __init__(self, entries: list[EpochEntry] | None = None) -> None:
        self._entries: list[EpochEntry] = []
        for entry in entries or []:
            self.assign(entry.epoch, entry.start_offset)

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    @property
    def latest_epoch(self) -> LeaderEpoch:
        return self._entries[-1].epoch if self._entries else NO_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that `epoch` starts at `start_offset` if it is newer than the latest
        epoch; returns whether the cache changed. A latest entry starting at the same
        offset held no batch (its data was deleted: see truncate_from_start) and is
        replaced, as Kafka does. An epoch below the latest is a caller bug (the log checks
        before writing) and fails loudly."""
        if epoch < 0 or epoch == self.latest_epoch:
            return False
        invariant(epoch > self.latest_epoch, "leader epochs must not go backwards", epoch, self.latest_epoch)
        if self._entries and start_offset == self._entries[-1].start_offset:
            self._entries.pop()
        invariant(not self._entries or start_offset > self._entries[-1].start_offset,
                  "a new leader epoch must start after the previous one", epoch, start_offset, self._entries[-1:])
        self._entries.append(EpochEntry(LeaderEpoch(epoch), Offset(start_offset)))
        return True

    def forget_epochs_from(self, epoch: int) -> None:
        """Drop the entries of `epoch` and later ones (Kafka's answer to an epoch going
        backwards in a log it recovers)."""
        del self._entries[bisect.bisect_left(self._entries, epoch, key=_epoch):]

    def truncate_from_end(self, end_offset: int) -> bool:
        """Drop the entries starting at or above `end_offset` (suffix truncation)."""
        keep = bisect.bisect_left(self._entries, end_offset, key=_start_offset)
        changed = keep < len(self._entries)
        del self._entries[keep:]
        return changed

    def truncate_from_start(self, start_offset: int) -> bool:
        """The log now starts at `start_offset`: entries wholly below it go, and the last
        one starting at or below it now starts there (Kafka's truncateFromStart)."""
        covering = bisect.bisect_right(self._entries, start_offset, key=_start_offset) - 1
        if covering < 0 or (covering == 0 and self._entries[0].start_offset == start_offset):
            return False
        self._entries[:covering + 1] = [EpochEntry(self._entries[covering].epoch, Offset(start_offset))]
        return True

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[LeaderEpoch, Offset]:
        """Kafka's LeaderEpochFileCache.endOffsetFor: the largest known epoch <= requested
        and the offset where it ends (the next epoch's start, or the log end for the
        latest epoch). Below every known epoch: (requested, first known start). -1 (no
        epoch), above every known epoch, or an empty cache: (-1, -1)."""
        if requested_epoch == NO_EPOCH:
            return NO_EPOCH, NO_OFFSET
        if self._entries and requested_epoch == self.latest_epoch:
            return LeaderEpoch(requested_epoch), Offset(log_end_offset)
        higher = bisect.bisect_right(self._entries, requested_epoch, key=_epoch)
        if higher == len(self._entries):
            return NO_EPOCH, NO_OFFSET
        if higher == 0:
            return LeaderEpoch(requested_epoch), self._entries[0].start_offset
        return self._entries[higher - 1].epoch, self._entries[higher].start_offset

    def epoch_for_offset(self, offset: int) -> LeaderEpoch:
        """The epoch that wrote `offset` (-1 below the first entry)."""
        slot = bisect.bisect_right(self._entries, offset, key=_start_offset) - 1
        return self._entries[slot].epoch if slot >= 0 else NO_EPOCH

    def to_bytes(self) -> bytes:
        lines = [str(_FORMAT_VERSION), str(len(self._entries))]
        lines += [f"{entry.epoch} {entry.start_offset}" for entry in self._entries]
        return ("\n".join(lines) + "\n").encode("ascii")


def leader_epoch_path(directory: Path) -> Path:
    return directory / LEADER_EPOCH_FILE_NAME


def parse_leader_epoch_checkpoint(data: bytes) -> list[EpochEntry] | None:
    """The entries of a checkpoint file's bytes, or None when they do not parse or are not
    strictly increasing (a damaged file: recovery rebuilds it from the log)."""
    if len(data) > limits.leader_epoch_checkpoint_bytes_max:
        return None
    try:
        lines = data.decode("ascii").split("\n")
        if lines[-1] != "" or int(lines[0]) != _FORMAT_VERSION or int(lines[1]) != len(lines) - 3:
            return None
        entries = [EpochEntry(LeaderEpoch(int(epoch)), Offset(int(start)))
                   for epoch, start in (line.split(" ") for line in lines[2:-1])]
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    increasing = all(earlier.epoch < later.epoch and earlier.start_offset < later.start_offset
                     for earlier, later in zip(entries, entries[1:]))
    if not increasing or any(entry.epoch < 0 or entry.start_offset < 0 for entry in entries):
        return None
    return entries


def _start_offset(entry: EpochEntry) -> int:
    return entry.start_offset


def _epoch(entry: EpochEntry) -> int:
    return entry.epoch
