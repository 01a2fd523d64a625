"""Query/Retrieve C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3).

C-MOVE opens a sub-association to the destination (an AE we know by title) proposing exactly the
SOP classes and transfer syntaxes of the matched instances: each stored syntax in a context of its
own, plus an uncompressed fallback. C-GET sends the C-STORE sub-operations back on the requesting
association, in the contexts (and SCP/SCU roles) the requestor negotiated. An instance whose syntax the
peer did not accept is converted into one it did: between uncompressed syntaxes always, from a
compressed one when a decoder is installed (the convert extra; dimse/transcode.py). Both report
progress as Pending responses with sub-operation counts, honour C-CANCEL between sub-operations, list
what failed in Failed SOP Instance UID List and log why each failed.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from ..archive.index import MODEL_LEVELS, UNIQUE_KEYS, ArchiveIndex, Level, Model, StoredInstance
from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import CGetRQ, CMoveRQ
from ..net.client import Client, connect
from ..net.dispatch import Dispatcher, OperationCancelled, Result, ServiceRequest
from ..net.errors import AssociationError, NoPresentationContext
from ..uids import (
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    is_uncompressed,
)
from .query import IdentifierError

MOVE_MODELS = {PATIENT_ROOT_MOVE: Model.PATIENT_ROOT, STUDY_ROOT_MOVE: Model.STUDY_ROOT,
               PATIENT_STUDY_ONLY_MOVE: Model.PATIENT_STUDY_ONLY}
GET_MODELS = {PATIENT_ROOT_GET: Model.PATIENT_ROOT, STUDY_ROOT_GET: Model.STUDY_ROOT,
              PATIENT_STUDY_ONLY_GET: Model.PATIENT_STUDY_ONLY}
MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class Peer:
    """A move destination: where an AE title lives."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None


_US_MAX = 0xFFFF


def _model(req: ServiceRequest, models: Mapping[str, Model], operation: str) -> Model:
    """The information model of a C-MOVE/C-GET; 0x0122 for another operation's class, e.g. FIND (PS3.4 C.4.2.1.5)."""
    model = models.get(req.message.affected_sop_class_uid)
    if model is None:
        raise IdentifierError(f"{req.message.affected_sop_class_uid} is not a {operation} SOP class",
                              status=st.SOP_CLASS_NOT_SUPPORTED)
    return model


def _refused(req: ServiceRequest, operation: str, exc: IdentifierError) -> Result:
    """The answer to a C-MOVE/C-GET refused before any sub-operation, and the log line that says why."""
    req.assoc.log.warning(f"{operation} refused", status=f"0x{exc.status:04X}", reason=str(exc))
    return exc.result()


@dataclass(slots=True)
class Counts:
    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def pending(self) -> Result:
        return Result(status=st.PENDING, fields=self._fields(remaining=True))

    def _fields(self, *, remaining: bool) -> dict[str, int]:
        # The counts are US (PS3.7 9.3.3.2, 9.3.4.2): a retrieve of more than 65,535 instances goes on and
        # reports 65535 until the true count fits (DCMTK keeps 16-bit counts too), rather than failing.
        out = {"completed": min(self.completed, _US_MAX), "failed": min(self.failed, _US_MAX),
               "warning": min(self.warning, _US_MAX)}
        if remaining:
            out["remaining"] = min(self.remaining, _US_MAX)
        return out

    def final(self, *, cancelled: bool = False, comment: str | None = None) -> Result:
        """PS3.4 C.4.2.1.5: Success, Warning B000 (some failed or warned), A702 (none completed), Cancel."""
        if cancelled:
            status = st.CANCEL
        elif self.failed and not self.completed and not self.warning:
            status = st.OUT_OF_RESOURCES_SUBOPERATIONS
        elif self.failed or self.warning:
            status = st.SUBOPERATIONS_COMPLETE_WITH_FAILURES
        else:
            status = st.SUCCESS
        dataset = None
        if self.failed_uids:
            dataset = Dataset()
            dataset.FailedSOPInstanceUIDList = self.failed_uids if len(self.failed_uids) > 1 else self.failed_uids[0]
        return Result(status=status, dataset=dataset, error_comment=comment,
                      fields=self._fields(remaining=cancelled))

    def add(self, status: int | None, uid: str) -> None:
        self.remaining -= 1
        category = None if status is None else st.category(status)
        if category is st.Category.SUCCESS:
            self.completed += 1
        elif category is st.Category.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(uid)


def retrieve_keys(identifier: Dataset, model: Model) -> tuple[Level, dict[str, list[str]]]:
    """The level and the unique keys that select what to retrieve (PS3.4 C.4.2.2.1): the key of the
    level (one value or a list of UIDs) and the single unique keys of the levels above."""
    raw = identifier.get("QueryRetrieveLevel")
    try:
        level = Level(str(raw or "").strip().upper())
    except ValueError:
        raise IdentifierError(f"unknown Query/Retrieve Level {raw!r}", (0x00080052,)) from None
    levels = MODEL_LEVELS[model]
    if level not in levels:
        raise IdentifierError(f"level {level} does not exist in this information model", (0x00080052,))
    uids: dict[str, list[str]] = {}
    for lv in levels[: levels.index(level) + 1]:
        key = UNIQUE_KEYS[lv]
        value = identifier.get(key)
        if value is None or value == "":
            values = []
        elif isinstance(value, str):
            values = [v for v in value.split("\\") if v]
        else:  # a multi-valued UI key: a list of UIDs (C.2.2.2.2)
            values = [str(v) for v in value if v]
        if lv == level and not values:
            raise IdentifierError(f"{key} is required for a {level} level retrieve")
        if values:
            uids[key] = values
    return level, uids


class RetrieveService:
    def __init__(self, index: ArchiveIndex, *, peers: Mapping[str, Peer] | None = None, ae_title: str = "AIODICOM",
                 dimse_timeout: float = 60.0) -> None:
        self.index = index
        self.peers = dict(peers or {})
        self.ae_title = ae_title
        self.dimse_timeout = dimse_timeout

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support([*MOVE_MODELS, *GET_MODELS], UNCOMPRESSED_TRANSFER_SYNTAXES)
        for uid in (*MOVE_MODELS, *GET_MODELS):
            dispatcher.extended[uid] = lambda info: bytes(1 if b == 1 else 0 for b in info[:1])  # relational-retrieval
        dispatcher.add(CMoveRQ, self.move)
        dispatcher.add(CGetRQ, self.get)
        # a C-GET SCU receives its instances as an SCP: accept that role for every storage class (C.4.3.1)
        dispatcher.scp_role_classes.update(STORAGE_SOP_CLASSES)

    async def _select(self, req: ServiceRequest, model: Model) -> list[StoredInstance]:
        identifier = req.dataset()
        if identifier is None:
            raise IdentifierError("request without identifier")
        level, uids = retrieve_keys(identifier, model)
        return [inst async for inst in self.index.instances(level, uids)]

    async def move(self, req: ServiceRequest) -> AsyncIterator[Result]:
        try:
            model = _model(req, MOVE_MODELS, "C-MOVE")  # before the destination: the request itself is wrong
        except IdentifierError as exc:
            yield _refused(req, "C-MOVE", exc)
            return
        destination = req.message.move_destination.strip()
        peer = self.peers.get(destination)
        if peer is None:
            req.assoc.log.warning("C-MOVE refused: unknown destination", destination=destination,
                                  known=sorted(self.peers))
            yield Result(status=st.MOVE_DESTINATION_UNKNOWN, error_comment=f"unknown destination {destination!r}")
            return
        try:
            instances = await self._select(req, model)
        except IdentifierError as exc:
            yield _refused(req, "C-MOVE", exc)
            return
        counts = Counts(remaining=len(instances))
        if not instances:
            yield counts.final()
            return
        contexts = sub_association_contexts(instances)
        try:
            async with connect(peer.host, peer.port, calling_ae=self.ae_title, called_ae=destination,
                               contexts=contexts, ssl_context=peer.ssl_context, dimse_timeout=self.dimse_timeout,
                               log=req.assoc.log.bind(sub_association=destination)) as sub:
                origin = (req.assoc.calling_ae, req.message.message_id)
                log = req.assoc.log.bind(sub_association=destination)
                sub_ops = self._sub_operations(req, instances, counts, lambda inst: _store(sub, inst, origin, log))
                async with contextlib.aclosing(sub_ops):
                    async for result in sub_ops:
                        try:
                            yield result
                        except OperationCancelled:  # req.cancelled is set: the loop answers Cancel with counts
                            continue
        except AssociationError as exc:
            req.assoc.log.warning("C-MOVE sub-association failed", destination=destination,
                                  address=f"{peer.host}:{peer.port}", error=str(exc))
            for inst in instances[counts.completed + counts.failed + counts.warning:]:
                counts.add(None, inst.sop_instance_uid)
            yield counts.final(comment=f"sub-association to {destination}: {exc}")

    async def get(self, req: ServiceRequest) -> AsyncIterator[Result]:
        try:
            instances = await self._select(req, _model(req, GET_MODELS, "C-GET"))
        except IdentifierError as exc:
            yield _refused(req, "C-GET", exc)
            return
        counts = Counts(remaining=len(instances))
        back = Client(req.assoc)
        roles = req.assoc.negotiated.roles

        async def store_back(inst: StoredInstance) -> int | None:
            # PS3.4 C.4.3.1: the requestor must have accepted the SCP role for the instance's class
            if not roles.get(inst.sop_class_uid, (True, False))[1]:
                req.assoc.log.warning("sub-operation failed", sop_instance=inst.sop_instance_uid,
                                      reason="the requestor did not accept the SCP role for its SOP class")
                return None
            return await _store(back, inst, None, req.assoc.log)

        async with contextlib.aclosing(self._sub_operations(req, instances, counts, store_back)) as sub_ops:
            async for result in sub_ops:
                try:
                    yield result
                except OperationCancelled:  # req.cancelled is set: the loop answers Cancel with counts
                    continue

    async def _sub_operations(self, req, instances, counts, store) -> AsyncIterator[Result]:
        """One C-STORE per instance, a Pending after each; a C-CANCEL stops them between two (C.4.2.3.1)."""
        for inst in instances:
            if req.cancelled.is_set():
                yield counts.final(cancelled=True)
                return
            status = await store(inst)
            counts.add(status, inst.sop_instance_uid)
            if counts.remaining:
                yield counts.pending()
        yield counts.final()


async def _store(client: Client, inst: StoredInstance, origin: tuple[str, int] | None, log: Any) -> int | None:
    """One C-STORE sub-operation; None (logged with the reason) when it could not even be sent."""
    try:
        encoded, _ = EncodedDataset.from_file(inst.path)
    except (OSError, ValueError) as exc:
        log.warning("sub-operation failed", sop_instance=inst.sop_instance_uid, reason=f"cannot read the file: {exc}")
        return None
    try:
        # converted first when the peer accepted the class only in other syntaxes (Client.store)
        status = await client.store(encoded, sop_class_uid=inst.sop_class_uid, sop_instance_uid=inst.sop_instance_uid,
                                    move_originator=origin)
    except NoPresentationContext as exc:
        log.warning("sub-operation failed", sop_instance=inst.sop_instance_uid, reason=str(exc))
        return None
    except AssociationError:
        raise
    except Exception as exc:  # e.g. a data set pydicom cannot decode for a conversion
        log.warning("sub-operation failed", sop_instance=inst.sop_instance_uid, reason=f"{type(exc).__name__}: {exc}")
        return None
    finally:
        with contextlib.suppress(Exception):
            encoded.close()
    return status.code


def sub_association_contexts(instances: list[StoredInstance]) -> list[tuple[str, tuple[str, ...]]]:
    """Each (SOP class, stored syntax) in a context of its own, plus one uncompressed fallback per class."""
    contexts: list[tuple[str, tuple[str, ...]]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for inst in instances:
        wanted = [(inst.sop_class_uid, (inst.transfer_syntax,))]
        fallback = tuple(ts for ts in UNCOMPRESSED_TRANSFER_SYNTAXES if ts != inst.transfer_syntax
                         or not is_uncompressed(inst.transfer_syntax))
        wanted.append((inst.sop_class_uid, fallback))
        for ctx in wanted:
            if ctx not in seen and len(contexts) < MAX_CONTEXTS:
                seen.add(ctx)
                contexts.append(ctx)
    return contexts


def install(dispatcher: Dispatcher, index: ArchiveIndex, **kwargs) -> RetrieveService:
    service = RetrieveService(index, **kwargs)
    service.install(dispatcher)
    return service

