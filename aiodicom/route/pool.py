"""Pooled associations to one destination, reused across instances, up to its concurrency limit.

An association proposes every (SOP class, transfer syntax) the pool has seen so far: each syntax in
a presentation context of its own, so the destination can accept any one of them (PS3.8 §9.3.2.2:
it accepts at most one syntax per context), plus a context of the uncompressed syntaxes per SOP class
to convert into when it accepts none of those. A lease for a pair no open association proposed opens
a new association (closing an idle one first when at the limit); one that proposed the pair and had it
rejected is reused: a new association would get the same answer.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..net.client import MAX_CONTEXTS, Client, connect
from ..net.errors import AssociationError
from ..uids import (
    ALL_TRANSFER_SYNTAXES,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from .config import Destination
from .tls import client_context

FALLBACK_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


class DestinationUnavailable(Exception):
    """No association could be opened (connection refused, rejected, timed out): the destination's
    fault, not the instance's, so it does not count as a failed attempt."""


@dataclass(eq=False, slots=True)
class Pooled:
    """One association of the pool, held open by its own task."""

    proposed: frozenset[tuple[str, str]]
    probed: frozenset[str] = frozenset()  # SOP classes proposed in every transfer syntax we know
    client: Client | None = None
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)
    close: anyio.Event = field(default_factory=anyio.Event)
    abort: bool = False  # end it with A-ABORT, not A-RELEASE (an operation was cut short)

    @property
    def alive(self) -> bool:
        return self.client is not None and self.client.is_established and not self.close.is_set()


def destination_ssl(dest: Destination) -> ssl.SSLContext | None:
    """TlsFileError, naming the file, when one cannot be loaded."""
    if dest.tls is None:
        return None
    t = dest.tls
    return client_context(f"destination.{dest.name}", t.ca, t.cert, t.key, t.verify)


class DestinationPool:
    """Leases associations to `dest`; run `serve()` in a task group for the pool's lifetime."""

    def __init__(self, dest: Destination, *, log: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        self.dest = dest
        self.log = log.bind(destination=dest.name)
        self.ssl_context = ssl_context if ssl_context is not None else destination_ssl(dest)
        self.wanted: dict[str, dict[str, None]] = {}  # SOP class → transfer syntaxes seen, in order
        self.probing: set[str] = set()  # SOP classes to propose in every syntax (none of ours was accepted)
        self.members: list[Pooled] = []
        self.opening = 0
        self.limit = dest.max_associations  # lowered while the destination refuses more than it has
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self.opened = 0  # associations opened so far (for status and tests)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the associations' tasks; closes idle ones; cancelling it aborts them all."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            quiet = 0.0
            while True:
                await anyio.sleep(max(self.dest.idle_timeout / 4, 0.05))
                now = time.monotonic()
                for m in list(self.members):
                    if not m.busy and (not m.alive or now - m.last_used >= self.dest.idle_timeout):
                        self._retire(m)
                quiet += max(self.dest.idle_timeout / 4, 0.05)
                if quiet >= self.dest.idle_timeout:  # try the configured limit again now and then
                    quiet, self.limit = 0.0, self.dest.max_associations

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _retire(self, m: Pooled) -> None:
        if m in self.members:
            self.members.remove(m)
        m.close.set()
        self._notify()

    def retire(self, client: Client) -> None:
        """Stop reusing the association of `client` once its lease ends (its negotiation is stale, e.g. it
        could not carry an instance: the destination may accept more on a new one)."""
        for m in list(self.members):
            if m.client is client:
                self._retire(m)

    def want(self, sop_class: str, transfer_syntax: str) -> None:
        self.wanted.setdefault(sop_class, {})[transfer_syntax] = None

    def contexts(self, first: str) -> list[tuple[str, list[str]]]:
        """What a new association proposes: `first`'s SOP class first, then the others, up to 128."""
        preferred = list(self.dest.transfer_syntaxes)
        out: list[tuple[str, list[str]]] = []
        for sop_class in sorted(self.wanted, key=lambda c: c != first):
            probe = ALL_TRANSFER_SYNTAXES if sop_class in self.probing else ()
            syntaxes = list(dict.fromkeys([*self.wanted[sop_class], *preferred, *probe]))
            block = [(sop_class, [ts]) for ts in syntaxes]
            block.append((sop_class, [ts for ts in FALLBACK_SYNTAXES if not preferred or ts in preferred]
                          or list(FALLBACK_SYNTAXES)))
            if len(out) + len(block) > MAX_CONTEXTS:
                if not out:
                    out = block[:MAX_CONTEXTS]
                break
            out.extend(block)
        return out

    @contextlib.asynccontextmanager
    async def lease(self, sop_class: str, transfer_syntax: str, *, probe: bool = False) -> AsyncIterator[Client]:
        """An association that proposed (sop_class, transfer_syntax), exclusively for the block; with
        `probe`, one that proposed the SOP class in every transfer syntax we know, so the destination
        says which it takes (when it took none of ours, PS3.8 §7.1.1.13 gives no other way to learn it).
        An AssociationError in the block retires the association."""
        self.want(sop_class, transfer_syntax)
        if probe:
            self.probing.add(sop_class)
        member = await self._acquire((sop_class, transfer_syntax), probe)
        assert member.client is not None
        try:
            yield member.client
        except AssociationError:
            self._retire(member)
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled mid-operation: the association is out of step
                member.abort = True
                self._retire(member)
            raise
        finally:
            member.busy = False
            member.last_used = time.monotonic()
            if not member.alive:
                self._retire(member)
            self._notify()

    async def _acquire(self, pair: tuple[str, str], probe: bool) -> Pooled:
        def fits(m: Pooled) -> bool:
            return pair in m.proposed and (not probe or pair[0] in m.probed)

        while True:
            for m in list(self.members):
                if not m.busy and not m.alive:
                    self._retire(m)
            for m in self.members:
                if not m.busy and fits(m):
                    m.busy = True
                    return m
            if len(self.members) + self.opening < self.limit:
                try:
                    return await self._open(pair[0])
                except DestinationUnavailable as exc:
                    if not self.members:
                        raise
                    # It serves the associations we have and refuses another (PS3.8 Table 9-21: rejected
                    # transient, local limit exceeded, most likely): make do with those.
                    self.limit = len(self.members)
                    self.log.info("destination takes no more associations", open=len(self.members), error=str(exc))
                    continue
            idle = [m for m in self.members if not m.busy]
            fits_busy = any(fits(m) for m in self.members)
            if idle and not fits_busy:
                # At the limit and nothing proposed this pair: make room for one that does.
                self._retire(min(idle, key=lambda m: m.last_used))
                continue
            await self._changed.wait()

    async def _open(self, first: str) -> Pooled:
        assert self._tg is not None, "DestinationPool.serve() is not running"
        contexts = self.contexts(first)
        # only single-syntax contexts count as proposing a pair: the destination picks one syntax of a
        # multi-syntax context, so the others were not really offered
        proposed = frozenset((a, tss[0]) for a, tss in contexts if len(tss) == 1)
        member = Pooled(proposed=proposed, probed=frozenset(
            c for c in self.probing if all((c, ts) in proposed for ts in ALL_TRANSFER_SYNTAXES)))
        member.busy = True
        self.opening += 1
        try:
            await self._tg.start(self._hold, member, contexts)
        except AssociationError as exc:
            raise DestinationUnavailable(f"{self.dest.name} ({self.dest.ae_title}@{self.dest.host}:{self.dest.port}): "
                                         f"{exc}") from exc
        finally:
            self.opening -= 1
        self.members.append(member)
        self.opened += 1
        return member

    async def _hold(self, member: Pooled, contexts: list[tuple[str, list[str]]],
                    *, task_status: anyio.abc.TaskStatus[None]) -> None:
        d = self.dest
        started = False
        try:
            async with connect(d.host, d.port, calling_ae=d.calling_ae, called_ae=d.ae_title, contexts=contexts,
                               ssl_context=self.ssl_context, max_pdu=d.max_pdu, connect_timeout=d.connect_timeout,
                               acse_timeout=d.connect_timeout, dimse_timeout=d.dimse_timeout,
                               log=self.log) as client:
                member.client = client
                accepted = sorted({ts for _, (_, ts) in client.negotiated.contexts.items()})
                self.log.debug("association opened", proposed=len(contexts), accepted=accepted)
                task_status.started()
                started = True
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as watch:
                        # the peer may end it (abort, close): stop holding it then
                        async def ended() -> None:
                            await client.assoc.finished.wait()
                            scope.cancel()
                        watch.start_soon(ended)
                        await member.close.wait()
                        scope.cancel()
                if member.abort:
                    await client.abort()
        except Exception as exc:
            if not started:
                raise
            self.log.info("association ended", error=str(exc) or type(exc).__name__)
        finally:
            member.close.set()
            if member in self.members:
                self.members.remove(member)
            self._notify()
