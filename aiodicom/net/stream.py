"""A lean byte stream over an asyncio transport, for the association's hot path.

anyio's SocketStream yields to the event loop on every receive and send even when data is ready
and the socket is writable; at thousands of small DIMSE messages per second those extra loop
iterations cost more than the protocol work. This stream returns queued data at once, writes
without a checkpoint unless the transport asks us to wait (flow control), and still cooperates:
a reader that always finds data yields every few chunks so one busy peer cannot starve the rest.
It works inside anyio task groups and cancel scopes (they cancel the awaiting task).
"""

from __future__ import annotations

import asyncio
import math
import socket
from typing import Any

import anyio

from .budget import MemoryBudget

_HIGH_WATER = 4 << 20  # bytes queued unread before we stop reading the socket (TCP backpressure)
_YIELD_EVERY = 16  # consecutive immediate receives before letting other tasks run


_EXPIRED = object()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)


class StreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []  # usually 0-2 chunks: lighter than a deque
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False  # for any of the two reasons below
        self.over_high_water = False  # this connection's own unread data passed _HIGH_WATER
        self.budget: MemoryBudget | None = None  # the process's, set by a server before any data arrives
        self.waiting_for_budget = False
        self.writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.on_connect: Any = None  # set by a server: called with the protocol once connected

    # ---- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self.on_connect is not None:
            self.on_connect(self)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER:
            self.over_high_water = True
            self._pause()
        if self.budget is not None:
            self.budget.take(len(data))
        self._wake_reader()

    def _pause(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_if_free(self) -> None:
        if self.reading_paused and not self.over_high_water and not self.waiting_for_budget \
                and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    def stop_for_budget(self) -> None:
        """Called by the budget when it is spent."""
        self.waiting_for_budget = True
        self._pause()

    def resume_for_budget(self) -> None:
        """Called by the budget once there is room again."""
        self.waiting_for_budget = False
        self._resume_if_free()

    def consumed(self, n: int) -> None:
        """`n` bytes left the unread chunks (taken by the reader, or dropped with the connection)."""
        self.buffered -= n
        if self.budget is not None:
            self.budget.give(n)
        if self.over_high_water and self.buffered < _HIGH_WATER // 2:
            self.over_high_water = False
            self._resume_if_free()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: DICOM has no half-closed use

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if self.budget is not None:
            self.budget.forget(self)
        if exc is not None:
            self.error = exc
        self._wake_reader()
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    def _wake_reader(self) -> None:
        w = self._read_waiter
        if w is not None and not w.done():
            w.set_result(None)


class FastStream:
    """The subset of anyio's ByteStream the Association uses: receive, send, aclose, extra info."""

    def __init__(self, protocol: StreamProtocol) -> None:
        self._p = protocol
        self._streak = 0
        self._send_streak = 0
        self._closed = False

    @property
    def transport(self) -> asyncio.Transport:
        assert self._p.transport is not None
        return self._p.transport

    def peer(self) -> tuple[str, int]:
        peer = self.transport.get_extra_info("peername")
        return (str(peer[0]), int(peer[1])) if peer else ("?", 0)

    def extra(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    async def receive(self, max_bytes: int = 1 << 20, *, deadline: float = math.inf) -> bytes | None:
        """The next chunk; None when `deadline` (the loop's clock, as anyio.current_time()) passes first.

        The deadline is a plain timer on the waiter: an anyio cancel scope per read would cost more
        than the read.
        """
        p = self._p
        if not p.chunks:
            self._streak = 0
            if p.eof:
                raise anyio.EndOfStream
            if self._closed:
                raise anyio.ClosedResourceError
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            p._read_waiter = waiter
            timer = None if deadline == math.inf else loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                p._read_waiter = None
                if timer is not None:
                    timer.cancel()
            if waiter.result() is _EXPIRED:
                return None
            if not p.chunks:
                raise anyio.EndOfStream
        else:
            self._streak += 1
            if self._streak >= _YIELD_EVERY:
                self._streak = 0
                await asyncio.sleep(0)  # fairness: let the other associations run
        chunk = p.chunks.pop(0)
        if len(chunk) > max_bytes:
            p.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        p.consumed(len(chunk))
        return chunk

    async def send_buffers(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        """Write the buffers in order, one vectored write where the transport can (uvloop: writev)."""
        p = self._p
        if self._closed or p.transport is None or p.transport.is_closing():
            raise anyio.BrokenResourceError(p.error) if p.error else anyio.ClosedResourceError()
        p.transport.writelines(buffers)
        if p.writing_paused:  # the transport's buffer is over its high-water mark: wait for it to drain
            self._send_streak = 0
            waiter = asyncio.get_running_loop().create_future()
            p._drain_waiters.append(waiter)
            await waiter
            if p.transport.is_closing() and p.error is not None:
                raise anyio.BrokenResourceError(p.error)
        else:
            self._send_streak += 1
            if self._send_streak >= _YIELD_EVERY:  # a long stream of responses must let the reader
                self._send_streak = 0  # see a C-CANCEL, and the other associations run
                await asyncio.sleep(0)

    def close(self) -> None:
        """Close the transport (queued data is still written out by the transport); unread data is dropped."""
        if not self._closed:
            self._closed = True
            p = self._p
            if p.transport is not None:
                p.transport.close()
            if p.budget is not None:
                p.budget.forget(p)
            p.waiting_for_budget = p.over_high_water = False
            p.chunks.clear()
            p.consumed(p.buffered)

    async def aclose(self) -> None:
        self.close()


async def open_stream(host: str, port: int, *, ssl_context: Any = None, server_hostname: str | None = None,
                      ssl_handshake_timeout: float | None = None) -> FastStream:
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {}
    if ssl_context is not None:
        kwargs = {"ssl": ssl_context, "server_hostname": server_hostname or host}
        if ssl_handshake_timeout is not None:
            kwargs["ssl_handshake_timeout"] = ssl_handshake_timeout
    _, protocol = await loop.create_connection(StreamProtocol, host, port, **kwargs)
    return FastStream(protocol)
