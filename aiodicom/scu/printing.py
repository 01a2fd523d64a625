"""Print Management as an SCU (PS3.4 Annex H): film session, film boxes, image boxes, print, wait.

    async with print_association("printer.example", 104, called_ae="PRINTER") as scu:
        report = await print_images(scu, [dcmread(p) for p in paths],
                                    film=FilmOptions(display_format="STANDARD\\\\2,2", film_size="14INX17IN"))

Everything travels on the Print Management Meta SOP Class context (PS3.4 H.3); the Print Job has
its own context when the printer accepts that optional SOP class. The printer's N-EVENT-REPORTs
(print job PRINTING/DONE/FAILURE, printer status) arrive through the association's dispatcher and
end the wait for a job; N-GET of the job's Execution Status covers printers that send none. A
failure status raises PrintRefused naming the operation, the status and the printer's comment.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydicom.dataset import Dataset

from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import NActionRQ, NCreateRQ, NDeleteRQ, NEventReportRQ, NGetRQ, NSetRQ, Request
from ..net.client import Client, Status, connect
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..net.errors import NoPresentationContext
from ..services.printing.layout import LayoutError, box_size_px, parse_display_format
from ..services.printing.model import (
    ACTION_PRINT,
    COLOR_IMAGE_BOX,
    COLOR_META,
    FILM_BOX,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    GRAYSCALE_META,
    JOB_STATUS_OF_EVENT,
    META_MEMBERS,
    PRINT_JOB,
    PRINTER,
    PRINTER_INSTANCE,
    describe_status,
)
from ..services.printing.preformat import preformat
from ..services.router import SopClassRouter

DEFAULT_DPI = 150  # the resolution images are sized for when the printer's is unknown (ours: STANDARD)
_JOB_SEQUENCES = (0x21000500, 0x21200070)  # Referenced Print Job Sequence: the N-ACTION reply's, and the queue's


class PrintRefused(Exception):
    """The printer answered a failure status (or an answer we cannot use): the operation, the status
    code and the printer's Error Comment."""

    def __init__(self, operation: str, code: int, comment: str | None = None) -> None:
        super().__init__(f"{operation} refused: {describe_status(code)}" + (f" ({comment})" if comment else ""))
        self.operation, self.code, self.comment = operation, code, comment


class PrinterDown(Exception):
    """The printer's status is FAILURE (PS3.3 C.13.9): nothing was sent to it."""


class PrintJobFailed(Exception):
    def __init__(self, outcome: JobOutcome) -> None:
        super().__init__(f"print job {outcome.uid} {outcome.status}: {outcome.info}")
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class JobOutcome:
    uid: str
    status: str  # DONE, FAILURE, or PENDING/PRINTING when the wait timed out
    info: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """Basic Film Session attributes (PS3.4 Table H.4-2); None leaves the printer's default."""

    copies: int | None = None
    priority: str | None = None
    medium: str | None = None
    destination: str | None = None
    label: str | None = None

    def dataset(self) -> Dataset:
        return _attributes(NumberOfCopies=self.copies, PrintPriority=self.priority, MediumType=self.medium,
                           FilmDestination=self.destination, FilmSessionLabel=self.label)


@dataclass(frozen=True, slots=True, kw_only=True)
class FilmOptions:
    """Basic Film Box attributes (PS3.4 Table H.4-6), the image boxes' polarity, and how to size images."""

    display_format: str = "STANDARD\\1,1"
    film_size: str | None = None
    orientation: str | None = None
    magnification: str | None = None
    border_density: str | None = None
    empty_image_density: str | None = None
    min_density: int | None = None
    max_density: int | None = None
    trim: str | None = None
    resolution: str | None = None
    polarity: str | None = None
    bits: int = 8  # 8, or 12 for grayscale
    dpi: int = DEFAULT_DPI

    def dataset(self, session_uid: str) -> Dataset:
        ds = _attributes(ImageDisplayFormat=self.display_format, FilmOrientation=self.orientation,
                         FilmSizeID=self.film_size, MagnificationType=self.magnification,
                         BorderDensity=self.border_density, EmptyImageDensity=self.empty_image_density,
                         MinDensity=self.min_density, MaxDensity=self.max_density, Trim=self.trim,
                         RequestedResolutionID=self.resolution)
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = FILM_SESSION, session_uid
        ds.ReferencedFilmSessionSequence = [ref]
        return ds


def _attributes(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        if value is not None:
            setattr(ds, keyword, value)
    return ds


@dataclass(frozen=True, slots=True)
class FilmBoxRef:
    uid: str
    image_boxes: tuple[str, ...]  # SOP Instance UIDs, index = Image Box Position - 1
    image_box_class: str
    attributes: Dataset


@dataclass(slots=True)
class PrintReport:
    films: int = 0
    jobs: list[JobOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class PrintEvents:
    """The printer's N-EVENT-REPORTs on our association: print job and printer status (PS3.4 H.4.5.2.1,
    H.4.6.2.1). Install it in the dispatcher given to connect()."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, str]] = {}  # job UID → (Execution Status, Execution Status Info)
        self.printer: list[tuple[str, str]] = []  # (Printer Status, Printer Status Info) reported
        self._changed = anyio.Event()

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.meta_members.update(META_MEMBERS)  # a Printer event comes on the meta SOP class context
        router = SopClassRouter.for_dispatcher(dispatcher)
        router.add(NEventReportRQ, PRINT_JOB, self.report)
        router.add(NEventReportRQ, PRINTER, self.report)

    async def report(self, req: ServiceRequest) -> Result:
        message = req.message
        info = req.dataset() if req.payload is not None else None
        if message.affected_sop_class_uid == PRINT_JOB:
            status = JOB_STATUS_OF_EVENT.get(message.event_type_id)
            if status is None:
                return Result(status=st.NO_SUCH_EVENT_TYPE)
            detail = str(info.get("ExecutionStatusInfo", "")) if info is not None else ""
            self.jobs[message.affected_sop_instance_uid] = (status, detail)
        else:
            names = {1: "NORMAL", 2: "WARNING", 3: "FAILURE"}
            if message.event_type_id not in names:
                return Result(status=st.NO_SUCH_EVENT_TYPE)
            detail = str(info.get("PrinterStatusInfo", "")) if info is not None else ""
            self.printer.append((names[message.event_type_id], detail or names[message.event_type_id]))
        self._changed.set()
        self._changed = anyio.Event()
        return Result()

    async def wait(self, seconds: float) -> None:
        """Until the next report, or `seconds`."""
        with anyio.move_on_after(seconds):
            await self._changed.wait()


class PrintScu:
    """Print Management requests on an established association (its meta SOP class context)."""

    def __init__(self, client: Client, events: PrintEvents | None = None, *, color: bool | None = None) -> None:
        self.client = client
        self.events = events or PrintEvents()
        negotiated = client.negotiated
        metas = [COLOR_META] if color else [GRAYSCALE_META] if color is False else [GRAYSCALE_META, COLOR_META]
        found = next(((m, cid) for m in metas if (cid := negotiated.context_for(m)) is not None), None)
        if found is None:
            wanted = {True: "Basic Color", False: "Basic Grayscale", None: "any"}[color]
            raise NoPresentationContext(f"the printer accepted no {wanted} Print Management Meta SOP Class context")
        self.meta, self.context_id = found
        self.color = self.meta == COLOR_META
        self.job_context_id = negotiated.context_for(PRINT_JOB) or self.context_id
        self.session_uid: str | None = None
        self.warnings: list[str] = []

    async def _request(self, operation: str, message: Request, dataset: Dataset | None = None, *,
                       context_id: int | None = None) -> tuple[Any, Dataset | None]:
        cid = context_id or self.context_id
        data = None if dataset is None else EncodedDataset.from_dataset(dataset, self.client.assoc.transfer_syntax(cid))
        rsp, payload = await self.client.request(message, cid, data)
        try:
            decoded = payload.dataset() if payload is not None else None
        finally:
            if payload is not None:
                payload.close()
        status = Status(rsp.status, rsp)
        if status.category is st.Category.FAILURE:
            raise PrintRefused(operation, status.code, status.error_comment)
        if status.category is st.Category.WARNING:
            comment = status.error_comment
            self.warnings.append(f"{operation}: {describe_status(status.code)}" + (f" ({comment})" if comment else ""))
        return rsp, decoded

    def _id(self) -> int:
        return self.client.next_message_id()

    async def printer_status(self) -> Dataset:
        """N-GET of the Printer (PS3.4 H.4.6.2.2): Printer Status, Printer Status Info, Printer Name..."""
        cid = self.client.negotiated.context_for(PRINTER) or self.context_id
        _, ds = await self._request("Printer N-GET", NGetRQ(message_id=self._id(), requested_sop_class_uid=PRINTER,
                                                            requested_sop_instance_uid=PRINTER_INSTANCE), context_id=cid)
        return ds or Dataset()

    async def create_session(self, options: SessionOptions = SessionOptions()) -> str:
        rsp, _ = await self._request("Film Session N-CREATE", NCreateRQ(
            message_id=self._id(), affected_sop_class_uid=FILM_SESSION, has_dataset=True), options.dataset())
        if not rsp.affected_sop_instance_uid:
            raise PrintRefused("Film Session N-CREATE", st.PROCESSING_FAILURE, "no SOP Instance UID in the response")
        self.session_uid = rsp.affected_sop_instance_uid
        return self.session_uid

    async def create_film_box(self, options: FilmOptions) -> FilmBoxRef:
        if self.session_uid is None:
            raise RuntimeError("create the film session first")
        rsp, ds = await self._request("Film Box N-CREATE", NCreateRQ(
            message_id=self._id(), affected_sop_class_uid=FILM_BOX, has_dataset=True), options.dataset(self.session_uid))
        items = list(ds.get("ReferencedImageBoxSequence", [])) if ds is not None else []
        if not rsp.affected_sop_instance_uid or not items:
            raise PrintRefused("Film Box N-CREATE", st.PROCESSING_FAILURE,
                               "no SOP Instance UID or Referenced Image Box Sequence in the response")
        image_class = str(items[0].ReferencedSOPClassUID)
        return FilmBoxRef(rsp.affected_sop_instance_uid, tuple(str(i.ReferencedSOPInstanceUID) for i in items),
                          image_class, ds or Dataset())

    async def set_image_box(self, film_box: FilmBoxRef, position: int, image: Dataset, *,
                            polarity: str | None = None) -> None:
        """N-SET one image box with a Basic Grayscale/Color Image Sequence item (see preformat())."""
        ds = _attributes(ImageBoxPosition=position, Polarity=polarity)
        color = film_box.image_box_class == COLOR_IMAGE_BOX
        setattr(ds, "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence", [image])
        await self._request(f"Image Box {position} N-SET", NSetRQ(
            message_id=self._id(), requested_sop_class_uid=COLOR_IMAGE_BOX if color else GRAYSCALE_IMAGE_BOX,
            requested_sop_instance_uid=film_box.image_boxes[position - 1]), ds)

    async def print_film_box(self, film_box: FilmBoxRef) -> str | None:
        """N-ACTION print of one film box; the Print Job's UID when the printer has one."""
        return await self._print("Film Box N-ACTION", FILM_BOX, film_box.uid)

    async def print_session(self) -> str | None:
        """N-ACTION print of every film box of the session (collation)."""
        assert self.session_uid is not None
        return await self._print("Film Session N-ACTION", FILM_SESSION, self.session_uid)

    async def _print(self, operation: str, sop_class: str, uid: str) -> str | None:
        _, reply = await self._request(operation, NActionRQ(
            message_id=self._id(), requested_sop_class_uid=sop_class, requested_sop_instance_uid=uid,
            action_type_id=ACTION_PRINT))
        for tag in _JOB_SEQUENCES:
            if reply is not None and tag in reply and len(reply[tag].value):
                return str(reply[tag].value[0].ReferencedSOPInstanceUID)
        return None

    async def job_status(self, uid: str) -> JobOutcome | None:
        """N-GET of the Print Job's Execution Status (PS3.4 H.4.5.2.2); None if the printer will not say."""
        try:
            _, ds = await self._request("Print Job N-GET", NGetRQ(
                message_id=self._id(), requested_sop_class_uid=PRINT_JOB, requested_sop_instance_uid=uid),
                context_id=self.job_context_id)
        except PrintRefused:
            return None
        if ds is None or "ExecutionStatus" not in ds:
            return None
        return JobOutcome(uid, str(ds.ExecutionStatus), str(ds.get("ExecutionStatusInfo", "")))

    async def wait_for_job(self, uid: str, *, timeout: float = 300.0, poll: float = 2.0) -> JobOutcome:
        """Until the job is DONE or FAILURE: its N-EVENT-REPORT, or N-GET every `poll` seconds."""
        last = JobOutcome(uid, "PENDING")
        polling = True
        with anyio.move_on_after(timeout):
            while True:
                if uid in self.events.jobs:
                    last = JobOutcome(uid, *self.events.jobs[uid])
                    if last.status in ("DONE", "FAILURE"):
                        return last
                if polling:
                    outcome = await self.job_status(uid)
                    polling = outcome is not None
                    if outcome is not None:
                        last = outcome
                        if outcome.status in ("DONE", "FAILURE"):
                            return outcome
                await self.events.wait(poll)
        return last

    async def delete_film_box(self, film_box: FilmBoxRef) -> None:
        await self._request("Film Box N-DELETE", NDeleteRQ(
            message_id=self._id(), requested_sop_class_uid=FILM_BOX, requested_sop_instance_uid=film_box.uid))

    async def delete_session(self) -> None:
        if self.session_uid is not None:
            await self._request("Film Session N-DELETE", NDeleteRQ(
                message_id=self._id(), requested_sop_class_uid=FILM_SESSION,
                requested_sop_instance_uid=self.session_uid))
            self.session_uid = None


def print_contexts(color: bool = False) -> list[str]:
    """The meta SOP class and the optional Print Job SOP class (PS3.4 H.3.3.2)."""
    return [COLOR_META if color else GRAYSCALE_META, PRINT_JOB]


@contextlib.asynccontextmanager
async def print_association(host: str, port: int, *, color: bool = False, **connect_args: Any
                            ) -> AsyncIterator[PrintScu]:
    """connect() proposing Print Management, with the printer's N-EVENT-REPORTs collected."""
    events = PrintEvents()
    dispatcher = Dispatcher()
    events.install(dispatcher)
    async with connect(host, port, contexts=print_contexts(color), dispatcher=dispatcher, **connect_args) as client:
        yield PrintScu(client, events, color=color)


async def print_images(scu: PrintScu, images: Iterable[Dataset], *, film: FilmOptions = FilmOptions(),
                       session: SessionOptions = SessionOptions(), job_timeout: float = 300.0) -> PrintReport:
    """The whole flow: check the printer, create the session, then per film: create a film box, set
    its image boxes (each image preformatted to fit its box), print it, wait for its job, delete it;
    finally delete the session. Raises PrinterDown, PrintRefused, PrintJobFailed."""
    report = PrintReport(warnings=scu.warnings)
    fmt = parse_display_format(film.display_format)  # LayoutError before anything is sent
    printer = await scu.printer_status()
    status, info = str(printer.get("PrinterStatus", "NORMAL")), str(printer.get("PrinterStatusInfo", ""))
    if status == "FAILURE":
        raise PrinterDown(f"the printer is down ({info})")
    if status == "WARNING":
        report.warnings.append(f"the printer reports a warning ({info})")
    await scu.create_session(session)
    pending = list(images)
    for start in range(0, len(pending), fmt.box_count):
        page: Sequence[Dataset] = pending[start:start + fmt.box_count]
        box = await scu.create_film_box(film)
        for position, image in enumerate(page, 1):
            size = _box_size(box, film, position)
            prepared = await anyio.to_thread.run_sync(
                functools.partial(preformat, image, color=scu.color, bits=film.bits, max_size=size))
            item = prepared.item()
            await scu.set_image_box(box, position, item, polarity=film.polarity)
        job = await scu.print_film_box(box)
        report.films += 1
        if job is not None:
            outcome = await scu.wait_for_job(job, timeout=job_timeout)
            report.jobs.append(outcome)
            if outcome.status == "FAILURE":
                raise PrintJobFailed(outcome)
        await scu.delete_film_box(box)
    await scu.delete_session()
    return report


def _box_size(box: FilmBoxRef, film: FilmOptions, position: int) -> tuple[int, int] | None:
    """The image box in pixels at film.dpi, from what the printer answered (its defaults included)."""
    a = box.attributes
    try:
        return box_size_px(parse_display_format(str(a.get("ImageDisplayFormat", film.display_format))),
                           str(a.get("FilmSizeID", "") or film.film_size or "14INX17IN"),
                           str(a.get("FilmOrientation", "") or film.orientation or "PORTRAIT"), film.dpi, position)
    except LayoutError:
        return None  # a film size we do not know: the printer demagnifies if it must

