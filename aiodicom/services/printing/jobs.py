"""The print queue: Print Job SOP Instances (PS3.4 H.4.5) and the N-EVENT-REPORTs an SCP owes its
SCUs about them and about the printer (PS3.4 H.4.5.2.1, H.4.6.2.1).

A job runs in the task group of the association that asked for it, so it ends with the server;
its printing is shielded (an accepted job is printed even when that association ends first) but
bounded by a timeout. Reports go to associations still established, one at a time on each
(PS3.7 D.3.3.3: without a negotiated window we invoke one operation at a time); a peer that
cannot be told is logged, never an error for the job.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
from pydicom.dataset import Dataset

from ...dimse import status as st
from ...dimse.dataset import EncodedDataset
from ...dimse.messages import NEventReportRQ
from ...net.association import Association
from ...net.errors import AssociationError
from .model import (
    JOB_DONE,
    JOB_FAILURE,
    JOB_PRINTING,
    META_CLASSES,
    PRINT_JOB,
    PRINTER,
    PRINTER_EVENT_OF_STATUS,
    PRINTER_INSTANCE,
    Job,
)
from .printer import Printer, PrinterError

MAX_JOB_RECORDS = 256  # print jobs kept for N-GET after they finished, all associations together


@dataclass(slots=True, eq=False)
class JobRecord:
    """A Print Job SOP Instance: the job and its Execution Status (PS3.3 C.13.8)."""

    job: Job
    context_id: int  # the context of the N-ACTION: events go there unless Print Job has its own
    assoc: weakref.ref[Association]
    status: str = "PENDING"  # PENDING, PRINTING, DONE, FAILURE
    info: str = "NORMAL"  # Execution Status Info


class PrintQueue:
    def __init__(self, printer: Printer, *, events: bool = True, print_timeout: float = 600.0) -> None:
        self.printer = printer
        self.events = events
        self.print_timeout = print_timeout
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.active = 0  # jobs not finished
        self._listeners: weakref.WeakKeyDictionary[Association, anyio.Lock] = weakref.WeakKeyDictionary()
        self._reported = printer.state

    def listen(self, assoc: Association) -> None:
        """`assoc` uses the printer: it hears of the printer's state changes (PS3.4 H.4.6.2.1.2)."""
        if assoc not in self._listeners:
            self._listeners[assoc] = anyio.Lock()

    def submit(self, job: Job, assoc: Association, context_id: int) -> JobRecord:
        """Queue a job: it starts once the calling handler has returned. The dispatcher sends the
        N-ACTION response as soon as the handler returns, taking the association's send lock before
        it yields, so the SCU learns the job's UID before any N-EVENT-REPORT about it."""
        record = JobRecord(job, context_id, weakref.ref(assoc))
        self.jobs[job.uid] = record
        self._prune()
        self.active += 1
        self.listen(assoc)
        assoc.start_soon(self._run, record, assoc)
        return record

    def attributes(self, record: JobRecord) -> dict[str, Any]:
        """The Print Job's attributes for N-GET (PS3.4 H.4.5.2.2)."""
        job = record.job
        return {"ExecutionStatus": record.status, "ExecutionStatusInfo": record.info,
                "PrintPriority": job.session.get("PrintPriority", "MED"), "CreationDate": job.created.strftime("%Y%m%d"),
                "CreationTime": job.created.strftime("%H%M%S"), "PrinterName": self.printer.name,
                "Originator": job.originator}

    async def _run(self, record: JobRecord, assoc: Association) -> None:
        try:
            record.status = "PRINTING"
            await self._report_job(record, JOB_PRINTING)
        finally:
            # Printed even when the association ended meanwhile (this task is then cancelled).
            try:
                await self._print(record, assoc.log.bind(job=record.job.uid))
            finally:
                self.active -= 1
        await self._report_job(record, JOB_DONE if record.status == "DONE" else JOB_FAILURE)
        await self.printer_state_changed()

    async def _print(self, record: JobRecord, log: Any) -> None:
        status, info = "FAILURE", "PRINTER DOWN"  # unless the printer says otherwise
        with anyio.move_on_after(self.print_timeout, shield=True) as scope:
            try:
                await self.printer.print_job(record.job)
            except PrinterError as exc:
                info = exc.info
                log.warning("print job failed", reason=str(exc), info=exc.info)
            except Exception:
                log.exception("printer raised")
            else:
                status, info = "DONE", "NORMAL"
                log.info("print job done", films=len(record.job.films))
        if scope.cancelled_caught:
            log.warning("print job timed out", seconds=self.print_timeout)
        record.status, record.info = status, info

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond MAX_JOB_RECORDS."""
        while len(self.jobs) > MAX_JOB_RECORDS:
            finished = next((uid for uid, r in self.jobs.items() if r.status in ("DONE", "FAILURE")), None)
            if finished is None:
                return
            del self.jobs[finished]

    # ------------------------------------------------------------------ N-EVENT-REPORT
    async def _report_job(self, record: JobRecord, event_type: int) -> None:
        assoc = record.assoc()
        if assoc is None:
            return
        info = Dataset()
        info.ExecutionStatusInfo = record.info
        info.PrinterName = self.printer.name
        if record.job.label:
            info.FilmSessionLabel = record.job.label
        cid = assoc.negotiated.context_for(PRINT_JOB) or record.context_id
        await self._send(assoc, cid, PRINT_JOB, record.job.uid, event_type, info)

    async def printer_state_changed(self) -> None:
        """Tell every association using the printer that its state changed (PS3.4 H.4.6.2.1.2). Called
        after each job; a printer that changes state on its own (out of film) calls it too."""
        state = self.printer.state
        if state == self._reported:
            return
        self._reported = state
        info = None
        if state.status != "NORMAL":  # Warning and Failure carry Printer Status Info
            info = Dataset()
            info.PrinterStatusInfo = state.info
            info.PrinterName = self.printer.name
        for assoc in list(self._listeners.keys()):
            negotiated = assoc.negotiated
            cid = negotiated.context_for(PRINTER) or next(
                (c for m in META_CLASSES if (c := negotiated.context_for(m)) is not None), None)
            if cid is not None:
                await self._send(assoc, cid, PRINTER, PRINTER_INSTANCE, PRINTER_EVENT_OF_STATUS.get(state.status, 3),
                                 info)

    async def _send(self, assoc: Association, cid: int, sop_class: str, uid: str, event_type: int,
                    info: Dataset | None) -> None:
        if not self.events or not assoc.is_established:
            return
        lock = self._listeners.get(assoc) or anyio.Lock()
        message = NEventReportRQ(message_id=assoc.next_message_id(), affected_sop_class_uid=sop_class,
                                 affected_sop_instance_uid=uid, event_type_id=event_type, has_dataset=info is not None)
        data = None if info is None else EncodedDataset.from_dataset(info, assoc.transfer_syntax(cid))
        try:
            async with lock:
                rsp, payload = await assoc.request(message, cid, data)
            if payload is not None:
                payload.close()
            if rsp.status != st.SUCCESS:
                assoc.log.info("N-EVENT-REPORT answered", sop_class=sop_class, status=f"0x{rsp.status:04X}")
        except AssociationError as exc:
            assoc.log.info("N-EVENT-REPORT not delivered", sop_class=sop_class, reason=str(exc))
