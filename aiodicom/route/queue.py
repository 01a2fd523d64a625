"""The durable queue: what the router acknowledged and has not delivered yet, on disk, per destination.

    SPOOL/
      router.lock                   flock(2): one router per spool
      received/                     a FileStore: .incoming/*.part while arriving, <sop>.<n>.dcm once durable
      tmp/                          data sets held in proxy mode (never durable, emptied at start)
      queue/DEST/NAME.dcm           one entry: the PS3.10 file to send (hard links, else copies, when several destinations)
      queue/DEST/NAME.json          its state once a delivery failed: attempts, next attempt, last error
      dead/DEST/NAME.dcm + .json    dead letters, with the reason
      inbox/DEST/                   dead letters handed back by `aiodicom route retry`, taken by the router
      status.json                   the running router's counters (`aiodicom route status`)

The .dcm file is the truth: an entry exists once its name in queue/DEST is durable (link, then fsync of
the folder), which happens before the C-STORE Success. NAME is `<arrival ns>-<unique>~<rule>`, so names
sort in arrival order and carry what the log needs; the rest comes from the file meta (SOP Class and
Instance UID, transfer syntax, the sender's AE title). Only a failed delivery writes a .json beside it,
without fsync: after a crash it may be missing or torn, and the entry is then sent with a fresh count.
Delivered entries are unlinked without fsync: a crash may bring one back and it is sent again, which
at-least-once delivery allows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import heapq
import itertools
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final, Self

import anyio

from ..archive.groupcommit import fsync_dir
from ..dimse.dataset import read_file_meta
from .config import RetryPolicy

RECEIVED: Final = "received"
TMP: Final = "tmp"
QUEUE: Final = "queue"
DEAD: Final = "dead"
INBOX: Final = "inbox"
STATUS_FILE: Final = "status.json"
LOCK_FILE: Final = "router.lock"
_DCM: Final = ".dcm"
# link(2)'s errors on a file system without hard links (FAT, some network and FUSE ones), across two file
# systems (a destination's queue on another disk) or past a file's link limit: the entry is copied instead
_NO_HARD_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})
_JSON: Final = ".json"


class SpoolBusy(RuntimeError):
    """Another router holds the spool (two routers on one spool would each deliver every entry)."""


# ---- entries ---------------------------------------------------------------------------------------

@dataclass(slots=True, kw_only=True)
class Entry:
    """One instance waiting for one destination."""

    name: str
    destination: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    study_instance_uid: str = ""
    rule: str = ""
    calling_ae: str = ""
    received: float = 0.0  # wall clock (epoch seconds) when the router acknowledged it
    attempts: int = 0  # failed deliveries so far
    not_before: float = 0.0  # wall clock: no attempt before this
    last_error: str | None = None
    reason: str | None = None  # dead letters: why
    dataset_offset: int = 0  # where the data set starts in the file (0: read the file meta to find out)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        raw = json.loads(data)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def queued_since(self) -> float:
        """When it entered its queue: the time in its name (renewed by `route retry`); max_age counts from it."""
        return name_time(self.name) or self.received


_names = itertools.count()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def new_name(now_ns: int | None = None) -> str:
    """Sortable by arrival: nanoseconds since the epoch, then a per-process counter and the PID."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    return f"{now_ns:019d}-{next(_names) & 0xFFFFFF:06x}{os.getpid() & 0xFFFF:04x}"


def entry_name(base: str, rule: str) -> str:
    """A queue entry's name: `base` (from new_name) and the rule that sent it there, made file-name safe."""
    return f"{base}~{_UNSAFE.sub('_', rule)[:64]}"


def rule_of(name: str) -> str:
    return name.partition("~")[2] or "?"


def name_time(name: str) -> float:
    """The arrival time encoded in an entry name (0.0 for a name we did not make)."""
    try:
        return int(name[:19]) / 1e9
    except ValueError:
        return 0.0


def backoff(attempts: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `attempts` failures: exponential, capped, with "equal jitter" (between half
    and all of the delay) so that entries failing together do not retry in lockstep."""
    delay = min(policy.maximum, policy.initial * policy.multiplier ** max(attempts - 1, 0))
    return delay * (0.5 + 0.5 * rand())


# ---- the spool on disk -------------------------------------------------------------------------------

class Spool:
    """The folders of one router. Blocking methods: call them from a worker thread."""

    def __init__(self, root: Path | str, *, sync: bool = True) -> None:
        self.root = Path(root).absolute()
        self.sync = sync
        self._lock_fd = -1
        # Destinations this process receives for but does not deliver to (a worker without a share of their
        # associations): their new entries go to inbox/DEST, where the router's first process takes them.
        self.hand_off: frozenset[str] = frozenset()

    # -- life cycle
    def open(self) -> None:
        """Create the folders and take the lock; SpoolBusy when another router has it."""
        for sub in (RECEIVED, TMP, QUEUE, DEAD, INBOX):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(f"another router is using the spool {self.root}") from None
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- folders
    @property
    def received(self) -> Path:
        return self.root / RECEIVED

    @property
    def tmp(self) -> Path:
        return self.root / TMP

    def queue_dir(self, destination: str) -> Path:
        return self.root / QUEUE / destination

    def dead_dir(self, destination: str) -> Path:
        return self.root / DEAD / destination

    def inbox_dir(self, destination: str) -> Path:
        return self.root / INBOX / destination

    def prepare(self, destinations: Iterable[str]) -> None:
        for d in destinations:
            for folder in (self.queue_dir(d), self.dead_dir(d), self.inbox_dir(d)):
                folder.mkdir(parents=True, exist_ok=True)
        if self.sync:
            for sub in (QUEUE, DEAD, INBOX):
                fsync_dir(str(self.root / sub))

    def path(self, entry: Entry) -> Path:
        return self.queue_dir(entry.destination) / f"{entry.name}{_DCM}"

    def entry_dir(self, destination: str) -> Path:
        """Where a new entry is filed: its queue, or inbox/DEST when another process delivers to it."""
        return self.inbox_dir(destination) if destination in self.hand_off else self.queue_dir(destination)

    def new_path(self, entry: Entry) -> Path:
        return self.entry_dir(entry.destination) / f"{entry.name}{_DCM}"

    def sweep_received(self) -> int:
        """Instances a crash caught between the spool and the queue: never acknowledged, so the sender
        still has them (it got no Success); drop them."""
        removed = 0
        with os.scandir(self.received) as it:
            for e in it:
                if e.name.endswith(_DCM) and e.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)
                        removed += 1
        with os.scandir(self.tmp) as it:  # proxy data sets of a run that died: their senders got no answer
            for e in it:
                if e.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)
        return removed

    # -- entering the queue
    def link(self, source: Path, entry: Entry) -> None:
        """Add `source` (a durable file) to a queue as `entry`: a hard link, or a copy (synced when the
        spool is) where the file system has none. Durable once its folder (`entry_dir`) is synced."""
        target = self.new_path(entry)
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            with open(source, "rb") as src:
                self.write_new(iter(lambda: src.read(1 << 20), b""), entry)

    def write_new(self, data: Iterable[bytes | memoryview], entry: Entry) -> None:
        """Add a file made here (a morphed instance) to a queue: temp file, fsync, rename."""
        final = self.new_path(entry)
        temp = final.with_name(f".{entry.name}.tmp")
        with open(temp, "wb") as f:
            f.writelines(data)
            f.flush()
            if self.sync:
                os.fdatasync(f.fileno())
        os.replace(temp, final)

    def write_state(self, entry: Entry, *, folder: Path | None = None) -> None:
        folder = folder or self.queue_dir(entry.destination)
        final = folder / f"{entry.name}{_JSON}"
        temp = folder / f".{entry.name}.json.tmp"
        temp.write_bytes(entry.to_json())
        os.replace(temp, final)

    # -- reading the queue back (start-up)
    def load(self, destination: str) -> list[Entry]:
        """Every entry of a destination's queue, in arrival order; leftover temp files removed."""
        folder = self.queue_dir(destination)
        names: list[str] = []
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)  # a morphed file or a state update cut short
                elif e.name.endswith(_DCM):
                    names.append(e.name[: -len(_DCM)])
                elif e.name.endswith(_JSON) and not os.path.exists(folder / (e.name[: -len(_JSON)] + _DCM)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(e.path)  # the state of an entry delivered just before a crash
        return [self.read_entry(folder, name, destination) for name in sorted(names)]

    def read_entry(self, folder: Path, name: str, destination: str) -> Entry:
        """An entry's state: its .json, else (none written, or torn) its name and file meta."""
        with contextlib.suppress(OSError, ValueError, TypeError):
            entry = Entry.from_json((folder / f"{name}{_JSON}").read_bytes())
            entry.name, entry.destination = name, destination
            if entry.sop_instance_uid and entry.transfer_syntax:
                return entry
        entry = Entry(name=name, destination=destination, received=name_time(name), rule=rule_of(name))
        with contextlib.suppress(OSError, ValueError):
            meta = read_file_meta(folder / f"{name}{_DCM}")
            entry.sop_instance_uid, entry.sop_class_uid = meta.sop_instance_uid, meta.sop_class_uid
            entry.transfer_syntax = meta.transfer_syntax
            entry.calling_ae = meta.source_ae_title or ""
        return entry

    # -- leaving the queue
    def discard(self, entry: Entry) -> None:
        """Undo link/write_new (the instance was refused after all)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.new_path(entry))

    def remove(self, entry: Entry) -> None:
        """Delivered: no fsync (a resurrected entry is sent again: at least once)."""
        folder = self.queue_dir(entry.destination)
        for suffix in (_DCM, _JSON):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / f"{entry.name}{suffix}")

    def dead_letter(self, entry: Entry, reason: str, now: float) -> None:
        """Move an entry to dead/DEST with its reason: state first, then the file (a crash between
        leaves it queued, to be tried again), then the old state."""
        entry.reason = reason
        entry.not_before = now
        dead = self.dead_dir(entry.destination)
        self.write_state(entry, folder=dead)
        os.replace(self.path(entry), dead / f"{entry.name}{_DCM}")
        if self.sync:
            fsync_dir(str(dead))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.queue_dir(entry.destination) / f"{entry.name}{_JSON}")

    def dead_letters(self, destination: str) -> list[Entry]:
        folder = self.dead_dir(destination)
        if not folder.is_dir():
            return []
        names = sorted(p.stem for p in folder.glob(f"*{_DCM}"))
        return [self.read_entry(folder, n, destination) for n in names]

    def retry(self, entry: Entry) -> Entry:
        """Hand a dead letter back (`aiodicom route retry`): into inbox/DEST with a fresh count, under a new
        name, so that it queues anew: behind what is queued, and max_age counting from now (with its old
        name, one dead by age would die again before any attempt). `received` keeps the first arrival."""
        inbox = self.inbox_dir(entry.destination)
        inbox.mkdir(parents=True, exist_ok=True)
        back = dataclasses.replace(entry, name=entry_name(new_name(), entry.rule or rule_of(entry.name)), attempts=0,
                                   not_before=0.0, reason=None, last_error=None)
        self.write_state(back, folder=inbox)  # first: the router may take the file as soon as it lands
        os.replace(self.dead_dir(entry.destination) / f"{entry.name}{_DCM}", inbox / f"{back.name}{_DCM}")
        if self.sync:
            fsync_dir(str(inbox))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dead_dir(entry.destination) / f"{entry.name}{_JSON}")
        return back

    def take_inbox(self, destination: str) -> tuple[list[Entry], int]:
        """Move what landed in inbox/DEST into the queue: dead letters `route retry` handed back, and instances
        a worker received for a destination only this process delivers to. Returns the new entries, and how
        many of them are dead letters (they have a state; a worker's entries have none yet)."""
        inbox = self.inbox_dir(destination)
        taken: list[Entry] = []
        retried = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(inbox) as it:
            names = sorted(e.name[: -len(_DCM)] for e in it if e.name.endswith(_DCM) and not e.name.startswith("."))
        if not names:
            return taken, retried
        queue = self.queue_dir(destination)
        for name in names:
            entry = self.read_entry(inbox, name, destination)
            entry.attempts, entry.not_before, entry.reason = 0, 0.0, None
            if (inbox / f"{name}{_JSON}").exists():  # a dead letter's state: its first arrival, rule, study
                self.write_state(entry, folder=queue)
                retried += 1
            os.replace(inbox / f"{name}{_DCM}", queue / f"{name}{_DCM}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(inbox / f"{name}{_JSON}")
            taken.append(entry)
        if self.sync:
            fsync_dir(str(queue))
        return taken, retried


# ---- the queue in memory -----------------------------------------------------------------------------

class ReadyQueue:
    """One destination's entries in memory. Names sort by arrival, and an entry put back after a connection
    failure returns to its place. `get()` waits for one that is ready and for the destination's pause to end.

    By default ordered by (not before, name): first in, first out among entries that are ready, and an entry
    waiting for its retry lets the others pass. With `fifo` (a destination served by one association, whose
    order per study is promised) ordered by name alone: nothing is sent past an entry waiting for its retry,
    until it is delivered or dead-lettered. Head-of-line blocking is the price of the order."""

    def __init__(self, clock: Callable[[], float] = time.time, *, fifo: bool = False) -> None:
        self._heap: list[tuple[float, str, Entry]] = []
        self._changed = anyio.Event()
        self._clock = clock
        self.fifo = fifo
        self.paused_until = 0.0
        self.in_flight = 0

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Entry]:
        return (e for _, _, e in self._heap)

    def push(self, entry: Entry) -> None:
        heapq.heappush(self._heap, (0.0 if self.fifo else entry.not_before, entry.name, entry))
        self._wake()

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self._wake()

    def resume(self) -> None:
        if self.paused_until:
            self.paused_until = 0.0
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def pop_ready(self, now: float) -> Entry | None:
        if self._heap and now >= self.paused_until and self._heap[0][2].not_before <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def wait_time(self, now: float) -> float:
        """Seconds until something may be ready (inf when empty)."""
        if not self._heap:
            return float("inf")
        return max(self._heap[0][2].not_before, self.paused_until) - now

    async def get(self) -> Entry:
        while True:
            now = self._clock()
            entry = self.pop_ready(now)
            if entry is not None:
                return entry
            changed = self._changed
            with anyio.move_on_after(min(self.wait_time(now), 3600.0)):
                await changed.wait()

    def oldest(self) -> float | None:
        return min((e.received for _, _, e in self._heap), default=None)


def describe_entry(entry: Entry) -> dict[str, Any]:
    """The fields a status listing shows."""
    return {"name": entry.name, "sop_instance_uid": entry.sop_instance_uid, "rule": entry.rule,
            "attempts": entry.attempts, "last_error": entry.last_error, "reason": entry.reason}


class DirSyncer:
    """fsync(2) of queue folders shared by concurrent callers: a caller needs one sync that *started*
    after its link; callers arriving while one runs share the next, so N concurrent instances cost about
    two folder syncs, not N."""

    def __init__(self, limiter: anyio.CapacityLimiter | None = None) -> None:
        self._limiter = limiter
        self._started: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._running: dict[str, anyio.Event] = {}
        self.syncs = 0  # folder syncs actually run (tests, status)

    async def sync(self, folder: str) -> None:
        target = self._started.get(folder, 0) + 1
        while self._done.get(folder, 0) < target:
            running = self._running.get(folder)
            if running is not None:
                await running.wait()
                continue
            event = self._running[folder] = anyio.Event()
            generation = self._started[folder] = self._started.get(folder, 0) + 1
            try:
                with anyio.CancelScope(shield=True):  # others wait on it: finish even when cancelled
                    await anyio.to_thread.run_sync(fsync_dir, folder, limiter=self._limiter)
                    self.syncs += 1
                self._done[folder] = generation
            finally:
                del self._running[folder]
                event.set()
