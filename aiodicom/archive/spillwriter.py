"""Data set fragments appended to temp files by a writer thread, off the event loop.

Writing a 0.5 MB instance into the page cache costs ~0.3-0.5 ms of kernel time (page allocation,
copy): done on the event loop, a quarter of a router's loop time, and time a single association's
receiving waits for. Here the loop hands each fragment over (a view of the received PDU, no copy)
and goes on receiving while one thread pwrite()s it at its offset. Offsets make the order of writes
irrelevant, so when the thread is behind by more than `max_pending` bytes the loop writes inline
instead: memory stays bounded and the loop never waits. With a process's MemoryBudget the same happens
whenever a fragment would not fit in it.

A file's writes must be done before it is synced, read back, renamed or closed: `drain()` waits for
a barrier queued behind them (the thread works in order), and `close()` of a file with writes still
queued is queued too, so an fd is never closed, and its number reused, under a pending write.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import threading
from typing import Any, Final

from aiodicom.net.budget import MemoryBudget

MAX_PENDING: Final = 64 << 20  # bytes handed over and not written yet, beyond which the loop writes itself
_WRITE, _WAKE, _CLOSE, _SET = "write", "wake", "close", "set"  # what a queued item asks the thread to do


class SpillFile:
    """One temp file written through the writer. `error` is the first failed write's OSError."""

    __slots__ = ("completed", "error", "fd", "submitted")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.submitted = 0  # writes handed over (changed by the loop only)
        self.completed = 0  # of those, done (changed by the writer thread only)
        self.error: OSError | None = None

    @property
    def idle(self) -> bool:
        return self.completed == self.submitted


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """os.pwrite until all is written (a regular file may take less than asked)."""
    done, total = 0, len(data)
    while done < total:
        n = os.pwrite(fd, data[done:] if done else data, offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite returned 0")
        done += n


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SpillWriter:
    def __init__(self, *, max_pending: int = MAX_PENDING, budget: MemoryBudget | None = None) -> None:
        self.max_pending = max_pending
        self.budget = budget
        if budget is not None:
            budget.count_outside(lambda: self._handed - self._written)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._handed = 0  # bytes handed over (loop)
        self._written = 0  # bytes written by the thread (thread)

    def write(self, file: SpillFile, offset: int, data: memoryview) -> None:
        """Write `data` at `offset`, now or soon. Raises the OSError of an earlier failed write."""
        if file.error is not None:
            raise file.error
        if self._handed - self._written > self.max_pending or \
                (self.budget is not None and not self.budget.room_for(len(data))):
            pwrite_all(file.fd, data, offset)  # the thread is behind: do it here rather than queue more
            return
        if not isinstance(data.obj, bytes):  # a mutable buffer might change before the thread gets to it
            data = memoryview(bytes(data))
        file.submitted += 1
        self._handed += len(data)
        self._queue.put((_WRITE, file, offset, data))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spill-writer", daemon=True)
            self._thread.start()

    async def drain(self, file: SpillFile) -> None:
        """Return once every write handed over for `file` is done; raises the OSError of a failed one."""
        if not file.idle:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            self._queue.put((_WAKE, loop, done))
            await done
        if file.error is not None:
            raise file.error

    def close(self, file: SpillFile, unlink: str | None = None) -> None:
        """Close the file (and remove `unlink`) once its queued writes are done; at once when none are."""
        if file.idle:
            _close(file.fd, unlink)
        else:
            self._queue.put((_CLOSE, file.fd, unlink))

    def wait(self) -> None:
        """Block until everything handed over so far is done (tests; blocking code)."""
        if self._thread is not None:
            done = threading.Event()
            self._queue.put((_SET, done))
            done.wait()

    def stop(self) -> None:
        """Finish what is queued and end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            kind = item[0]
            if kind is _WRITE:
                _, file, offset, data = item
                if file.error is None:
                    try:
                        pwrite_all(file.fd, data, offset)
                    except OSError as exc:
                        file.error = exc
                self._written += len(data)
                file.completed += 1
            elif kind is _WAKE:
                try:
                    item[1].call_soon_threadsafe(_wake, item[2])
                except RuntimeError:  # the loop is closed: nobody is waiting
                    pass
            elif kind is _CLOSE:
                _close(item[1], item[2])
            else:
                item[1].set()


def _close(fd: int, unlink: str | None) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
    if unlink is not None:
        try:
            os.unlink(unlink)
        except FileNotFoundError:
            pass
