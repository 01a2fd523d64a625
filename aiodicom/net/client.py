"""The SCU side: `async with aiodicom.connect(...) as assoc:` then `await assoc.echo()` / `assoc.store(...)`.

Leaving the block releases the association; an exception or a cancellation inside it aborts it
(A-ABORT), so no association is ever left half-open.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import anyio

from ..archive.uid import validate_ae_title
from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import (
    CEchoRQ,
    CStoreRQ,
    NActionRQ,
    NCreateRQ,
    NDeleteRQ,
    NEventReportRQ,
    NGetRQ,
    NSetRQ,
    Request,
    Response,
)
from ..dimse.transcode import CannotConvert, accepted_syntaxes, choose_syntax, convert
from ..implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..log import get_logger
from ..uids import (
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION,
    uid_name,
)
from ..ul.machine import ARTIM, Role, UlConfig
from ..ul.pdu import (
    AssociateRQ,
    AsyncOpsWindow,
    ExtendedNegotiation,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityRQ,
    UserInformation,
)
from . import qr
from .association import Association, Dispatcher, close_payload
from .errors import ConnectionFailed, NoPresentationContext
from .transport import open_connection

MAX_CONTEXTS = 128  # PS3.8 §9.3.2.2: odd IDs 1..255


@dataclass(frozen=True, slots=True)
class Status:
    """A DIMSE status as an SCU sees it: the code, its PS3.7 name and category, and the response."""

    code: int
    response: Response | None = None

    @property
    def ok(self) -> bool:
        return self.code == st.SUCCESS

    @property
    def category(self) -> st.Category:
        return st.category(self.code)

    @property
    def error_comment(self) -> str | None:
        return getattr(self.response, "error_comment", None)

    def __int__(self) -> int:
        return self.code

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return self.code == other
        if isinstance(other, Status):
            return self.code == other.code
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.code)

    def __str__(self) -> str:
        comment = self.error_comment
        return st.describe(self.code) + (f" ({comment})" if comment else "")


@dataclass(frozen=True, slots=True)
class NResult:
    """A DIMSE-N response: its status, its data set (decoded) and the SOP Instance UID it concerns."""

    status: Status
    dataset: Any = None
    sop_instance_uid: str | None = None

    @property
    def ok(self) -> bool:
        return self.status.ok


def context_list(contexts: Iterable[str | tuple[str, Sequence[str]]]) -> tuple[PresentationContextRQ, ...]:
    """Presentation contexts from abstract syntaxes (default transfer syntaxes) or (abstract, syntaxes)."""
    out = []
    for i, spec in enumerate(contexts):
        if i >= MAX_CONTEXTS:
            raise ValueError(f"more than {MAX_CONTEXTS} presentation contexts")
        abstract, tss = (spec, UNCOMPRESSED_TRANSFER_SYNTAXES) if isinstance(spec, str) else spec
        out.append(PresentationContextRQ(context_id=2 * i + 1, abstract_syntax=abstract, transfer_syntaxes=tuple(tss)))
    return tuple(out)


class Client:
    """An established association, requestor side: the operations a user calls."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc

    @property
    def negotiated(self):
        return self.assoc.negotiated

    @property
    def is_established(self) -> bool:
        return self.assoc.is_established

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int:
        cid = self.assoc.negotiated.context_for(abstract_syntax, transfer_syntax)
        if cid is None:
            what = abstract_syntax + (f" in {transfer_syntax}" if transfer_syntax else "")
            raise NoPresentationContext(f"no accepted presentation context for {what}")
        return cid

    async def request(self, message: Request, context_id: int, dataset: Any = None) -> tuple[Response, Any]:
        return await self.assoc.request(message, context_id, dataset)

    def request_iter(self, message: Request, context_id: int, dataset: Any = None):
        return self.assoc.request_iter(message, context_id, dataset)

    def next_message_id(self) -> int:
        return self.assoc.next_message_id()

    async def echo(self) -> Status:
        """C-ECHO (Verification, PS3.4 Annex A)."""
        cid = self.context_for(VERIFICATION)
        rsp, _ = await self.assoc.request(CEchoRQ(message_id=self.next_message_id()), cid)
        return Status(rsp.status, rsp)

    async def store(self, source: str | PathLike[str] | EncodedDataset | Any, *,
                    sop_class_uid: str | None = None, sop_instance_uid: str | None = None,
                    move_originator: tuple[str, int] | None = None) -> Status:
        """C-STORE one instance: a PS3.10 file path, an EncodedDataset (with UIDs given) or a pydicom Dataset.

        The data set is sent as it is encoded when the peer accepted that transfer syntax. Otherwise it is
        converted, in a worker thread, into a syntax the peer accepted for its SOP class (dimse/transcode.py:
        between uncompressed syntaxes always, from a compressed one with the convert extra's decoders);
        NoPresentationContext, with the reason, when that is impossible.
        """
        encoded, sop_class, sop_instance = _prepare(source, sop_class_uid, sop_instance_uid)
        negotiated = self.assoc.negotiated
        cid = negotiated.context_for(sop_class, encoded.transfer_syntax)
        converted: EncodedDataset | None = None
        if cid is None:
            accepted = accepted_syntaxes(negotiated.contexts.items(), sop_class)
            if not accepted:  # the SOP class itself was refused (or never proposed): no syntax would do
                raise NoPresentationContext(f"the peer did not accept {uid_name(sop_class)} ({sop_class})")
            try:
                target = choose_syntax(encoded.transfer_syntax, accepted)
                converted = await anyio.to_thread.run_sync(convert, encoded, target)
            except CannotConvert as exc:
                raise NoPresentationContext(f"no accepted presentation context for {sop_class} in "
                                            f"{encoded.transfer_syntax}: {exc}") from None
            cid = negotiated.context_for(sop_class, target)
        message = CStoreRQ(message_id=self.next_message_id(), affected_sop_class_uid=sop_class,
                           affected_sop_instance_uid=sop_instance,
                           move_originator_ae=move_originator[0] if move_originator else None,
                           move_originator_message_id=move_originator[1] if move_originator else None)
        try:
            rsp, _ = await self.assoc.request(message, cid, converted or encoded)
        finally:
            if converted is not None:
                converted.close()
        return Status(rsp.status, rsp)

    # ---- DIMSE-N (PS3.7 §10): the data set of the request goes in the context's syntax ----------
    async def _n_request(self, message: Request, sop_class: str, dataset: Any) -> NResult:
        cid = self.context_for(sop_class)
        data = None
        if dataset is not None:
            data = dataset if isinstance(dataset, EncodedDataset) else \
                EncodedDataset.from_dataset(dataset, self.assoc.transfer_syntax(cid))
        rsp, payload = await self.assoc.request(message, cid, data)
        try:
            decoded = payload.dataset() if payload is not None else None
        finally:
            close_payload(payload)
        return NResult(Status(rsp.status, rsp), decoded,
                       getattr(rsp, "affected_sop_instance_uid", None) or getattr(message, "affected_sop_instance_uid",
                                                                                 None))

    async def n_create(self, sop_class: str, attributes: Any = None, *, instance_uid: str | None = None) -> NResult:
        """N-CREATE; the SCP assigns the SOP Instance UID when none is given (PS3.7 §10.1.5)."""
        msg = NCreateRQ(message_id=self.next_message_id(), affected_sop_class_uid=sop_class,
                        affected_sop_instance_uid=instance_uid, has_dataset=attributes is not None)
        return await self._n_request(msg, sop_class, attributes)

    async def n_set(self, sop_class: str, instance_uid: str, modifications: Any) -> NResult:
        msg = NSetRQ(message_id=self.next_message_id(), requested_sop_class_uid=sop_class,
                     requested_sop_instance_uid=instance_uid)
        return await self._n_request(msg, sop_class, modifications)

    async def n_get(self, sop_class: str, instance_uid: str, attributes: Iterable[int] | None = None) -> NResult:
        msg = NGetRQ(message_id=self.next_message_id(), requested_sop_class_uid=sop_class,
                     requested_sop_instance_uid=instance_uid,
                     attribute_identifier_list=tuple(attributes) if attributes is not None else None)
        return await self._n_request(msg, sop_class, None)

    async def n_action(self, sop_class: str, instance_uid: str, action_type: int, information: Any = None) -> NResult:
        msg = NActionRQ(message_id=self.next_message_id(), requested_sop_class_uid=sop_class,
                        requested_sop_instance_uid=instance_uid, action_type_id=action_type,
                        has_dataset=information is not None)
        return await self._n_request(msg, sop_class, information)

    async def n_delete(self, sop_class: str, instance_uid: str) -> NResult:
        msg = NDeleteRQ(message_id=self.next_message_id(), requested_sop_class_uid=sop_class,
                        requested_sop_instance_uid=instance_uid)
        return await self._n_request(msg, sop_class, None)

    async def n_event_report(self, sop_class: str, instance_uid: str, event_type: int,
                             information: Any = None) -> NResult:
        msg = NEventReportRQ(message_id=self.next_message_id(), affected_sop_class_uid=sop_class,
                             affected_sop_instance_uid=instance_uid, event_type_id=event_type,
                             has_dataset=information is not None)
        return await self._n_request(msg, sop_class, information)

    def find(self, identifier: Any, *, model: str = "study", priority: int = 0):
        """C-FIND: an async iterator of matching identifiers (see aiodicom.net.qr.find)."""
        return qr.find(self, identifier, model=model, priority=priority)

    def move(self, identifier: Any, destination: str, *, model: str = "study", priority: int = 0):
        """C-MOVE: an async iterator of Progress, the final response last."""
        return qr.move(self, identifier, destination, model=model, priority=priority)

    def get(self, identifier: Any, *, model: str = "study", priority: int = 0):
        """C-GET: an async iterator of Progress; instances arrive through connect()'s dispatcher."""
        return qr.get(self, identifier, model=model, priority=priority)

    async def release(self) -> None:
        await self.assoc.release()

    async def abort(self) -> None:
        await self.assoc.abort()


def _prepare(source: Any, sop_class_uid: str | None, sop_instance_uid: str | None
             ) -> tuple[EncodedDataset, str, str]:
    if isinstance(source, (str, PathLike)):
        encoded, meta = EncodedDataset.from_file(source)
        return encoded, sop_class_uid or meta.sop_class_uid, sop_instance_uid or meta.sop_instance_uid
    if isinstance(source, EncodedDataset):
        if not (sop_class_uid and sop_instance_uid):
            ds = source.dataset()
            sop_class_uid = sop_class_uid or str(ds.SOPClassUID)
            sop_instance_uid = sop_instance_uid or str(ds.SOPInstanceUID)
        return source, sop_class_uid, sop_instance_uid
    # a pydicom Dataset: encode in its own syntax when it says one, else Explicit VR Little Endian
    ts = None
    meta = getattr(source, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        ts = str(meta.TransferSyntaxUID)
    encoded = EncodedDataset.from_dataset(source, ts or "1.2.840.10008.1.2.1")
    return encoded, sop_class_uid or str(source.SOPClassUID), sop_instance_uid or str(source.SOPInstanceUID)


@contextlib.asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    calling_ae: str = "AIODICOM",
    called_ae: str = "ANY-SCP",
    contexts: Iterable[str | tuple[str, Sequence[str]]] = (VERIFICATION,),
    ssl_context: ssl.SSLContext | None = None,
    max_pdu: int = 262_144,
    connect_timeout: float = 30.0,
    acse_timeout: float = 30.0,
    dimse_timeout: float | None = 60.0,
    roles: Iterable[RoleSelection] = (),
    async_ops: AsyncOpsWindow | None = None,
    user_identity: UserIdentityRQ | None = None,
    extended: Iterable[ExtendedNegotiation] = (),
    dispatcher: Dispatcher | None = None,
    log: Any = None,
) -> AsyncIterator[Client]:
    """Open an association; release it when the block ends, abort it when the block fails.

    Raises ValueError for an AE title PS3.5 does not allow (1-16 characters, no backslash or control characters),
    before connecting."""
    for what, title in (("calling", calling_ae), ("called", called_ae)):
        try:
            validate_ae_title(title)
        except ValueError as exc:
            raise ValueError(f"{what} AE title: {exc}") from None
    rq = AssociateRQ(
        called_ae=called_ae,
        calling_ae=calling_ae,
        contexts=context_list(contexts),
        user_info=UserInformation(
            max_pdu=max_pdu, implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME, async_ops=async_ops,
            roles=tuple(roles), extended=tuple(extended), user_identity_rq=user_identity,
        ),
    )
    try:
        with anyio.fail_after(connect_timeout):
            stream = await open_connection(host, port, ssl_context=ssl_context, handshake_timeout=connect_timeout)
    except TimeoutError:
        raise ConnectionFailed(f"connection to {host}:{port} timed out after {connect_timeout} s") from None
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConnectionFailed(f"cannot connect to {host}:{port}: {reason}") from None
    log = (log or get_logger()).bind(peer=f"{host}:{port}", calling=calling_ae, called=called_ae)
    # ARTIM bounds the wait in Sta13 for the peer to close after our A-ABORT (PS3.8 §9.1.5): no longer than
    # the caller's own timeout, or a peer that stopped answering holds us ~10 s past a 1 s timeout
    ul = UlConfig(max_pdu=max_pdu, request_timeout=acse_timeout, artim=min(ARTIM, acse_timeout))
    assoc = Association(stream, role=Role.REQUESTOR, ul_config=ul,
                        log=log, dimse_timeout=dimse_timeout, dispatcher=dispatcher, peer=stream.peer())
    assoc.assoc_rq = rq
    assoc.ul.send(rq)  # Evt1 → Sta4; the transport is already open, so connection_made (Evt2) sends it
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(assoc.run)
        await assoc.established.wait()
        if assoc.error is None:
            try:
                yield Client(assoc)
            except BaseException as exc:  # re-raised below, outside the task group, unwrapped
                failure = exc
                await assoc.abort()
            else:
                with anyio.CancelScope(shield=True):
                    if assoc.is_established:
                        await assoc.release()
        else:
            await assoc.finished.wait()
            failure = assoc.error
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
