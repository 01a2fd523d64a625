"""Storage Commitment Push Model as an SCU (PS3.4 J.3): ask, then wait for the report.

    listener = CommitmentListener()
    async with aiodicom.connect(host, port, contexts=commitment_contexts(),
                                dispatcher=listener.dispatcher()) as assoc:
        report = await commit(assoc, instance_refs(paths), listener, timeout=60)
    for failed in report.failed: ...

The report arrives as an N-EVENT-REPORT either on this association or on one the SCP opens to us
later (J.3.3.1.3: an SCU accepts it there too); for the second case serve `listener.dispatcher()` on
a port the SCP knows us by (`aiodicom.Server`). The listener must expect the Transaction UID before
the N-ACTION goes out, since a fast SCP may report before its N-ACTION-RSP is read.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, cast

import anyio
from pydicom.uid import generate_uid

from ..archive.uid import is_valid_uid
from ..dimse import status as st
from ..dimse.dataset import read_file_meta
from ..dimse.messages import NEventReportRQ
from ..net.client import Client, Status
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..services.commitment import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH,
    CommitmentReport,
    InstanceRef,
    commitment_request,
)
from ..services.router import SopClassRouter
from ..uids import UNCOMPRESSED_TRANSFER_SYNTAXES

_KEEP_UNEXPECTED: Final = 1000  # reports nobody waits for, kept for a later wait() (oldest dropped)

OnReport = Callable[[CommitmentReport, ServiceRequest], Awaitable[None]]


class CommitmentRefused(Exception):
    """The SCP refused the N-ACTION: it will not report on this transaction (J.3.2.1.2)."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"storage commitment request refused: {status}")
        self.status = status


def commitment_contexts() -> list[tuple[str, tuple[str, ...]]]:
    return [(STORAGE_COMMITMENT_PUSH, UNCOMPRESSED_TRANSFER_SYNTAXES)]


def instance_refs(paths: Iterable[str | os.PathLike[str]]) -> list[InstanceRef]:
    """The SOP class and instance of PS3.10 files, from their File Meta Information (no data set read)."""
    refs = []
    for path in paths:
        meta = read_file_meta(path)
        refs.append(InstanceRef(meta.sop_class_uid, meta.sop_instance_uid))
    return refs


class CommitmentListener:
    """Answers Storage Commitment N-EVENT-REPORTs and hands each report to whoever waits for it."""

    def __init__(self, on_report: OnReport | None = None) -> None:
        self.on_report = on_report
        self._waiting: dict[str, anyio.Event] = {}
        self._reports: OrderedDict[str, CommitmentReport] = OrderedDict()

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support([STORAGE_COMMITMENT_PUSH], UNCOMPRESSED_TRANSFER_SYNTAXES)
        # an SCP reporting on its own association proposes the SCP role for itself (J.3.3.1.3 note)
        dispatcher.scp_role_classes.add(STORAGE_COMMITMENT_PUSH)
        SopClassRouter.for_dispatcher(dispatcher).add(NEventReportRQ, STORAGE_COMMITMENT_PUSH, self.report)

    def dispatcher(self) -> Dispatcher:
        dispatcher = Dispatcher()
        self.install(dispatcher)
        return dispatcher

    def expect(self, transaction_uid: str) -> None:
        self._waiting.setdefault(transaction_uid, anyio.Event())

    def forget(self, transaction_uid: str) -> None:
        self._waiting.pop(transaction_uid, None)
        self._reports.pop(transaction_uid, None)

    async def wait(self, transaction_uid: str, timeout: float | None = None) -> CommitmentReport:
        """The report for a transaction; TimeoutError when none came within `timeout` seconds."""
        self.expect(transaction_uid)
        try:
            if transaction_uid not in self._reports:
                with anyio.fail_after(timeout):
                    await self._waiting[transaction_uid].wait()
            return self._reports.pop(transaction_uid)
        finally:
            self._waiting.pop(transaction_uid, None)

    async def report(self, req: ServiceRequest) -> Result:
        """The N-EVENT-REPORT handler (Table J.3-2 event information)."""
        event_type = cast(NEventReportRQ, req.message).event_type_id
        if event_type not in (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST):
            return Result(status=st.NO_SUCH_EVENT_TYPE, error_comment=f"event type {event_type}: not 1 or 2")
        ds = req.dataset()
        if ds is None:
            return Result(status=st.INVALID_ARGUMENT_VALUE, error_comment="N-EVENT-REPORT without event information")
        report = CommitmentReport.from_dataset(ds)
        if not is_valid_uid(report.transaction_uid):
            return Result(status=st.INVALID_ARGUMENT_VALUE, error_comment="Transaction UID missing or not a UID")
        if (event_type == EVENT_ALL_COMMITTED) != report.ok:
            req.assoc.log.warning("commitment event type contradicts the Failed SOP Sequence", event_type=event_type,
                                  failed=len(report.failed))
        self._reports[report.transaction_uid] = report
        waiter = self._waiting.get(report.transaction_uid)
        if waiter is not None:
            waiter.set()
        else:
            while len(self._reports) > _KEEP_UNEXPECTED:
                self._reports.popitem(last=False)
        if self.on_report is not None:
            await self.on_report(report, req)
        return Result()


async def request_commitment(assoc: Client, instances: Iterable[InstanceRef], *,
                             transaction_uid: str | None = None) -> str:
    """Send the N-ACTION (Request Storage Commitment); return the Transaction UID to wait for."""
    transaction_uid = transaction_uid or generate_uid(prefix=None)
    result = await assoc.n_action(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, REQUEST_STORAGE_COMMITMENT,
                                  commitment_request(transaction_uid, instances))
    if not result.ok:
        raise CommitmentRefused(result.status)
    return transaction_uid


async def commit(assoc: Client, instances: Iterable[InstanceRef], listener: CommitmentListener, *,
                 timeout: float | None = 60.0, transaction_uid: str | None = None) -> CommitmentReport:
    """Request storage commitment and wait (at most `timeout` s, TimeoutError) for the report, which may
    come on this association or on one the SCP opens to the listener's server."""
    transaction_uid = transaction_uid or generate_uid(prefix=None)
    listener.expect(transaction_uid)
    try:
        await request_commitment(assoc, instances, transaction_uid=transaction_uid)
    except BaseException:
        listener.forget(transaction_uid)
        raise
    return await listener.wait(transaction_uid, timeout)
