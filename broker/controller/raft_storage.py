"""The controller's Raft files, made durable: the one seam where Shoal patches pysyncobj.

pysyncobj 0.3.17 never fsyncs: its FileJournal writes entries into an mmap and a follower
acknowledges them at once, its (term, votedFor, commit index) meta file and its snapshot
("full dump") are written as tmp + rename without fsync of file or directory. That
survives kill -9 (the page cache survives), not a power loss or kernel crash, where an
acknowledged, committed entry or a vote could vanish and Raft's safety with it.

What this module adds, and so what is guaranteed (on Linux, on a file system that honours
fsync):

1. Journal entries. `DurableJournal` (a FileJournal subclass) marks itself dirty on every
   append or truncation; `sync()` msyncs the mapping and fsyncs the file. `sync()` runs
   (a) before every message this node sends to a peer (`SyncBeforeSendTransport`), so a
   follower's acknowledgement (next_node_idx), a leader's AppendEntries and any vote reply
   leave only after every entry this node holds is on disk; and (b) right after every tick
   (`Controller`), before the result of any command reaches its caller and before any
   change event is delivered. A leader counts itself in the majority only on the tick
   after it appended, so its own copy is on disk by then too. Hence: a command whose
   result reached a caller is on the disk of a majority of the nodes.
2. Term and vote. pysyncobj stores them synchronously before any vote request or grant;
   `RaftMeta` writes them with tmp + fsync + rename + directory fsync, so a node never
   votes twice in a term or forgets its term across a crash. The commit index (volatile
   in Raft; pysyncobj saves it once a second) goes to the same file.
3. Snapshots. pysyncobj's custom serializer hooks write our JSON snapshot to its tmp file
   and fsync it; pysyncobj renames it; the journal fsyncs the directory (making the rename
   durable) before it drops the entries the snapshot replaces. A snapshot received from
   the leader is fsynced with its directory before pysyncobj clears the journal for it.
   Snapshots are JSON of plain data: nothing on disk is unpickled except journal entries.

What it does not give: FileJournal records carry no checksum, so a power loss in the
middle of a write that was never synced can leave a torn tail, which this module detects
only as far as index continuity (the node then refuses to start, loudly); fsync runs on
the event loop thread (the controller writes little, but a slow disk stalls the loop for
that long); pysyncobj's own files are patched only through the names it calls today
(`pysyncobj.syncobj.createJournal`, the Journal interface, `SyncObjConf.serializer`), and
`RaftStorage.install` checks that the patched journal is the one in use.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pysyncobj.syncobj as syncobj_module
from pysyncobj.journal import FileJournal
from pysyncobj.transport import TCPTransport
from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION

from broker.controller import cluster_state
from broker.invariant import invariant
from broker.producer_state import write_durably
from broker.storage.flusher import sync_directory

log = logging.getLogger("shoal.controller")

# 0.3.17 is the first release that persists currentTerm and votedFor at all (through the
# Journal interface patched below); with an older one a restarted node may vote twice.
if tuple(int(part) for part in PYSYNCOBJ_VERSION.split(".")[:3]) < (0, 3, 17):
    raise ImportError(f"broker.controller needs pysyncobj >= 0.3.17, found {PYSYNCOBJ_VERSION}")

SNAPSHOT_FORMAT_VERSION = 1
META_FORMAT_VERSION = 1


class DiskSyncError(RuntimeError):
    """An fsync of the controller's Raft files failed: the node must stop (after a failed
    fsync the kernel may have dropped the dirty pages; retrying would lie)."""


class RaftMeta:
    """currentTerm, votedFor and the commit index, in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.current_term = 0
        self.voted_for: str | None = None
        self.commit_index = 1  # pysyncobj's starting value
        self.unsaved = False
        if path.exists():
            data = json.loads(path.read_text())
            invariant(data.get("format_version") == META_FORMAT_VERSION, "unknown raft meta format", data)
            self.current_term = data["current_term"]
            self.voted_for = data["voted_for"]
            self.commit_index = data["commit_index"]

    def save(self) -> None:
        payload = json.dumps({"format_version": META_FORMAT_VERSION, "current_term": self.current_term,
                              "voted_for": self.voted_for, "commit_index": self.commit_index}).encode()
        try:
            write_durably(self._path, payload)
        except OSError as error:
            raise DiskSyncError(f"cannot save raft meta {self._path}: {error}") from error
        self.unsaved = False


class DurableJournal(FileJournal):
    """pysyncobj's FileJournal with an explicit `sync()` and a durable meta file."""

    def __init__(self, journal_path: str, meta: RaftMeta) -> None:
        created = not os.path.exists(journal_path)
        super().__init__(journal_path)
        self._descriptor = os.open(journal_path, os.O_RDONLY)
        self._directory = Path(journal_path).parent
        self._meta = meta
        self._dirty = created
        self._check_continuity()
        if created:
            self.sync()
            sync_directory(self._directory)

    def _check_continuity(self) -> None:
        for position in range(1, len(self)):
            previous, current = self[position - 1], self[position]
            invariant(current[1] == previous[1] + 1 and current[2] >= previous[2],
                      "controller journal entries out of order (torn write?)", previous[1:], current[1:])

    # -- entries: every change marks the journal dirty until the next sync() ------------------
    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self._dirty = True

    def clear(self) -> None:
        super().clear()
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802,N803 - pysyncobj's names
        super().deleteEntriesFrom(entryFrom)
        self._dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802,N803
        # Called only once a snapshot covering these entries was renamed into place: make
        # that rename durable before the entries are gone.
        try:
            sync_directory(self._directory)
        except OSError as error:
            raise DiskSyncError(f"cannot sync the controller directory: {error}") from error
        super().deleteEntriesTo(entryTo)

    def sync(self) -> None:
        if not self._dirty:
            return
        try:
            self.flush()  # msync of the mapping: POSIX's way to write back mapped pages
            os.fsync(self._descriptor)  # and the file size, if the mapping grew
        except OSError as error:
            raise DiskSyncError(f"cannot sync the controller journal: {error}") from error
        self._dirty = False

    def _destroy(self) -> None:
        self.sync()
        if self._meta.unsaved:
            self._meta.save()
        super()._destroy()
        os.close(self._descriptor)

    # -- meta: term and vote saved (durably) before pysyncobj sends anything that shows them ---
    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802,N803
        self._meta.current_term = term
        self._meta.voted_for = votedForNodeId
        self._meta.save()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._meta.current_term

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._meta.voted_for

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        if raftCommitIndex != self._meta.commit_index:
            self._meta.commit_index = raftCommitIndex
            self._meta.unsaved = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return self._meta.commit_index

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if self._meta.unsaved:
            self._meta.save()


class SyncBeforeSendTransport(TCPTransport):
    """pysyncobj's TCP transport that makes the journal durable before any Raft message
    leaves this node."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, *,  # noqa: N803
                 before_send: Callable[[], None]) -> None:
        self._before_send = before_send
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        self._before_send()
        return super().send(node, message)


def _encode_entry(entry: tuple) -> list:
    command, index, term = entry
    return [base64.b64encode(bytes(command)).decode("ascii"), index, term]


def _decode_entry(data: list) -> tuple:
    command, index, term = data
    return (base64.b64decode(command), index, term)


class RaftStorage:
    """<raft_dir>/journal (+ raft_meta.json) and <raft_dir>/snapshot.json for one node."""

    def __init__(self, raft_dir: Path, state_machine: Any) -> None:
        self.raft_dir = raft_dir
        self.journal_path = raft_dir / "journal"
        self.snapshot_path = raft_dir / "snapshot.json"
        self._state_machine = state_machine  # has .state and .replace_state(state)
        self.journal: DurableJournal | None = None
        self.load_error: BaseException | None = None
        raft_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        """While SyncObj is being constructed, its journal is a DurableJournal."""
        meta = RaftMeta(self.raft_dir / "raft_meta.json")

        def create_journal(journal_file: str | None) -> DurableJournal:
            invariant(journal_file == str(self.journal_path), "unexpected journal file", journal_file)
            self.journal = DurableJournal(journal_file, meta)
            return self.journal

        original = syncobj_module.createJournal
        syncobj_module.createJournal = create_journal
        try:
            yield
        finally:
            syncobj_module.createJournal = original
        invariant(self.journal is not None, "pysyncobj did not create its journal through createJournal; "
                                            "the durability patch does not apply to this version")

    def sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()

    # -- pysyncobj's custom serializer hooks (conf.serializer / conf.deserializer) -------------
    def write_snapshot(self, temporary_path: str, raft_data: tuple) -> None:
        """pysyncobj passes (last applied entry, the entry before it, cluster nodes) and
        renames `temporary_path` over the snapshot once this returns."""
        last_entry, previous_entry, cluster = raft_data
        payload = json.dumps({
            "format_version": SNAPSHOT_FORMAT_VERSION,
            "state": cluster_state.encode_state(self._state_machine.state),
            "last_entry": _encode_entry(last_entry),
            "previous_entry": _encode_entry(previous_entry),
            "cluster": sorted(str(node) for node in cluster),
        }, separators=(",", ":")).encode()
        with open(temporary_path, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())

    def read_snapshot(self, path: str) -> tuple:
        """Load the snapshot into the state machine; return what pysyncobj needs back.
        pysyncobj swallows exceptions here and would go on with an empty state, so a
        failure is kept in `load_error` for the Controller to stop on."""
        try:
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)  # a snapshot received from the leader was not synced
            finally:
                os.close(descriptor)
            sync_directory(Path(path).parent)
            with open(path, "rb") as file:
                data = json.loads(file.read())
            invariant(data.get("format_version") == SNAPSHOT_FORMAT_VERSION, "unknown snapshot format",
                      data.get("format_version"))
            self._state_machine.replace_state(cluster_state.decode_state(data["state"]))
            return (_decode_entry(data["last_entry"]), _decode_entry(data["previous_entry"]), data["cluster"])
        except BaseException as error:
            self.load_error = error
            raise

    def close(self) -> None:
        self.journal = None
