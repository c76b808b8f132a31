"""The delete-records checkpoint of one partition: `<partition dir>/delete-records.checkpoint`.

It holds the offset of the latest `delete_records_before(offset)`: every offset below it is
deleted for good, whatever segment files a crash left behind. Two text lines, a format
version and the offset:

    1
    <offset>

Written whole (tmp file, fsync, rename, directory fsync) before the call returns, so a
crash leaves the old checkpoint or the new one, never a mix. No file means nothing was
ever deleted this way (offset 0). A file that does not parse is refused loudly: ignoring it
would bring deleted records back.
"""

from __future__ import annotations

from pathlib import Path

from broker.invariant import InvariantViolation
from broker.storage.flusher import sync_directory
from broker.storage.index import write_file_atomically

CHECKPOINT_FILE_NAME = "delete-records.checkpoint"
_FORMAT_VERSION = "1"


def checkpoint_path(directory: Path) -> Path:
    return directory / CHECKPOINT_FILE_NAME


def read_delete_records_offset(directory: Path) -> int:
    """The persisted offset (0 when there is no checkpoint). Runs in a worker thread."""
    path = checkpoint_path(directory)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return 0
    except UnicodeDecodeError as error:
        raise InvariantViolation(f"{path} is not a delete-records checkpoint: {error}") from error
    lines = text.split("\n")
    if len(lines) != 3 or lines[0] != _FORMAT_VERSION or lines[2] != "" or not lines[1].isdigit():
        raise InvariantViolation(f"{path} is not a version {_FORMAT_VERSION} delete-records checkpoint "
                                 f"({text[:64]!r}); refusing to guess which records were deleted")
    return int(lines[1])


def write_delete_records_offset(directory: Path, offset: int) -> None:
    """Persist `offset` durably (the rename is made durable by a directory fsync). Runs in a
    worker thread; raises OSError on I/O errors."""
    write_file_atomically(checkpoint_path(directory), f"{_FORMAT_VERSION}\n{offset}\n".encode("ascii"))
    sync_directory(directory)
