"""Print Management SCP (PS3.4 Annex H): the Basic Grayscale and Basic Color Print Management Meta
SOP Classes, the Print Job and Printer SOP Classes, over a pluggable `Printer`.

The meta SOP class is what is negotiated; the SOP class each message names (Film Session, Film
Box, Image Box, Printer, Print Job) picks the handler (PS3.4 H.3, `SopClassRouter`). A film session
lives on its association and ends with it (PS3.4 H.4.1.2.1.1); print jobs outlive it. N-ACTION
copies the hierarchy into a job, answers with the Print Job's UID, and the job then runs in the
association's task group: PRINTING and DONE/FAILURE are reported with N-EVENT-REPORT (PS3.4
H.4.5.2.1), a change of the printer's state to every association using it (PS3.4 H.4.6.2.1).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ...archive.uid import is_valid_uid
from ...dimse import status as st
from ...dimse.messages import NActionRQ, NCreateRQ, NDeleteRQ, NGetRQ, NSetRQ
from ...net.association import Association
from ...net.dispatch import Dispatcher, Result, ServiceRequest
from ...uids import EXPLICIT_VR_BIG_ENDIAN, UNCOMPRESSED_TRANSFER_SYNTAXES
from ..router import SopClassRouter, message_sop_class
from . import attributes as at
from .jobs import PrintQueue
from .layout import film_geometry, mm_to_px, parse_display_format, place
from .model import (
    ACTION_PRINT,
    COLOR_IMAGE_BOX,
    COLOR_META,
    FILM_BOX,
    FILM_BOX_QUEUE_FULL,
    FILM_BOX_WITHOUT_IMAGES,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    GRAYSCALE_META,
    IMAGE_BOX_OF_META,
    META_MEMBERS,
    IMAGE_CROPPED,
    IMAGE_DECIMATED,
    IMAGE_DEMAGNIFIED,
    IMAGE_TOO_LARGE,
    INSUFFICIENT_MEMORY,
    META_CLASSES,
    PRINT_JOB,
    PRINTER,
    PRINTER_INSTANCE,
    SESSION_QUEUE_FULL,
    SESSION_WITHOUT_FILM_BOXES,
    SESSION_WITHOUT_IMAGES,
    SOP_CLASS_NAMES,
    FilmBox,
    FilmSession,
    ImageBox,
    PrintFailure,
)
from .printer import Printer

MAX_FILM_BOXES = 100  # per film session: each holds image boxes and their pixels
REFERENCED_PRINT_JOB_SEQUENCE = 0x21000500  # PS3.4 H.4.1.2.4.1, H.4.2.2.4.1: the N-ACTION reply
_PLACEMENT_STATUS = {"demagnified": IMAGE_DEMAGNIFIED, "decimated": IMAGE_DECIMATED, "cropped": IMAGE_CROPPED}


@dataclass(slots=True, eq=False)
class _AssociationState:
    """What one association built: at most one film session and an index of its image boxes."""

    session: FilmSession | None = None
    image_boxes: dict[str, tuple[FilmBox, ImageBox]] = field(default_factory=dict)


def _answer(handler: Callable[[PrintScp, ServiceRequest], Awaitable[Result]]
            ) -> Callable[[PrintScp, ServiceRequest], Awaitable[Result]]:
    """A PrintFailure raised anywhere in a handler becomes its response."""

    async def wrapped(self: PrintScp, req: ServiceRequest) -> Result:
        try:
            return await handler(self, req)
        except PrintFailure as failure:
            req.assoc.log.info("print request refused", command=type(req.message).__name__,
                               status=f"0x{failure.status:04X}", reason=str(failure))
            return Result(status=failure.status, error_comment=str(failure), fields=failure.fields())

    wrapped.__name__ = handler.__name__
    return wrapped


class PrintScp:
    def __init__(self, printer: Printer, *, transfer_syntaxes: Collection[str] = UNCOMPRESSED_TRANSFER_SYNTAXES,
                 events: bool = True, print_timeout: float = 600.0) -> None:
        self.printer = printer
        self.caps = printer.capabilities
        self.transfer_syntaxes = tuple(transfer_syntaxes)
        self.queue = PrintQueue(printer, events=events, print_timeout=print_timeout)
        self._states: weakref.WeakKeyDictionary[Association, _AssociationState] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ installation
    def install(self, dispatcher: Dispatcher) -> None:
        metas = [GRAYSCALE_META, *([COLOR_META] if self.caps.color else [])]
        dispatcher.support([*metas, PRINT_JOB, PRINTER], self.transfer_syntaxes)
        dispatcher.meta_members.update(META_MEMBERS)
        router = SopClassRouter.for_dispatcher(dispatcher)
        routes: list[tuple[type, str, Callable[[ServiceRequest], Awaitable[Result]]]] = [
            (NCreateRQ, FILM_SESSION, self.create_film_session), (NSetRQ, FILM_SESSION, self.set_film_session),
            (NActionRQ, FILM_SESSION, self.print_film_session), (NDeleteRQ, FILM_SESSION, self.delete_film_session),
            (NCreateRQ, FILM_BOX, self.create_film_box), (NSetRQ, FILM_BOX, self.set_film_box),
            (NActionRQ, FILM_BOX, self.print_film_box), (NDeleteRQ, FILM_BOX, self.delete_film_box),
            (NSetRQ, GRAYSCALE_IMAGE_BOX, self.set_image_box), (NSetRQ, COLOR_IMAGE_BOX, self.set_image_box),
            (NGetRQ, PRINTER, self.get_printer), (NGetRQ, PRINT_JOB, self.get_print_job),
        ]
        for request_type, sop_class, handler in routes:
            router.add(request_type, sop_class, handler)
        # PS3.4 H.4: operations these SOP classes do not have (PS3.7 C.5.13: 0211H)
        for request_type, classes in ((NGetRQ, (FILM_SESSION, FILM_BOX, GRAYSCALE_IMAGE_BOX, COLOR_IMAGE_BOX)),
                                      (NCreateRQ, (GRAYSCALE_IMAGE_BOX, COLOR_IMAGE_BOX, PRINT_JOB, PRINTER)),
                                      (NSetRQ, (PRINT_JOB, PRINTER))):
            for sop_class in classes:
                router.add(request_type, sop_class, _unrecognized)

    # ------------------------------------------------------------------ Basic Film Session (H.4.1)
    @_answer
    async def create_film_session(self, req: ServiceRequest) -> Result:
        meta = self._meta(req)
        state = self._state(req)
        if state.session is not None:
            raise PrintFailure(st.RESOURCE_LIMITATION, "a Film Session exists on this association already")
        uid = self._new_uid(req, state)
        checked = at.check(req.dataset(), at.FILM_SESSION_RULES, self.caps, require=True, defaults=True)
        state.session = FilmSession(uid, meta, checked.values)
        req.assoc.log.info("film session created", uid=uid, copies=checked.values.get("NumberOfCopies"))
        return _created(uid, checked, _dataset(checked.values))

    @_answer
    async def set_film_session(self, req: ServiceRequest) -> Result:
        session = self._session(req)
        checked = at.check(req.dataset(), at.FILM_SESSION_RULES, self.caps, require=False, defaults=False)
        session.attributes.update(checked.values)
        return _checked(checked)

    @_answer
    async def print_film_session(self, req: ServiceRequest) -> Result:
        _print_action(req)
        session = self._session(req)
        if not session.film_boxes:
            raise PrintFailure(SESSION_WITHOUT_FILM_BOXES, "the Film Session has no Film Box to print")
        return self._print(req, session, list(session.film_boxes), SESSION_QUEUE_FULL, SESSION_WITHOUT_IMAGES)

    @_answer
    async def delete_film_session(self, req: ServiceRequest) -> Result:
        session = self._session(req)
        state = self._state(req)
        state.session = None
        state.image_boxes.clear()  # the whole hierarchy goes (PS3.4 H.4.1.2.3); print jobs keep their copies
        req.assoc.log.info("film session deleted", uid=session.uid)
        return Result()

    # ------------------------------------------------------------------ Basic Film Box (H.4.2)
    @_answer
    async def create_film_box(self, req: ServiceRequest) -> Result:
        meta = self._meta(req)
        state = self._state(req)
        checked = at.check(req.dataset(), at.FILM_BOX_RULES, self.caps, require=True, defaults=True)
        values = checked.values
        session_uid = values.pop("ReferencedFilmSessionSequence")
        session = state.session
        if session is None or session.uid != session_uid:
            raise PrintFailure(st.INVALID_ATTRIBUTE_VALUE, f"no Film Session {session_uid} on this association: "
                               "N-CREATE one first", offending=(at.tag_of("ReferencedFilmSessionSequence"),))
        if len(session.film_boxes) >= MAX_FILM_BOXES:
            raise PrintFailure(st.RESOURCE_LIMITATION, f"at most {MAX_FILM_BOXES} Film Boxes per Film Session")
        _check_densities(values)
        uid = self._new_uid(req, state)
        fmt = parse_display_format(values["ImageDisplayFormat"])
        image_box_class = IMAGE_BOX_OF_META[meta]
        boxes = tuple(ImageBox(generate_uid(prefix=None), image_box_class, i + 1) for i in range(fmt.box_count))
        # PS3.4 H.4.2.2.3, H.4.3.1.2.1.3: only the last created Film Box (and its Image Boxes) may still be
        # changed; the earlier ones stay in the session for a Film Session N-ACTION, as they are.
        for earlier in session.film_boxes:
            earlier.current = False
        film_box = FilmBox(uid, meta, fmt, values, boxes)
        session.film_boxes.append(film_box)
        state.image_boxes.update((box.uid, (film_box, box)) for box in boxes)
        ds = _dataset(values)
        ds.ReferencedFilmSessionSequence = [_reference(FILM_SESSION, session.uid)]
        ds.ReferencedImageBoxSequence = [_reference(image_box_class, box.uid) for box in boxes]
        req.assoc.log.info("film box created", uid=uid, format=str(fmt), film_size=values.get("FilmSizeID"))
        return _created(uid, checked, ds)

    @_answer
    async def set_film_box(self, req: ServiceRequest) -> Result:
        film_box = self._film_box(req, changing=True)
        checked = at.check(req.dataset(), at.FILM_BOX_RULES, self.caps, require=False, defaults=False,
                           fixed=at.FILM_BOX_FIXED)
        _check_densities({**film_box.attributes, **checked.values})
        film_box.attributes.update(checked.values)
        return _checked(checked)

    @_answer
    async def print_film_box(self, req: ServiceRequest) -> Result:
        _print_action(req)
        film_box = self._film_box(req, changing=False)
        session = self._state(req).session
        assert session is not None  # the film box was found in it
        return self._print(req, session, [film_box], FILM_BOX_QUEUE_FULL, FILM_BOX_WITHOUT_IMAGES)

    @_answer
    async def delete_film_box(self, req: ServiceRequest) -> Result:
        film_box = self._film_box(req, changing=True)
        state = self._state(req)
        assert state.session is not None
        state.session.film_boxes.remove(film_box)
        for box in film_box.image_boxes:
            state.image_boxes.pop(box.uid, None)
        return Result()

    # ------------------------------------------------------------------ Image Boxes (H.4.3)
    @_answer
    async def set_image_box(self, req: ServiceRequest) -> Result:
        state = self._state(req)
        uid = req.message.requested_sop_instance_uid
        entry = state.image_boxes.get(uid)
        if entry is None:
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"no Image Box {uid} on this association")
        film_box, box = entry
        if box.sop_class != req.message.requested_sop_class_uid:
            raise PrintFailure(st.CLASS_INSTANCE_CONFLICT, f"Image Box {uid} is a {SOP_CLASS_NAMES[box.sop_class]}")
        if not film_box.current:
            raise PrintFailure(st.PROCESSING_FAILURE, "only the image boxes of the last created Film Box can be set")
        ds = await anyio.to_thread.run_sync(req.dataset)  # the pixel data: decoding off the event loop
        checked = at.check(ds, at.image_box_rules(box.sop_class), self.caps, require=True, defaults=False)
        if state.image_boxes.get(uid) is not entry:  # deleted while the data set was decoded
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"Image Box {uid} was deleted")
        values = checked.values
        position = values.pop("ImageBoxPosition")
        if position != box.position:
            raise PrintFailure(st.INVALID_ATTRIBUTE_VALUE, f"Image Box Position {position} is not this box's "
                               f"({box.position} of {len(film_box.image_boxes)})",
                               offending=(at.tag_of("ImageBoxPosition"),))
        pixels = values.pop("BasicColorImageSequence" if box.sop_class == COLOR_IMAGE_BOX
                            else "BasicGrayscaleImageSequence", None)
        if pixels is not None and pixels.bits_allocated == 16 and req.transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
            pixels = dataclasses.replace(pixels, big_endian=True)
        merged = {**box.attributes, **values}
        _check_densities(merged)
        status = checked.status
        if pixels is not None:
            outcome = self._placement(film_box, box.position, pixels, merged)
            if outcome == "too large":
                raise PrintFailure(IMAGE_TOO_LARGE, "image larger than the image box and Requested "
                                   "Decimate/Crop Behavior is FAIL")
            if outcome in _PLACEMENT_STATUS:
                status = _PLACEMENT_STATUS[outcome]
            session = state.session
            assert session is not None  # its image boxes are indexed only while it exists
            held = session.pixel_bytes() - (len(box.pixels.data) if box.pixels is not None else 0)
            if held + len(pixels.data) > self.caps.max_session_bytes:
                raise PrintFailure(INSUFFICIENT_MEMORY, f"the film session may hold {self.caps.max_session_bytes} "
                                   "bytes of pixel data")
        box.attributes = merged
        box.pixels = pixels
        return Result(status=status, error_comment=checked.comment, fields=checked.fields())

    def _placement(self, film_box: FilmBox, position: int, pixels: Any, attrs: Mapping[str, Any]) -> str:
        """How the image fits its box on this printer (PS3.4 H.4.3.1.2.1.2: B604/B609/B60A, C603)."""
        a = film_box.attributes
        dpi = self.caps.dpi(a.get("RequestedResolutionID"))
        geometry = film_geometry(film_box.display_format, a["FilmSizeID"], a["FilmOrientation"], dpi)
        size = attrs.get("RequestedImageSize")
        return place(pixels.columns, pixels.rows, geometry.boxes[position - 1], aspect=pixels.aspect,
                     magnification=attrs.get("MagnificationType") or a.get("MagnificationType", "BILINEAR"),
                     behavior=attrs.get("RequestedDecimateCropBehavior", "DECIMATE"),
                     requested_width=mm_to_px(size, dpi) if size else None).outcome

    # ------------------------------------------------------------------ Printer (H.4.6), Print Job (H.4.5)
    @_answer
    async def get_printer(self, req: ServiceRequest) -> Result:
        if req.message.requested_sop_instance_uid != PRINTER_INSTANCE:
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"the Printer SOP Instance is {PRINTER_INSTANCE}")
        self.queue.listen(req.assoc)  # an association asking about the printer hears of its changes
        state = self.printer.state
        values = {"PrinterStatus": state.status, "PrinterStatusInfo": state.info, "PrinterName": self.printer.name,
                  **self.printer.description}
        return _get(values, req.message.attribute_identifier_list)

    @_answer
    async def get_print_job(self, req: ServiceRequest) -> Result:
        uid = req.message.requested_sop_instance_uid
        record = self.queue.jobs.get(uid)
        if record is None:
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"no Print Job {uid}")
        return _get(self.queue.attributes(record), req.message.attribute_identifier_list)

    # ------------------------------------------------------------------ printing
    def _print(self, req: ServiceRequest, session: FilmSession, films: list[FilmBox], queue_full: int,
               empty: int) -> Result:
        """N-ACTION print: the films copied into a new Print Job, answered with its UID (PS3.4 H.4.1.2.4.1)."""
        if self.queue.active >= self.caps.max_queued_jobs:
            raise PrintFailure(queue_full, f"{self.queue.active} print jobs are waiting: print queue is full")
        job = session.job(generate_uid(prefix=None), films, req.calling_ae, datetime.now())
        self.queue.submit(job, req.assoc, req.context_id)
        reply = Dataset()
        reply.add_new(REFERENCED_PRINT_JOB_SEQUENCE, "SQ", [_reference(PRINT_JOB, job.uid)])
        req.assoc.log.info("print job queued", job=job.uid, films=len(films))
        if any(f.has_images for f in films):
            return Result(dataset=reply)
        return Result(status=empty, dataset=reply, error_comment="no image box holds an image: empty film")

    async def printer_state_changed(self) -> None:
        """For a printer that changes state on its own: tell the associations using it (PS3.4 H.4.6.2.1)."""
        await self.queue.printer_state_changed()

    # ------------------------------------------------------------------ lookups
    def _state(self, req: ServiceRequest) -> _AssociationState:
        state = self._states.get(req.assoc)
        if state is None:
            state = self._states[req.assoc] = _AssociationState()
            self.queue.listen(req.assoc)  # it uses the printer: it hears of its state changes (PS3.4 H.4.6.2.1.2)
        return state

    def _meta(self, req: ServiceRequest) -> str:
        if req.abstract_syntax not in META_CLASSES:
            raise PrintFailure(st.SOP_CLASS_NOT_SUPPORTED, "Film Session and Film Box requests need a Print "
                               "Management Meta SOP Class context")
        return req.abstract_syntax

    def _session(self, req: ServiceRequest) -> FilmSession:
        session = self._state(req).session
        wanted = req.message.requested_sop_instance_uid
        if session is None or session.uid != wanted:
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"no Film Session {wanted} on this association")
        return session

    def _film_box(self, req: ServiceRequest, *, changing: bool) -> FilmBox:
        uid = req.message.requested_sop_instance_uid
        session = self._state(req).session
        film_box = next((f for f in session.film_boxes if f.uid == uid), None) if session else None
        if film_box is None:
            raise PrintFailure(st.NO_SUCH_OBJECT_INSTANCE, f"no Film Box {uid} on this association")
        if changing and not film_box.current:
            raise PrintFailure(st.PROCESSING_FAILURE, "only the last created Film Box can be changed or deleted")
        return film_box

    def _new_uid(self, req: ServiceRequest, state: _AssociationState) -> str:
        """The SCU may propose the SOP Instance UID (PS3.7 §10.1.5.1.2); otherwise the SCP creates one."""
        proposed = req.message.affected_sop_instance_uid
        if not proposed:
            return generate_uid(prefix=None)
        if not is_valid_uid(proposed):
            raise PrintFailure(st.INVALID_OBJECT_INSTANCE, f"{proposed!r} is not a valid UID")
        session = state.session
        used = set(state.image_boxes) | ({session.uid} | {f.uid for f in session.film_boxes} if session else set())
        if proposed in used:
            raise PrintFailure(st.DUPLICATE_SOP_INSTANCE, f"SOP Instance {proposed} exists already")
        return proposed


# ---- helpers -------------------------------------------------------------------------------------


async def _unrecognized(req: ServiceRequest) -> Result:
    name = SOP_CLASS_NAMES.get(message_sop_class(req.message), "this SOP class")
    return Result(status=st.UNRECOGNIZED_OPERATION, error_comment=f"{type(req.message).__name__} not defined for {name}")


def _print_action(req: ServiceRequest) -> None:
    if req.message.action_type_id != ACTION_PRINT:
        raise PrintFailure(st.NO_SUCH_ACTION_TYPE, f"Action Type {req.message.action_type_id}: only 1 (print)")


def _check_densities(values: Mapping[str, Any]) -> None:
    lo, hi = values.get("MinDensity"), values.get("MaxDensity")
    if isinstance(lo, int) and isinstance(hi, int) and lo >= hi:
        raise PrintFailure(st.INVALID_ATTRIBUTE_VALUE, f"Min Density {lo} is not below Max Density {hi}",
                           offending=(at.tag_of("MinDensity"), at.tag_of("MaxDensity")))


def _reference(sop_class: str, uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = uid
    return item


def _dataset(values: Mapping[str, Any]) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _checked(checked: at.Checked) -> Result:
    return Result(status=checked.status, error_comment=checked.comment, fields=checked.fields())


def _created(uid: str, checked: at.Checked, ds: Dataset) -> Result:
    return Result(status=checked.status, dataset=ds, error_comment=checked.comment,
                  fields={"affected_sop_instance_uid": uid, **checked.fields()})


def _get(values: Mapping[str, Any], requested: tuple[int, ...] | None) -> Result:
    """An N-GET answer: every attribute, or those asked for; unknown ones → 0107H (PS3.7 §10.1.2.1.3)."""
    by_tag = {at.tag_of(k): (k, v) for k, v in values.items()}
    ds = Dataset()
    missing: list[int] = []
    for tag in requested or by_tag:
        if tag in by_tag:
            keyword, value = by_tag[tag]
            setattr(ds, keyword, value)
        else:
            missing.append(tag)
    if missing:
        return Result(status=st.ATTRIBUTE_LIST_ERROR, dataset=ds, error_comment="attributes not supported",
                      fields={"attribute_identifier_list": tuple(missing)})
    return Result(dataset=ds)


def install(dispatcher: Dispatcher, printer: Printer, **kwargs: Any) -> PrintScp:
    service = PrintScp(printer, **kwargs)
    service.install(dispatcher)
    return service
