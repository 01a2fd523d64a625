"""How a load run shows itself: a live progress line on a terminal, a final table, or JSON."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from .generator import LoadResult, Snapshot
from .hold import HoldResult
from .stats import ErrorKind


class LiveLine:
    """One line redrawn in place on stderr (rich); nothing at all when stderr is not a terminal."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._live: Any = None

    def __enter__(self) -> LiveLine:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(stderr=True), transient=True, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, text: str) -> None:
        if self._live is not None:
            self._live.update(text)

    def snapshot(self, s: Snapshot) -> None:
        done = f"{s.done}/{s.expected}" if s.expected is not None else f"{s.done}"
        line = (f"{s.elapsed:6.1f} s  {done} ops  {s.ops_per_s:8.1f} ops/s  {s.mb_per_s:7.1f} MB/s  "
                f"p99 {s.p99_ms:7.1f} ms  in flight {s.in_flight}")
        if s.errors:
            line += f"  [red]errors {s.errors}[/red]"
        self.show(line)


def _ms(latency: dict[str, float]) -> list[str]:
    return [f"{latency[k]:.2f}" for k in ("p50", "p95", "p99", "max")]


def print_load(result: LoadResult, file: IO[str] | None = None) -> None:
    """The final report: one row per operation type and a total, then errors by kind."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, highlight=False, width=140)
    plan = result.plan
    rate = f", open loop at {plan['rate']:g}/s" if plan["rate"] else ", closed loop"
    title = (f"aiodicom load → {result.target['called_ae']}@{result.target['host']}:{result.target['port']}: "
             f"{result.mix}, concurrency {plan['concurrency']}{rate}, association {plan['association']}")
    table = Table(title=title, title_justify="left")
    for name in ("operation", "done", "ok", "errors", "ops/s", "MB/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name == "operation" else "right")
    rows = list(result.by_operation.items())
    if len(rows) > 1:
        rows.append(("total", result.total))
    for name, s in rows:
        table.add_row(name, str(s["operations"]), str(s["ok"]), str(s["errors"]), f"{s['ops_per_s']:.1f}",
                      f"{s['mb_per_s']:.1f}", *_ms(s["latency_ms"]))
    console.print(table)
    assoc = result.associations
    console.print(f"{result.total['operations']} operations in {result.elapsed:.2f} s "
                  f"(+{result.setup_seconds:.2f} s opening associations); associations opened {assoc['opened']}, "
                  f"failed {assoc['failed']}; time to associate p50 {assoc['latency_ms']['p50']:.2f} ms, "
                  f"p99 {assoc['latency_ms']['p99']:.2f} ms")
    statuses = result.total["statuses"]
    if statuses:
        console.print("statuses: " + ", ".join(f"{code} ×{n}" for code, n in statuses.items()))
    kinds = {k: n for k, n in result.total["errors_by_kind"].items() if n}
    if kinds:
        console.print("[red]errors:[/red] " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
        for text, n in result.error_examples.items():
            console.print(f"  {n}× {text}")
    if result.server:
        _print_server(console, result.server)


def _print_server(console: Any, server: dict[str, Any]) -> None:
    if not server.get("alive", True):
        console.print(f"[red]server process {server['pid']} is gone[/red]")
        return
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in server.items() if k not in ("pid", "alive") and v is not None]
    console.print(f"server pid {server['pid']}: " + ", ".join(parts))


def print_hold(result: HoldResult, file: IO[str] | None = None) -> None:
    from rich.console import Console

    console = Console(file=file or sys.stdout, highlight=False, width=140)
    a, e, p = result.associations, result.echo, result.phases
    console.print(f"held {result.established}/{result.plan['count']} associations "
                  f"(opened in {p.get('open', 0):.1f} s, {a['per_s']}/s; time to associate p50 "
                  f"{a['latency_ms']['p50']:.1f} ms, p99 {a['latency_ms']['p99']:.1f} ms)")
    console.print(f"echo every {result.plan['echo_interval']:g} s for {p.get('echo', 0):.1f} s: {e['operations']} "
                  f"echoes, {e['errors']} errors; latency ms p50/p95/p99/max {'/'.join(_ms(e['latency_ms']))}")
    lag = e.get("client_loop_lag_ms")
    if lag:
        console.print(f"this client's event loop lag while echoing: p99 {lag['p99']:.1f} ms, max {lag['max']:.1f} ms "
                      "(a large lag means the client, not the server, limits the echo latency)")
    failed = {k: n for k, n in a["errors_by_kind"].items() if n}
    if failed:
        console.print("[red]failed to open:[/red] " + ", ".join(f"{k} {n}" for k, n in failed.items()))
    if result.release_errors:
        console.print("[red]ended abnormally:[/red] " + ", ".join(f"{k} {n}" for k, n in result.release_errors.items()))
    for text, n in result.error_examples.items():
        console.print(f"  {n}× {text}")
    if result.server:
        _print_server(console, result.server)


def to_json(result: LoadResult | HoldResult) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False)


ERROR_KINDS = tuple(k.value for k in ErrorKind)
