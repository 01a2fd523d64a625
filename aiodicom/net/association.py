"""`Association`: one association on a byte stream, either side, driving the sans-IO layers.

The reader task feeds received bytes to the Upper Layer, PDVs to the DIMSE assembler, data-set
fragments straight to a sink (a spool, or the file a C-STORE will become), responses to the
operation waiting for them and requests to the dispatcher, each in its own task, up to the
negotiated asynchronous operations window. Senders write whole messages under a lock, so the
PDVs of two messages never interleave (PS3.8 Annex E).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ..dimse import status as st
from ..dimse.assembly import CommandComplete, DataFragment, MessageAssembler
from ..dimse.dataset import EncodedDataset
from ..dimse.errors import DimseError
from ..dimse.fragment import max_fragment_size
from ..dimse.messages import MESSAGE_TYPES, CCancelRQ, Message, Request, Response, encode_message
from ..dimse.status import Category
from ..ul import events as ev
from ..ul.constants import AbortReason, AbortSource
from ..ul.errors import LocalProtocolError
from ..ul.machine import UlConfig, UpperLayer
from ..ul.negotiation import Negotiated, negotiated
from ..ul.pdu import Abort, AssociateAC, AssociateRJ, AssociateRQ
from ..ul.pdv import Pdv
from .errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    AssociationTimeout,
)
from .dispatch import error_comment
from .flag import Flag
from .sinks import ReceiveFailed, Sink, SpoolSink
from .stream import FastStream
from .transport import RECEIVE_SIZE

_FLUSH_BYTES = 1 << 20  # queue this much P-DATA before writing: few large writes beat many small ones
_FILE_CHUNK = 1 << 20
_ids = itertools.count(1)
# PS3.5 A.5: a deflated data set of odd length is padded with one trailing NUL; peers (DCMTK) refuse
# odd-length data set fragments, and any other odd-length data set is malformed already.
_PAD = b"\x00"


class Dispatcher(Protocol):
    """What answers a peer's requests (the SCP side, and an SCU's C-GET/N-EVENT-REPORT handlers)."""

    def open_sink(self, assoc: Association, message: Request, context_id: int) -> Sink | None: ...

    def begin(self, assoc: Association, message: Request, context_id: int, payload: Any) -> Any: ...

    async def handle(self, operation: Any) -> None: ...

    def cancel(self, assoc: Association, message_id: int) -> None: ...

    def runs_inline(self, message: Request) -> bool: ...


class Association:
    __slots__ = (
        "id", "stream", "ul", "log", "peer", "dimse_timeout", "idle_timeout", "dispatcher", "on_associate",
        "spool_memory_limit", "spool_dir", "max_dataset_size", "negotiated", "assoc_rq", "error", "established",
        "finished", "user_identity", "counted_ae", "_assembler", "_write_lock", "_message_lock", "_waiters",
        "_incoming", "_inflight", "_children", "_idle", "_window", "_serial", "_tg", "_last_activity", "_message_ids", "__weakref__",
    )

    def __init__(
        self,
        stream: FastStream,
        *,
        role: str,
        ul_config: UlConfig,
        log: Any,
        dimse_timeout: float | None = 60.0,
        idle_timeout: float | None = None,
        dispatcher: Dispatcher | None = None,
        on_associate: Callable[[AssociateRQ], Awaitable[AssociateAC | AssociateRJ]] | None = None,
        spool_memory_limit: int = 4 << 20,
        spool_dir: str | None = None,
        max_dataset_size: int | None = None,
        peer: tuple[str, int] = ("?", 0),
    ) -> None:
        self.id = next(_ids)
        self.stream = stream
        self.ul = UpperLayer(role, ul_config)
        self.log = log
        self.peer = peer
        self.dimse_timeout = dimse_timeout
        self.idle_timeout = idle_timeout
        self.dispatcher = dispatcher
        self.on_associate = on_associate
        self.spool_memory_limit = spool_memory_limit
        self.spool_dir = spool_dir
        self.max_dataset_size = max_dataset_size
        self.negotiated = Negotiated()
        self.assoc_rq: AssociateRQ | None = None
        self.error: AssociationError | None = None
        self.established = Flag()  # set on accept, reject or failure: check self.error
        self.finished = Flag()
        self.user_identity: Any = None  # what the authenticator returned, for handlers
        self.counted_ae: str | None = None  # the calling AE this association counts against (server limits)
        self._assembler = MessageAssembler()
        self._write_lock = asyncio.Lock()  # asyncio's locks allocate their waiter queue only when contended
        self._message_lock = asyncio.Lock()
        self._waiters: dict[int, MemoryObjectSendStream] = {}
        self._incoming: tuple[Message, int, Sink | ReceiveFailed, int] | None = None  # message, context, sink, bytes
        self._inflight = 0
        self._children = 0  # background tasks (start_soon) still running
        self._idle = Flag(True)
        self._window: asyncio.Semaphore | None = None
        self._serial = False  # the peer may have one request outstanding at a time
        self._tg: TaskGroup | None = None
        self._last_activity = 0.0
        self._message_ids = itertools.count(1)

    # ------------------------------------------------------------------ properties
    @property
    def calling_ae(self) -> str:
        return self.assoc_rq.calling_ae if self.assoc_rq else ""

    @property
    def called_ae(self) -> str:
        return self.assoc_rq.called_ae if self.assoc_rq else ""

    @property
    def is_established(self) -> bool:
        return self.established.is_set() and self.error is None and not self.ul.closed

    def transfer_syntax(self, context_id: int) -> str:
        return self.negotiated.contexts[context_id][1]

    def abstract_syntax(self, context_id: int) -> str:
        return self.negotiated.contexts[context_id][0]

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run background work that belongs to this association (e.g. a print job that reports with
        N-EVENT-REPORT): it is cancelled when the association ends, unless it shields itself."""
        if self._tg is None:
            raise AssociationAborted(detail="association is not running")
        self._tg.start_soon(self._counted, func, *args)

    async def _counted(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._children += 1
        try:
            await func(*args)
        finally:
            self._children -= 1

    def next_message_id(self) -> int:
        return (next(self._message_ids) - 1) % 0xFFFF + 1

    # ------------------------------------------------------------------ running
    async def run(self, *, start: Callable[[], None] | None = None) -> None:
        """Read until the association is over, then close the transport. Handlers run in a task group
        that is cancelled when the association ends."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                now = anyio.current_time()
                self._last_activity = now
                if start is not None:
                    start()
                await self._process(self.ul.connection_made(now))
                await self._flush()
                await self._read_loop()
                if self._children or self._inflight:
                    # anyio names the cancelling task in each cancellation message (a repr per task):
                    # worth skipping for the common association that ends with nothing running
                    tg.cancel_scope.cancel()
        except Exception as exc:  # contained: one association's failure never reaches the others
            if self.error is None:
                self.error = AssociationAborted(detail=f"internal error: {exc!r}")
            self.log.exception("association failed")
            with contextlib.suppress(Exception):
                self.ul.abort()
        finally:
            if self.ul.has_output:  # e.g. the A-ABORT of a cancelled association: sent even when cancelled
                with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
                    await self._flush()
            self._discard_incoming()
            self.stream.close()
            self._fail_waiters()
            self.established.set()
            self.finished.set()

    async def _read_loop(self) -> None:
        ul = self.ul
        while not ul.closed:
            try:
                chunk = await self.stream.receive(RECEIVE_SIZE, deadline=self._deadline())
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                chunk = b""
            now = anyio.current_time()
            if chunk is None:  # the deadline passed first
                events = self._on_deadline(now)
            else:
                self._last_activity = now
                events = ul.receive_data(chunk, now)
            await self._process(events)
            await self._flush()
            if chunk == b"":
                break
            chunk = events = None  # type: ignore[assignment]  # waiting, keep no read alive (up to 256 KiB)

    @property
    def _mid_message(self) -> bool:
        """A message is arriving: its data set, the rest of its command set or the rest of a PDU."""
        return self._incoming is not None or not self._assembler.idle or self.ul.receiving_pdu

    def _deadline(self) -> float:
        deadline = self.ul.timer_deadline() or math.inf
        if self.established.is_set() and self.error is None:
            # mid-message the peer owes its next PDU within the DIMSE timeout, or a half-sent message would hold
            # the slot for ever
            if self.dimse_timeout and self._mid_message:
                deadline = min(deadline, self._last_activity + self.dimse_timeout)
            elif self.idle_timeout and self._inflight == 0 and not self._waiters:
                deadline = min(deadline, self._last_activity + self.idle_timeout)
        return deadline

    def _on_deadline(self, now: float) -> list[ev.UlEvent]:
        timer = self.ul.timer_deadline()
        if timer is not None and now >= timer:
            return self.ul.handle_timer(now)
        what = "DIMSE timeout: no data for the message in progress" if self._mid_message else "idle timeout"
        self.error = AssociationTimeout(what)
        self.log.warning("aborting association", reason=what)
        return self.ul.abort()

    # ------------------------------------------------------------------ Upper Layer events
    async def _process(self, events: list[ev.UlEvent]) -> None:
        for event in events:
            match event:
                case ev.DataReceived(pdvs=pdvs):
                    for pdv in pdvs:
                        try:
                            dimse_events = self._assembler.feed(pdv)
                        except DimseError as exc:
                            if await self._answer_malformed(exc, pdv.context_id):
                                continue  # answered with its failure status: the association goes on
                            await self._dimse_protocol_error(exc)
                            return
                        for d in dimse_events:
                            await self._on_dimse(d)
                case ev.AssociationRequested(request=rq):
                    await self._answer_request(rq)
                case ev.AssociationAccepted(accept=ac):
                    self.negotiated = negotiated(self.assoc_rq, ac) if self.assoc_rq else Negotiated()
                    self._set_window()
                    self.established.set()
                case ev.AssociationRejected(reject=rj):
                    self.error = AssociationRejected(rj.result, rj.source, rj.reason)
                    self.established.set()
                case ev.ReleaseRequested():
                    if self._idle.is_set() or self._tg is None:
                        # not when a PDU read in the same chunk already ended the association (a second
                        # A-RELEASE-RQ in Sta8 is AA-8: the machine sent A-ABORT and waits in Sta13)
                        with contextlib.suppress(LocalProtocolError):
                            self.ul.release_response()
                    else:  # answer once our operations are done: their responses must precede A-RELEASE-RP
                        self.start_soon(self._release_when_idle)
                case ev.ReleaseConfirmed():
                    pass
                case ev.Aborted(source=source, reason=reason, local=local, detail=detail):
                    if self.error is None:
                        self.error = AssociationAborted(source, reason, detail)
                    if local:
                        self.log.warning("protocol error from peer, A-ABORT sent", detail=detail,
                                         reason=AbortReason(reason).name)
                    else:
                        self.log.info("association aborted by peer", source=int(source), reason=int(reason))
                    self._discard_incoming()
                    self.established.set()
                case ev.ConnectionLost():
                    if self.error is None:
                        self.error = AssociationAborted(detail="connection closed by the peer")
                    self._discard_incoming()
                    self.established.set()
                case ev.TimedOut():
                    if self.error is None:
                        self.error = AssociationTimeout("ACSE timeout: no answer from the peer in time")
                    self.established.set()

    async def _release_when_idle(self) -> None:
        await self._idle.wait()
        with contextlib.suppress(LocalProtocolError):
            self.ul.release_response()
        await self._flush()

    async def _answer_request(self, rq: AssociateRQ) -> None:
        self.assoc_rq = rq
        assert self.on_associate is not None, "an acceptor needs on_associate"
        answer = await self.on_associate(rq)
        self.ul.send(answer)
        if isinstance(answer, AssociateAC):
            self.negotiated = negotiated(rq, answer)
            self._set_window()
        else:
            self.error = AssociationRejected(answer.result, answer.source, answer.reason)
        self.established.set()

    def _set_window(self) -> None:
        # requests the peer may have outstanding with us at once: the window we perform
        n = self.negotiated.max_operations_invoked if not self.ul.is_requestor else \
            self.negotiated.max_operations_performed
        self._window = asyncio.Semaphore(n if n > 0 else 1 << 16)
        self._serial = n == 1

    async def _answer_malformed(self, exc: DimseError, context_id: int) -> bool:
        """A request whose command set decoded but is not a valid message (a mandatory element missing, PS3.7
        9.3/10.3): answer it with the failure status the decoder chose (0x0212 Mistyped argument) and go on, as the
        assembler does (it drops the request's data set). False when it cannot be answered: unreadable bytes, an
        unknown Command Field (no response type to answer with), a response or a C-CANCEL."""
        rsp_type = MESSAGE_TYPES.get((exc.command_field or 0) | 0x8000)
        if not exc.answerable or rsp_type is None or not issubclass(rsp_type, Response):
            return False
        assert exc.status is not None and exc.message_id is not None
        self.log.warning("malformed request answered with a failure status", status=f"0x{exc.status:04X}",
                         detail=str(exc))
        await self.send(rsp_type(message_id_being_responded_to=exc.message_id, status=exc.status,  # type: ignore[call-arg]
                                 error_comment=error_comment(str(exc))), context_id)
        return True

    async def _dimse_protocol_error(self, exc: DimseError) -> None:
        """A DIMSE-level violation (PS3.7 §6.3.1): nothing on this association can be trusted any more."""
        self.log.warning("DIMSE protocol error, aborting", detail=str(exc))
        if self.error is None:
            self.error = AssociationAborted(AbortSource.SERVICE_USER, 0, f"DIMSE error: {exc}")
        self._discard_incoming()
        self.ul.abort(Abort(source=AbortSource.SERVICE_USER, reason=AbortReason.NOT_SPECIFIED))

    # ------------------------------------------------------------------ DIMSE messages in
    async def _on_dimse(self, event: CommandComplete | DataFragment) -> None:
        if isinstance(event, DataFragment):
            assert self._incoming is not None
            message, cid, sink, size = self._incoming
            size += len(event.data)
            if not isinstance(sink, ReceiveFailed):
                if self.max_dataset_size is not None and size > self.max_dataset_size:
                    sink = self._drop(sink, ReceiveFailed(st.OUT_OF_RESOURCES, "data set larger than accepted"))
                else:
                    try:
                        sink.write(event.data)
                    except Exception as exc:  # e.g. ENOSPC: answer this request, keep the association
                        status = getattr(exc, "status", st.OUT_OF_RESOURCES)
                        sink = self._drop(sink, ReceiveFailed(status, str(exc) or type(exc).__name__))
            self._incoming = (message, cid, sink, size)
            if event.is_last:
                self._incoming = None
                payload = sink if isinstance(sink, ReceiveFailed) else sink.close()
                await self._complete(message, cid, payload)
            return
        message, cid = event.message, event.context_id
        if message.has_dataset:
            self._incoming = (message, cid, self._open_sink(message, cid), 0)
        else:
            await self._complete(message, cid, None)

    def _drop(self, sink: Sink, failure: ReceiveFailed) -> ReceiveFailed:
        """Stop keeping a data set: the rest of its fragments are read and dropped."""
        sink.abort()
        self.log.warning("data set not kept", status=f"0x{failure.status:04X}", reason=failure.comment)
        return failure

    def _open_sink(self, message: Message, context_id: int) -> Sink | ReceiveFailed:
        if isinstance(message, Request) and self.dispatcher is not None:
            sink = self.dispatcher.open_sink(self, message, context_id)
            if sink is not None:
                return sink
        return SpoolSink(self.transfer_syntax(context_id), self.spool_memory_limit, self.spool_dir)

    def _discard_incoming(self) -> None:
        """A message cut short (abort, lost connection): its partial data set must not survive."""
        if self._incoming is not None:
            _, _, sink, _ = self._incoming
            self._incoming = None
            if not isinstance(sink, ReceiveFailed):
                sink.abort()

    async def _complete(self, message: Message, context_id: int, payload: Any) -> None:
        if isinstance(message, Response):
            waiter = self._waiters.get(message.message_id_being_responded_to)
            if waiter is None:
                self.log.warning("response to no outstanding request", message_id=message.message_id_being_responded_to)
                close_payload(payload)
                return
            waiter.send_nowait((message, payload))
            return
        if isinstance(message, CCancelRQ):
            if self.dispatcher is not None:
                self.dispatcher.cancel(self, message.message_id_being_responded_to)
            return
        if self.dispatcher is None or self._tg is None:
            close_payload(payload)
            return
        if self._window is not None:
            await self._window.acquire()  # backpressure: no more reading while the window is full
        self._inflight += 1
        self._idle.clear()
        operation = self.dispatcher.begin(self, message, context_id, payload)  # before any C-CANCEL is read
        if self._serial and self.dispatcher.runs_inline(message):
            # One operation at a time, and a handler that finishes by itself without the reader: no task.
            await self._serve(message, operation, payload)
        else:
            self._tg.start_soon(self._serve, message, operation, payload)

    async def _serve(self, message: Request, operation: Any, payload: Any) -> None:
        try:
            await self.dispatcher.handle(operation)  # type: ignore[union-attr]
        except AssociationError:
            pass  # the association ended under the handler; the reader reports why
        except Exception:
            # The request could not even be answered with a failure status (e.g. the peer's maximum PDU length
            # leaves no room for a PDV): a peer must never wait forever for a response, so abort (PS3.8 A-ABORT).
            self.log.exception("cannot answer the request: aborting the association", command=type(message).__name__)
            await self.abort()
        finally:
            close_payload(payload)
            self._inflight -= 1
            if self._window is not None:
                self._window.release()
            if self._inflight == 0:
                self._idle.set()

    # ------------------------------------------------------------------ DIMSE messages out
    async def send(self, message: Message, context_id: int,
                   dataset: bytes | bytearray | memoryview | EncodedDataset | None = None) -> None:
        """Send one message (command, then data set) without interleaving with any other."""
        command = encode_message(message)
        async with self._message_lock:
            max_frag = max_fragment_size(self.ul.peer_max_pdu)
            self._queue_pieces(context_id, True, memoryview(command), max_frag, last=True)
            if dataset is not None:
                if isinstance(dataset, EncodedDataset) and dataset.path is not None:
                    await self._send_file(context_id, dataset, max_frag)
                else:
                    data = dataset.read_bytes() if isinstance(dataset, EncodedDataset) else dataset
                    if len(data) % 2:
                        data = bytes(data) + _PAD
                    view = memoryview(data)
                    step = max(_FLUSH_BYTES // max_frag, 1) * max_frag
                    for start in range(0, max(len(view), 1), step):
                        piece = view[start : start + step]
                        self._queue_pieces(context_id, False, piece, max_frag, last=start + step >= len(view))
                        await self._flush()
            await self._flush()

    async def _send_file(self, context_id: int, dataset: EncodedDataset, max_frag: int) -> None:
        step = max(_FILE_CHUNK // max_frag, 1) * max_frag
        remaining = dataset.size
        if remaining == 0:
            self._queue_pieces(context_id, False, memoryview(b""), max_frag, last=True)
            return
        for chunk in dataset.iter_chunks(step):
            remaining -= len(chunk)
            if remaining <= 0 and dataset.size % 2:
                chunk = bytes(chunk) + _PAD
            self._queue_pieces(context_id, False, memoryview(chunk), max_frag, last=remaining <= 0)
            await self._flush()

    def _queue_pieces(self, context_id: int, is_command: bool, data: memoryview, max_frag: int, *, last: bool) -> None:
        n = len(data)
        try:
            if n == 0:
                self.ul.send_pdata((Pdv(context_id=context_id, is_command=is_command, is_last=last, data=data),))
                return
            for start in range(0, n, max_frag):
                end = min(start + max_frag, n)
                self.ul.send_pdata((Pdv(context_id=context_id, is_command=is_command,
                                        is_last=last and end == n, data=data[start:end]),))
        except LocalProtocolError as exc:
            raise self.error or AssociationAborted(detail=f"association not established: {exc}") from None

    async def _flush(self) -> None:
        async with self._write_lock:
            buffers = self.ul.buffers_to_send()
            if buffers:
                try:
                    await self.stream.send_buffers(buffers)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    if self.error is None:
                        self.error = AssociationAborted(detail=f"connection lost while sending: {exc}")
                    raise self.error from None

    # ------------------------------------------------------------------ operations (requesting side)
    async def request(self, message: Request, context_id: int, dataset: Any = None) -> tuple[Response, Any]:
        """Send a request and wait for its one final response."""
        async for response, payload in self.request_iter(message, context_id, dataset):
            if response.category is not Category.PENDING:
                return response, payload
            close_payload(payload)
        raise self.error or AssociationAborted(detail="association ended before the response")

    async def request_iter(self, message: Request, context_id: int, dataset: Any = None
                           ) -> AsyncIterator[tuple[Response, Any]]:
        """Send a request and yield its responses (Pending ones first) until the final one."""
        message_id = message.message_id  # type: ignore[attr-defined]
        send, receive = anyio.create_memory_object_stream[tuple[Response, Any]](math.inf)
        self._waiters[message_id] = send
        try:
            await self.send(message, context_id, dataset)
            with receive:
                while True:
                    with anyio.move_on_after(self.dimse_timeout or math.inf) as scope:
                        try:
                            response, payload = await receive.receive()
                        except anyio.EndOfStream:
                            raise self.error or AssociationAborted(detail="association ended") from None
                    if scope.cancelled_caught:
                        await self._abort_for_timeout(type(message).__name__)
                    yield response, payload
                    if response.category is not Category.PENDING:
                        return
        finally:
            self._waiters.pop(message_id, None)
            send.close()

    async def _abort_for_timeout(self, what: str) -> None:
        self.error = AssociationTimeout(f"DIMSE timeout: no response to {what} within {self.dimse_timeout} s")
        await self.abort()
        raise self.error

    def _fail_waiters(self) -> None:
        for send in self._waiters.values():
            send.close()

    # ------------------------------------------------------------------ ending
    async def release(self) -> None:
        """A-RELEASE (requestor): wait for our operations, ask, and wait for the answer."""
        if not self.is_established:
            return
        with contextlib.suppress(LocalProtocolError):
            self.ul.release()
        await self._flush()
        await self.finished.wait()

    async def abort(self) -> None:
        """A-ABORT (service-user source) and close; safe to call in any state, even when cancelled."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                self.ul.abort()
            with anyio.move_on_after(2), contextlib.suppress(Exception):
                await self._flush()
            self.stream.close()
            if self.error is None:
                self.error = AssociationAborted(AbortSource.SERVICE_USER, 0, "aborted locally")


def close_payload(payload: Any) -> None:
    """Release what a payload holds (a spool's temp file, an uncommitted instance)."""
    close = getattr(payload, "discard", None) or getattr(payload, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
