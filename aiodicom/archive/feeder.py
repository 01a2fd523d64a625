"""Index records handed over without waiting, for stores that do not promise durability.

With `serve --sync off` a C-STORE answers as soon as its file is renamed into place, so waiting for
the index transaction would be most of its latency. The feeder queues each record and a background
task adds them to the index in batches; records still queued at shutdown are added before it ends.
(With syncing on, the storage service awaits `index.add` instead: Success then means indexed too.)
"""

from __future__ import annotations

import math

import anyio
from anyio.abc import TaskStatus

from .index import ArchiveIndex, IndexRecord


class IndexFeeder:
    def __init__(self, index: ArchiveIndex, *, log=None, max_batch: int = 500, gather: float = 0.1) -> None:
        self.index = index
        self.log = log
        self.max_batch = max_batch
        # Wait this long after a record for more: one transaction for many records. Each transaction costs
        # its thread hand-offs and commit whatever its size; at 0.1 s (a query may miss an instance stored
        # less than that ago) indexing takes ~60-80 µs of CPU per 10 KB instance against ~110 at 0.02 s.
        self.gather = gather
        self._send, self._receive = anyio.create_memory_object_stream[IndexRecord](math.inf)

    def put(self, record: IndexRecord) -> None:
        self._send.send_nowait(record)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        batch: list[IndexRecord] = []
        try:
            async for first in self._receive:
                batch = [first]
                await anyio.sleep(self.gather)
                batch.extend(self._drain())
                await self._add(batch)
                batch = []
        finally:
            with anyio.CancelScope(shield=True):  # what was acknowledged gets indexed even at shutdown
                batch.extend(self._drain(limit=None))
                if batch:
                    await self._add(batch)

    def _drain(self, limit: int | None = -1):
        limit = self.max_batch - 1 if limit == -1 else limit
        n = 0
        while limit is None or n < limit:
            try:
                yield self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            n += 1

    async def _add(self, records: list[IndexRecord]) -> None:
        try:
            await self.index.add(records)
        except Exception:  # the files are the truth: `aiodicom index rebuild` recovers the index
            if self.log is not None:
                self.log.exception("indexing failed", records=len(records))
