"""The one narrow object-store interface the cold tier uses.

The archiver, the manifest code and the remote read path see only `ObjectStore`; they
never know whether the bucket is S3 (`tiered.s3_store`, the only module that imports
aioboto3) or a local directory (`LocalObjectStore`, below). `open_object_store` picks the
implementation from the URL scheme of `cloud_storage.url`:

    s3://BUCKET/PREFIX   -> S3ObjectStore (endpoint/region/keys from CloudStorageConfig)
    file://PATH          -> LocalObjectStore (atomic rename writes, flock for conditions)

Keys passed to the store are relative to the URL's prefix. Every request and error is
counted in `store.metrics` (by operation) for /metrics.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterable, Protocol

from broker import limits
from broker.config import CloudStorageConfig


class ObjectStoreError(Exception):
    """A request failed; the caller retries with backoff."""


class ObjectNotFound(ObjectStoreError):
    """The key does not exist."""


class PreconditionFailed(ObjectStoreError):
    """A conditional put lost: the object exists (if-none-match) or changed (if-match)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified_ms: int


@dataclass
class ObjectStoreMetrics:
    """Requests and errors by operation name (get, get_range, put, ...) and bytes moved."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0


class ObjectStore(Protocol):
    metrics: ObjectStoreMetrics
    description: str  # for logs and status: "s3://bucket/prefix" or "file:///path"

    async def get(self, key: str) -> bytes:
        """The whole object; ObjectNotFound if absent."""

    async def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The whole object and its ETag (for a later put_if_match)."""

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes [start, start+length) (fewer at the end of the object)."""

    async def put(self, key: str, data: bytes) -> str:
        """Create or replace; returns the new ETag."""

    async def put_if_absent(self, key: str, data: bytes) -> str:
        """Create only if the key does not exist (If-None-Match: *), else PreconditionFailed."""

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace only if the current ETag is `etag` (If-Match), else PreconditionFailed."""

    async def put_stream(self, key: str, parts: AsyncIterator[bytes]) -> int:
        """Upload a large object from an async stream of byte pieces: one put when it
        fits in limits.object_multipart_threshold_bytes, multipart otherwise. Returns size."""

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order, page by page."""

    async def delete(self, key: str) -> None:
        """Remove the key; absent keys are not an error."""

    async def delete_many(self, keys: Iterable[str]) -> None: ...

    async def close(self) -> None: ...


def open_object_store(config: CloudStorageConfig) -> ObjectStore:
    """The store for `cloud_storage.url`: s3://BUCKET/PREFIX or file://PATH."""
    scheme, _, rest = config.url.partition("://")
    if scheme == "file":
        return LocalObjectStore(Path(rest))
    if scheme == "s3":
        from tiered.s3_store import S3ObjectStore  # the only module that imports aioboto3

        bucket, _, prefix = rest.partition("/")
        return S3ObjectStore(bucket=bucket, prefix=prefix.strip("/"), endpoint=config.endpoint,
                             region=config.region, access_key=config.access_key,
                             secret_key=config.secret_key)
    raise ValueError(f"cloud_storage.url {config.url!r}: expected file://PATH or s3://BUCKET/PREFIX")


async def collect_parts(parts: AsyncIterator[bytes], part_bytes: int) -> AsyncIterator[bytes]:
    """Regroup a stream of pieces into parts of exactly part_bytes (the last may be shorter)."""
    pending = bytearray()
    async for piece in parts:
        pending += piece
        while len(pending) >= part_bytes:
            yield bytes(pending[:part_bytes])
            del pending[:part_bytes]
    if pending:
        yield bytes(pending)


def content_etag(data: bytes) -> str:
    """The ETag S3 gives a single-part upload: the hex MD5 of the content."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class LocalObjectStore:
    """A bucket in a local directory: keys are relative paths under `root`.

    Writes go to a temporary file in the destination directory and are renamed into
    place, so a reader sees the old object or the new one, never a torn one. Conditional
    puts hold an flock on `<root>/.shoal-store.lock` so two processes sharing a directory
    cannot both win. The ETag is the content's MD5, as S3 gives for single-part uploads.
    """

    _temporary_marker = ".shoal-tmp-"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"file://{root}"
        self.metrics = ObjectStoreMetrics()

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad object key {key!r}")
        return self.root / key

    async def _run(self, operation: str, function, *arguments):
        self.metrics.requests[operation] += 1
        try:
            return await asyncio.to_thread(function, *arguments)
        except FileNotFoundError as error:
            raise ObjectNotFound(str(error)) from None
        except ObjectStoreError:
            self.metrics.errors[operation] += 1
            raise
        except OSError as error:
            self.metrics.errors[operation] += 1
            raise ObjectStoreError(f"{operation}: {error}") from error

    async def get(self, key: str) -> bytes:
        data = await self._run("get", self._path(key).read_bytes)
        self.metrics.bytes_downloaded += len(data)
        return data

    async def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data = await self.get(key)
        return data, content_etag(data)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        data = await self._run("get_range", _read_range, self._path(key), start, length)
        self.metrics.bytes_downloaded += len(data)
        return data

    async def put(self, key: str, data: bytes) -> str:
        await self._run("put", self._write_atomically, self._path(key), data)
        self.metrics.bytes_uploaded += len(data)
        return content_etag(data)

    async def put_if_absent(self, key: str, data: bytes) -> str:
        await self._run("put", self._write_if, self._path(key), data, None)
        self.metrics.bytes_uploaded += len(data)
        return content_etag(data)

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        await self._run("put", self._write_if, self._path(key), data, etag)
        self.metrics.bytes_uploaded += len(data)
        return content_etag(data)

    async def put_stream(self, key: str, parts: AsyncIterator[bytes]) -> int:
        path = self._path(key)
        temporary = await self._run("put", self._open_temporary, path)
        size = 0
        try:
            async for piece in parts:
                await asyncio.to_thread(temporary.write, piece)
                size += len(piece)
            await asyncio.to_thread(_flush_and_sync, temporary)
            temporary.close()
            await self._run("put", os.replace, temporary.name, path)
        except BaseException:
            temporary.close()
            Path(temporary.name).unlink(missing_ok=True)
            raise
        self.metrics.bytes_uploaded += size
        return size

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self.metrics.requests["list"] += 1
        infos = await asyncio.to_thread(self._list_sorted, prefix)
        for info in infos:
            yield info

    async def delete(self, key: str) -> None:
        await self._run("delete", self._path(key).unlink, True)

    async def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def close(self) -> None:
        return None

    # --- blocking helpers (run in a worker thread) ---------------------------------

    def _open_temporary(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        name = path.parent / f"{self._temporary_marker}{uuid.uuid4().hex}"
        return open(name, "wb")

    def _write_atomically(self, path: Path, data: bytes) -> None:
        temporary = self._open_temporary(path)
        try:
            temporary.write(data)
            _flush_and_sync(temporary)
            temporary.close()
            os.replace(temporary.name, path)
        except BaseException:
            temporary.close()
            Path(temporary.name).unlink(missing_ok=True)
            raise

    def _write_if(self, path: Path, data: bytes, expected_etag: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".shoal-store.lock", "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                current = None
            if expected_etag is None and current is not None:
                raise PreconditionFailed(f"{path} exists")
            if expected_etag is not None:
                if current is None:
                    raise ObjectNotFound(str(path))
                if content_etag(current) != expected_etag.strip('"'):
                    raise PreconditionFailed(f"{path} changed")
            self._write_atomically(path, data)

    def _list_sorted(self, prefix: str) -> list[ObjectInfo]:
        directory_part, _, _ = prefix.rpartition("/")
        start = self.root / directory_part if directory_part else self.root
        if not start.exists():
            return []
        infos = []
        for directory, _, files in os.walk(start):
            for name in files:
                if name.startswith(self._temporary_marker) or name == ".shoal-store.lock":
                    continue
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                infos.append(ObjectInfo(key, stat.st_size, int(stat.st_mtime * 1000)))
        infos.sort(key=lambda info: info.key)
        return infos


def _read_range(path: Path, start: int, length: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(start)
        return file.read(length)


def _flush_and_sync(file) -> None:
    file.flush()
    try:
        os.fsync(file.fileno())
    except OSError as error:  # tmpfs and friends may refuse; the rename still orders
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


__all__ = [
    "ObjectStore", "ObjectStoreError", "ObjectNotFound", "PreconditionFailed", "ObjectInfo",
    "ObjectStoreMetrics", "LocalObjectStore", "open_object_store", "collect_parts",
    "content_etag", "limits",
]
