"""A lean associate + C-ECHO + release cycle, to measure how many associations a server takes per second.

The general client (`aiodicom.connect`) sets up a task group, a state machine and a reader task for
every association: right for applications, but then the client, not the server, is what a benchmark
of associations per second measures. Here the three request PDUs are encoded once with the sans-IO
codecs (A-ASSOCIATE-RQ, P-DATA-TF carrying C-ECHO-RQ, A-RELEASE-RQ: PS3.8 §9.3.2, §9.3.5, §9.3.6) and
each cycle is four writes and four PDU reads on an asyncio protocol. Every answer is still decoded
and checked: A-ASSOCIATE-AC (the Verification context accepted, PS3.8 §9.3.3.2), the C-ECHO-RSP
status (PS3.7 §9.3.5.2), A-RELEASE-RP; anything else ends the cycle with the error a user of
`connect()` would see (rejected, aborted, timeout, refused).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Final

from ..dimse.messages import CEchoRQ, CEchoRSP, decode_message, encode_message
from ..implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..net.errors import (
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    ConnectionFailed,
    NoPresentationContext,
)
from ..uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from ..ul.constants import PduType
from ..ul.errors import RemoteProtocolError
from ..ul.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationContextRQ,
    ReleaseRQ,
    UserInformation,
    decode_pdu_body,
    encode_pdu,
    parse_header,
)
from ..ul.pdv import Pdv

_HEADER: Final = 6
_CONTEXT_ID: Final = 1


class _PduReader(asyncio.Protocol):
    """Collects bytes; hands out whole PDUs (type, body) to one waiting reader."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.lost: BaseException | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # request/response: no Nagle wait

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def pdu(self) -> tuple[int, memoryview]:
        while True:
            buf = self.buffer
            if len(buf) >= _HEADER:
                pdu_type, length = parse_header(buf)
                end = _HEADER + length
                if len(buf) >= end:
                    body = bytes(buf[_HEADER:end])
                    del buf[:end]
                    return pdu_type, memoryview(body)
            if self.closed:
                raise AssociationAborted(detail="connection closed by the peer")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None


class RawEcho:
    """Pre-encoded PDUs for one (calling, called) pair; `await cycle()` runs one association."""

    def __init__(self, host: str, port: int, *, calling_ae: str, called_ae: str, max_pdu: int = 262_144,
                 timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        rq = AssociateRQ(
            called_ae=called_ae, calling_ae=calling_ae,
            contexts=(PresentationContextRQ(context_id=_CONTEXT_ID, abstract_syntax=VERIFICATION,
                                            transfer_syntaxes=(IMPLICIT_VR_LITTLE_ENDIAN,)),),
            user_info=UserInformation(max_pdu=max_pdu, implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                                      implementation_version_name=IMPLEMENTATION_VERSION_NAME),
        )
        self.associate_rq = encode_pdu(rq)
        command = encode_message(CEchoRQ(message_id=1))
        self.echo_rq = encode_pdu(PDataTF(pdvs=(Pdv(context_id=_CONTEXT_ID, is_command=True, is_last=True,
                                                    data=command),)))
        self.release_rq = encode_pdu(ReleaseRQ())

    async def cycle(self) -> tuple[int, float]:
        """One association: (the C-ECHO status, seconds until A-ASSOCIATE-AC), or an AssociationError
        naming what went wrong."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                transport, proto = await loop.create_connection(_PduReader, self.host, self.port)
        except TimeoutError:
            raise ConnectionFailed(f"connection to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(transport, proto, started)
        except TimeoutError:
            transport.write(encode_pdu(Abort()))
            raise AssociationTimeout("no answer from the peer in time") from None
        except RemoteProtocolError as exc:
            transport.write(encode_pdu(Abort()))
            raise AssociationAborted(detail=f"protocol error from the peer: {exc}") from None
        finally:
            transport.close()

    async def _exchange(self, transport: asyncio.Transport, proto: _PduReader, started: float
                        ) -> tuple[int, float]:
        transport.write(self.associate_rq)
        pdu_type, body = await proto.pdu()
        answer = decode_pdu_body(pdu_type, body)
        if isinstance(answer, AssociateRJ):
            raise AssociationRejected(answer.result, answer.source, answer.reason)
        _check_not_abort(answer)
        if not isinstance(answer, AssociateAC):
            raise AssociationAborted(detail=f"unexpected {type(answer).__name__} instead of A-ASSOCIATE-AC")
        if not any(c.context_id == _CONTEXT_ID and c.result == 0 for c in answer.contexts):
            transport.write(encode_pdu(Abort()))
            raise NoPresentationContext("the Verification presentation context was not accepted")
        associated = time.perf_counter() - started
        transport.write(self.echo_rq)
        command = bytearray()
        while True:  # the response command may come in several PDVs (PS3.8 Annex E)
            pdu_type, body = await proto.pdu()
            pdu = decode_pdu_body(pdu_type, body)
            _check_not_abort(pdu)
            if not isinstance(pdu, PDataTF):
                raise AssociationAborted(detail=f"unexpected {type(pdu).__name__} instead of C-ECHO-RSP")
            done = False
            for pdv in pdu.pdvs:
                command += pdv.data
                done = done or (pdv.is_command and pdv.is_last)
            if done:
                break
        rsp = decode_message(bytes(command))
        if not isinstance(rsp, CEchoRSP):
            raise AssociationAborted(detail=f"unexpected {type(rsp).__name__} instead of C-ECHO-RSP")
        transport.write(self.release_rq)
        pdu_type, body = await proto.pdu()
        if pdu_type != PduType.RELEASE_RP:
            _check_not_abort(decode_pdu_body(pdu_type, body))
            raise AssociationAborted(detail=f"PDU type 0x{pdu_type:02X} instead of A-RELEASE-RP")
        return rsp.status, associated


def _check_not_abort(pdu: object) -> None:
    if isinstance(pdu, Abort):
        raise AssociationAborted(int(pdu.source), int(pdu.reason))

