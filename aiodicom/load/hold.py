"""Hold many associations open at once: what does each cost the server, and does it stay responsive?

Phases, each measured on its own:
1. warm-up: one association echoes, so the baseline already includes whatever a server loads on
   first use (imports, caches, thread pools);
2. open: `count` associations, at most `connect_concurrency` connecting at a time;
3. idle: nothing is sent for `idle` seconds: the server's CPU should be near zero;
4. echo: every association sends a C-ECHO every `echo_interval` seconds, staggered evenly, for
   `echo_duration` seconds: latency percentiles while everything is held;
5. release: every association sends A-RELEASE-RQ at once (PS3.8 §7.2).
With `server_pid` (a local server), its RSS and CPU are sampled between the phases.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..uids import VERIFICATION
from . import procstat
from .generator import OPERATION_ERRORS, Held, Target, clock
from .stats import (
    ErrorKind,
    Histogram,
    Recorder,
    classify,
    error_counts,
    is_failure,
    op_summary,
)

_LAG_TICK = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldPlan:
    count: int
    echo_interval: float = 5.0
    idle: float = 3.0
    echo_duration: float = 10.0
    connect_concurrency: int = 256

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("hold at least one association")
        if self.echo_interval <= 0 or self.idle < 0 or self.echo_duration < 0 or self.connect_concurrency < 1:
            raise ValueError("intervals and durations must be positive")


@dataclass(frozen=True, slots=True)
class HoldResult:
    target: dict[str, Any]
    plan: dict[str, Any]
    established: int
    associations: dict[str, Any]
    phases: dict[str, float]  # seconds spent opening, idling, echoing, releasing
    echo: dict[str, Any]
    release_errors: dict[str, int]
    server: dict[str, Any] | None
    error_examples: dict[str, int]

    @property
    def failed(self) -> int:
        return int(self.plan["count"]) - self.established

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "hold", "target": self.target, "plan": self.plan, "established": self.established,
                "failed": self.failed, "associations": self.associations, "phases_s": self.phases,
                "echo": self.echo, "release_errors": self.release_errors, "server": self.server,
                "error_examples": self.error_examples}


class Holder:
    def __init__(self, target: Target, plan: HoldPlan, *, server_pid: int | None = None) -> None:
        self.target = target
        self.plan = plan
        self.server_pid = server_pid
        self.recorder = Recorder(("echo",))
        self.release_errors: dict[ErrorKind, int] = {}
        self.lag = Histogram()
        self.established = 0
        self.open_now = 0
        self._settled = 0  # associations whose opening ended (either way)
        self._all_settled = anyio.Event()
        self._echo_start = anyio.Event()
        self._release = anyio.Event()
        self._echo_t0 = math.inf
        self._echo_end = math.inf

    async def run(self, *, progress: Callable[[str], None] | None = None) -> HoldResult:
        plan, say = self.plan, progress or (lambda _text: None)
        contexts = [VERIFICATION]
        async with self.target.connect(contexts) as warm:  # raises at once if the server is not there
            await warm.echo()
        samples: dict[str, procstat.ProcSample | None] = {"before": self._sample()}
        phases: dict[str, float] = {}
        limiter = anyio.Semaphore(plan.connect_concurrency)
        t = clock()
        async with anyio.create_task_group() as tg:
            for k in range(plan.count):
                tg.start_soon(self._one, k, limiter)
            await self._all_settled.wait()
            phases["open"] = clock() - t
            # tens of thousands of long-lived objects now: move them out of the collector's way, or its
            # full passes stall this loop for hundreds of ms and the echo latencies measure us, not the peer
            gc.collect()
            gc.freeze()
            say(f"{self.established}/{plan.count} associations held after {phases['open']:.1f} s")
            samples["held"] = self._sample()
            await anyio.sleep(plan.idle)
            samples["idle"] = self._sample()
            phases["idle"] = plan.idle
            t = clock()
            self._echo_t0, self._echo_end = t, t + plan.echo_duration
            self._echo_start.set()
            say(f"echoing every {plan.echo_interval:g} s on every association for {plan.echo_duration:g} s")
            with anyio.move_on_after(plan.echo_duration):
                await self._watch_lag()
            samples["echo"] = self._sample()
            phases["echo"] = clock() - t
            t = clock()
            self._release.set()
        phases["release"] = clock() - t
        gc.unfreeze()
        say("released")
        return self._result(samples, phases)

    async def _watch_lag(self) -> None:
        """How late this process's own event loop wakes up: if it lags, echo latencies measure the client."""
        while True:
            t = clock()
            await anyio.sleep(_LAG_TICK)
            self.lag.record(max(clock() - t - _LAG_TICK, 0.0))

    def _sample(self) -> procstat.ProcSample | None:
        return procstat.sample(self.server_pid) if self.server_pid else None

    def _settle(self) -> None:
        self._settled += 1
        if self._settled == self.plan.count:
            self._all_settled.set()

    async def _one(self, k: int, limiter: anyio.Semaphore) -> None:
        held = Held()
        t = clock()
        try:
            async with limiter:
                t = clock()  # time to associate, not time queued behind our own connect limit
                await held.open(self.target, [VERIFICATION])
        except OPERATION_ERRORS as exc:
            self.recorder.association_failed(exc, clock() - t)
            self._settle()
            return
        self.recorder.associated(clock() - t)
        self.established += 1
        self.open_now += 1
        self._settle()
        failure: BaseException | None = None
        try:
            await self._echoes(k, held)
            await self._release.wait()
        except OPERATION_ERRORS as exc:
            failure = exc
        finally:
            self.open_now -= 1
            if failure is None and held.client is not None and not held.client.is_established:
                failure = held.client.assoc.error  # the server ended it while we idled
            if failure is not None:
                kind = classify(failure)
                self.release_errors[kind] = self.release_errors.get(kind, 0) + 1
                self.recorder.example(f"held association ended: {kind}: {failure}")
            await held.close(failure)

    async def _echoes(self, k: int, held: Held) -> None:
        await self._echo_start.wait()
        interval = self.plan.echo_interval
        due = self._echo_t0 + interval * k / self.plan.count  # evenly staggered, not a thundering herd
        while due < self._echo_end:
            now = clock()
            if due > now:
                await anyio.sleep(due - now)
            assert held.client is not None
            t = clock()
            try:
                status = await held.client.echo()
            except OPERATION_ERRORS as exc:
                self.recorder.error("echo", exc, clock() - t)
                raise
            self.recorder.status("echo", status.code, clock() - t)
            due += interval

    def _result(self, samples: dict[str, procstat.ProcSample | None], phases: dict[str, float]) -> HoldResult:
        rec = self.recorder
        server = None
        before, held, idle, echo = (samples.get(k) for k in ("before", "held", "idle", "echo"))
        if self.server_pid and before and held:
            growth = held.rss - before.rss
            server = {
                "pid": self.server_pid,
                "rss_kb_before": before.rss // 1024,
                "rss_kb_held": held.rss // 1024,
                "rss_bytes_per_association": round(growth / self.established) if self.established else None,
                "cpu_percent_idle": round(100 * (idle.cpu - held.cpu) / phases["idle"], 2)
                if idle and phases.get("idle") else None,
                "cpu_percent_echo": round(100 * (echo.cpu - idle.cpu) / phases["echo"], 2)
                if echo and idle and phases.get("echo") else None,
                "cpu_ms_per_association_open": round(1000 * (held.cpu - before.cpu) / self.established, 4)
                if self.established else None,
                "processes": held.processes,
            }
        echo_summary = op_summary(rec.by_op["echo"], phases.get("echo", 0.0))
        echo_summary["failed_statuses"] = sum(n for code, n in rec.by_op["echo"].statuses.items() if is_failure(code))
        echo_summary["client_loop_lag_ms"] = self.lag.summary_ms()
        return HoldResult(
            target=self.target.describe(),
            plan={"count": self.plan.count, "echo_interval": self.plan.echo_interval, "idle": self.plan.idle,
                  "echo_duration": self.plan.echo_duration, "connect_concurrency": self.plan.connect_concurrency},
            established=self.established,
            associations={"opened": rec.associations.ok, "failed_to_open": self.plan.count - self.established,
                          "latency_ms": rec.associations.latency.summary_ms(),
                          "errors_by_kind": error_counts(rec.associations),
                          "per_s": round(self.established / phases["open"], 1) if phases.get("open") else None},
            phases={k: round(v, 3) for k, v in phases.items()},
            echo=echo_summary,
            release_errors={k.value: n for k, n in self.release_errors.items()},  # dropped while held, or at release
            server=server,
            error_examples=dict(rec.error_examples),
        )
