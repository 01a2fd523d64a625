"""The SCP side: a listener, one task per association in one task group, limits and policy.

Every resource a peer can make us spend is bounded: associations (globally, per peer host, per
calling AE), PDU size, data set size, time in each state.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from ..log import get_logger
from ..ul.constants import (
    LOCAL_LIMIT_EXCEEDED,
    RejectReason,
    RejectResult,
    RejectSource,
)
from ..ul.machine import Role, UlConfig
from ..ul.negotiation import AcceptorPolicy, accept, check_association
from ..ul.pdu import AssociateAC, AssociateRJ, AssociateRQ, UserIdentityRQ
from .association import Association
from .budget import MemoryBudget
from .dispatch import Dispatcher
from .stream import FastStream, StreamProtocol
from .transport import raise_open_file_limit, start_server

# An authenticator sees the user identity sub-item (PS3.7 D.3.3.7) and the association; it returns
# None to reject, or the bytes of the server response (b"" when none is due).
Authenticator = Callable[[UserIdentityRQ | None, Association], Awaitable[bytes | None]]


@dataclass(kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "AIODICOM"
    promiscuous: bool = False
    allowed_calling: frozenset[str] | None = None
    max_associations: int = 4096
    max_associations_per_host: int | None = None
    max_associations_per_calling_ae: int | None = None
    ul: UlConfig = field(default_factory=UlConfig)
    dimse_timeout: float | None = 60.0
    idle_timeout: float | None = None
    max_operations: int = 16  # asynchronous operations window we perform (PS3.7 D.3.3.3)
    max_dataset_size: int | None = None
    spool_memory_limit: int = 4 << 20
    spool_dir: str | None = None
    memory_budget: MemoryBudget | None = None  # shared with the FileStore: received bytes count against it
    ssl_context: ssl.SSLContext | None = None
    authenticator: Authenticator | None = None
    reuse_port: bool = False


def _reject(result: int, source: int, reason: int) -> AssociateRJ:
    return AssociateRJ(result=result, source=source, reason=reason)


class Server:
    def __init__(self, config: ServerConfig, dispatcher: Dispatcher, *, log: Any = None) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.log = log or get_logger()
        self.associations: set[Association] = set()  # every connection, negotiated or not
        # Slots of the association limits, taken when a request passes them and given back when it is
        # rejected or ends: counting connections instead would make a burst over the limit reject everyone.
        self._admitted = 0
        self._per_host: Counter[str] = Counter()
        self._per_ae: Counter[str] = Counter()
        self.port: int | None = None
        self._cancel: anyio.CancelScope | None = None

    def policy(self) -> AcceptorPolicy:
        c = self.config
        return AcceptorPolicy(
            ae_title=c.ae_title,
            supported=self.dispatcher.supported,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            max_pdu=c.ul.max_pdu,
            promiscuous=c.promiscuous,
            allowed_calling=c.allowed_calling,
            max_operations_performed=c.max_operations,
            max_operations_invoked=1,
            scp_role_for_requestor=frozenset(self.dispatcher.scp_role_classes),
            extended=lambda item: self.dispatcher.answer_extended(item.sop_class_uid, item.info),
        )

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; `port = await tg.start(server.serve)` in tests."""
        c = self.config
        soft, hard = raise_open_file_limit()
        self._policy = self.policy()
        async with anyio.create_task_group() as tg:
            # a sync callback in the loop: each connection gets its own task in this task group
            listener = await start_server(lambda protocol: tg.start_soon(self._connection, self._stream(protocol)),
                                          c.host, c.port, ssl_context=c.ssl_context, handshake_timeout=c.ul.artim,
                                          reuse_port=c.reuse_port)
            try:
                self.port = listener.sockets[0].getsockname()[1]
                self.log.info("listening", host=c.host, port=self.port, aet=c.ae_title, tls=c.ssl_context is not None,
                              open_files_limit=soft)
                if soft < c.max_associations + 64:
                    self.log.warning("open-file limit caps concurrent associations", limit=soft, hard_limit=hard,
                                     max_associations=c.max_associations)
                task_status.started(self.port)
                with anyio.CancelScope() as self._cancel:
                    await anyio.sleep_forever()
                tg.cancel_scope.cancel()
            finally:
                listener.close()

    def _stream(self, protocol: StreamProtocol) -> FastStream:
        budget = protocol.budget = self.config.memory_budget
        if budget is not None:
            budget.add_reader(protocol)
        return FastStream(protocol)

    def shutdown(self) -> None:
        """Stop listening and end every association (their tasks are cancelled; each sends A-ABORT)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def _connection(self, stream: FastStream) -> None:
        c = self.config
        host, port = stream.peer()
        log = self.log.bind(peer=f"{host}:{port}")
        assoc = Association(
            stream, role=Role.ACCEPTOR, ul_config=c.ul, log=log, dimse_timeout=c.dimse_timeout,
            idle_timeout=c.idle_timeout, dispatcher=self.dispatcher, spool_memory_limit=c.spool_memory_limit,
            spool_dir=c.spool_dir, max_dataset_size=c.max_dataset_size, peer=(host, port),
        )
        assoc.log = log.bind(assoc=assoc.id)
        assoc.on_associate = lambda rq: self._on_associate(assoc, rq)
        self.associations.add(assoc)
        try:
            await assoc.run()
        finally:
            assoc.on_associate = None  # the closure refers back to assoc: a cycle only the GC would collect
            self.associations.discard(assoc)
            self._release(assoc)
            if assoc.assoc_rq is not None:
                outcome = "released" if assoc.error is None else str(assoc.error)
                assoc.log.info("association ended", outcome=outcome)

    async def _on_associate(self, assoc: Association, rq: AssociateRQ) -> AssociateAC | AssociateRJ:
        c = self.config
        assoc.log = assoc.log.bind(calling=rq.calling_ae, called=rq.called_ae)
        answer = check_association(rq, self._policy)
        if answer is None:
            answer = self._admit(assoc, rq)
        if answer is None and c.authenticator is not None:
            identity = rq.user_info.user_identity_rq
            try:
                response = await c.authenticator(identity, assoc)
            except Exception:
                assoc.log.exception("authenticator failed")
                response = None
            if response is None:
                answer = _reject(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON_GIVEN)
            else:
                answer = accept(rq, self._policy, identity_response=response)
        if answer is None:
            answer = accept(rq, self._policy)
        if isinstance(answer, AssociateRJ):
            self._release(assoc)
            assoc.log.info("association rejected", result=answer.result, source=answer.source, reason=answer.reason)
        else:
            accepted = sum(1 for ctx in answer.contexts if ctx.result == 0)
            assoc.log.info("association accepted", contexts=len(answer.contexts), accepted=accepted,
                           max_pdu=rq.user_info.max_pdu, peer_implementation=rq.user_info.implementation_version_name)
        return answer

    def _admit(self, assoc: Association, rq: AssociateRQ) -> AssociateRJ | None:
        """Take a slot of every limit, or answer as PS3.8 Table 9-21 says for a local limit: rejected-transient,
        local-limit-exceeded. The slot is taken before the authenticator is awaited, so concurrent requests
        cannot all pass the check first."""
        c = self.config
        host, ae = assoc.peer[0], rq.calling_ae
        over = (
            self._admitted >= c.max_associations
            or (c.max_associations_per_host is not None and self._per_host[host] >= c.max_associations_per_host)
            or (c.max_associations_per_calling_ae is not None and self._per_ae[ae] >= c.max_associations_per_calling_ae)
        )
        if over:
            return _reject(RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION, LOCAL_LIMIT_EXCEEDED)
        self._admitted += 1
        self._per_host[host] += 1
        self._per_ae[ae] += 1
        assoc.counted_ae = ae
        return None

    def _release(self, assoc: Association) -> None:
        """Give back the slots an association took (idempotent)."""
        ae = assoc.counted_ae
        if ae is None:
            return
        assoc.counted_ae = None
        host = assoc.peer[0]
        self._admitted -= 1
        for counter, key in ((self._per_host, host), (self._per_ae, ae)):
            counter[key] -= 1
            if not counter[key]:
                del counter[key]
