"""The load generator: N workers, each one operation at a time, closed loop or open loop at a rate.

Closed loop: a worker starts its next operation as soon as the last one answered, so the offered
load is whatever the peer can take at that concurrency. Open loop (`rate`): operation i is due at
t0 + i/rate whatever happened before; a worker that starts it late (all workers busy) still measures
its latency from the due time, so a server that falls behind shows it in the percentiles instead of
hiding it by slowing the client down ("coordinated omission").

Associations are either held by each worker for the whole run (opened before the clock starts,
re-opened after a failure) or opened and released around every operation, in which case latency is
that of the whole association (A-ASSOCIATE, the operation, A-RELEASE: PS3.8 §7.1-7.2).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..dimse import status as st
from ..dimse.messages import CFindRQ, CStoreRQ
from ..loop import running_asyncio_loop
from ..net.client import Client, connect
from ..net.errors import AssociationError, AssociationRejected, ConnectionFailed, NoPresentationContext
from . import procstat
from .rawecho import RawEcho
from .stats import ErrorKind, Recorder, op_summary
from .workload import Workload

# Failures of one operation that leave the generator running (the peer's fault, or the network's).
OPERATION_ERRORS = (AssociationError, OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError)
_REFUSED_BACKOFF = 0.05  # a closed loop against a port nobody listens on must not spin
_PREOPEN_LIMIT = 256  # connects in flight while workers open their associations before the clock starts
# uvloop's loop clock ticks in milliseconds: latencies need the monotonic high-resolution counter
clock = time.perf_counter
_NOT_ASSOCIATED = (ConnectionFailed, AssociationRejected, NoPresentationContext)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where the load goes and how each association is set up."""

    host: str
    port: int
    calling_ae: str = "AIODICOM"
    called_ae: str = "ANY-SCP"
    ssl_context: ssl.SSLContext | None = None
    max_pdu: int = 262_144
    connect_timeout: float = 30.0
    acse_timeout: float = 30.0
    dimse_timeout: float | None = 60.0

    def connect(self, contexts: Sequence[Any]) -> contextlib.AbstractAsyncContextManager[Client]:
        return connect(self.host, self.port, calling_ae=self.calling_ae, called_ae=self.called_ae,
                       contexts=contexts, ssl_context=self.ssl_context, max_pdu=self.max_pdu,
                       connect_timeout=self.connect_timeout, acse_timeout=self.acse_timeout,
                       dimse_timeout=self.dimse_timeout)

    def describe(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "calling_ae": self.calling_ae, "called_ae": self.called_ae,
                "tls": self.ssl_context is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How hard and how long: `count` operations or `duration` seconds (the first reached ends it)."""

    concurrency: int = 1
    rate: float | None = None  # operations per second (open loop); None: closed loop
    duration: float | None = None
    count: int | None = None
    per_operation_association: bool = False
    # per-operation echo associations through the lean client (rawecho), not connect(): otherwise the
    # client, not the server, is what limits associations per second
    lean_echo: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of operations per second")
        if self.duration is None and self.count is None:
            raise ValueError("give a duration or a count")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")

    def describe(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "rate": self.rate, "duration": self.duration, "count": self.count,
                "association": "per operation" if self.per_operation_association else "reused",
                "lean_echo": self.per_operation_association and self.lean_echo,
                "loop": "open" if self.rate else "closed"}

    def uses_lean_echo(self, target: Target) -> bool:
        return self.per_operation_association and self.lean_echo and target.ssl_context is None


class Held:
    """An association a task opened and will close itself (connect() entered by hand, so that it can
    outlive one `async with` block: a worker keeps it across operations)."""

    __slots__ = ("_cm", "client")

    def __init__(self) -> None:
        self._cm: contextlib.AbstractAsyncContextManager[Client] | None = None
        self.client: Client | None = None

    async def open(self, target: Target, contexts: Sequence[Any]) -> Client:
        cm = target.connect(contexts)
        self.client = await cm.__aenter__()
        self._cm = cm
        return self.client

    async def close(self, exc: BaseException | None = None) -> None:
        """Release (or, after a failure `exc`, abort) the association; never raises."""
        cm, self._cm, self.client = self._cm, None, None
        if cm is not None:
            # no cancel scope of our own around it: connect()'s task group, entered in open(), must be
            # exited in the scope it was entered in (connect() shields its release itself)
            with contextlib.suppress(Exception):
                await cm.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


@dataclass(slots=True)
class Snapshot:
    """The state of a running load, for the live progress line."""

    elapsed: float
    done: int
    ok: int
    errors: int
    in_flight: int
    ops_per_s: float  # over the last interval
    mb_per_s: float  # over the last interval
    p99_ms: float  # since the start
    expected: int | None  # operations the run will issue, when known


@dataclass(frozen=True, slots=True)
class LoadResult:
    target: dict[str, Any]
    plan: dict[str, Any]
    mix: str
    payload_bytes: int
    setup_seconds: float
    elapsed: float
    total: dict[str, Any]
    by_operation: dict[str, dict[str, Any]]
    associations: dict[str, Any]
    server: dict[str, Any] | None
    error_examples: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return int(self.total["errors"])

    def error_kinds(self) -> dict[str, int]:
        return dict(self.total["errors_by_kind"])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "load", "target": self.target, "plan": self.plan, "mix": self.mix,
                "payload_bytes": self.payload_bytes, "setup_seconds": round(self.setup_seconds, 4),
                "elapsed_s": round(self.elapsed, 4), **self.total, "by_operation": self.by_operation,
                "associations": self.associations, "server": self.server, "error_examples": self.error_examples}


class LoadGenerator:
    def __init__(self, target: Target, plan: Plan, workload: Workload, *, server_pid: int | None = None) -> None:
        self.target = target
        self.plan = plan
        self.workload = workload
        self.server_pid = server_pid
        self.recorder = Recorder(workload.mix.operations)
        self._sequence = workload.mix.sequence()
        self._contexts_all = workload.contexts()
        self._contexts_by_op = {op: workload.contexts([op]) for op in workload.mix.operations}
        self._lean: RawEcho | None = None
        if plan.uses_lean_echo(target) and "echo" in workload.mix.operations:
            self._lean = RawEcho(target.host, target.port, calling_ae=target.calling_ae, called_ae=target.called_ae,
                                 max_pdu=target.max_pdu, timeout=target.acse_timeout)
        self._next = 0
        self._stores = itertools.count()
        self._t0 = 0.0
        self._deadline = math.inf
        self.in_flight = 0

    # ---------------------------------------------------------------- running
    async def run(self, *, progress: Callable[[Snapshot], None] | None = None, interval: float = 0.5) -> LoadResult:
        plan = self.plan
        start, all_ready = anyio.Event(), anyio.Event()
        ready = 0
        preopen = anyio.Semaphore(_PREOPEN_LIMIT)
        setup_started = clock()

        def one_ready() -> None:
            nonlocal ready
            ready += 1
            if ready == plan.concurrency:
                all_ready.set()

        before: procstat.ProcSample | None = None
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as workers:
                for _ in range(plan.concurrency):
                    workers.start_soon(self._worker, start, one_ready, preopen)
                await all_ready.wait()
                before = procstat.sample(self.server_pid) if self.server_pid else None  # after the set-up
                self._t0 = clock()
                setup = self._t0 - setup_started
                if plan.duration is not None:
                    self._deadline = self._t0 + plan.duration
                start.set()
                if progress is not None:
                    outer.start_soon(self._progress, progress, interval)
            outer.cancel_scope.cancel()  # every worker is done: stop the progress line
        elapsed = clock() - self._t0
        after = procstat.sample(self.server_pid) if self.server_pid else None
        return self._result(setup, elapsed, before, after)

    def _next_index(self) -> int | None:
        """The index of the next operation to issue, None when the run is over."""
        i = self._next
        if self.plan.count is not None and i >= self.plan.count:
            return None
        if self._deadline != math.inf:
            due = self._t0 + i / self.plan.rate if self.plan.rate else clock()
            if due >= self._deadline:
                return None
        self._next = i + 1
        return i

    async def _worker(self, start: anyio.Event, ready: Callable[[], None], preopen: anyio.Semaphore) -> None:
        held = Held()
        buffers: dict[int, bytearray] = {}
        try:
            if not self.plan.per_operation_association:
                async with preopen:
                    await self._open(held, self._contexts_all)
            ready()
            await start.wait()
            while (i := self._next_index()) is not None:
                op = self._sequence[i % len(self._sequence)]
                if self.plan.rate:
                    due = self._t0 + i / self.plan.rate
                    now = clock()
                    if due > now:
                        await anyio.sleep(due - now)
                else:
                    due = clock()
                await self._one(op, due, held, buffers)
        finally:
            await held.close()

    async def _open(self, held: Held, contexts: Sequence[Any]) -> bool:
        t = clock()
        try:
            await held.open(self.target, contexts)
        except OPERATION_ERRORS as exc:
            self.recorder.association_failed(exc, clock() - t)
            return False
        self.recorder.associated(clock() - t)
        return True

    async def _one(self, op: str, due: float, held: Held, buffers: dict[int, bytearray]) -> None:
        per_op = self.plan.per_operation_association
        self.in_flight += 1
        try:
            if op == "echo" and self._lean is not None and running_asyncio_loop() is not None:
                await self._lean_echo(due)
                return
            if per_op or held.client is None:
                t = clock()
                try:
                    await held.open(self.target, self._contexts_by_op[op] if per_op else self._contexts_all)
                except OPERATION_ERRORS as exc:
                    now = clock()
                    kind = self.recorder.association_failed(exc, now - t)
                    self.recorder.error(op, exc, now - due)
                    if kind is ErrorKind.REFUSED and not self.plan.rate:
                        await anyio.sleep(_REFUSED_BACKOFF)
                    return
                self.recorder.associated(clock() - t)
            assert held.client is not None
            try:
                code, nbytes, matches = await self._perform(op, held.client, buffers)
            except OPERATION_ERRORS as exc:
                await held.close(exc)
                self.recorder.error(op, exc, clock() - due)
                return
            if per_op:
                await held.close()
            self.recorder.status(op, code, clock() - due, nbytes, matches)
        finally:
            self.in_flight -= 1

    async def _lean_echo(self, due: float) -> None:
        assert self._lean is not None
        t = clock()
        try:
            code, associated = await self._lean.cycle()
        except OPERATION_ERRORS as exc:
            now = clock()
            if isinstance(exc, _NOT_ASSOCIATED):
                kind = self.recorder.association_failed(exc, now - t)
                if kind is ErrorKind.REFUSED and not self.plan.rate:
                    await anyio.sleep(_REFUSED_BACKOFF)
            self.recorder.error("echo", exc, now - due)
            return
        self.recorder.associated(associated)
        self.recorder.status("echo", code, clock() - due)

    async def _perform(self, op: str, client: Client, buffers: dict[int, bytearray]) -> tuple[int, int, int]:
        """One operation: (final status, data set bytes, C-FIND matches)."""
        if op == "echo":
            return (await client.echo()).code, 0, 0
        if op == "store":
            return await self._store(client, buffers)
        return await self._find(client)

    async def _store(self, client: Client, buffers: dict[int, bytearray]) -> tuple[int, int, int]:
        templates = self.workload.templates
        j = next(self._stores) % len(templates)
        template = templates[j]
        buffer = buffers.get(j)
        if buffer is None:
            buffer = buffers[j] = template.buffer()
        assert self.workload.stamper is not None
        uid = template.stamp(buffer, self.workload.stamper.next())
        cid = client.context_for(template.sop_class_uid, template.transfer_syntax)
        message = CStoreRQ(message_id=client.next_message_id(), affected_sop_class_uid=template.sop_class_uid,
                           affected_sop_instance_uid=uid)
        # a view of the worker's own buffer: sent as it is, not copied (it is not touched again
        # before the response, which follows the last fragment)
        rsp, payload = await client.request(message, cid, memoryview(buffer))
        _close(payload)
        return rsp.status, template.size, 0

    async def _find(self, client: Client) -> tuple[int, int, int]:
        query = self.workload.query
        assert query is not None
        cid = client.context_for(query.sop_class_uid)
        message = CFindRQ(message_id=client.next_message_id(), affected_sop_class_uid=query.sop_class_uid)
        data = query.encoded(client.assoc.transfer_syntax(cid))
        matches = nbytes = 0
        final = st.PROCESSING_FAILURE
        async for rsp, payload in client.request_iter(message, cid, data):
            if payload is not None:
                nbytes += payload.size
                _close(payload)
            if rsp.category is st.Category.PENDING:
                matches += 1
            else:
                final = rsp.status
        return final, nbytes, matches

    # ---------------------------------------------------------------- reporting
    async def _progress(self, report: Callable[[Snapshot], None], interval: float) -> None:
        total = self.recorder.total
        last_t, last_done, last_bytes = self._t0, 0, 0
        expected = self.plan.count
        if self.plan.rate and self.plan.duration:
            expected = min(expected or math.inf, math.ceil(self.plan.duration * self.plan.rate))  # type: ignore[assignment]
        while True:
            await anyio.sleep(interval)
            now = clock()
            dt = max(now - last_t, 1e-9)
            report(Snapshot(now - self._t0, total.done, total.ok, total.failed, self.in_flight,
                            (total.done - last_done) / dt, (total.bytes - last_bytes) / dt / 1e6,
                            total.latency.percentile(99) * 1000, expected))
            last_t, last_done, last_bytes = now, total.done, total.bytes

    def _result(self, setup: float, elapsed: float, before: procstat.ProcSample | None,
                after: procstat.ProcSample | None) -> LoadResult:
        rec = self.recorder
        server = None
        if self.server_pid:
            server = {"pid": self.server_pid, "alive": after is not None}
            if before is not None and after is not None:
                cpu = after.cpu - before.cpu
                server.update(cpu_s=round(cpu, 3), cpu_percent=round(100 * cpu / max(elapsed, 1e-9), 1),
                              cpu_ms_per_op=round(1000 * cpu / rec.total.done, 4) if rec.total.done else None,
                              rss_kb_start=before.rss // 1024, rss_kb_end=after.rss // 1024,
                              processes=after.processes)
        assoc = rec.associations
        return LoadResult(
            target=self.target.describe(), plan=self.plan.describe(), mix=str(self.workload.mix),
            payload_bytes=self.workload.payload_bytes(), setup_seconds=setup, elapsed=elapsed,
            total=op_summary(rec.total, elapsed),
            by_operation={op: op_summary(s, elapsed) for op, s in rec.by_op.items()},
            associations={"opened": assoc.ok, "failed": assoc.failed,
                          "per_s": round(assoc.ok / max(elapsed + setup, 1e-9), 2),
                          "latency_ms": assoc.latency.summary_ms(),
                          "errors_by_kind": {k.value: assoc.errors.get(k, 0) for k in ErrorKind}},
            server=server, error_examples=dict(rec.error_examples))


def _close(payload: Any) -> None:
    close = getattr(payload, "close", None)
    if callable(close):
        close()
