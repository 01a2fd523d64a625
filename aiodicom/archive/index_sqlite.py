"""The embedded index: SQLite in WAL mode, `index.sqlite` in the storage folder.

One writer connection lives in a dedicated thread fed by a queue. It takes every job waiting when it
wakes up and commits them in one transaction (group commit): under load, hundreds of stored
instances share a commit, and `await add()` returns once its own batch is committed. Readers run in
worker threads (anyio.to_thread, bounded by a CapacityLimiter) on pooled read-only connections and
stream rows in fetchmany() chunks; WAL lets them read while the writer writes. Nothing here blocks
the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import sniffio

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

T = TypeVar("T")
_MAX_EMPTY_CHUNKS: Final = 16  # chunks a reader may filter away before yielding control back


class IndexClosedError(RuntimeError):
    """The index was closed while (or before) the operation was submitted."""


class _Unavailable(Exception):
    """BEGIN failed: the database, not a job, is the problem."""


def _waker() -> tuple[anyio.Event, Callable[[], None]]:
    """An event the writer thread can set without ever waiting for the event loop."""
    event = anyio.Event()
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()

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
        self._chunk_size = chunk_size
        self._limiter = anyio.CapacityLimiter(readers)
        self._idle_readers = 2 * readers  # connections kept open between queries
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
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

    async def add(self, records: Sequence[IndexRecord]) -> None:
        records = tuple(records)
        if records:
            await self._submit(functools.partial(_add, records=records, storage_dir=self.storage_dir),
                               weight=len(records))

    async def remove(self, sop_instance_uid: str) -> bool:
        return await self._submit(lambda conn, touched: schema.remove_instance(conn, touched, sop_instance_uid))

    # ---- reading ----------------------------------------------------------------------------

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise IndexClosedError(f"{self.path} is closed")
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            return schema.open_connection(self.path, readonly=True)

    def _release(self, conn: sqlite3.Connection, cursor: sqlite3.Cursor | None) -> None:
        if cursor is not None:
            cursor.close()  # ends the read transaction (the WAL snapshot) now, not at GC
        with self._lock:
            if not self._closed and self._readers.qsize() < self._idle_readers:
                self._readers.put(conn)
                return
        conn.close()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._acquire()
            try:
                return fn(conn)
            finally:
                self._release(conn, None)

        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    async def _stream(self, sql: str, params: tuple[Any, ...],
                      convert: Callable[[tuple[Any, ...]], T | None]) -> AsyncIterator[T]:
        """Rows of `sql` in chunks, converted (None: filtered out) in the reader thread."""
        conn = await anyio.to_thread.run_sync(self._acquire, limiter=self._limiter)
        cursor: sqlite3.Cursor | None = None
        try:
            cursor = await anyio.to_thread.run_sync(conn.execute, sql, params, limiter=self._limiter)
            fetch = functools.partial(_fetch, cursor, convert, self._chunk_size)
            while True:
                chunk, done = await anyio.to_thread.run_sync(fetch, limiter=self._limiter)
                for item in chunk:
                    yield item
                if done:
                    break
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._release, conn, cursor)

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
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break


def _fetch(cursor: sqlite3.Cursor, convert: Callable[[tuple[Any, ...]], T | None], size: int) -> tuple[list[T], bool]:
    """Up to a few chunks, until some row passes the filter: (items, exhausted)."""
    out: list[T] = []
    for _ in range(_MAX_EMPTY_CHUNKS):
        rows = cursor.fetchmany(size)
        if not rows:
            return out, True
        out.extend(item for item in map(convert, rows) if item is not None)
        if out:
            break
    return out, False


def _add(conn: sqlite3.Connection, touched: schema.Touched, *, records: tuple[IndexRecord, ...],
         storage_dir: Path) -> None:
    schema.add_records(conn, touched, records, storage_dir)
