"""Counters of one partition log (Redpanda's `*_probe`): plain integers, read by the
metrics exporter and by tests (e.g. fsync coalescing is checked by counting rounds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogProbe:
    appended_batches: int = 0
    appended_bytes: int = 0
    flush_rounds: int = 0  # group-commit rounds: one fsync per dirty file per round
    file_syncs: int = 0  # fsync/fdatasync calls on segment files
    flush_failures: int = 0
    segments_rolled: int = 0
    segments_deleted: int = 0
    recovery_cut_bytes: int = 0  # torn/corrupt bytes cut from segment tails at start
