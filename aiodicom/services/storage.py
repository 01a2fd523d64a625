"""Storage SOP Classes SCP (PS3.4 Annex B): every instance streamed to disk as it arrives.

The data set's fragments go straight into the file that will hold it (preamble and file meta
first, then the bytes as received); on the last fragment the handler commits it (fsync, atomic
rename, directory fsync, group-committed) and only then answers Success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..archive.errors import ArchiveError
from ..archive.fileformat import meta_source_ae
from ..archive.filestore import FileStore, IncomingInstance, StoredInstance, StoreOutcome
from ..dimse import status as st
from ..dimse.messages import CStoreRQ
from ..net.association import Association
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..net.sinks import ReceiveFailed
from ..uids import ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES

# Called with each stored instance before Success is answered (e.g. the archive index, a router's queue).
OnStored = Callable[[StoredInstance, ServiceRequest], Awaitable[None]]


class _FileSink:
    """Fragments into the temp file of the instance being received."""

    __slots__ = ("incoming",)

    def __init__(self, incoming: IncomingInstance) -> None:
        self.incoming = incoming

    def write(self, data: memoryview) -> None:
        self.incoming.write(data)

    def close(self) -> _Received:
        return _Received(self.incoming)

    def abort(self) -> None:
        self.incoming.abort()


@dataclass(slots=True)
class _Received:
    incoming: IncomingInstance

    def discard(self) -> None:
        """Called once the handler is done: a no-op after a commit, removes the temp file otherwise."""
        self.incoming.abort()



class StorageService:
    def __init__(self, store: FileStore, *, sop_classes: Collection[str] = STORAGE_SOP_CLASSES,
                 transfer_syntaxes: Collection[str] = ALL_TRANSFER_SYNTAXES,
                 on_stored: OnStored | None = None, inline: bool = True) -> None:
        self.store = store
        self.sop_classes = tuple(sop_classes)
        self.transfer_syntaxes = tuple(transfer_syntaxes)
        self.on_stored = on_stored
        self.inline = inline  # False when on_stored may wait on something slow (e.g. a proxy's destination)

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support(self.sop_classes, self.transfer_syntaxes)
        # inline: a commit ends by itself (disk, index) and never waits on the peer
        dispatcher.add(CStoreRQ, self.handle, sink=self.open_sink, inline=self.inline)

    def open_sink(self, assoc: Association, message: Any, context_id: int) -> Any:
        try:
            incoming = self.store.begin(
                sop_class_uid=message.affected_sop_class_uid,
                sop_instance_uid=message.affected_sop_instance_uid,
                transfer_syntax=assoc.transfer_syntax(context_id),
                source_ae=meta_source_ae(assoc.calling_ae),
            )
        except ArchiveError as exc:
            assoc.log.warning("C-STORE refused", error=str(exc), sop_instance=message.affected_sop_instance_uid)
            return ReceiveFailed(exc.status, str(exc))
        return _FileSink(incoming)

    async def handle(self, req: ServiceRequest) -> Result:
        payload = req.payload
        if not isinstance(payload, _Received):
            return Result(status=st.CANNOT_UNDERSTAND, error_comment="C-STORE-RQ without a data set")
        try:
            stored = await payload.incoming.commit()
        except ArchiveError as exc:
            req.assoc.log.warning("C-STORE failed", error=str(exc), status=f"0x{exc.status:04X}",
                                  sop_instance=req.message.affected_sop_instance_uid)
            return Result(status=exc.status, error_comment=str(exc))
        if self.on_stored is not None:
            await self.on_stored(stored, req)
        if stored.outcome is StoreOutcome.DUPLICATE_KEPT_FIRST:
            # PS3.4 B.2.3 has no status for "already stored": Warning B006 (Elements Discarded) is the
            # closest truthful one (what was sent was dropped), and the comment says why.
            return Result(status=st.ELEMENTS_DISCARDED, error_comment="duplicate SOP Instance UID: kept the stored copy")
        return Result(status=st.SUCCESS)


def install(dispatcher: Dispatcher, store: FileStore, **kwargs: Any) -> StorageService:
    service = StorageService(store, **kwargs)
    service.install(dispatcher)
    return service
