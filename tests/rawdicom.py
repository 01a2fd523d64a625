"""A tiny DICOM client for tests, written straight from PS3.8 §9.3 (PDUs) and PS3.7 §9.3/§E (commands).

It deliberately does not import aiodicom: it is the independent second opinion that aiodicom's answers are
checked against, and it can send what a correct implementation never would (lying lengths, even context IDs,
half a PDU). Builders return bytes; `parse_pdu` turns a received PDU into a small frozen value; `RawClient`
(blocking socket) and `AsyncRawClient` (asyncio streams, for thousands of connections) drive a peer.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Union

# --- UIDs (PS3.6 Annex A) ---------------------------------------------------------------------------------
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # the one DICOM application context name (PS3.7 A.2.1)
VERIFICATION = "1.2.840.10008.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLEMENTATION_CLASS_UID = "2.25.296293812705334031772187913470345718146"
IMPLEMENTATION_VERSION = "RAWDICOM_1"

# --- PDU and item types (PS3.8 §9.3.1, Tables 9-11 to 9-26) ----------------------------------------------
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = range(1, 8)
ITEM_APPLICATION_CONTEXT = 0x10
ITEM_PRESENTATION_CONTEXT_RQ = 0x20
ITEM_PRESENTATION_CONTEXT_AC = 0x21
ITEM_ABSTRACT_SYNTAX = 0x30
ITEM_TRANSFER_SYNTAX = 0x40
ITEM_USER_INFORMATION = 0x50
ITEM_MAXIMUM_LENGTH = 0x51  # PS3.8 D.1
ITEM_IMPLEMENTATION_CLASS_UID = 0x52  # PS3.7 D.3.3.2
ITEM_IMPLEMENTATION_VERSION = 0x55  # PS3.7 D.3.3.2

# A-ABORT source / reason (Table 9-26) and A-ASSOCIATE-RJ result / source / reason (Table 9-21).
SOURCE_SERVICE_USER, SOURCE_SERVICE_PROVIDER = 0, 2
REASON_NOT_SPECIFIED, REASON_UNRECOGNIZED_PDU, REASON_UNEXPECTED_PDU = 0, 1, 2
REASON_UNRECOGNIZED_PDU_PARAMETER, REASON_UNEXPECTED_PDU_PARAMETER, REASON_INVALID_PDU_PARAMETER = 4, 5, 6
RJ_PERMANENT, RJ_TRANSIENT = 1, 2
RJ_SOURCE_USER, RJ_SOURCE_PROVIDER_ACSE, RJ_SOURCE_PROVIDER_PRESENTATION = 1, 2, 3
RJ_CALLING_AE_NOT_RECOGNIZED, RJ_CALLED_AE_NOT_RECOGNIZED = 3, 7
RJ_PROTOCOL_VERSION_NOT_SUPPORTED = 2  # with source 2 (ACSE related)
RJ_LOCAL_LIMIT_EXCEEDED = 2  # with source 3 (presentation related)

# --- DIMSE (PS3.7 §9.3, Annex C) ---------------------------------------------------------------------------
C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
NO_DATA_SET = 0x0101  # Command Data Set Type: "no data set"; any other value announces one
SUCCESS = 0x0000
INVALID_SOP_INSTANCE = 0x0117
TAG_GROUP_LENGTH = 0x00000000
TAG_AFFECTED_SOP_CLASS = 0x00000002
TAG_COMMAND_FIELD = 0x00000100
TAG_MESSAGE_ID = 0x00000110
TAG_MESSAGE_ID_RESPONDED = 0x00000120
TAG_PRIORITY = 0x00000700
TAG_DATA_SET_TYPE = 0x00000800
TAG_STATUS = 0x00000900
TAG_AFFECTED_SOP_INSTANCE = 0x00001000

DEFAULT_MAX_PDU = 16_384
ANSWER_TIMEOUT = 3.0  # an answer due "within a second", with slack for a loaded CI box; silence still fails
_MAX_ACCEPTED_PDU = 64 * 1024 * 1024  # what we are willing to buffer from a peer we are testing


def new_uid() -> str:
    """A fresh UID under the 2.25 (UUID-derived) root, PS3.5 B.2."""
    return f"2.25.{uuid.uuid4().int}"


# ============================================ building PDUs =============================================


def pdu(pdu_type: int, body: bytes, *, length: int | None = None) -> bytes:
    """PS3.8 §9.3.1: type, reserved 00H, 4-byte big-endian length of what follows. `length` may lie."""
    return struct.pack(">BBL", pdu_type, 0, len(body) if length is None else length) + body


def item(item_type: int, value: bytes, *, length: int | None = None) -> bytes:
    """An item or sub-item: type, reserved 00H, 2-byte big-endian length of the value. `length` may lie."""
    return struct.pack(">BBH", item_type, 0, len(value) if length is None else length) + value


def ae_title(title: str) -> bytes:
    """16 bytes of ISO 646, space padded (Table 9-11, bytes 11-26)."""
    raw = title.encode("ascii")
    if not 0 < len(raw) <= 16:
        raise ValueError(f"AE title must be 1-16 characters: {title!r}")
    return raw.ljust(16, b" ")


def associate_rq_fields(called_ae: str, calling_ae: str, *, protocol_version: int = 1, reserved: int = 0) -> bytes:
    """Table 9-11 bytes 7-74: protocol version, reserved, called AE, calling AE, 32 reserved bytes.

    `reserved` fills the reserved fields, which "shall not be tested when received".
    """
    return (
        struct.pack(">HH", protocol_version, reserved * 0x0101)
        + ae_title(called_ae)
        + ae_title(calling_ae)
        + bytes([reserved]) * 32
    )


def application_context_item(name: str = APPLICATION_CONTEXT) -> bytes:
    """Table 9-12."""
    return item(ITEM_APPLICATION_CONTEXT, name.encode("ascii"))


@dataclass(frozen=True, slots=True)
class ProposedContext:
    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = (IMPLICIT_VR_LE,)


def presentation_context_item(ctx: ProposedContext) -> bytes:
    """Table 9-13: context ID, three reserved bytes, one abstract syntax (9-14), transfer syntaxes (9-15)."""
    subs = item(ITEM_ABSTRACT_SYNTAX, ctx.abstract_syntax.encode("ascii")) + b"".join(
        item(ITEM_TRANSFER_SYNTAX, ts.encode("ascii")) for ts in ctx.transfer_syntaxes
    )
    return item(ITEM_PRESENTATION_CONTEXT_RQ, bytes([ctx.id, 0, 0, 0]) + subs)


def user_information_item(max_pdu: int = DEFAULT_MAX_PDU) -> bytes:
    """Table 9-16 with the sub-items every request carries: maximum length (D.1), implementation class
    UID and version name (PS3.7 D.3.3.2)."""
    return item(
        ITEM_USER_INFORMATION,
        item(ITEM_MAXIMUM_LENGTH, struct.pack(">L", max_pdu))
        + item(ITEM_IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_CLASS_UID.encode("ascii"))
        + item(ITEM_IMPLEMENTATION_VERSION, IMPLEMENTATION_VERSION.encode("ascii")),
    )


def associate_rq(
    called_ae: str,
    calling_ae: str,
    contexts: Sequence[ProposedContext],
    *,
    max_pdu: int = DEFAULT_MAX_PDU,
    protocol_version: int = 1,
    reserved: int = 0,
) -> bytes:
    """A well-formed A-ASSOCIATE-RQ (§9.3.2); hostile variants are assembled from the pieces above."""
    body = (
        associate_rq_fields(called_ae, calling_ae, protocol_version=protocol_version, reserved=reserved)
        + application_context_item()
        + b"".join(presentation_context_item(c) for c in contexts)
        + user_information_item(max_pdu)
    )
    return pdu(ASSOCIATE_RQ, body)


def pdv(context_id: int, data: bytes | memoryview, *, command: bool, last: bool) -> bytes:
    """A PDV item (Table 9-23): 4-byte length, context ID, message control header (E.2: bit 0 command,
    bit 1 last fragment), then the fragment."""
    return struct.pack(">LBB", len(data) + 2, context_id, int(command) | int(last) << 1) + bytes(data)


def p_data_tf(*pdvs: bytes) -> bytes:
    """§9.3.5: a P-DATA-TF carrying the given PDV items."""
    return pdu(P_DATA_TF, b"".join(pdvs))


def release_rq() -> bytes:
    return pdu(RELEASE_RQ, bytes(4))  # §9.3.6: four reserved bytes


def release_rp() -> bytes:
    return pdu(RELEASE_RP, bytes(4))  # §9.3.7


def abort(source: int = SOURCE_SERVICE_USER, reason: int = REASON_NOT_SPECIFIED) -> bytes:
    return pdu(ABORT, bytes([0, 0, source, reason]))  # §9.3.8, Table 9-26


def message_pdus(context_id: int, data: bytes, *, command: bool, max_pdu: int, last: bool = True) -> Iterator[bytes]:
    """One message (command or data set) as P-DATA-TF PDUs, one PDV each, every PDU's length at most max_pdu.

    PS3.8 D.1: the maximum length bounds the P-DATA-TF variable field, i.e. PDV header (6 bytes) plus
    fragment; 0 means no limit. `last=False` leaves the message unfinished (a peer that walks away).
    """
    step = (max_pdu or 1 << 20) - 6
    view = memoryview(data)
    end = len(view)
    for start in range(0, max(end, 1), step):
        stop = min(start + step, end)
        yield p_data_tf(pdv(context_id, view[start:stop], command=command, last=last and stop == end))


# ===================================== data elements (implicit VR LE) =====================================


def element(tag: int, value: bytes, *, length: int | None = None) -> bytes:
    """PS3.5 §7.1.3: group, element, 4-byte length, value; little endian."""
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value) if length is None else length) + value


def ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" * (len(raw) & 1)  # UI pads with NUL to even length (PS3.5 §6.2)


def text(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " * (len(raw) & 1)


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command_set(fields: dict[int, bytes]) -> bytes:
    """A command set (PS3.7 §6.3): elements in tag order after Command Group Length (0000,0000)."""
    body = b"".join(element(tag, fields[tag]) for tag in sorted(fields))
    return element(TAG_GROUP_LENGTH, struct.pack("<L", len(body))) + body


def c_echo_rq(message_id: int = 1) -> bytes:
    """PS3.7 §9.3.5.1, Table 9.3-12."""
    return command_set({
        TAG_AFFECTED_SOP_CLASS: ui(VERIFICATION),
        TAG_COMMAND_FIELD: us(C_ECHO_RQ),
        TAG_MESSAGE_ID: us(message_id),
        TAG_DATA_SET_TYPE: us(NO_DATA_SET),
    })


def c_store_rq(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
    """PS3.7 §9.3.1.1, Table 9.3-1 (priority medium; data set type 0000H, i.e. a data set follows)."""
    return command_set({
        TAG_AFFECTED_SOP_CLASS: ui(sop_class),
        TAG_COMMAND_FIELD: us(C_STORE_RQ),
        TAG_MESSAGE_ID: us(message_id),
        TAG_PRIORITY: us(0),
        TAG_DATA_SET_TYPE: us(0),
        TAG_AFFECTED_SOP_INSTANCE: ui(sop_instance),
    })


def minimal_dataset(sop_class: str, sop_instance: str, study: str, series: str, tail: bytes = b"") -> bytes:
    """A small implicit VR LE data set; `tail` holds elements with tags above (0020,000E), already encoded."""
    return b"".join((
        element(0x00080016, ui(sop_class)),
        element(0x00080018, ui(sop_instance)),
        element(0x00080060, text("OT")),
        element(0x00100010, text("RAW^CLIENT")),
        element(0x00100020, text("RAW0001")),
        element(0x0020000D, ui(study)),
        element(0x0020000E, ui(series)),
        tail,
    ))


def nested_sequences(depth: int, tag: int = 0x0040A730) -> bytes:
    """`depth` levels of undefined-length sequences, each holding one undefined-length item (PS3.5 §7.5)."""
    opening = element(tag, b"", length=0xFFFFFFFF) + element(0xFFFEE000, b"", length=0xFFFFFFFF)
    closing = element(0xFFFEE00D, b"") + element(0xFFFEE0DD, b"")  # item, then sequence delimiter
    return opening * depth + closing * depth


def parse_elements(data: bytes) -> dict[int, bytes]:
    """Defined-length implicit VR LE elements (a command set); a truncated element raises ValueError."""
    out: dict[int, bytes] = {}
    view, pos = memoryview(data), 0
    while pos < len(view):
        if pos + 8 > len(view):
            raise ValueError(f"truncated element header at {pos}")
        group, elem, length = struct.unpack_from("<HHL", view, pos)
        if pos + 8 + length > len(view):
            raise ValueError(f"element ({group:04X},{elem:04X}) overruns the command set")
        out[group << 16 | elem] = bytes(view[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return out


def us_of(fields: dict[int, bytes], tag: int) -> int:
    return struct.unpack("<H", fields[tag])[0]


# ========================================== parsing answers =============================================


@dataclass(frozen=True, slots=True)
class AcceptedContext:
    id: int
    result: int  # Table 9-18: 0 acceptance, 1 user-rejection, 2 no-reason, 3 abstract/4 transfer syntax not supported
    transfer_syntax: str


@dataclass(frozen=True, slots=True)
class AssociateAccept:
    max_pdu: int  # 0 = no limit (D.1)
    contexts: tuple[AcceptedContext, ...]

    def accepted(self, context_id: int) -> bool:
        return any(c.id == context_id and c.result == 0 for c in self.contexts)


@dataclass(frozen=True, slots=True)
class AssociateReject:
    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class Abort:
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class ReceivedPdv:
    context_id: int
    is_command: bool
    is_last: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class PData:
    pdvs: tuple[ReceivedPdv, ...]


@dataclass(frozen=True, slots=True)
class Release:
    reply: bool  # A-RELEASE-RP (§9.3.7) rather than A-RELEASE-RQ (§9.3.6)


@dataclass(frozen=True, slots=True)
class OtherPdu:
    pdu_type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the transport: FIN (reset=False) or RST (reset=True)."""

    reset: bool = False


Answer = Union[AssociateAccept, AssociateReject, Abort, PData, Release, OtherPdu, Closed]


def _items(data: bytes, pos: int) -> Iterator[tuple[int, bytes]]:
    while pos + 4 <= len(data):
        item_type, _, length = struct.unpack_from(">BBH", data, pos)
        yield item_type, data[pos + 4 : pos + 4 + length]
        pos += 4 + length


def parse_associate_ac(body: bytes) -> AssociateAccept:
    """§9.3.3: the fixed fields mirror the request's 68 bytes; items follow."""
    contexts, max_pdu = [], 0
    for item_type, value in _items(body, 68):
        if item_type == ITEM_PRESENTATION_CONTEXT_AC:  # Table 9-18: id, reserved, result, reserved, TS sub-item
            ts = next((v.decode("ascii").rstrip("\0 ") for t, v in _items(value, 4) if t == ITEM_TRANSFER_SYNTAX), "")
            contexts.append(AcceptedContext(value[0], value[2], ts))
        elif item_type == ITEM_USER_INFORMATION:
            for sub_type, sub in _items(value, 0):
                if sub_type == ITEM_MAXIMUM_LENGTH:
                    max_pdu = struct.unpack(">L", sub)[0]
    return AssociateAccept(max_pdu, tuple(contexts))


def parse_p_data(body: bytes) -> PData:
    out, pos = [], 0
    while pos + 6 <= len(body):
        length, ctx, control = struct.unpack_from(">LBB", body, pos)
        out.append(ReceivedPdv(ctx, bool(control & 1), bool(control & 2), body[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    return PData(tuple(out))


def parse_pdu(pdu_type: int, body: bytes) -> Answer:
    if pdu_type == ASSOCIATE_AC:
        return parse_associate_ac(body)
    if pdu_type == ASSOCIATE_RJ and len(body) == 4:  # Table 9-21: reserved, result, source, reason
        return AssociateReject(body[1], body[2], body[3])
    if pdu_type == ABORT and len(body) == 4:  # Table 9-26: two reserved bytes, source, reason
        return Abort(body[2], body[3])
    if pdu_type == P_DATA_TF:
        return parse_p_data(body)
    if pdu_type in (RELEASE_RQ, RELEASE_RP):
        return Release(reply=pdu_type == RELEASE_RP)
    return OtherPdu(pdu_type, body)


class Silence(AssertionError):
    """The peer said nothing (and did not close) within the timeout."""


class UnexpectedAnswer(AssertionError):
    def __init__(self, expected: str, got: Answer) -> None:
        super().__init__(f"expected {expected}, got {got!r}")
        self.got = got


@dataclass
class _Assembler:
    """Collects PDV fragments into one DIMSE message (PS3.7 §E: command first, then the data set if any)."""

    parts: dict[bool, bytearray] = field(default_factory=lambda: {True: bytearray(), False: bytearray()})
    done: dict[bool, bool] = field(default_factory=lambda: {True: False, False: False})  # keyed by is_command

    def feed(self, answer: Answer) -> tuple[dict[int, bytes], bytes | None] | None:
        if not isinstance(answer, PData):
            raise UnexpectedAnswer("P-DATA-TF", answer)
        for frag in answer.pdvs:
            self.parts[frag.is_command].extend(frag.data)
            self.done[frag.is_command] |= frag.is_last
        if not self.done[True]:
            return None
        fields = parse_elements(bytes(self.parts[True]))
        if us_of(fields, TAG_DATA_SET_TYPE) == NO_DATA_SET:
            return fields, None
        return (fields, bytes(self.parts[False])) if self.done[False] else None


def _expect_accept(answer: Answer) -> AssociateAccept:
    if not isinstance(answer, AssociateAccept):
        raise UnexpectedAnswer("A-ASSOCIATE-AC", answer)
    return answer


def _status(fields: dict[int, bytes], response_field: int, message_id: int) -> int:
    if us_of(fields, TAG_COMMAND_FIELD) != response_field or us_of(fields, TAG_MESSAGE_ID_RESPONDED) != message_id:
        raise AssertionError(f"not the response to message {message_id}: {fields!r}")
    return us_of(fields, TAG_STATUS)


# ========================================== blocking client =============================================


class RawClient:
    """One TCP connection driven by hand; every read is bounded by the socket timeout."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accept: AssociateAccept | None = None

    @classmethod
    def connect(cls, host: str, port: int, *, timeout: float = ANSWER_TIMEOUT) -> RawClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, reset: bool = False) -> None:
        if reset:  # SO_LINGER 0: close() sends RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send it all; False when the peer has already gone (hostile input may be cut off mid-way)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _recv_exactly(self, n: int) -> bytes | Closed:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return Closed(reset=True)
            except TimeoutError:
                raise Silence(f"no answer within {self.sock.gettimeout()} s (had {bytes(buf)!r})") from None
            if not chunk:
                return Closed()
            buf += chunk
        return bytes(buf)

    def read_answer(self) -> Answer:
        header = self._recv_exactly(6)
        if isinstance(header, Closed):
            return header
        pdu_type, _, length = struct.unpack(">BBL", header)
        if length > _MAX_ACCEPTED_PDU:
            raise AssertionError(f"peer announced a {length}-byte PDU of type {pdu_type:#04x}")
        body = self._recv_exactly(length)
        return body if isinstance(body, Closed) else parse_pdu(pdu_type, body)

    def expect_closed(self) -> Closed:
        """The next thing from the peer must be the end of the connection."""
        answer = self.read_answer()
        if not isinstance(answer, Closed):
            raise UnexpectedAnswer("the connection to close", answer)
        return answer

    def associate(
        self, called_ae: str, calling_ae: str, contexts: Sequence[ProposedContext], *, max_pdu: int = DEFAULT_MAX_PDU
    ) -> AssociateAccept:
        self.send(associate_rq(called_ae, calling_ae, contexts, max_pdu=max_pdu))
        self.accept = _expect_accept(self.read_answer())
        return self.accept

    def send_message(self, context_id: int, command: bytes, dataset: bytes | None = None, *, last: bool = True) -> bool:
        max_pdu = self.accept.max_pdu if self.accept else DEFAULT_MAX_PDU
        pdus = list(message_pdus(context_id, command, command=True, max_pdu=max_pdu))
        if dataset is not None:
            pdus += message_pdus(context_id, dataset, command=False, max_pdu=max_pdu, last=last)
        return all(self.send(p) for p in pdus)

    def read_message(self) -> tuple[dict[int, bytes], bytes | None]:
        assembler = _Assembler()
        while (message := assembler.feed(self.read_answer())) is None:
            pass
        return message

    def echo(self, context_id: int = 1, message_id: int = 1) -> int:
        self.send_message(context_id, c_echo_rq(message_id))
        return _status(self.read_message()[0], C_ECHO_RSP, message_id)

    def store(self, context_id: int, sop_class: str, sop_instance: str, dataset: bytes, message_id: int = 1) -> int:
        self.send_message(context_id, c_store_rq(sop_class, sop_instance, message_id), dataset)
        return _status(self.read_message()[0], C_STORE_RSP, message_id)

    def release(self) -> None:
        self.send(release_rq())
        answer = self.read_answer()
        if answer != Release(reply=True):
            raise UnexpectedAnswer("A-RELEASE-RP", answer)


def echo_cycle(
    host: str, port: int, called_ae: str, *, calling_ae: str = "RAWSCU", timeout: float = ANSWER_TIMEOUT
) -> int:
    """Associate (Verification, implicit VR LE), C-ECHO, release on a fresh connection; the echo status."""
    with RawClient.connect(host, port, timeout=timeout) as client:
        client.associate(called_ae, calling_ae, [ProposedContext(1, VERIFICATION)])
        status = client.echo(1)
        client.release()
        return status


# ========================================== asyncio client ==============================================


class AsyncRawClient:
    """The same conversation over asyncio streams, for many simultaneous connections from one process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.accept: AssociateAccept | None = None

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float = ANSWER_TIMEOUT) -> AsyncRawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, timeout)

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionResetError, BrokenPipeError):
            pass

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def _read_exactly(self, n: int) -> bytes | Closed:
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), self.timeout)
        except asyncio.IncompleteReadError:
            return Closed()
        except ConnectionResetError:
            return Closed(reset=True)
        except TimeoutError:
            raise Silence(f"no answer within {self.timeout} s") from None

    async def read_answer(self) -> Answer:
        header = await self._read_exactly(6)
        if isinstance(header, Closed):
            return header
        pdu_type, _, length = struct.unpack(">BBL", header)
        if length > _MAX_ACCEPTED_PDU:
            raise AssertionError(f"peer announced a {length}-byte PDU of type {pdu_type:#04x}")
        body = await self._read_exactly(length)
        return body if isinstance(body, Closed) else parse_pdu(pdu_type, body)

    async def associate(
        self, called_ae: str, calling_ae: str, contexts: Sequence[ProposedContext], *, max_pdu: int = DEFAULT_MAX_PDU
    ) -> AssociateAccept:
        await self.send(associate_rq(called_ae, calling_ae, contexts, max_pdu=max_pdu))
        self.accept = _expect_accept(await self.read_answer())
        return self.accept

    async def echo(self, context_id: int = 1, message_id: int = 1) -> int:
        max_pdu = self.accept.max_pdu if self.accept else DEFAULT_MAX_PDU
        await self.send(b"".join(message_pdus(context_id, c_echo_rq(message_id), command=True, max_pdu=max_pdu)))
        assembler = _Assembler()
        while (message := assembler.feed(await self.read_answer())) is None:
            pass
        return _status(message[0], C_ECHO_RSP, message_id)

    async def release(self) -> None:
        await self.send(release_rq())
        answer = await self.read_answer()
        if answer != Release(reply=True):
            raise UnexpectedAnswer("A-RELEASE-RP", answer)


async def aecho_cycle(
    host: str, port: int, called_ae: str, *, calling_ae: str = "RAWSCU", timeout: float = ANSWER_TIMEOUT
) -> int:
    client = await AsyncRawClient.connect(host, port, timeout=timeout)
    try:
        await client.associate(called_ae, calling_ae, [ProposedContext(1, VERIFICATION)])
        status = await client.echo(1)
        await client.release()
        return status
    finally:
        await client.aclose()


def raise_nofile_limit() -> int:
    """Lift this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # "unlimited" is still capped by fs.nr_open
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep what we have; callers assert the limit they need
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
