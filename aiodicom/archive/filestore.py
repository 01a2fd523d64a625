"""Durable instance storage: the bottom of the C-STORE SCP path (DESIGN.md, "The path of one C-STORE").

Layout: ROOT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm, each a PS3.10 file made of
our File Meta Information followed by the data set bytes exactly as received, never re-encoded.

An instance is written into ROOT/.incoming/<session>-<n>.part as its fragments arrive, by a writer
thread the loop hands them to (spillwriter.py; one of at most 64 KiB is held in memory and written out
at commit: by a worker thread when syncing, on the loop when not). On commit its Study/Series UIDs are
read from the head of the data set (peek.py), the file is synced and renamed atomically into place and
the directory synced (groupcommit.py), and only then is it reported stored. A file under a final name is
therefore always complete. A crash leaves only .part files: each process holds an flock on
ROOT/.incoming/<session>.lock, and opening a store sweeps the .part files of sessions whose lock nobody
holds, so processes sharing one root never sweep each other's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import os
import secrets
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final, Self

import anyio

from aiodicom.archive.errors import (
    ArchiveError,
    DataSetMismatch,
    DuplicateInstance,
    InvalidDataSet,
    NeedMoreData,
    storage_error,
)
from aiodicom.archive.fileformat import encode_file_meta
from aiodicom.archive.groupcommit import CommitJob, DataSync, GroupCommitter, Placement, fsync_dir
from aiodicom.archive.spillwriter import SpillFile, SpillWriter
from aiodicom.archive.peek import (
    INDEX_TAGS,
    SERIES_INSTANCE_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    inflate_head,
    is_deflated,
    peek,
    peek_reader,
    text_value,
)
from aiodicom.archive.uid import is_valid_uid, validate_uid
from aiodicom.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from aiodicom.net.budget import MemoryBudget

INCOMING: Final = ".incoming"
_PART: Final = ".part"
_LOCK: Final = ".lock"
HEAD_SIZE: Final = 65_536  # data set bytes kept in memory per instance so commit needs no read-back
_FILING_TAGS: Final = frozenset({STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, SOP_CLASS_UID})


class DuplicatePolicy(Enum):
    """What to do with an instance whose SOP Instance UID is already stored under the same series."""

    OVERWRITE = "overwrite"  # the new file replaces the old one atomically
    KEEP_FIRST = "keep-first"  # the new one is discarded; the store still succeeds
    REJECT = "reject"  # the new one is discarded and DuplicateInstance raised


class StoreOutcome(Enum):
    STORED = "stored"  # a new instance
    REPLACED = "replaced"  # OVERWRITE: an earlier copy was replaced
    DUPLICATE_KEPT_FIRST = "duplicate-kept-first"  # KEEP_FIRST: the earlier copy stays, this one was dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInstance:
    """A committed instance. For DUPLICATE_KEPT_FIRST, `path` is the kept earlier file and the other
    fields describe the data set that was received and dropped."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax: str
    size: int  # bytes of the file: file meta + data set
    dataset_offset: int  # where the data set starts in the file
    attributes: MappingProxyType[int, bytes]  # raw top-level values of the store's index tags (peek.peek)
    outcome: StoreOutcome


class FileStore:
    """Instances on disk under `root`. Opened on construction; `close()` (or `with`) releases it.

    `sync=False` skips every fsync (as DCMTK's storescp does): faster, but a crash may lose instances
    already reported stored. Blocking work runs in worker threads bounded by `workers`.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        sync: bool = True,
        duplicates: DuplicatePolicy = DuplicatePolicy.OVERWRITE,
        implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
        implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
        data_sync: DataSync = DataSync.FDATASYNC,
        workers: int = 16,
        index_tags: frozenset[int] = INDEX_TAGS,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.incoming = self.root / INCOMING
        self.sync = sync
        self.data_sync = data_sync
        self.duplicates = duplicates
        self._implementation = (implementation_class_uid, implementation_version_name)
        encode_file_meta(  # fail now, not on the first C-STORE, if these cannot go in a file
            sop_class_uid="1.2",
            sop_instance_uid="1.2",
            transfer_syntax="1.2.840.10008.1.2",
            implementation_class_uid=implementation_class_uid,
            implementation_version_name=implementation_version_name,
        )
        self._tags = frozenset(index_tags) | _FILING_TAGS
        self.limiter = anyio.CapacityLimiter(workers)
        self._committer = GroupCommitter(sync=sync, data_sync=data_sync, limiter=self.limiter)
        self.budget = budget  # heads and the writer's queue count against it; without room, to disk at once
        self._writer = SpillWriter(budget=budget)  # appends spilled fragments off the event loop
        self._session = ""
        self._incoming_prefix = ""
        self._lock_fd = -1
        self._names = itertools.count()
        self.open()

    # -- life cycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create root/.incoming, take a session lock and sweep what crashed sessions left. Idempotent."""
        if self._lock_fd >= 0:
            return
        try:
            _mkdir_durable(self.root, self.sync)
            _mkdir_durable(self.incoming, self.sync)
            self._acquire_session()
            self.sweep()
        except OSError as exc:
            raise storage_error(exc, f"opening the store at {self.root}") from None

    def close(self) -> None:
        """Release the session: .part files of instances still open become sweepable."""
        if self._lock_fd < 0:
            return
        self._writer.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.incoming / f"{self._session}{_LOCK}")
        os.close(self._lock_fd)
        self._lock_fd = -1

    @property
    def closed(self) -> bool:
        return self._lock_fd < 0

    def wait_for_writes(self) -> None:
        """Block until the fragments handed to the writer thread so far are written (and the files of
        aborted instances closed and removed). Commit needs no such call: it waits for its own."""
        self._writer.wait()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acquire_session(self) -> None:
        while True:
            session = secrets.token_hex(8)
            path = self.incoming / f"{session}{_LOCK}"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A sweeper may have taken the lock between our open and flock, judged the session
                # dead and unlinked the file: then our lock guards nothing, so start over.
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        self._session, self._lock_fd = session, fd
                        self._incoming_prefix = f"{self.incoming}{os.sep}{session}-"
                        return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def sweep(self) -> int:
        """Remove .part files of sessions no live process holds (crash leftovers); return how many."""
        verdicts: dict[str, bool] = {}
        held: list[tuple[str, int]] = []

        def dead(owner: str) -> bool:
            if owner == self._session:
                return False
            if owner not in verdicts:
                try:
                    fd = os.open(self.incoming / f"{owner}{_LOCK}", os.O_RDWR)
                except FileNotFoundError:
                    verdicts[owner] = True  # locks are created before parts: no lock, no live owner
                    return True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    verdicts[owner] = False
                    return False
                held.append((owner, fd))
                verdicts[owner] = True
            return verdicts[owner]

        removed = 0
        try:
            with os.scandir(self.incoming) as entries:
                names = [e.name for e in entries]
            for name in names:
                if name.endswith(_PART) and dead(name[: -len(_PART)].partition("-")[0]):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.incoming / name)
                        removed += 1
                elif name.endswith(_LOCK):
                    dead(name[: -len(_LOCK)])
        finally:
            for owner, fd in held:  # unlink while still holding the lock, then release it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.incoming / f"{owner}{_LOCK}")
                os.close(fd)
        return removed

    # -- storing -----------------------------------------------------------------------------------
    def path_for(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> Path:
        """Where an instance lives. The UIDs must be valid (they are path components)."""
        for uid, what in (
            (study_instance_uid, "Study Instance UID"),
            (series_instance_uid, "Series Instance UID"),
            (sop_instance_uid, "SOP Instance UID"),
        ):
            validate_uid(uid, what)
        return self.root.joinpath(study_instance_uid, series_instance_uid, f"{sop_instance_uid}.dcm")  # one Path, not three

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        source_ae: str | None = None,
    ) -> IncomingInstance:
        """Start receiving one instance (the values of its C-STORE-RQ and presentation context).

        Raises InvalidUID (or ValueError for a source AE the meta cannot carry) before anything is
        written. No file is created yet: see IncomingInstance.
        """
        if self.closed:
            raise ArchiveError(f"the store at {self.root} is closed")
        _validate_context(sop_class_uid, transfer_syntax)
        validate_uid(sop_instance_uid, "Affected SOP Instance UID")
        meta = encode_file_meta(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
            implementation_class_uid=self._implementation[0],
            implementation_version_name=self._implementation[1],
            source_ae=source_ae,
        )
        temp = f"{self._incoming_prefix}{next(self._names):x}{_PART}"  # a str: a Path costs more than the write
        return IncomingInstance(
            self,
            meta=meta,
            temp=temp,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
        )


_OPEN, _COMMITTING, _DONE = 0, 1, 2


class IncomingInstance:
    """One instance being received: `write()` its data set fragments, then `await commit()`, or
    `abort()`. Used as a context manager, leaving without commit aborts.

    The first 64 KiB of the data set stay in memory (commit reads the attributes there). An instance
    that fits never touches the disk before commit, where a worker thread writes, syncs and renames
    it when syncing (creating a file can stall ~0.3 ms on a journal busy with other commits' syncs,
    too long for the event loop); without syncing it is filed on the loop. A larger one spills into
    its temp file, and later fragments go straight there.
    """

    __slots__ = (
        "_fd", "_head", "_meta", "_size", "_spill", "_state", "_store", "_temp",
        "dataset_offset", "sop_class_uid", "sop_instance_uid", "transfer_syntax",
    )  # fmt: skip

    def __init__(
        self,
        store: FileStore,
        *,
        meta: bytes,
        temp: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
    ) -> None:
        self._store = store
        self._meta = meta
        self._fd = -1  # the temp file, once spilled
        self._spill: SpillFile | None = None  # its writes, handed to the store's writer thread
        self._temp = temp
        self._state = _OPEN
        self._head = bytearray()
        self._size = 0
        self.dataset_offset = len(meta)
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax = transfer_syntax

    @property
    def size(self) -> int:
        """Data set bytes written so far."""
        return self._size

    @property
    def temp_path(self) -> Path:
        """Where the instance is spooled (it exists only once the data set outgrew memory)."""
        return Path(self._temp)

    @property
    def in_memory(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data set bytes. Blocking, but only as far as the page cache (called from the loop).

        On failure the temp file is removed and StorageFull/StorageError raised; the instance is done.
        """
        if self._state != _OPEN:
            raise ArchiveError("write to an instance already committed or aborted")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        head = len(self._head)
        room = HEAD_SIZE - head if head == self._size else 0  # the head is the data set's start, or stops growing
        if room > 0:
            budget = self._store.budget
            if budget is not None and not budget.try_hold(min(room, len(view))):
                room = 0  # no memory to spare: the file gets this fragment now, and commit reads back
            else:
                self._head += view[:room]
        try:
            if self._spill is not None:
                self._store._writer.write(self._spill, self.dataset_offset + self._size, view)
            elif len(view) > room:  # outgrew memory: the file gets meta, head, then this fragment's rest
                self._fd = os.open(self._temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)  # RDWR: read-back
                self._spill = spill = SpillFile(self._fd)
                writer = self._store._writer
                writer.write(spill, 0, memoryview(self._meta + self._head))
                writer.write(spill, self.dataset_offset + len(self._head), view[room:])
        except OSError as exc:
            self._discard()
            raise storage_error(exc, f"writing {self._temp}") from None
        self._size += len(view)

    async def commit(self) -> StoredInstance:
        """File the instance durably and return where it went.

        Raises InvalidDataSet (or DataSetMismatch, PeekError) for a data set that cannot be filed,
        DuplicateInstance under REJECT, StorageFull/StorageError; in every case no file is left behind.
        """
        if self._state != _OPEN:
            raise ArchiveError("commit of an instance already committed or aborted")
        self._state = _COMMITTING
        store = self._store
        job: CommitJob | None = None
        try:
            if self._spill is not None:
                try:
                    await store._writer.drain(self._spill)
                except OSError as exc:
                    raise storage_error(exc, f"writing {self._temp}") from None
            attrs = await self._read_attributes()
            study, series = self._check(attrs)
            final = store.path_for(study, series, self.sop_instance_uid)
            job = CommitJob(
                fd=self._fd,
                temp=self._temp,
                final=str(final),
                replace=store.duplicates is DuplicatePolicy.OVERWRITE,
                content=self._meta + self._head if self._fd < 0 else None,
            )
            placement = await store._committer.commit(job)
        except BaseException:
            if job is None or not job.taken:
                if job is not None:
                    self._fd = job.fd  # the committer may have written an in-memory instance out
                self._discard()
            self._fd, self._state = -1, _DONE
            self._drop_head()
            raise
        self._fd, self._state = -1, _DONE
        self._drop_head()
        if placement is Placement.EXISTED:
            if store.duplicates is DuplicatePolicy.REJECT:
                raise DuplicateInstance(f"SOP Instance {self.sop_instance_uid} is already stored at {final}")
            outcome = StoreOutcome.DUPLICATE_KEPT_FIRST
        else:
            outcome = StoreOutcome.REPLACED if placement is Placement.REPLACED else StoreOutcome.STORED
        return self._stored(final, study, series, attrs, outcome)

    def _stored(self, final: Path, study: str, series: str, attrs: dict[int, bytes],
                outcome: StoreOutcome = StoreOutcome.STORED) -> StoredInstance:
        return StoredInstance(
            path=final,
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            study_instance_uid=study,
            series_instance_uid=series,
            transfer_syntax=self.transfer_syntax,
            size=self.dataset_offset + self._size,
            dataset_offset=self.dataset_offset,
            attributes=MappingProxyType(attrs),
            outcome=outcome,
        )

    def abort(self) -> None:
        """Drop the instance: close and remove the temp file. Idempotent; a no-op once committed
        or while a commit is running (cancel the committing task instead)."""
        if self._state == _OPEN:
            self._discard()

    # -- internals ---------------------------------------------------------------------------------
    def _drop_head(self) -> None:
        if self._head:
            if self._store.budget is not None:
                self._store.budget.release(len(self._head))
            self._head = bytearray()

    def _discard(self) -> None:
        self._state = _DONE
        self._drop_head()
        if self._spill is not None and self._spill.fd == self._fd:
            self._store._writer.close(self._spill, self._temp)  # after its queued writes, if any
        elif self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            _unlink(self._temp)
        self._fd, self._spill = -1, None

    async def _read_attributes(self) -> dict[int, bytes]:
        ts, tags, head = self.transfer_syntax, self._store._tags, self._head
        complete = self._fd < 0  # the whole data set is in memory
        try:
            if is_deflated(ts):
                limit = 4 * HEAD_SIZE
                data = inflate_head(head, limit)
                return peek(data, ts, tags, complete=complete and len(data) < limit)
            return peek(head, ts, tags, complete=complete)
        except NeedMoreData:
            pass  # rare: the attributes lie past the first 64 KiB (of the inflated stream): scan on
        raw, fd, start = bytes(head), self._fd, self.dataset_offset

        def reader(offset: int, size: int) -> bytes:
            if complete:  # deflated, in memory, inflating to more than 256 KiB before the attributes
                return raw[offset : offset + size]
            return os.pread(fd, size, start + offset)

        try:
            return await anyio.to_thread.run_sync(peek_reader, reader, ts, tags, limiter=self._store.limiter)
        except OSError as exc:
            raise storage_error(exc, f"reading back {self._temp}") from None

    def _check(self, attrs: dict[int, bytes]) -> tuple[str, str]:
        def uid(tag: int, what: str) -> str | None:
            raw = attrs.get(tag)
            if raw is None:
                return None
            value = text_value(raw)
            if not is_valid_uid(value):
                raise InvalidDataSet(f"the data set's {what} {value[:80]!r} is not a valid UID (PS3.5 §9.1)")
            return value

        study = uid(STUDY_INSTANCE_UID, "Study Instance UID (0020,000D)")
        series = uid(SERIES_INSTANCE_UID, "Series Instance UID (0020,000E)")
        if study is None or series is None:
            raise InvalidDataSet("the data set lacks its Study or Series Instance UID (0020,000D/000E)")
        sop_instance = uid(SOP_INSTANCE_UID, "SOP Instance UID (0008,0018)")
        if sop_instance is None:
            raise InvalidDataSet("the data set lacks its SOP Instance UID (0008,0018)")
        if sop_instance != self.sop_instance_uid:
            # PS3.4 B.2.3 / PS3.7 9.1.1: the command's Affected SOP Instance UID names this data set.
            raise DataSetMismatch(
                f"data set SOP Instance UID {sop_instance} differs from the command's {self.sop_instance_uid}"
            )
        sop_class = uid(SOP_CLASS_UID, "SOP Class UID (0008,0016)")
        if sop_class is not None and sop_class != self.sop_class_uid:
            raise DataSetMismatch(f"data set SOP Class UID {sop_class} differs from the command's {self.sop_class_uid}")
        return study, series


@functools.lru_cache(maxsize=256)
def _validate_context(sop_class_uid: str, transfer_syntax: str) -> None:
    """A C-STORE's SOP class and transfer syntax: a handful of distinct values, so checked once each."""
    validate_uid(sop_class_uid, "Affected SOP Class UID")
    validate_uid(transfer_syntax, "Transfer Syntax UID")


def _unlink(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _mkdir_durable(path: Path, sync: bool) -> None:
    """mkdir -p that syncs the parent of each directory it creates, so the name survives a crash."""
    if path.is_dir():
        return
    _mkdir_durable(path.parent, sync)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
        if sync:
            fsync_dir(str(path.parent))
