"""Query/Retrieve as an SCU (PS3.4 Annex C): C-FIND, C-MOVE and C-GET as async iterators.

Leaving an iterator before the final response sends C-CANCEL (PS3.7 §9.3.2.3) and drains what the
peer still sends, so the association stays usable. Use `contextlib.aclosing` when breaking out early.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .. import uids
from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import CCancelRQ, CFindRQ, CGetRQ, CMoveRQ, Request, Response
from ..uids import QR_MODELS, UNCOMPRESSED_TRANSFER_SYNTAXES
from ..ul.pdu import RoleSelection
from .association import close_payload
from .errors import OperationFailed

if TYPE_CHECKING:
    from pydicom import Dataset

    from .client import Client

_CANCEL_DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Progress:
    """One C-MOVE/C-GET response: its status and sub-operation counts (PS3.7 §9.1.3, §9.1.4)."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None
    failed_sop_instances: tuple[str, ...] = ()
    response: Response | None = field(default=None, compare=False)

    @property
    def final(self) -> bool:
        return st.category(self.status) is not st.Category.PENDING

    @property
    def error_comment(self) -> str | None:
        """The peer's Error Comment (0000,0902), if it sent one: why the retrieve or its sub-operations failed."""
        return getattr(self.response, "error_comment", None)

    def __str__(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in (("remaining", self.remaining), ("completed", self.completed),
                                                          ("failed", self.failed), ("warning", self.warning))
                           if n is not None)
        command = self.response.command_field if self.response is not None else None
        comment = f" ({self.error_comment})" if self.error_comment else ""
        return st.describe(self.status, command) + comment + (f" [{counts}]" if counts else "")


def sop_class(model: str, operation: int) -> str:
    """The SOP class of a model ('patient', 'study', 'psonly', 'worklist' or a UID) for FIND/MOVE/GET (0/1/2)."""
    if model in QR_MODELS:
        uid = QR_MODELS[model][operation]
        if uid is None:
            raise ValueError(f"the {model} model has no {('C-FIND', 'C-MOVE', 'C-GET')[operation]}")
        return uid
    return model


async def _exchange(client: Client, message: Request, context_id: int, identifier: Dataset
                    ) -> AsyncIterator[tuple[Response, Any]]:
    """Send a request with its identifier; yield its responses; C-CANCEL if left early."""
    data = EncodedDataset.from_dataset(identifier, client.assoc.transfer_syntax(context_id))
    responses = client.assoc.request_iter(message, context_id, data)
    done = False
    try:
        async for rsp, payload in responses:
            done = rsp.category is not st.Category.PENDING
            yield rsp, payload
            if done:
                return
    finally:
        if not done and client.assoc.is_established:
            with anyio.CancelScope(shield=True):
                await _cancel_and_drain(client, message, context_id, responses)
        await responses.aclose()


async def _cancel_and_drain(client: Client, message: Request, context_id: int, responses: Any) -> None:
    with contextlib.suppress(Exception):
        await client.assoc.send(CCancelRQ(message_id_being_responded_to=message.message_id), context_id)
        with anyio.move_on_after(_CANCEL_DRAIN_TIMEOUT):
            async for rsp, payload in responses:
                close_payload(payload)
                if rsp.category is not st.Category.PENDING:
                    return


async def find(client: Client, identifier: Dataset, *, model: str = "study", priority: int = 0
               ) -> AsyncIterator[Dataset]:
    """C-FIND: yield each matching identifier; raise OperationFailed on a failure status."""
    uid = sop_class(model, 0)
    cid = client.context_for(uid)
    message = CFindRQ(message_id=client.next_message_id(), affected_sop_class_uid=uid, priority=priority)
    # aclosing: leaving this generator must close the exchange at once, so its C-CANCEL goes out now
    async with contextlib.aclosing(_exchange(client, message, cid, identifier)) as responses:
        async for rsp, payload in responses:
            if rsp.category is st.Category.PENDING:
                if payload is not None:
                    try:
                        yield payload.dataset()
                    finally:
                        close_payload(payload)
            elif rsp.category is st.Category.FAILURE:
                raise OperationFailed(rsp)


async def _retrieve(client: Client, message: CMoveRQ | CGetRQ, identifier: Dataset) -> AsyncIterator[Progress]:
    cid = client.context_for(message.affected_sop_class_uid)
    async with contextlib.aclosing(_exchange(client, message, cid, identifier)) as responses:
        async for rsp, payload in responses:
            failed_uids: tuple[str, ...] = ()
            if payload is not None:
                with contextlib.suppress(Exception):
                    listed = payload.dataset().get("FailedSOPInstanceUIDList", [])
                    failed_uids = tuple(str(u) for u in ([listed] if isinstance(listed, str) else listed))
                close_payload(payload)
            yield Progress(rsp.status, rsp.remaining, rsp.completed, rsp.failed, rsp.warning, failed_uids, rsp)


async def move(client: Client, identifier: Dataset, destination: str, *, model: str = "study",
               priority: int = 0) -> AsyncIterator[Progress]:
    """C-MOVE to `destination` (an AE the SCP knows): yield progress, the final response last."""
    message = CMoveRQ(message_id=client.next_message_id(), affected_sop_class_uid=sop_class(model, 1),
                      move_destination=destination, priority=priority)
    async with contextlib.aclosing(_retrieve(client, message, identifier)) as progress_iter:
        async for progress in progress_iter:
            yield progress


async def get(client: Client, identifier: Dataset, *, model: str = "study", priority: int = 0
              ) -> AsyncIterator[Progress]:
    """C-GET: the instances come as C-STORE requests on this association, answered by the dispatcher
    given to connect() (see `get_contexts`); yield progress, the final response last."""
    message = CGetRQ(message_id=client.next_message_id(), affected_sop_class_uid=sop_class(model, 2),
                     priority=priority)
    async with contextlib.aclosing(_retrieve(client, message, identifier)) as progress_iter:
        async for progress in progress_iter:
            yield progress


def get_contexts(model: str = "study", storage_classes: Iterable[str] | None = None,
                 transfer_syntaxes: Iterable[str] = UNCOMPRESSED_TRANSFER_SYNTAXES
                 ) -> tuple[list[tuple[str, tuple[str, ...]]], list[RoleSelection]]:
    """Contexts and SCP/SCU role selections (PS3.4 C.4.3.1) for a C-GET SCU that stores what it gets
    (`storage_classes`: by default the common ones, uids.COMMON_STORAGE_SOP_CLASSES)."""
    if storage_classes is None:
        storage_classes = uids.COMMON_STORAGE_SOP_CLASSES
    tss = tuple(transfer_syntaxes)
    classes = list(dict.fromkeys(storage_classes))[:127]
    contexts = [(sop_class(model, 2), UNCOMPRESSED_TRANSFER_SYNTAXES)] + [(uid, tss) for uid in classes]
    roles = [RoleSelection(sop_class_uid=uid, scu_role=False, scp_role=True) for uid in classes]
    return contexts, roles


def total(progress: Progress) -> int:
    return sum(n or 0 for n in (progress.remaining, progress.completed, progress.failed, progress.warning))


