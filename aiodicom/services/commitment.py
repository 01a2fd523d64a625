"""Storage Commitment Push Model SCP (PS3.4 Annex J): N-ACTION in, N-EVENT-REPORT out.

The N-ACTION (Request Storage Commitment, action type 1) on the well-known SOP instance names the
instances by class and UID (Table J.3-1). Success means the request is kept (J.3.2.1.3): it is
written to the workflow database first, so it survives a restart. The report (J.3.3.1.2) then says,
for each instance, whether the archive holds it with that SOP class: event type 1 when all are
committed, 2 with a Failed SOP Sequence and a Failure Reason per instance (PS3.3 C.14.1.1) otherwise.
It goes on the requesting association while that is open, else on a new association to the
requesting AE (a known peer), proposing the SCP role for us (J.3.3.1.3 note: the SCU accepts an
association where the SCP role is proposed by the commitment SCP). Undelivered reports are retried
with a growing delay, and after a restart, until delivered; then the Transaction UID is spent.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import anyio
import anyio.abc
import anyio.to_thread
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from ..archive.index import ArchiveIndex, Level, StoredInstance
from ..archive.uid import is_valid_uid
from ..archive.workflow_db import CommitmentRecord, WorkflowDb
from ..dimse import status as st
from ..dimse.messages import NActionRQ
from ..log import get_logger
from ..net.client import Client, connect
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..net.errors import AssociationError, NoPresentationContext
from ..uids import STORAGE_SOP_CLASSES, UNCOMPRESSED_TRANSFER_SYNTAXES
from ..ul.pdu import RoleSelection
from .retrieve import Peer
from .router import SopClassRouter

STORAGE_COMMITMENT_PUSH: Final = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE: Final = "1.2.840.10008.1.20.1.1"  # the well-known SOP instance (J.3.5)
REQUEST_STORAGE_COMMITMENT: Final = 1  # Action Type ID (J.3.2.1.1)
EVENT_ALL_COMMITTED: Final = 1  # Event Type IDs (J.3.3.1.1)
EVENT_FAILURES_EXIST: Final = 2

# Failure Reason (0008,1197) values, PS3.3 C.14.1.1
REASON_PROCESSING_FAILURE: Final = 0x0110
REASON_NO_SUCH_OBJECT_INSTANCE: Final = 0x0112
REASON_RESOURCE_LIMITATION: Final = 0x0213
REASON_SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
REASON_CLASS_INSTANCE_CONFLICT: Final = 0x0119
REASON_DUPLICATE_TRANSACTION_UID: Final = 0x0131
FAILURE_REASONS: Final[Mapping[int, str]] = {
    REASON_PROCESSING_FAILURE: "Processing failure",
    REASON_NO_SUCH_OBJECT_INSTANCE: "No such object instance",
    REASON_RESOURCE_LIMITATION: "Resource limitation",
    REASON_SOP_CLASS_NOT_SUPPORTED: "Referenced SOP Class not supported",
    REASON_CLASS_INSTANCE_CONFLICT: "Class / Instance conflict",
    REASON_DUPLICATE_TRANSACTION_UID: "Duplicate transaction UID",
}
_LOOKUP_BATCH: Final = 1000


class Refusal(Exception):
    """An N-ACTION refused with a PS3.7 status."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status, self.comment = status, comment


@dataclass(frozen=True, slots=True)
class InstanceRef:
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FailedInstance:
    sop_class_uid: str
    sop_instance_uid: str
    reason: int

    def __str__(self) -> str:
        return f"0x{self.reason:04X} {FAILURE_REASONS.get(self.reason, 'unknown reason')}"


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """The outcome of one Storage Commitment Request (Table J.3-2)."""

    transaction_uid: str
    committed: tuple[InstanceRef, ...]
    failed: tuple[FailedInstance, ...]

    @property
    def event_type(self) -> int:
        return EVENT_FAILURES_EXIST if self.failed else EVENT_ALL_COMMITTED

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dataset(self, retrieve_ae: str | None = None) -> Dataset:
        ds = Dataset()
        ds.TransactionUID = self.transaction_uid
        if retrieve_ae:
            ds.RetrieveAETitle = retrieve_ae
        if self.committed:  # J.3.3.1.2: present in both event types when any instance was committed
            ds.ReferencedSOPSequence = DicomSequence([_ref_item(r.sop_class_uid, r.sop_instance_uid)
                                                      for r in self.committed])
        if self.failed:
            items = []
            for f in self.failed:
                item = _ref_item(f.sop_class_uid, f.sop_instance_uid)
                item.FailureReason = f.reason
                items.append(item)
            ds.FailedSOPSequence = DicomSequence(items)
        return ds

    @classmethod
    def from_dataset(cls, ds: Dataset) -> CommitmentReport:
        committed = tuple(InstanceRef(_uid(i, "ReferencedSOPClassUID"), _uid(i, "ReferencedSOPInstanceUID"))
                          for i in ds.get("ReferencedSOPSequence") or ())
        failed = tuple(FailedInstance(_uid(i, "ReferencedSOPClassUID"), _uid(i, "ReferencedSOPInstanceUID"),
                                      int(i.get("FailureReason", REASON_PROCESSING_FAILURE)))
                       for i in ds.get("FailedSOPSequence") or ())
        return cls(_uid(ds, "TransactionUID"), committed, failed)


def _ref_item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def _uid(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip(" \0")


def commitment_request(transaction_uid: str, instances: Iterable[InstanceRef]) -> Dataset:
    """Action Information of a Storage Commitment Request (Table J.3-1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = DicomSequence([_ref_item(r.sop_class_uid, r.sop_instance_uid) for r in instances])
    return ds


def parse_request(ds: Dataset | None, *, max_references: float = 100_000) -> tuple[str, tuple[InstanceRef, ...]]:
    """Check Table J.3-1: a Transaction UID and at least one reference, every UID valid (PS3.5 §9.1)."""
    if ds is None:
        raise Refusal(st.INVALID_ARGUMENT_VALUE, "N-ACTION-RQ without Action Information")
    transaction_uid = _uid(ds, "TransactionUID")
    if not is_valid_uid(transaction_uid):
        raise Refusal(st.INVALID_ARGUMENT_VALUE, "Transaction UID (0008,1195) missing or not a UID")
    items = ds.get("ReferencedSOPSequence") or ()
    if not items:
        raise Refusal(st.INVALID_ARGUMENT_VALUE, "Referenced SOP Sequence (0008,1199) missing or empty")
    if len(items) > max_references:
        raise Refusal(st.RESOURCE_LIMITATION, f"{len(items)} references: at most {max_references} per request")
    refs = []
    for n, item in enumerate(items, 1):
        ref = InstanceRef(_uid(item, "ReferencedSOPClassUID"), _uid(item, "ReferencedSOPInstanceUID"))
        if not (is_valid_uid(ref.sop_class_uid) and is_valid_uid(ref.sop_instance_uid)):
            raise Refusal(st.INVALID_ARGUMENT_VALUE, f"Referenced SOP Sequence item {n}: missing or invalid UIDs")
        refs.append(ref)
    return transaction_uid, tuple(refs)


def assess(refs: Iterable[InstanceRef], stored: Mapping[str, StoredInstance], on_disk: Collection[str],
           sop_classes: Collection[str], transaction_uid: str) -> CommitmentReport:
    """Committed means: a storage class we keep, held by the archive under that class, its file there."""
    committed: list[InstanceRef] = []
    failed: list[FailedInstance] = []
    for ref in refs:
        inst = stored.get(ref.sop_instance_uid)
        if ref.sop_class_uid not in sop_classes:
            reason = REASON_SOP_CLASS_NOT_SUPPORTED
        elif inst is None or ref.sop_instance_uid not in on_disk:
            reason = REASON_NO_SUCH_OBJECT_INSTANCE
        elif inst.sop_class_uid != ref.sop_class_uid:
            reason = REASON_CLASS_INSTANCE_CONFLICT
        else:
            committed.append(ref)
            continue
        failed.append(FailedInstance(ref.sop_class_uid, ref.sop_instance_uid, reason))
    return CommitmentReport(transaction_uid, tuple(committed), tuple(failed))


def report_contexts() -> list[tuple[str, tuple[str, ...]]]:
    return [(STORAGE_COMMITMENT_PUSH, UNCOMPRESSED_TRANSFER_SYNTAXES)]


def report_roles() -> list[RoleSelection]:
    """For the association we open to report: we are the SCP of the class, not its SCU (PS3.7 D.3.3.4)."""
    return [RoleSelection(sop_class_uid=STORAGE_COMMITMENT_PUSH, scu_role=False, scp_role=True)]


class CommitmentService:
    """The commitment SCP. `install()` it in a dispatcher and keep `run()` running: it delivers reports."""

    def __init__(self, db: WorkflowDb, index: ArchiveIndex, *, peers: Mapping[str, Peer] | None = None,
                 ae_title: str = "AIODICOM", sop_classes: Collection[str] = STORAGE_SOP_CLASSES,
                 retry_interval: float = 10.0, max_retry_interval: float = 600.0, dimse_timeout: float = 60.0,
                 max_references: int = 100_000, log: Any = None) -> None:
        self.db = db
        self.index = index
        self.peers = dict(peers or {})
        self.ae_title = ae_title
        self.sop_classes = frozenset(sop_classes)
        self.retry_interval = retry_interval
        self.retries = True  # retry pending requests (every one in the database), not only this process's
        self.max_retry_interval = max_retry_interval
        self.dimse_timeout = dimse_timeout
        self.max_references = max_references
        self.log = log or get_logger(service="storage-commitment")
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](math.inf)
        self._inflight: set[str] = set()

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support([STORAGE_COMMITMENT_PUSH], UNCOMPRESSED_TRANSFER_SYNTAXES)
        SopClassRouter.for_dispatcher(dispatcher).add(NActionRQ, STORAGE_COMMITMENT_PUSH, self.action)

    async def action(self, req: ServiceRequest) -> Result:
        message = cast(NActionRQ, req.message)
        if message.action_type_id != REQUEST_STORAGE_COMMITMENT:
            return Result(status=st.NO_SUCH_ACTION_TYPE,
                          error_comment=f"action type {message.action_type_id}: only 1 (Request Storage Commitment)")
        if message.requested_sop_instance_uid != STORAGE_COMMITMENT_INSTANCE:
            return Result(status=st.NO_SUCH_OBJECT_INSTANCE,
                          error_comment=f"the commitment SOP instance is {STORAGE_COMMITMENT_INSTANCE} (PS3.4 J.3.5)")
        try:
            transaction_uid, refs = parse_request(req.dataset(), max_references=self.max_references)
        except Refusal as refusal:
            req.assoc.log.info("commitment request refused", reason=refusal.comment)
            return Result(status=refusal.status, error_comment=refusal.comment)
        kept = commitment_request(transaction_uid, refs)
        if not await self.db.add_commitment(transaction_uid, req.assoc.calling_ae, kept):
            return Result(status=st.INVALID_ARGUMENT_VALUE,
                          error_comment="Transaction UID already used (PS3.4 J.3.3.1.2: never reused)")
        req.assoc.log.info("commitment requested", transaction=transaction_uid, instances=len(refs))
        # The report goes out after its evaluation (index and file look-ups in worker threads), from a task
        # that starts only once this handler has returned and the dispatcher holds the association's send
        # lock for the N-ACTION-RSP: the report follows the response on this association.
        self._send.send_nowait((transaction_uid, req.assoc))
        return Result()

    async def evaluate(self, record: CommitmentRecord) -> CommitmentReport:
        """Assess a kept request against the archive as it is now."""
        _, refs = parse_request(record.request, max_references=math.inf)
        stored: dict[str, StoredInstance] = {}
        uids = [r.sop_instance_uid for r in refs]
        for start in range(0, len(uids), _LOOKUP_BATCH):
            async for inst in self.index.instances(Level.IMAGE, {"SOPInstanceUID": uids[start:start + _LOOKUP_BATCH]}):
                stored[inst.sop_instance_uid] = inst
        on_disk = await anyio.to_thread.run_sync(lambda: {u for u, i in stored.items() if i.path.is_file()})
        return assess(refs, stored, on_disk, self.sop_classes, record.transaction_uid)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver reports: at once for new requests, then retries, pending ones from before a restart too."""
        async with anyio.create_task_group() as tg:
            for transaction_uid, _ in await self._pending():  # left by an earlier run: try them now
                self._start(tg, transaction_uid, None)
            task_status.started()
            while True:
                try:
                    schedule = [(tx, due) for tx, due in await self._pending() if tx not in self._inflight]
                except Exception:  # e.g. the database busy past its timeout: a report waits, the server goes on
                    self.log.exception("cannot read pending commitment requests")
                    schedule = [("", time.time() + self.retry_interval)]
                wait = max(0.0, min(due for _, due in schedule) - time.time()) if schedule else math.inf
                with anyio.move_on_after(wait):
                    transaction_uid, assoc = await self._receive.receive()
                    if transaction_uid:  # else a delivery ended: the schedule changed
                        self._start(tg, transaction_uid, assoc)
                    continue
                now = time.time()
                for transaction_uid, due in schedule:
                    if transaction_uid and due <= now:
                        self._start(tg, transaction_uid, None)

    async def _pending(self) -> list[tuple[str, float]]:
        """Requests waiting for a (re)try; none for a worker that only reports what it received itself
        (`serve --workers`: one worker retries for all, so no report goes out twice)."""
        return await self.db.pending_schedule() if self.retries else []

    def _start(self, tg: anyio.abc.TaskGroup, transaction_uid: str, assoc: Any) -> None:
        if transaction_uid not in self._inflight:
            self._inflight.add(transaction_uid)
            tg.start_soon(self._deliver, transaction_uid, assoc)

    async def _deliver(self, transaction_uid: str, assoc: Any) -> None:
        log = self.log.bind(transaction=transaction_uid)
        try:
            record = await self.db.get_commitment(transaction_uid)
            if record is None or record.state != "pending":
                return
            log = log.bind(requestor=record.calling_ae)
            report = await self.evaluate(record)
            errors = []
            if assoc is not None and assoc.is_established:
                error = await self._report(Client(assoc), report)
                if error is None:
                    await self._reported(report, log, "on the requesting association")
                    return
                errors.append(f"requesting association: {error}")
            peer = self.peers.get(record.calling_ae)
            if peer is None:
                errors.append(f"{record.calling_ae!r} is not a known peer (serve --peer AET=HOST:PORT)")
            else:
                error = await self._report_to(peer, record.calling_ae, report)
                if error is None:
                    await self._reported(report, log, "on a new association")
                    return
                errors.append(error)
            delay = min(self.retry_interval * 2 ** min(record.attempts, 16), self.max_retry_interval)
            await self.db.commitment_failed(transaction_uid, "; ".join(errors), time.time() + delay)
            log.warning("commitment report not delivered", error="; ".join(errors), retry_in=delay)
        except Exception:
            log.exception("commitment report failed")
            with contextlib.suppress(Exception):
                await self.db.commitment_failed(transaction_uid, "internal error",
                                                time.time() + self.max_retry_interval)
        finally:
            self._inflight.discard(transaction_uid)
            self._send.send_nowait(("", None))

    async def _reported(self, report: CommitmentReport, log: Any, how: str) -> None:
        await self.db.commitment_reported(report.transaction_uid, report.event_type)
        log.info("commitment reported " + how, event_type=report.event_type, committed=len(report.committed),
                 failed=len(report.failed))

    async def _report(self, client: Client, report: CommitmentReport) -> str | None:
        """Send the N-EVENT-REPORT; None when the peer took it, else why not."""
        try:
            result = await client.n_event_report(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE,
                                                 report.event_type, report.to_dataset(self.ae_title))
        except (AssociationError, NoPresentationContext) as exc:
            return str(exc) or type(exc).__name__
        if result.status.category in (st.Category.SUCCESS, st.Category.WARNING):
            return None
        return f"N-EVENT-REPORT answered {result.status}"

    async def _report_to(self, peer: Peer, ae_title: str, report: CommitmentReport) -> str | None:
        try:
            async with connect(peer.host, peer.port, calling_ae=self.ae_title, called_ae=ae_title,
                               contexts=report_contexts(), roles=report_roles(), ssl_context=peer.ssl_context,
                               dimse_timeout=self.dimse_timeout, log=self.log.bind(report_to=ae_title)) as assoc:
                error = await self._report(assoc, report)
        except AssociationError as exc:
            return f"association to {ae_title} at {peer.host}:{peer.port}: {exc}"
        return None if error is None else f"{ae_title}: {error}"


def install(dispatcher: Dispatcher, db: WorkflowDb, index: ArchiveIndex, **kwargs: Any) -> CommitmentService:
    service = CommitmentService(db, index, **kwargs)
    service.install(dispatcher)
    return service
