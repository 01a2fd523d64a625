"""Delivering queued instances: per destination, one worker per pooled association, each taking the next
ready entry, sending its file's data set as it is (converted only when the destination accepted no
syntax it is in), then removing it, retrying it later or dead-lettering it.

Failures are told apart by whose fault they are:
- the destination is unreachable (connection refused, association rejected or timed out): the entry goes
  back to the head of the queue without counting an attempt, and the whole destination pauses with
  exponential backoff (no point trying every entry against a closed port);
- the instance failed (a failure status, no presentation context for its SOP class, the association lost
  mid-operation): one attempt counted, retried with backoff and jitter, dead-lettered after
  `max_attempts` or `max_age`;
- the instance can never be delivered as configured (no syntax the destination accepts can be produced
  from it, the file is unreadable): dead-lettered at once, with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.errors import InvalidFileError
from ..dimse.transcode import CannotConvert, accepted_syntaxes, choose_syntax, convert
from ..net.client import Status
from ..net.errors import AssociationError
from ..uids import uid_name
from .config import Destination, RetryPolicy
from .pool import DestinationPool, DestinationUnavailable
from .queue import DirSyncer, Entry, ReadyQueue, Spool, backoff
from .status import DestinationStats


class NotAccepted(Exception):
    """The destination accepted no presentation context for the instance's SOP class."""


@dataclass(frozen=True, slots=True)
class Sent:
    status: Status
    transfer_syntax: str  # what went on the wire
    converted: bool


async def send_instance(pool: DestinationPool, encoded: EncodedDataset, *, sop_class_uid: str,
                        sop_instance_uid: str, limiter: anyio.CapacityLimiter | None = None) -> Sent:
    """C-STORE one instance over a pooled association, converting it only if the destination needs it.

    Raises DestinationUnavailable, NotAccepted, CannotConvert, or AssociationError (lost mid-operation).
    """
    source_ts = encoded.transfer_syntax
    probe = sop_class_uid in pool.probing
    while True:
        async with pool.lease(sop_class_uid, source_ts, probe=probe) as client:
            accepted = accepted_syntaxes(client.negotiated.contexts.items(), sop_class_uid)
            if not accepted and not probe:
                pool.retire(client)  # useless for this SOP class: make room for one that asks in every syntax
                probe = True  # none of the syntaxes we offered: ask in every syntax, to learn what it takes
                continue
            if not accepted:
                pool.retire(client)  # the next attempt negotiates afresh: the destination may have changed
                raise NotAccepted(f"{pool.dest.name} accepted no presentation context for "
                                  f"{uid_name(sop_class_uid)} in any transfer syntax")
            try:
                target = choose_syntax(source_ts, accepted, pool.dest.transfer_syntaxes)
            except CannotConvert:
                pool.retire(client)
                raise
            data = encoded
            if target != source_ts:
                data = await anyio.to_thread.run_sync(convert, encoded, target, limiter=limiter)
            try:
                status = await client.store(data, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid)
            finally:
                if data is not encoded:
                    data.close()
        return Sent(status, target, target != source_ts)


class Reaper:
    """Removes delivered entries in batches, one worker-thread call per batch, off the delivery path."""

    def __init__(self, spool: Spool, limiter: anyio.CapacityLimiter | None) -> None:
        self._spool, self._limiter = spool, limiter
        self._pending: list[Entry] = []
        self._wake = anyio.Event()

    def add(self, entry: Entry) -> None:
        self._pending.append(entry)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            batch, self._pending = self._pending, []
            if batch:
                await anyio.to_thread.run_sync(self._remove_all, batch, limiter=self._limiter)

    def _remove_all(self, batch: list[Entry]) -> None:
        for entry in batch:
            self._spool.remove(entry)


class Forwarder:
    """Delivers the entries of every destination's ReadyQueue."""

    def __init__(self, *, spool: Spool, destinations: dict[str, Destination], queues: dict[str, ReadyQueue],
                 pools: dict[str, DestinationPool], stats: dict[str, DestinationStats], retry: RetryPolicy,
                 log: Any, limiter: anyio.CapacityLimiter | None = None, syncer: DirSyncer | None = None,
                 clock: Callable[[], float] = time.time, inbox_interval: float = 1.0,
                 watch_inboxes: bool = True) -> None:
        self.spool, self.destinations, self.queues, self.pools = spool, destinations, queues, pools
        self.stats, self.retry, self.log, self.limiter, self.clock = stats, retry, log, limiter, clock
        self.syncer = syncer or DirSyncer(limiter)
        self.reaper = Reaper(spool, limiter)
        self.inbox_interval = inbox_interval
        self.watch_inboxes = watch_inboxes  # one process of a router takes the dead letters handed back
        self._unreachable: dict[str, int] = {name: 0 for name in destinations}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.reaper.run)
            if self.watch_inboxes:
                tg.start_soon(self._watch_inboxes)
            for name, dest in self.destinations.items():
                for _ in range(dest.max_associations):
                    tg.start_soon(self._worker, name)
            task_status.started()

    async def _worker(self, name: str) -> None:
        queue = self.queues[name]
        while True:
            entry = await queue.get()
            queue.in_flight += 1
            try:
                await self.attempt(entry)
            except Exception:  # a bug must not stop the destination: keep the entry, log, go on
                self.log.exception("delivery failed unexpectedly", destination=name,
                                   sop_instance=entry.sop_instance_uid)
                await self._failed(entry, "internal error (see the log)")
            finally:
                queue.in_flight -= 1

    async def attempt(self, entry: Entry) -> None:
        """One delivery attempt of one entry, and what follows from its outcome."""
        name = entry.destination
        now = self.clock()
        if now - entry.queued_since() > self.retry.max_age:
            last = f"; last error: {entry.last_error}" if entry.last_error else ""
            await self._dead(entry, f"not delivered within max_age ({self.retry.max_age:g} s){last}")
            return
        path = self.spool.path(entry)
        try:
            if entry.dataset_offset and entry.transfer_syntax:  # known at enqueue: no need to read the meta
                encoded = EncodedDataset.from_path(path, entry.transfer_syntax, offset=entry.dataset_offset)
            else:
                encoded, _ = EncodedDataset.from_file(path)
        except FileNotFoundError:
            self.log.warning("queued file vanished, entry dropped", destination=name, entry=entry.name)
            self.reaper.add(entry)
            return
        except (OSError, InvalidFileError) as exc:
            await self._dead(entry, f"unreadable queued file: {exc}")
            return
        started = anyio.current_time()
        try:
            sent = await send_instance(self.pools[name], encoded, sop_class_uid=entry.sop_class_uid,
                                       sop_instance_uid=entry.sop_instance_uid, limiter=self.limiter)
        except DestinationUnavailable as exc:
            self._pause(entry, str(exc))
            return
        except CannotConvert as exc:
            await self._dead(entry, str(exc))
            return
        except NotAccepted as exc:
            await self._failed(entry, str(exc))
            return
        except AssociationError as exc:
            await self._failed(entry, f"association failed: {exc}")
            return
        self._unreachable[name] = 0
        self.queues[name].resume()
        category = sent.status.category
        if category in (st.Category.SUCCESS, st.Category.WARNING):
            self._delivered(entry, sent, anyio.current_time() - started)
        else:
            await self._failed(entry, str(sent.status), status=sent.status.code)

    # -- outcomes
    def _delivered(self, entry: Entry, sent: Sent, send_seconds: float) -> None:
        now = self.clock()
        stats = self.stats[entry.destination]
        stats.delivered += 1
        stats.converted += sent.converted
        stats.last_delivery = now
        stats.rate.add(now)
        self.reaper.add(entry)
        self.log.info("routed", sop_instance=entry.sop_instance_uid, rule=entry.rule, destination=entry.destination,
                      outcome="delivered", status=f"0x{sent.status.code:04X}", attempts=entry.attempts + 1,
                      latency_ms=round((now - entry.received) * 1000, 1), send_ms=round(send_seconds * 1000, 1),
                      transfer_syntax=sent.transfer_syntax,
                      **({"converted_from": entry.transfer_syntax} if sent.converted else {}))

    def _pause(self, entry: Entry, error: str) -> None:
        name = entry.destination
        queue = self.queues[name]
        self._unreachable[name] += 1
        stats = self.stats[name]
        stats.unreachable += 1
        stats.error(error, self.clock())
        entry.last_error = error
        delay = backoff(self._unreachable[name], self.retry)
        first = queue.paused_until <= self.clock()
        queue.push(entry)  # back in its place: not its fault
        queue.pause(self.clock() + delay)
        if first:
            self.log.warning("destination unreachable", destination=name, error=error, retry_in_s=round(delay, 2),
                             queued=len(queue) + queue.in_flight - 1)

    async def _failed(self, entry: Entry, error: str, *, status: int | None = None) -> None:
        stats = self.stats[entry.destination]
        stats.failed_attempts += 1
        stats.error(error, self.clock())
        entry.attempts += 1
        entry.last_error = error
        if entry.attempts >= self.retry.max_attempts:
            await self._dead(entry, f"{entry.attempts} failed attempts; last: {error}")
            return
        delay = backoff(entry.attempts, self.retry)
        entry.not_before = self.clock() + delay
        try:
            await anyio.to_thread.run_sync(self.spool.write_state, entry, limiter=self.limiter)
        except OSError as exc:  # the state is advisory; the entry itself is safe
            self.log.warning("cannot save entry state", entry=entry.name, error=str(exc))
        self.queues[entry.destination].push(entry)
        self.log.warning("delivery failed, will retry", sop_instance=entry.sop_instance_uid, rule=entry.rule,
                         destination=entry.destination, error=error, attempts=entry.attempts,
                         retry_in_s=round(delay, 2), **({"status": f"0x{status:04X}"} if status is not None else {}))

    async def _dead(self, entry: Entry, reason: str) -> None:
        now = self.clock()
        try:
            await anyio.to_thread.run_sync(self.spool.dead_letter, entry, reason, now, limiter=self.limiter)
        except FileNotFoundError:
            self.log.warning("queued file vanished, entry dropped", destination=entry.destination, entry=entry.name)
            return
        stats = self.stats[entry.destination]
        stats.dead_letters += 1
        stats.error(reason, now)
        self.log.error("routed", sop_instance=entry.sop_instance_uid, rule=entry.rule, destination=entry.destination,
                       outcome="dead-letter", reason=reason, attempts=entry.attempts,
                       latency_ms=round((now - entry.received) * 1000, 1))

    # -- dead letters handed back by `aiodicom route retry`, instances handed over by workers
    async def _watch_inboxes(self) -> None:
        while True:
            for name in self.destinations:
                taken, retried = await anyio.to_thread.run_sync(self.spool.take_inbox, name, limiter=self.limiter)
                for entry in taken:
                    self.queues[name].push(entry)
                if retried:
                    self.log.info("dead letters back in the queue", destination=name, count=retried)
            await anyio.sleep(self.inbox_interval)
