"""Receiving: the rules decide, and in store-and-forward mode the instance joins its destinations' queues
before the C-STORE Success (PS3.4 B.2.3: Success means the SCP took responsibility for the instance).

The data set is streamed to disk by the archive's FileStore (services/storage.py, archive/filestore.py),
and the rules see its first bytes as they arrive (a header peek, archive/peek.py: never decoded). So the
destination is known before the commit, and the commit (fdatasync, atomic rename, folder fsync, shared
between concurrent instances) files it straight into SPOOL/queue/DEST: one durable write per instance,
exactly what `aiodicom serve` pays. Other destinations get a hard link (a copy where the file system has
none; a morphed copy is written, synced and renamed instead), then one shared fsync of their folders.
An instance whose rule attributes lie past the first 64 KiB, or that only goes out morphed, is committed
to SPOOL/received first and linked from there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import time
import zlib
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

import anyio

from ..archive.errors import ArchiveError, NeedMoreData, PeekError
from ..archive.fileformat import encode_file_meta, meta_source_ae
from ..archive.filestore import FileStore, StoredInstance
from ..archive.peek import inflate_head, is_deflated, peek, peek_file
from ..archive.uid import validate_uid
from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import CStoreRQ
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..services.storage import StorageService
from ..uids import ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from .attributes import Facts
from .morph import Morph
from .queue import DirSyncer, Entry, ReadyQueue, Spool, entry_name, new_name
from .rules import Action, Decision, Delivery, RuleSet
from .status import DestinationStats

UNROUTED_COMMENT: Final = "no rule matches and no default action is configured"
HEAD: Final = 65_536  # data set bytes the rules may look at before the commit
_INFLATE_LIMIT: Final = 1 << 26  # a deflated data set is inflated at most this far to find rule attributes

# Where the commit running in this task files its instance (SpoolStore.path_for reads it).
_COMMIT_TO: ContextVar[Path | None] = ContextVar("aiodicom_route_commit_to", default=None)


class MorphFailed(Exception):
    """A rule's tag morphing could not be applied to this data set (it does not decode, or a value does
    not fit): the instance is refused, not queued."""


class SpoolStore(FileStore):
    """A FileStore that files each instance where the router says (a queue entry), else flat in its root
    under a unique name: these files are queue entries, not an archive (two copies of one SOP instance
    must never replace each other)."""

    def __init__(self, root: Path | str, **kwargs: Any) -> None:
        self._unique = itertools.count()
        super().__init__(root, **kwargs)

    def path_for(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> Path:
        validate_uid(sop_instance_uid, "SOP Instance UID")
        target = _COMMIT_TO.get()
        if target is not None:
            return target
        return self.root / f"{sop_instance_uid}.{os.getpid()}-{next(self._unique)}.dcm"


def morph_dataset(encoded: EncodedDataset, morph: Morph) -> tuple[EncodedDataset, str, str]:
    """Decode, morph and re-encode in the same transfer syntax (blocking). Returns the data set and its
    SOP Class and SOP Instance UIDs, which a morph may have changed."""
    ds = encoded.dataset()
    morph.apply(ds)
    out = EncodedDataset.from_dataset(ds, encoded.transfer_syntax)
    return out, str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))


def peek_head(head: bytes | bytearray | memoryview, transfer_syntax: str, tags: frozenset[int],
              *, complete: bool) -> dict[int, bytes]:
    """Rule attributes from the start of a data set; NeedMoreData when they lie past it."""
    if not tags:
        return {}
    data: Any = head
    if is_deflated(transfer_syntax):
        data = inflate_head(head, 4 * HEAD)
        complete = complete and len(data) < 4 * HEAD
    return peek(data, transfer_syntax, tags, complete=complete)


def peek_encoded(encoded: EncodedDataset, tags: frozenset[int]) -> dict[int, bytes]:
    """The raw top-level values of `tags` in a received data set (memory or spool file), never decoded."""
    if not tags:
        return {}
    ts = encoded.transfer_syntax
    memory = encoded.memory
    if memory is None:
        assert encoded.path is not None
        with open(encoded.path, "rb") as f:
            return peek_file(f.fileno(), encoded.offset, ts, tags)
    data: Any = memory
    complete = True
    if is_deflated(ts):
        data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(memory, _INFLATE_LIMIT)
        complete = len(data) < _INFLATE_LIMIT
    try:
        return peek(data, ts, tags, complete=complete)
    except NeedMoreData as exc:
        return exc.found


class _TeeSink:
    """The storage sink, keeping a copy of the first HEAD bytes for the rules."""

    __slots__ = ("head", "inner", "keep", "size")

    def __init__(self, inner: Any, keep: int = HEAD) -> None:
        self.inner = inner
        self.head = bytearray()
        self.keep = keep  # 0 when no rule reads the data set
        self.size = 0

    def write(self, data: memoryview) -> None:
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.size += len(data)
        self.inner.write(data)

    def close(self) -> _Received:
        return _Received(self.inner.close(), self)

    def abort(self) -> None:
        self.inner.abort()


@dataclasses.dataclass(slots=True)
class _Received:
    inner: Any  # what the storage sink returned (holds the IncomingInstance)
    tee: _TeeSink

    @property
    def incoming(self) -> Any:
        return self.inner.incoming

    def discard(self) -> None:  # the association calls it when the handler is done
        self.inner.discard()


class Intake:
    """What every listener does with a received instance: decide by the rules, queue it (store-and-forward),
    and log the instances that go nowhere."""

    def __init__(self, *, rules: RuleSet, spool: Spool, queues: dict[str, ReadyQueue], log: Any,
                 limiter: anyio.CapacityLimiter | None = None, syncer: DirSyncer | None = None,
                 clock: Callable[[], float] = time.time, stats: dict[str, DestinationStats] | None = None) -> None:
        self.rules, self.spool, self.queues, self.log = rules, spool, queues, log
        self.stats = stats or {}  # counts what is queued for each destination (route status: in/min)
        self.limiter = limiter
        self.syncer = syncer or DirSyncer(limiter)
        self.clock = clock

    @property
    def tags(self) -> frozenset[int]:
        return self.rules.tags

    def decide(self, req: ServiceRequest, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
               attributes: Any) -> Decision:
        assoc = req.assoc
        facts = Facts(calling_ae=assoc.calling_ae, called_ae=assoc.called_ae, peer=str(assoc.peer[0]),
                      sop_class_uid=sop_class_uid, transfer_syntax=transfer_syntax, attributes=attributes)
        decision = self.rules.route(facts)
        if decision.action is Action.DROP:
            self.log.info("routed", sop_instance=sop_instance_uid, rule=",".join(decision.rules), destination=None,
                          outcome="dropped", calling=assoc.calling_ae)
        elif decision.action is not Action.FORWARD:
            self.log.warning("routed", sop_instance=sop_instance_uid, rule=",".join(decision.rules), destination=None,
                             outcome="rejected", calling=assoc.calling_ae, reason=self.answer(decision).error_comment)
        return decision

    @staticmethod
    def answer(decision: Decision) -> Result:
        """The C-STORE response to an instance the rules send nowhere."""
        if decision.action is Action.UNROUTED:
            # PS3.4 B.2.3 Refused: Out of Resources: not taken, and transient (the configuration may be fixed),
            # so the sender keeps the instance and may send it again
            return Result(status=st.OUT_OF_RESOURCES, error_comment=UNROUTED_COMMENT)
        if decision.action is Action.REJECT:
            # PS3.7 C.5.x: Refused: Not Authorized, the closest general status to "policy says no"
            return Result(status=st.NOT_AUTHORIZED, error_comment=f"refused by routing rule {decision.rules[-1]}")
        return Result(status=st.SUCCESS)  # dropped: taken, and discarded as a rule says

    def template(self, req: ServiceRequest, stored: StoredInstance, name: str) -> Entry:
        return Entry(name=name, destination="", sop_instance_uid=stored.sop_instance_uid,
                     sop_class_uid=stored.sop_class_uid, transfer_syntax=stored.transfer_syntax,
                     study_instance_uid=stored.study_instance_uid, calling_ae=req.assoc.calling_ae,
                     received=self.clock(), dataset_offset=stored.dataset_offset)

    async def admit(self, req: ServiceRequest, received: _Received) -> Result:
        """Commit a received instance into its queues and answer."""
        incoming, tee = received.incoming, received.tee
        msg: CStoreRQ = req.message  # type: ignore[assignment]
        try:
            attributes: dict[int, bytes] | None = peek_head(tee.head, incoming.transfer_syntax, self.tags,
                                                            complete=tee.size <= len(tee.head))
        except (NeedMoreData, PeekError):
            attributes = None  # decided after the commit, from the attributes it reads (or it fails there)
        if attributes is None:
            stored = await incoming.commit()
            return await self.enqueue(stored, req)
        decision = self.decide(req, sop_class_uid=msg.affected_sop_class_uid,
                               sop_instance_uid=msg.affected_sop_instance_uid,
                               transfer_syntax=incoming.transfer_syntax, attributes=attributes)
        if decision.action is not Action.FORWARD:
            incoming.abort()  # nothing to keep: no commit, no fsync
            return self.answer(decision)
        # committed straight into a queue this process delivers from (another process moves what is in inbox/)
        direct = next((d for d in decision.deliveries if d.morph is None and d.destination not in self.spool.hand_off),
                      None)
        if direct is None:  # only morphed or handed-over copies go out: the original waits in received/ meanwhile
            stored = await incoming.commit()
            return await self.enqueue(stored, req, decision)
        name = new_name()
        token = _COMMIT_TO.set(self.spool.queue_dir(direct.destination) / f"{entry_name(name, direct.rule)}.dcm")
        try:
            stored = await incoming.commit()
        finally:
            _COMMIT_TO.reset(token)
        template = self.template(req, stored, name)
        first = _entry(template, direct)
        rest = tuple(d for d in decision.deliveries if d is not direct)
        try:
            entries = [first]
            if rest:
                entries += await self._fan_out(self.spool.path(first), rest, template)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.spool.remove, first, limiter=self.limiter)
            raise
        self._push(entries)
        return Result(status=st.SUCCESS)

    def _push(self, entries: list[Entry]) -> None:
        now = self.clock()
        for entry in entries:
            stats = self.stats.get(entry.destination)
            if stats is not None:
                stats.queued(now)
            if entry.destination not in self.spool.hand_off:  # the first process takes those from inbox/
                self.queues[entry.destination].push(entry)

    async def enqueue(self, stored: StoredInstance, req: ServiceRequest, decision: Decision | None = None) -> Result:
        """Route a durable file in SPOOL/received into its queues (durably) and answer; the file is gone after."""
        try:
            if decision is None:
                decision = self.decide(req, sop_class_uid=stored.sop_class_uid,
                                       sop_instance_uid=stored.sop_instance_uid,
                                       transfer_syntax=stored.transfer_syntax, attributes=stored.attributes)
            if decision.action is not Action.FORWARD:
                return self.answer(decision)
            template = self.template(req, stored, new_name())
            entries = await self._fan_out(stored.path, decision.deliveries, template)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_unlink, stored.path, limiter=self.limiter)
        self._push(entries)
        return Result(status=st.SUCCESS)

    async def _fan_out(self, source: Path, deliveries: tuple[Delivery, ...], template: Entry) -> list[Entry]:
        """Entries for `deliveries` made from the durable file `source`, durable when this returns."""
        entries = await anyio.to_thread.run_sync(self._place, source, deliveries, template, limiter=self.limiter)
        if self.spool.sync:
            try:
                async with anyio.create_task_group() as tg:
                    for dest in {e.destination for e in entries}:
                        tg.start_soon(self.syncer.sync, str(self.spool.entry_dir(dest)))
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._remove_all, entries, limiter=self.limiter)
                raise
        return entries

    def _remove_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.spool.discard(entry)

    def _place(self, source: Path, deliveries: tuple[Delivery, ...], template: Entry) -> list[Entry]:
        """Worker thread: every queue entry of one instance; all or none (then the error is raised)."""
        made: list[Entry] = []
        try:
            by_morph: dict[int, list[Delivery]] = {}
            for d in deliveries:
                if d.morph is None:
                    entry = _entry(template, d)
                    self.spool.link(source, entry)
                    made.append(entry)
                else:
                    by_morph.setdefault(id(d.morph), []).append(d)
            for group in by_morph.values():
                made += self._place_morphed(source, group, template)
        except BaseException:
            self._remove_all(made)
            raise
        return made

    def _place_morphed(self, source: Path, group: list[Delivery], template: Entry) -> list[Entry]:
        encoded, _ = EncodedDataset.from_file(source)
        morph = group[0].morph
        assert morph is not None
        try:
            morphed, sop_class, sop_instance = morph_dataset(encoded, morph)
        except Exception as exc:  # pydicom raises many types on data sets it cannot decode or encode
            raise MorphFailed(f"rule {group[0].rule}: cannot morph the data set: {exc}") from exc
        sop_class, sop_instance = sop_class or template.sop_class_uid, sop_instance or template.sop_instance_uid
        header = encode_file_meta(sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                  transfer_syntax=template.transfer_syntax, source_ae=meta_source_ae(template.calling_ae))
        made: list[Entry] = []
        # linked from a file in a queue of this process: the first process may move one in inbox/ any time
        group = sorted(group, key=lambda d: d.destination in self.spool.hand_off)
        for d in group:
            entry = _entry(template, d, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                           dataset_offset=len(header))
            if not made or made[0].destination in self.spool.hand_off:
                self.spool.write_new((header, morphed.memory or morphed.read_bytes()), entry)
            else:
                self.spool.link(self.spool.new_path(made[0]), entry)
            made.append(entry)
        return made


def _entry(template: Entry, delivery: Delivery, **changes: Any) -> Entry:
    """The entry of one delivery; `template.name` is the instance's base name (new_name)."""
    return dataclasses.replace(template, name=entry_name(template.name, delivery.rule),
                               destination=delivery.destination, rule=delivery.rule, **changes)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class StoreAndForward:
    """The C-STORE SCP of a store-and-forward listener: Success once the instance is in its queues."""

    def __init__(self, intake: Intake, store: FileStore) -> None:
        self.intake = intake
        self.storage = StorageService(store, sop_classes=STORAGE_SOP_CLASSES, transfer_syntaxes=ALL_TRANSFER_SYNTAXES)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support(self.storage.sop_classes, self.storage.transfer_syntaxes)
        dispatcher.add(CStoreRQ, self.handle, sink=self.open_sink)

    def open_sink(self, assoc: Any, message: Any, context_id: int) -> Any:
        """The storage service's sink (fragments straight into the spool file), teed for the rules."""
        sink = self.storage.open_sink(assoc, message, context_id)
        if not hasattr(sink, "write"):
            return sink  # a ReceiveFailed passes through
        return _TeeSink(sink, HEAD if self.intake.tags else 0)

    async def handle(self, req: ServiceRequest) -> Result:
        msg: CStoreRQ = req.message  # type: ignore[assignment]
        received = req.payload
        if not isinstance(received, _Received):
            return Result(status=st.CANNOT_UNDERSTAND, error_comment="C-STORE-RQ without a data set")
        try:
            return await self.intake.admit(req, received)
        except MorphFailed as exc:
            req.assoc.log.warning("instance refused", error=str(exc), sop_instance=msg.affected_sop_instance_uid)
            return Result(status=st.CANNOT_UNDERSTAND, error_comment=str(exc))
        except ArchiveError as exc:  # the data set cannot be filed (bad UIDs, mismatch), or the disk failed
            req.assoc.log.warning("C-STORE failed", error=str(exc), status=f"0x{exc.status:04X}",
                                  sop_instance=msg.affected_sop_instance_uid)
            return Result(status=exc.status, error_comment=str(exc))
        except OSError as exc:
            req.assoc.log.error("cannot queue the instance", error=str(exc), sop_instance=msg.affected_sop_instance_uid)
            return Result(status=st.OUT_OF_RESOURCES, error_comment=f"cannot queue: {exc}")
