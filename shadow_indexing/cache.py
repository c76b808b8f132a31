"""A bounded on-disk LRU cache of remote chunks (cloud_storage.cache_dir / cache_size_bytes).

Entries are immutable byte strings named by the caller (the object key, chunk size and
chunk number make a name). Files live under <cache_dir>/<2 hex>/<name hash>; writes go to
a temporary file then rename, so a crash leaves whole entries or nothing. The LRU order
is kept in memory and rebuilt from file modification times on start (a hit touches the
file). Hits, misses and evictions are counted for /metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CacheMetrics:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes_written: int = 0


class ChunkCache:
    _temporary_marker = ".tmp-"

    def __init__(self, directory: Path, capacity_bytes: int) -> None:
        self.directory = Path(directory)
        self.capacity_bytes = capacity_bytes
        self.metrics = CacheMetrics()
        self._entries: OrderedDict[str, int] = OrderedDict()  # file name -> size, LRU first
        self.size_bytes = 0
        self._load_existing()

    def _load_existing(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self.directory.glob("*/*"):
            if path.name.startswith(self._temporary_marker):
                path.unlink(missing_ok=True)
                continue
            stat = path.stat()
            found.append((stat.st_mtime_ns, path.name, stat.st_size))
        for _, name, size in sorted(found):
            self._entries[name] = size
            self.size_bytes += size
        self._evict()

    @staticmethod
    def _file_name(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()[:40]

    def _path(self, file_name: str) -> Path:
        return self.directory / file_name[:2] / file_name

    def __contains__(self, name: str) -> bool:
        return self._file_name(name) in self._entries

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    async def get(self, name: str) -> bytes | None:
        file_name = self._file_name(name)
        if file_name not in self._entries:
            self.metrics.misses += 1
            return None
        try:
            data = await asyncio.to_thread(_read_and_touch, self._path(file_name))
        except FileNotFoundError:  # removed behind our back: a miss
            self.size_bytes -= self._entries.pop(file_name, 0)
            self.metrics.misses += 1
            return None
        self._entries.move_to_end(file_name)
        self.metrics.hits += 1
        return data

    async def put(self, name: str, data: bytes) -> None:
        file_name = self._file_name(name)
        if file_name in self._entries or len(data) > self.capacity_bytes:
            return
        await asyncio.to_thread(self._write, self._path(file_name), data)
        if file_name in self._entries:  # a concurrent put of the same name won
            return
        self._entries[file_name] = len(data)
        self.size_bytes += len(data)
        self.metrics.bytes_written += len(data)
        self._evict()

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.parent / f"{self._temporary_marker}{uuid.uuid4().hex}"
        temporary.write_bytes(data)
        os.replace(temporary, path)

    def _evict(self) -> None:
        while self.size_bytes > self.capacity_bytes and self._entries:
            file_name, size = self._entries.popitem(last=False)
            self._path(file_name).unlink(missing_ok=True)
            self.size_bytes -= size
            self.metrics.evictions += 1


def _read_and_touch(path: Path) -> bytes:
    data = path.read_bytes()
    os.utime(path)
    return data
