"""The embedded index: SQLite in WAL mode, `index.sqlite` in the storage folder.

One writer connection lives in a dedicated thread fed by a queue. It takes every job waiting when it
wakes up and commits them in one transaction (group commit): under load, hundreds of stored
instances share a commit, and `await add()` returns once its own batch is committed. Readers run in
worker threads (anyio.to_thread, bounded by a CapacityLimiter) on pooled read-only connections and
stream rows in fetchmany() chunks; WAL lets them read while the writer writes. Nothing here blocks
the event loop.
"""

from __future__ import annotations

import functools
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from aiodicom.archive import index_schema as schema
from aiodicom.archive.index import (
    INDEX_FILENAME,
    ArchiveIndex,
    IndexCounts,
    IndexRecord,
    Level,
    Model,
    Row,
    StoredInstance,
    check_level,
    check_uids,
)
from aiodicom.archive.matching import Query
from aiodicom.archive.sqlite_readers import ReaderPool
from aiodicom.loop import running_asyncio_loop

T = TypeVar("T")


class IndexClosedError(RuntimeError):
    """The index was closed while (or before) the operation was submitted."""


class _Unavailable(Exception):
    """BEGIN failed: the database, not a job, is the problem."""


def _waker() -> tuple[anyio.Event, Callable[[], None]]:
    """An event the writer thread can set without ever waiting for the event loop."""
    event = anyio.Event()
    loop = running_asyncio_loop()
    if loop is not None:

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
    else:
        token = anyio.lowlevel.current_token()

        def wake() -> None:
            try:
                anyio.from_thread.run_sync(event.set, token=token)
            except Exception:  # the event loop has finished: nobody is waiting any more
                pass
    return event, wake


@dataclass(slots=True, eq=False)
class _Job:
    run: Callable[[sqlite3.Connection, schema.Touched], Any]
    weight: int  # records in the job, to bound a batch
    wake: Callable[[], None]
    result: Any = None
    error: BaseException | None = None


class SqliteIndex(ArchiveIndex):
    """Create with `await SqliteIndex.open(storage_dir)`; close with `await index.close()` or `async with`."""

    def __init__(self, storage_dir: Path, *, filename: str, max_batch: int, readers: int, chunk_size: int) -> None:
        self.storage_dir = Path(storage_dir)
        self.path = self.storage_dir / filename
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._readers = ReaderPool(lambda: schema.open_connection(self.path, readonly=True), readers=readers,
                                   chunk_size=chunk_size, closed_error=lambda: IndexClosedError(f"{self.path} is closed"))
        self._lock = threading.Lock()
        self._closed = False
        self._fatal: BaseException | None = None
        self.commits = 0  # write transactions committed (group commit makes it far below add() calls)
        self._thread = threading.Thread(target=self._write_loop, name=f"index-writer:{self.path}", daemon=True)

    @classmethod
    async def open(cls, storage_dir: Path | str, *, filename: str = INDEX_FILENAME, max_batch: int = 1000,
                   readers: int = 4, chunk_size: int = 256) -> SqliteIndex:
        """Open (creating when missing) the index of `storage_dir`.

        max_batch: records per write transaction at most; readers: concurrent reading threads;
        chunk_size: rows fetched per trip to a reader thread.
        """
        index = cls(Path(storage_dir), filename=filename, max_batch=max_batch, readers=readers,
                     chunk_size=chunk_size)
        index._thread.start()
        try:
            await index._submit(lambda conn, touched: None)  # the writer has opened (or failed to open) the file
        except BaseException:
            with anyio.CancelScope(shield=True):
                await index.close()
            raise
        return index

    # ---- writing ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            conn = schema.open_connection(self.path)
        except BaseException as exc:  # reported to every job, starting with open()'s
            self._fatal = exc
        stop = False
        while not stop:
            job = self._jobs.get()
            if job is None:
                break
            batch, weight = [job], job.weight
            while weight < self._max_batch:  # group commit: take whatever else is already waiting
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                weight += nxt.weight
            if conn is None:
                for j in batch:
                    j.error = self._fatal
            else:
                self._commit(conn, batch)
            for j in batch:
                j.wake()
        if conn is not None:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            self._transaction(conn, batch)
        except _Unavailable as exc:  # still locked by another process after busy_timeout: all fail alike
            for job in batch:
                job.error = exc.__cause__
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for job in batch:  # one bad job must not fail the others: retry each alone
                try:
                    self._transaction(conn, [job])
                except Exception as alone:
                    job.error = alone.__cause__ if isinstance(alone, _Unavailable) else alone

    def _transaction(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        touched = schema.Touched()
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock between processes
        except sqlite3.OperationalError as exc:
            raise _Unavailable from exc
        try:
            results = [job.run(conn, touched) for job in jobs]
            schema.finish(conn, touched)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite rolls back by itself after some errors (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        for job, result in zip(jobs, results):
            job.result = result

    async def _submit(self, run: Callable[[sqlite3.Connection, schema.Touched], T], weight: int = 1) -> T:
        event, wake = _waker()
        job = _Job(run, weight, wake)
        with self._lock:  # never behind close()'s stop marker, where nobody would run it
            if self._closed:
                raise IndexClosedError(f"{self.path} is closed")
            self._jobs.put(job)
        await event.wait()  # if cancelled, the job still completes: indexing is idempotent
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def add(self, records: Sequence[IndexRecord], *, indexed_until: float | None = None) -> None:
        records = tuple(records)
        if records or indexed_until is not None:
            await self._submit(functools.partial(_add, records=records, storage_dir=self.storage_dir,
                                                 indexed_until=indexed_until), weight=max(len(records), 1))

    async def remove(self, sop_instance_uid: str) -> bool:
        return await self._submit(lambda conn, touched: schema.remove_instance(conn, touched, sop_instance_uid))

    # ---- reading ----------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        return self._readers.read(fn)

    def _stream(self, sql: str, params: Sequence[Any], convert: Callable[[tuple[Any, ...]], T | None]
                ) -> AsyncIterator[T]:
        return self._readers.stream(sql, params, convert)

    async def query(self, level: Level, query: Query, *, model: Model = Model.STUDY_ROOT) -> AsyncIterator[Row]:
        check_level(level, model)
        sel = schema.select(level, query)
        names, residual = sel.names, sel.residual

        def convert(values: tuple[Any, ...]) -> Row | None:
            row = dict(zip(names, values))
            return row if all(m.matches(row) for m in residual) else None

        async for row in self._stream(sel.sql, sel.params, convert):
            yield row

    async def instances(self, level: Level, uids: Mapping[str, Sequence[str]]) -> AsyncIterator[StoredInstance]:
        check_uids(level, uids)
        sql, params = schema.select_instances(uids)
        storage_dir = self.storage_dir
        async for inst in self._stream(sql, params, lambda row: schema.stored_instance(row, storage_dir)):
            yield inst

    async def instance_count(self, level: Level, uids: Mapping[str, Sequence[str]]) -> int:
        check_uids(level, uids)
        sql, params = schema.select_instances(uids, count=True)
        return await self._read(lambda conn: conn.execute(sql, params).fetchone()[0])

    async def get(self, sop_instance_uid: str) -> StoredInstance | None:
        sql, params = schema.select_instances({"SOPInstanceUID": [sop_instance_uid]})
        row = await self._read(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None else schema.stored_instance(row, self.storage_dir)

    async def counts(self) -> IndexCounts:
        return IndexCounts(*await self._read(lambda conn: conn.execute(schema.COUNTS_SQL).fetchone()))

    def supported_keys(self, level: Level) -> frozenset[str]:
        return schema.supported_keys(level)

    async def close(self) -> None:
        """Commit what was submitted, stop the writer and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        await anyio.to_thread.run_sync(self._thread.join)
        self._readers.close()


def _add(conn: sqlite3.Connection, touched: schema.Touched, *, records: tuple[IndexRecord, ...],
         storage_dir: Path, indexed_until: float | None) -> None:
    schema.add_records(conn, touched, records, storage_dir)
    if indexed_until is not None:
        schema.set_mark(conn, f"pid {os.getpid()}", indexed_until)  # one per process: workers share the index
