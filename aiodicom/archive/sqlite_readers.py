"""Read-only SQLite connections for worker threads, shared by the archive's databases.

Reads never run on the event loop: each runs in a worker thread (bounded by a CapacityLimiter) on a
pooled read-only connection, and a query streams its rows in chunks, converted (and filtered) in the
thread, so the loop only ever sees finished items. Closing an iterator early ends the read
transaction (the WAL snapshot) at once.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
_MAX_EMPTY_CHUNKS = 16  # a trip that finds nothing still returns after this many chunks: cancellation stays prompt


class ReaderPool:
    def __init__(self, connect: Callable[[], sqlite3.Connection], *, readers: int, idle: int | None = None,
                 chunk_size: int = 256, closed_error: Callable[[], Exception]) -> None:
        self._connect = connect
        self.limiter = anyio.CapacityLimiter(readers)
        self._idle = idle if idle is not None else 2 * readers  # connections kept open between queries
        self._chunk_size = chunk_size
        self._closed_error = closed_error
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise self._closed_error()
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return self._connect()

    def release(self, conn: sqlite3.Connection, cursor: sqlite3.Cursor | None = None) -> None:
        if cursor is not None:
            cursor.close()  # ends the read transaction (the WAL snapshot) now, not at GC
        with self._lock:
            if not self._closed and self._pool.qsize() < self._idle:
                self._pool.put(conn)
                return
        conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self.acquire()
            try:
                return fn(conn)
            finally:
                self.release(conn)

        return await anyio.to_thread.run_sync(run, limiter=self.limiter)

    async def stream(self, sql: str, params: Sequence[Any], convert: Callable[[tuple[Any, ...]], T | None]
                     ) -> AsyncIterator[T]:
        """Rows of `sql`, converted in the reader thread (None: dropped), a chunk per trip to the thread."""
        conn = await anyio.to_thread.run_sync(self.acquire, limiter=self.limiter)
        cursor: sqlite3.Cursor | None = None

        def fetch() -> tuple[list[T], bool]:
            assert cursor is not None
            out: list[T] = []
            for _ in range(_MAX_EMPTY_CHUNKS):
                rows = cursor.fetchmany(self._chunk_size)
                if not rows:
                    return out, True
                out.extend(item for item in map(convert, rows) if item is not None)
                if out:
                    break
            return out, False

        try:
            cursor = await anyio.to_thread.run_sync(conn.execute, sql, tuple(params), limiter=self.limiter)
            while True:
                chunk, done = await anyio.to_thread.run_sync(fetch, limiter=self.limiter)
                for item in chunk:
                    yield item
                if done:
                    break
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.release, conn, cursor)

    def close(self) -> None:
        """No new reads; idle connections closed (busy ones close when released)."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return
