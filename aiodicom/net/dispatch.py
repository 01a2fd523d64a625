"""Requests to handlers, handler results to responses.

A handler is an async callable `handler(req: ServiceRequest) -> Result` for single-response
operations, or an async iterator for C-FIND/C-GET/C-MOVE (each item a Pending response, the end
the final one; a C-CANCEL stops it with Cancel 0xFE00, PS3.7 §9.3.2.3). Handlers never build DIMSE
responses themselves: the dispatcher does, so every answer carries the right IDs and UIDs.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ..dimse import status as st
from ..dimse.messages import MESSAGE_TYPES, CStoreRQ, Request, Response
from .flag import Flag
from .sinks import ReceiveFailed

if TYPE_CHECKING:
    from .association import Association
    from .sinks import Sink


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What a handler answers: a status and, where the message has one, a data set and extra fields."""

    status: int = st.SUCCESS
    dataset: Any = None  # pydicom Dataset, EncodedDataset or encoded bytes (in the context's syntax)
    error_comment: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # other response fields, e.g. offending_elements


@dataclass(slots=True, kw_only=True)
class ServiceRequest:
    """A request as a handler sees it."""

    message: Request
    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    payload: Any  # EncodedDataset (default sink), what a service's own sink returned, or None
    assoc: Association
    cancelled: Flag = field(default_factory=Flag)  # set by C-CANCEL; a Flag costs nothing until awaited
    duplicate: bool = False  # its Message ID is that of an operation still running: not performed (0x0210)

    @property
    def calling_ae(self) -> str:
        return self.assoc.calling_ae

    def dataset(self):
        """The request's data set decoded with pydicom (only when a handler asks)."""
        return None if self.payload is None else self.payload.dataset()


class OperationCancelled(Exception):
    """Thrown into a streaming handler at its yield once the peer sent C-CANCEL (PS3.7 §9.3.2.3)."""


_END = object()


def _is_pending(item: Any) -> bool:
    return not isinstance(item, Result) or st.category(item.status) is st.Category.PENDING


HandlerResult = Union[int, Result]
Handler = Callable[[ServiceRequest], Union[Awaitable[HandlerResult], AsyncIterator[Any]]]
SinkFactory = Callable[["Association", Request, int], Union["Sink", ReceiveFailed, None]]


class Dispatcher:
    """Routes each request type to its handler; knows every abstract syntax its services accept."""

    def __init__(self) -> None:
        self.handlers: dict[type[Request], Handler] = {}
        self.sink_factories: dict[type[Request], SinkFactory] = {}
        self.supported: dict[str, frozenset[str]] = {}
        self.scp_role_classes: set[str] = set()
        # SOP class → answer to its SOP class extended negotiation (PS3.7 D.3.3.5): proposed bytes in,
        # accepted bytes out (None: no answer, the defaults apply)
        self.extended: dict[str, Callable[[bytes], bytes | None]] = {}
        self._operations: dict[tuple[int, int], ServiceRequest] = {}
        self.inline: set[type[Request]] = set()
        # Meta SOP class → the SOP classes a context for it covers (PS3.4 H.3.2.2: Print Management)
        self.meta_members: dict[str, frozenset[str]] = {}

    def add(self, request_type: type[Request], handler: Handler, *, sink: SinkFactory | None = None,
            inline: bool = False) -> None:
        """Route a request type to a handler. `inline`: the handler finishes by itself, quickly and
        without waiting on the peer (C-ECHO, a C-STORE to disk), so on an association with one
        operation at a time the reader may await it directly instead of spawning a task for it. A
        handler that waits on the peer (C-GET's sub-operations) or a C-CANCEL must never be inline."""
        self.handlers[request_type] = handler
        if sink is not None:
            self.sink_factories[request_type] = sink
        if inline:
            self.inline.add(request_type)
        else:
            self.inline.discard(request_type)

    def support(self, abstract_syntaxes: Mapping[str, Collection[str]] | Collection[str],
                transfer_syntaxes: Collection[str] = ()) -> None:
        """Accept these abstract syntaxes (each with its transfer syntaxes)."""
        if isinstance(abstract_syntaxes, Mapping):
            for uid, tss in abstract_syntaxes.items():
                self.supported[uid] = self.supported.get(uid, frozenset()) | frozenset(tss)
        else:
            for uid in abstract_syntaxes:
                self.supported[uid] = self.supported.get(uid, frozenset()) | frozenset(transfer_syntaxes)

    def answer_extended(self, sop_class_uid: str, info: bytes) -> bytes | None:
        answer = self.extended.get(sop_class_uid)
        return None if answer is None else answer(info)

    # ---------------------------------------------------------------- the Association's interface
    def open_sink(self, assoc: Association, message: Request, context_id: int) -> Sink | ReceiveFailed | None:
        factory = self.sink_factories.get(type(message))
        return None if factory is None else factory(assoc, message, context_id)

    def runs_inline(self, message: Request) -> bool:
        return type(message) in self.inline

    def cancel(self, assoc: Association, message_id: int) -> None:
        req = self._operations.get((assoc.id, message_id))
        assoc.log.info("C-CANCEL received", message_id=message_id, operation_found=req is not None)
        if req is not None:
            req.cancelled.set()

    def begin(self, assoc: Association, message: Request, context_id: int, payload: Any) -> ServiceRequest:
        """Register an operation as soon as its request is read, before its task runs: a C-CANCEL read in
        the same chunk right behind it must find it (PS3.7 §9.3.2.3)."""
        abstract, ts = assoc.negotiated.contexts[context_id]
        req = ServiceRequest(message=message, context_id=context_id, abstract_syntax=abstract,
                             transfer_syntax=ts, payload=payload, assoc=assoc)
        if type(message) in self.handlers and not isinstance(payload, ReceiveFailed):
            key = (assoc.id, message.message_id)  # type: ignore[attr-defined]
            if key in self._operations:  # with an operations window: a C-CANCEL could not tell the two apart
                req.duplicate = True
            else:
                self._operations[key] = req
        return req

    async def handle(self, req: ServiceRequest) -> None:
        """Run a begun operation's handler and answer it."""
        message, assoc, payload = req.message, req.assoc, req.payload
        rsp_type: type[Response] = MESSAGE_TYPES[message.command_field | 0x8000]  # type: ignore[assignment]
        if isinstance(payload, ReceiveFailed):
            await self._respond(req, rsp_type, Result(status=payload.status, error_comment=payload.comment))
            return
        sop_class = message_sop_class(message)
        if sop_class and sop_class != req.abstract_syntax and not self._negotiated(assoc, sop_class):
            # PS3.7 D.3.2: a SOP class is used only over a context negotiated for it. Only a class negotiated on
            # no context at all is refused (a request on another of its contexts is served, as DCMTK does):
            # 0x0122 for a C-service, 0x0118 for an N-service (PS3.7 C.5.11)
            status = st.SOP_CLASS_NOT_SUPPORTED if message.command_field < 0x0100 else st.NO_SUCH_SOP_CLASS
            assoc.log.warning("request for a SOP class not negotiated", command=type(message).__name__,
                              sop_class=sop_class, status=f"0x{status:04X}")
            await self._respond(req, rsp_type, Result(status=status, error_comment=(
                f"{sop_class} was not negotiated on this association")))
            return
        if req.duplicate:  # PS3.7 C.5.3
            await self._respond(req, rsp_type, Result(status=st.DUPLICATE_INVOCATION, error_comment=(
                f"Message ID {message.message_id} is that of an operation still in progress")))  # type: ignore[attr-defined]
            return
        handler = self.handlers.get(type(message))
        if handler is None:
            # PS3.7 C.4.2: the operation is not one this SCP performs on this SOP class
            await assoc.send(rsp_type.for_request(message, st.UNRECOGNIZED_OPERATION,
                                                  error_comment=f"{type(message).__name__} not supported"),
                             req.context_id)
            return
        key = (assoc.id, message.message_id)  # type: ignore[attr-defined]
        try:
            outcome = handler(req)
            if inspect.isasyncgen(outcome) or hasattr(outcome, "__anext__"):
                await self._stream(req, rsp_type, outcome)  # type: ignore[arg-type]
            else:
                result = await outcome  # type: ignore[misc]
                await self._respond(req, rsp_type, result)
        except Exception as exc:
            from .errors import AssociationError

            if isinstance(exc, AssociationError):
                raise
            assoc.log.exception("handler raised", command=type(message).__name__)
            await self._respond(req, rsp_type, Result(status=failure_status(message),
                                                      error_comment=f"processing failed: {exc}"))
        finally:
            if self._operations.get(key) is req:  # a peer reusing a message ID must not unregister another
                del self._operations[key]

    def _negotiated(self, assoc: Association, sop_class: str) -> bool:
        members = self.meta_members
        return any(abstract == sop_class or sop_class in members.get(abstract, ())
                   for abstract, _ in assoc.negotiated.contexts.values())

    async def _stream(self, req: ServiceRequest, rsp_type: type[Response], items: AsyncIterator[Any]) -> None:
        """Each item a Pending response; the end (or a final Result) the final one. After a C-CANCEL the
        handler gets OperationCancelled at its yield: it may answer its own final Cancel (C-MOVE/C-GET
        with their counts, PS3.4 C.4.2.3.1); if it lets it escape, a plain Cancel is sent."""
        final: Result | None = None
        try:
            item = await anext(items, _END)
            while item is not _END:
                if isinstance(item, Result) and not _is_pending(item):
                    final = item
                    break
                if req.cancelled.is_set():
                    try:
                        item = await items.athrow(OperationCancelled())  # type: ignore[attr-defined]
                    except (OperationCancelled, StopAsyncIteration):
                        final = Result(status=st.CANCEL)
                        break
                    continue  # the handler's answer to the cancel: its final response, or one more Pending
                await self._respond(req, rsp_type, item if isinstance(item, Result)
                                    else Result(status=st.PENDING, dataset=item))
                item = await anext(items, _END)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        if final is None:
            final = Result(status=st.CANCEL if req.cancelled.is_set() else st.SUCCESS)
        await self._respond(req, rsp_type, final)

    async def _respond(self, req: ServiceRequest, rsp_type: type[Response], result: HandlerResult) -> None:
        if isinstance(result, int):
            result = Result(status=result)
        data = result.dataset
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)) and hasattr(data, "to_json"):
            from ..dimse.dataset import EncodedDataset

            data = EncodedDataset.from_dataset(data, req.transfer_syntax)
        extra: dict[str, Any] = dict(result.fields)
        if result.error_comment is not None:
            extra["error_comment"] = error_comment(result.error_comment)
        rsp = rsp_type.for_request(req.message, result.status, has_dataset=data is not None, **extra)
        await req.assoc.send(rsp, req.context_id, data)


def message_sop_class(message: Request) -> str:
    """The SOP class a request names: its Affected or Requested SOP Class UID ("" for a C-CANCEL)."""
    return getattr(message, "affected_sop_class_uid", None) or getattr(message, "requested_sop_class_uid", None) or ""


def failure_status(message: Request) -> int:
    """The generic 'cannot process' failure of each service (PS3.4 B.2.3, C.4.x; PS3.7 C.4.3)."""
    if isinstance(message, CStoreRQ):
        return st.CANNOT_UNDERSTAND
    if message.command_field in (0x0020, 0x0010, 0x0021):
        return st.UNABLE_TO_PROCESS
    return st.PROCESSING_FAILURE


def error_comment(text: str) -> str:
    """An Error Comment (0000,0902) is LO: 64 characters of the default repertoire, no backslash."""
    # "PS3.5 §9.1" reads as well as "PS3.5 9.1"; other characters outside the repertoire become "?"
    clean = text.replace("§", "").encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return shorten("".join(c if " " <= c <= "~" else " " for c in clean).rstrip(), 64)


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters: a longer text ends on a word with "...", so a cut-off reads as one ("needs one
    val" read as if complete; a port number cut in half as another port)."""
    if len(text) <= limit:
        return text
    room = limit - 3
    cut = text.rfind(" ", 0, room)
    return (text[:cut] if cut >= room * 2 // 3 else text[:room]).rstrip(" ,;:(") + "..."
