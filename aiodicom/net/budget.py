"""One byte budget for what a process holds in memory on its way to disk (`serve --memory-budget`).

Two kinds of bytes count against it:
- *in transit*: received and not yet taken by their association (each connection's unread chunks), and
  fragments handed to the spill writer and not yet written. They drain by themselves.
- *held*: the first 64 KiB of each instance being received, kept so that commit needs no read-back.
  Only the instance's own progress frees them, and it may need more bytes from its socket to progress.

A claim to hold bytes that would pass the limit (or half of it for held bytes) is refused, and the
caller falls back on the disk: the instance goes to its temp file at once; likewise a fragment the
writer has no room for is written inline. Received bytes cannot be refused (they are already here), so
once they pass it every connection stops reading its socket (TCP backpressure reaches the senders):
stopping only the one that brought them would let each of a thousand others bring a read's worth
(up to 256 KiB) first. Connections resume once what is in transit has drained to a quarter of the limit,
oldest first, as many at a time as the room left could take one read each of. Resuming does not wait
for held bytes: those wait for their connections, and waiting on each other would stall them all.

Not counted, and bounded otherwise: the one PDU each association may be assembling (at most the
--max-pdu we advertise), and what the kernel holds in socket buffers.

Everything runs on the event loop except the spill writer's progress, which `in_use` reads from its
counters (each written by one thread only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

DEFAULT_LIMIT = 256 << 20
SMALLEST_LIMIT = 1 << 20  # below it nearly every instance would go to disk at once
_RECHECK = 0.002  # seconds between checks while connections wait: the writer thread's progress wakes nobody
_READ_SIZE = 256 << 10  # the most one socket read brings (uvloop's buffer): what resuming a connection may cost


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("a memory budget must be positive")
        self.limit = limit
        self.used = 0  # claims made on the loop, both kinds
        self.held = 0  # of which held
        self.refusals = 0  # claims refused: instances and fragments sent to the disk at once
        self.pauses = 0  # connections stopped for want of room
        self._outside: list[Callable[[], int]] = []  # bytes in transit in other threads (the spill writer)
        self._readers: dict[Any, None] = {}  # connections reading their sockets
        self._waiting: dict[Any, None] = {}  # connections that stopped reading, oldest first
        self._timer: asyncio.TimerHandle | None = None

    def count_outside(self, in_transit: Callable[[], int]) -> None:
        """Also count what `in_transit()` reports (bytes a worker thread still has to write)."""
        self._outside.append(in_transit)

    def in_use(self) -> int:
        used = self.used
        for in_transit in self._outside:
            used += in_transit()
        return used

    def room_for(self, n: int) -> bool:
        """Whether `n` more bytes in transit fit (for a holder that counts them itself: count_outside)."""
        if self.in_use() + n > self.limit:
            self.refusals += 1
            return False
        return True

    def try_hold(self, n: int) -> bool:
        """Claim `n` held bytes if they fit; False (and nothing claimed) if not."""
        if self.held + n > self.limit // 2:
            self.refusals += 1
            return False
        if not self.room_for(n):
            return False
        self.used += n
        self.held += n
        return True

    def release(self, n: int) -> None:
        """Give back held bytes."""
        self.used -= n
        self.held -= n

    def take(self, n: int) -> None:
        """Claim `n` bytes in transit that are already here; past the limit, every connection stops reading."""
        self.used += n
        if self.in_use() > self.limit and self._readers:
            self._stop_readers()

    def give(self, n: int) -> None:
        """Give back bytes in transit."""
        self.used -= n
        if self._waiting and self._drained():
            self._resume()  # the timer, armed while anyone waits, resumes the rest

    def add_reader(self, connection: Any) -> None:
        """A connection whose `stop_for_budget()` and `resume_for_budget()` the budget may call."""
        if self.in_use() > self.limit:
            self._wait(connection)
        else:
            self._readers[connection] = None

    def forget(self, connection: Any) -> None:
        self._readers.pop(connection, None)
        self._waiting.pop(connection, None)

    def _stop_readers(self) -> None:
        readers, self._readers = self._readers, {}
        for connection in readers:
            self._wait(connection)

    def _wait(self, connection: Any) -> None:
        connection.stop_for_budget()
        self._waiting[connection] = None
        self.pauses += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_RECHECK, self._recheck)

    def _drained(self) -> bool:
        return self.in_use() - self.held <= self.limit // 4

    def _recheck(self) -> None:
        self._timer = None
        if self._waiting and self._drained():
            self._resume()
        if self._waiting:
            self._timer = asyncio.get_running_loop().call_later(_RECHECK, self._recheck)

    def _resume(self) -> None:
        room = max(1, (self.limit - self.in_use()) // _READ_SIZE)
        for connection in list(self._waiting)[:room]:
            del self._waiting[connection]
            self._readers[connection] = None
            connection.resume_for_budget()
