"""One node per data directory: an exclusive `flock` on `<data_dir>/.lock`, taken before
anything in the directory is read or written and held for the life of the process.

Two nodes appending to the same partition files interleave offsets and lose acknowledged
messages; the lock makes the second node refuse to start instead. `flock` locks belong to
the open file description, so the kernel releases them when the process dies (kill -9
included): a stale lock file never blocks a restart."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE_NAME = ".lock"


class StartupError(Exception):
    """The node cannot start; str(error) is one line for the operator."""


class DataDirLock:
    def __init__(self, data_dir: Path, descriptor: int) -> None:
        self.data_dir = data_dir
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, data_dir: Path) -> "DataDirLock":
        """Create `data_dir` if needed and lock it, or raise StartupError naming the
        directory (and the holder's pid when it is another node)."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StartupError(f"config error: data_dir={str(data_dir)!r}: expected a directory "
                               f"Shoal can create and write ({error.strerror})") from error
        if not data_dir.is_dir():
            raise StartupError(f"config error: data_dir={str(data_dir)!r}: expected a directory, "
                               "found a file")
        path = data_dir / LOCK_FILE_NAME
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StartupError(f"config error: data_dir={str(data_dir)!r}: expected a writable "
                               f"directory ({error.strerror})") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StartupError(
                    f"data_dir {str(data_dir)!r} is in use by another Shoal node "
                    f"(pid {holder or 'unknown'}); one node per data directory") from None
            raise StartupError(f"cannot lock data_dir {str(data_dir)!r}: {error.strerror}") from error
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return cls(data_dir, descriptor)

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the description drops the flock
            self._descriptor = None


def _read_holder(descriptor: int) -> str:
    try:
        return os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
