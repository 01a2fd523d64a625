"""Index records handed over without waiting, added in batches; reads wait for what was handed over.

A C-STORE answers once its file is filed (and durable when syncing): the files are the truth, the index
is derived from them. Waiting for an index transaction per instance would cost more than the fsyncs
themselves (~0.35 ms of CPU and two thread hand-offs for one record against ~60 µs in a batch), so the
feeder queues each record and a background task adds them in batches. Two things keep that invisible:

- read your writes: `FedIndex` (the index the services are given) settles the feeder before every
  read, so a C-FIND, C-MOVE or commitment request sees every instance this process acknowledged;
- crash safety: each batch saves, in the same transaction, the time before which everything this
  process acknowledged is indexed (its mark). A process that dies with records queued leaves an old
  mark behind, and at the next start `catch_up()` (archive/catchup.py) indexes the files of the series
  folders changed since (SQLite's synchronous=NORMAL may lose the last transactions on power loss:
  their marks go with them, so the same catch-up covers that too).

Records still queued at shutdown are added before the feeder ends.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .index import ArchiveIndex, IndexCounts, IndexRecord, Level, Model, Row, StoredInstance
from .matching import Query


class IndexFeeder:
    def __init__(self, index: ArchiveIndex, *, log: Any = None, max_batch: int = 500, gather: float = 0.1,
                 clock: Callable[[], float] = time.time) -> None:
        self.index = index
        self.log = log
        self.max_batch = max_batch
        # Wait this long after a record for more: one transaction for many records. Each transaction costs
        # its thread hand-offs and commit whatever its size; at 0.1 s indexing takes ~60-80 µs of CPU per
        # 10 KB instance against ~110 at 0.02 s. A read that needs the records cuts the wait short.
        self.gather = gather
        self.clock = clock
        self._queue: collections.deque[tuple[IndexRecord, float]] = collections.deque()
        self._arrived = anyio.Event()  # set when the queue gets a record
        self._hurry = anyio.Event()  # set by settle(): add now, don't gather
        self._settled = anyio.Event()  # replaced and set after each batch
        self._put = 0  # records put so far
        self._done = 0  # records added (or given up on) so far, in order
        self._floor = float("inf")  # put time of the first record whose batch failed: the mark stays there

    def put(self, record: IndexRecord) -> None:
        self._queue.append((record, self.clock()))
        self._put += 1
        self._arrived.set()

    async def settle(self) -> None:
        """Return once every record put so far is in the index (or failed, and was logged)."""
        target = self._put
        while self._done < target:
            self._hurry.set()
            await self._settled.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Nothing acknowledged yet: a crash before the first batch must not leave an older mark in charge.
        await self._add([], self.clock())
        task_status.started()
        try:
            while True:
                await self._arrived.wait()
                if len(self._queue) < self.max_batch:
                    with anyio.move_on_after(self.gather):
                        await self._hurry.wait()
                await self._add_batch(self.max_batch)
        finally:
            with anyio.CancelScope(shield=True):  # what was acknowledged gets indexed even at shutdown
                while self._queue:
                    await self._add_batch(self.max_batch)

    async def _add_batch(self, limit: int) -> None:
        n = min(limit, len(self._queue))
        batch = [self._queue.popleft() for _ in range(n)]
        # Everything put before `until` is in this batch or an earlier one: the next record left waiting
        # (if any) was put no earlier than the last one taken.
        until = batch[-1][1] if self._queue else self.clock()
        if not self._queue:
            self._arrived = anyio.Event()
        self._hurry = anyio.Event()
        ok = await self._add([r for r, _ in batch], min(until, self._floor))
        if not ok and batch:
            self._floor = min(self._floor, batch[0][1])
        self._done += n
        settled, self._settled = self._settled, anyio.Event()
        settled.set()

    async def _add(self, records: list[IndexRecord], until: float) -> bool:
        try:
            await self.index.add(records, indexed_until=until)
        except Exception:  # the files are the truth: the next start's catch-up indexes them
            if self.log is not None:
                self.log.exception("indexing failed", records=len(records))
            return False
        return True


class FedIndex(ArchiveIndex):
    """The index as the services see it: writes go through the feeder, every read settles it first."""

    def __init__(self, index: ArchiveIndex, feeder: IndexFeeder) -> None:
        self.inner, self.feeder = index, feeder

    async def add(self, records: Sequence[IndexRecord], *, indexed_until: float | None = None) -> None:
        for record in records:
            self.feeder.put(record)
        await self.feeder.settle()

    async def remove(self, sop_instance_uid: str) -> bool:
        await self.feeder.settle()
        return await self.inner.remove(sop_instance_uid)

    async def get(self, sop_instance_uid: str) -> StoredInstance | None:
        await self.feeder.settle()
        return await self.inner.get(sop_instance_uid)

    async def query(self, level: Level, query: Query, *, model: Model = Model.STUDY_ROOT) -> AsyncIterator[Row]:
        await self.feeder.settle()
        async with contextlib.aclosing(self.inner.query(level, query, model=model)) as rows:
            async for row in rows:
                yield row

    async def instances(self, level: Level, uids: Mapping[str, Sequence[str]]) -> AsyncIterator[StoredInstance]:
        await self.feeder.settle()
        async with contextlib.aclosing(self.inner.instances(level, uids)) as found:
            async for instance in found:
                yield instance

    async def instance_count(self, level: Level, uids: Mapping[str, Sequence[str]]) -> int:
        await self.feeder.settle()
        return await self.inner.instance_count(level, uids)

    async def counts(self) -> IndexCounts:
        await self.feeder.settle()
        return await self.inner.counts()

    def supported_keys(self, level: Level) -> frozenset[str]:
        return self.inner.supported_keys(level)

    async def close(self) -> None:
        """The inner index belongs to whoever opened it."""
