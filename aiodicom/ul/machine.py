"""`UpperLayer`: one association's PS3.8 machine, sans-IO.

Bytes in → events out (`receive_data`), primitives in → bytes out (`send`, `send_pdata`,
`data_to_send`), time passed in as a number (`now`), timers as a deadline (`timer_deadline`,
`handle_timer`). It never blocks, never reads a clock and never logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from . import events as ev
from .constants import AbortReason, AbortSource, ContextResult, PduType
from .errors import LocalProtocolError, RemoteProtocolError
from .fsm import TRANSITIONS, Ev, State
from .pdu import (
    PDU_HEADER_SIZE,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    Pdu,
    ReleaseRP,
    ReleaseRQ,
    decode_pdu_body,
    encode_pdata_header,
    encode_pdu,
    parse_header,
)
from .pdv import Pdv

_PDU_EVENT: dict[type, Ev] = {
    AssociateAC: Ev.ASSOC_AC_PDU,
    AssociateRJ: Ev.ASSOC_RJ_PDU,
    AssociateRQ: Ev.ASSOC_RQ_PDU,
    PDataTF: Ev.P_DATA_TF_PDU,
    ReleaseRQ: Ev.RELEASE_RQ_PDU,
    ReleaseRP: Ev.RELEASE_RP_PDU,
    Abort: Ev.ABORT_PDU,
}
_FIXED_LENGTH_PDUS = frozenset((PduType.ASSOCIATE_RJ, PduType.RELEASE_RQ, PduType.RELEASE_RP, PduType.ABORT))


class Role:
    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


ARTIM: Final = 10.0  # seconds, unless configured


@dataclass(frozen=True, slots=True, kw_only=True)
class UlConfig:
    max_pdu: int = 262_144  # the largest P-DATA-TF we accept (advertised as Maximum Length, PS3.8 D.1)
    max_associate_pdu: int = 1 << 20  # A-ASSOCIATE-RQ/AC larger than this are refused from their header
    artim: float = ARTIM  # a total deadline for Sta2 and Sta13 (PS3.8 §9.1.5)
    request_timeout: float = 30.0  # requestor: wait for A-ASSOCIATE-AC/RJ or A-RELEASE-RP


class UpperLayer:
    def __init__(self, role: str, config: UlConfig | None = None) -> None:
        self.role = role
        self.is_requestor = role == Role.REQUESTOR
        self.config = config or UlConfig()
        self.state = State.IDLE
        self.request: AssociateRQ | None = None
        self.accept: AssociateAC | None = None
        self.accepted_contexts: dict[int, str] = {}  # context ID → transfer syntax
        self.peer_max_pdu = 0  # 0: the peer set no limit
        self._now = 0.0
        self._deadline: float | None = None
        self._events: list[ev.UlEvent] = []
        self._out: list[Any] = []
        self._chunks: list[memoryview] = []  # usually 0-2 items: a list is lighter than a deque
        self._buffered = 0
        self._discard_input = False
        self._used = False

    # ---------------------------------------------------------------- the I/O layer's interface
    @property
    def closed(self) -> bool:
        """True when the transport is to be closed (Sta1 after the association ran)."""
        return self.state is State.IDLE and self._used

    @property
    def has_output(self) -> bool:
        """Bytes are queued for the transport."""
        return bool(self._out)

    def connection_made(self, now: float) -> list[ev.UlEvent]:
        """The transport is open: Evt5 (acceptor) or Evt2 (requestor, after `send(AssociateRQ)`)."""
        self._now = now
        self._used = True
        return self._fire(Ev.TRANSPORT_CONFIRM if self.is_requestor else Ev.TRANSPORT_INDICATION, None)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[ev.UlEvent]:
        """Feed bytes from the transport; b'' means it closed (Evt17)."""
        self._now = now
        if not data:
            self._discard_input = True
            self._chunks.clear()
            self._buffered = 0
            return self._fire(Ev.TRANSPORT_CLOSED, None)
        if self._discard_input or self.state is State.IDLE:
            return []  # after a protocol error the framing is lost; nothing more is trusted
        self._chunks.append(memoryview(data))
        self._buffered += len(data)
        events: list[ev.UlEvent] = []
        # Sta1 has no row for any received PDU: once a PDU ended the association (AA-3, AR-3, AE-4
        # close the transport), whatever the peer sent after it in the same chunk is not read (PS3.8 §9.2.3)
        while self._buffered >= PDU_HEADER_SIZE and not self._discard_input and self.state is not State.IDLE:
            pdu_type, length = parse_header(self._peek(PDU_HEADER_SIZE))
            try:
                self._check_header(pdu_type, length)
            except RemoteProtocolError as exc:
                events += self._protocol_error(exc)
                break
            if self._buffered < PDU_HEADER_SIZE + length:
                break
            body = self._take(PDU_HEADER_SIZE + length)[PDU_HEADER_SIZE:]
            try:
                pdu = decode_pdu_body(pdu_type, body)
                if type(pdu) is PDataTF and self.state in (State.ESTABLISHED, State.AWAITING_RELEASE_RP):
                    self._check_contexts(pdu)
            except RemoteProtocolError as exc:
                events += self._protocol_error(exc)
                break
            events += self._fire(_PDU_EVENT[type(pdu)], pdu)
        chunks = self._chunks
        if len(chunks) == 1 and len(chunks[0].obj) > 2 * len(chunks[0]):  # type: ignore[arg-type]
            # a PDU's start at the end of a large read: copy it, so that waiting for its rest does not
            # keep the whole read alive (up to 256 KiB per association, more than --max-pdu allows for)
            chunks[0] = memoryview(bytes(chunks[0]))
        return events

    @property
    def receiving_pdu(self) -> bool:
        """Part of a PDU has arrived and the rest has not."""
        return self._buffered > 0

    def timer_deadline(self) -> float | None:
        """Absolute time at which the I/O layer must call `handle_timer`, or None."""
        return self._deadline

    def handle_timer(self, now: float) -> list[ev.UlEvent]:
        self._now = now
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state not in (State.AWAITING_ASSOC_RQ, State.AWAITING_CLOSE):
            # ARTIM runs only in Sta2 and Sta13 (PS3.8 §9.1.5); any other deadline is our own wait for the
            # peer's answer (Sta5, Sta7, or Sta9-Sta12 entered from Sta7 by a release collision, AR-8):
            # it ran out, so abort as the service-user would (Evt15 → AA-1, a row in each of those states)
            events = self._fire(Ev.ABORT_REQUEST, Abort())
            return [*events, ev.TimedOut()]
        return self._fire(Ev.ARTIM_EXPIRED, Ev.ARTIM_EXPIRED)

    def data_to_send(self) -> bytes:
        """Everything queued for the transport (PDUs the caller sent and the ones the machine queued)."""
        return b"".join(self.buffers_to_send())

    def buffers_to_send(self) -> list[bytes | bytearray | memoryview]:
        """The same as `data_to_send`, as the buffers queued (PDU headers and views of the payloads) for a
        vectored write: a data set is never copied into one joined block on its way out."""
        out, self._out = self._out, []
        return out

    # ---------------------------------------------------------------- the local user's primitives
    def send(self, pdu: Pdu) -> list[ev.UlEvent]:
        """A-ASSOCIATE request/response, A-RELEASE, A-ABORT, P-DATA as a PDU."""
        match pdu:
            case AssociateRQ():
                return self._fire(Ev.ASSOCIATE_REQUEST, pdu)
            case AssociateAC():
                return self._fire(Ev.ASSOCIATE_ACCEPT, pdu)
            case AssociateRJ():
                return self._fire(Ev.ASSOCIATE_REJECT, pdu)
            case PDataTF(pdvs=pdvs):
                return self.send_pdata(pdvs)
            case ReleaseRQ():
                return self.release()
            case ReleaseRP():
                return self.release_response()
            case Abort():
                return self.abort(pdu)
        raise LocalProtocolError(f"not a PDU: {pdu!r}")

    def send_pdata(self, pdvs: tuple[Pdv, ...] | list[Pdv]) -> list[ev.UlEvent]:
        """P-DATA request (Evt9): the PDVs go out in one P-DATA-TF PDU."""
        return self._fire(Ev.P_DATA_REQUEST, pdvs)

    def release(self) -> list[ev.UlEvent]:
        return self._fire(Ev.RELEASE_REQUEST, None)

    def release_response(self) -> list[ev.UlEvent]:
        return self._fire(Ev.RELEASE_RESPONSE, None)

    def abort(self, pdu: Abort | None = None) -> list[ev.UlEvent]:
        """A-ABORT request (Evt15). Outside an association there is nothing to abort: just close."""
        if self.state in (State.IDLE, State.AWAITING_CLOSE):
            self.state = State.IDLE
            self._deadline = None
            return []
        if self.state is State.AWAITING_ASSOC_RQ:
            self.state, self._deadline = State.IDLE, None
            return []
        return self._fire(Ev.ABORT_REQUEST, pdu or Abort())

    # ---------------------------------------------------------------- services for the actions
    def queue_pdu(self, pdu: Pdu) -> None:
        self._out.append(encode_pdu(pdu))

    def queue_pdata(self, pdvs: tuple[Pdv, ...] | list[Pdv]) -> None:
        peer_max = self.peer_max_pdu
        for p in pdvs:
            if p.context_id not in self.accepted_contexts:
                raise LocalProtocolError(f"presentation context {p.context_id} was not accepted")
        if peer_max and sum(len(p.data) + 6 for p in pdvs) > peer_max:
            raise LocalProtocolError(f"P-DATA-TF larger than the peer's maximum PDU length {peer_max}")
        self._out.extend(encode_pdata_header(pdvs))

    def emit(self, event: ev.UlEvent) -> None:
        self._events.append(event)

    def start_timer(self, seconds: float | None) -> None:
        self._deadline = None if seconds is None else self._now + seconds

    def stop_timer(self) -> None:
        self._deadline = None

    def set_accept(self, ac: AssociateAC) -> None:
        """Record what was negotiated: accepted contexts and the peer's maximum PDU length."""
        self.accept = ac
        self.accepted_contexts = {c.context_id: c.transfer_syntax for c in ac.contexts
                                  if c.result == ContextResult.ACCEPTANCE}
        peer = ac if self.is_requestor else self.request
        self.peer_max_pdu = peer.user_info.max_pdu if peer is not None else 0

    # ---------------------------------------------------------------- internals
    def _fire(self, event: Ev, inp: Any) -> list[ev.UlEvent]:
        action = TRANSITIONS.get((self.state, event))
        if action is None:
            if event in (Ev.TRANSPORT_CLOSED,) and self.state is State.IDLE:
                return []
            raise LocalProtocolError(f"{event.name} (Evt{event.value}) is not allowed in {self.state.name} "
                                     f"(Sta{self.state.value})")
        self.state = action(self, inp)
        if self.state is State.IDLE:
            self._deadline = None
        events, self._events = self._events, []
        return events

    def _protocol_error(self, exc: RemoteProtocolError) -> list[ev.UlEvent]:
        """Evt19: the peer broke PS3.8; the rest of its input cannot be framed any more."""
        self._discard_input = True
        self._chunks.clear()
        self._buffered = 0
        return self._fire(Ev.INVALID_PDU, exc)

    def _check_header(self, pdu_type: int, length: int) -> None:
        """Refuse from the 6-byte header alone what is too large, so nothing is allocated for it."""
        if pdu_type == PduType.P_DATA_TF:
            # PS3.8 D.1: a maximum length of 0 means no limit
            if 0 < self.config.max_pdu < length and self.state is not State.AWAITING_ASSOC_RQ:
                raise RemoteProtocolError(f"P-DATA-TF of {length} bytes exceeds our maximum {self.config.max_pdu}")
        elif pdu_type in (PduType.ASSOCIATE_RQ, PduType.ASSOCIATE_AC):
            if length > self.config.max_associate_pdu:
                raise RemoteProtocolError(f"A-ASSOCIATE PDU of {length} bytes exceeds {self.config.max_associate_pdu}")
        elif pdu_type in _FIXED_LENGTH_PDUS:
            if length != 4:
                raise RemoteProtocolError(f"PDU type 0x{pdu_type:02X} with length {length}, not 4")
        else:
            raise RemoteProtocolError(f"unknown PDU type 0x{pdu_type:02X}", reason=AbortReason.UNRECOGNIZED_PDU)
        if pdu_type == PduType.P_DATA_TF and self.state is State.AWAITING_ASSOC_RQ:
            # a P-DATA before the association: unexpected; answer now rather than wait for its body
            raise RemoteProtocolError("P-DATA-TF before the association was established",
                                      reason=AbortReason.UNEXPECTED_PDU)

    def _check_contexts(self, pdu: PDataTF) -> None:
        accepted = self.accepted_contexts
        for p in pdu.pdvs:
            if p.context_id not in accepted:
                raise RemoteProtocolError(f"P-DATA-TF on presentation context {p.context_id}, not accepted")

    def _peek(self, n: int) -> memoryview:
        first = self._chunks[0]
        if len(first) >= n:
            return first[:n]
        return memoryview(self._join(n, consume=False))

    def _take(self, n: int) -> memoryview:
        """Remove n bytes from the buffer: a slice of one chunk when it holds them (no copy)."""
        first = self._chunks[0]
        self._buffered -= n
        if len(first) >= n:
            if len(first) == n:
                del self._chunks[0]
            else:
                self._chunks[0] = first[n:]
            return first[:n]
        return memoryview(self._join(n, consume=True))

    def _join(self, n: int, *, consume: bool) -> bytes:
        parts: list[memoryview] = []
        need = n
        chunks = self._chunks
        i = 0
        while need:
            c = chunks[i]
            if len(c) <= need:
                parts.append(c)
                need -= len(c)
                i += 1
            else:
                parts.append(c[:need])
                if consume:
                    chunks[i] = c[need:]
                need = 0
        if consume:
            for _ in range(i):
                del chunks[0]
        return b"".join(parts)


def provider_abort_bytes(reason: AbortReason) -> bytes:
    """An A-ABORT from the service-provider, for answers given before any machine exists."""
    return encode_pdu(Abort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
