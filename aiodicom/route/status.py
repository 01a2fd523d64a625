"""Operating the router: counters, the status file it writes, `aiodicom route status` and `retry`.

The running router writes SPOOL/status.json every few seconds (counters, rates, pauses), and each of its
workers SPOOL/status.N.json. `route status` reads the spool itself for what must be exact (entries
queued, the oldest, dead letters) and the status files for what only the running processes know (rates,
failures, connections; added up over the processes), marking it stale when the router is not running.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ..net.dispatch import shorten
from .queue import DEAD, INBOX, QUEUE, STATUS_FILE, Entry, Spool, name_time

RATE_WINDOW: Final = 60  # seconds the rates (queued, delivered) are averaged over
STALE_AFTER: Final = 15.0  # a status file older than this is from a router that is not running


class RateMeter:
    """Events per minute over the last RATE_WINDOW seconds, in one-second buckets (O(1) per event)."""

    __slots__ = ("_buckets", "_seconds")

    def __init__(self) -> None:
        self._buckets = [0] * RATE_WINDOW
        self._seconds = [0] * RATE_WINDOW

    def add(self, now: float, n: int = 1) -> None:
        second = int(now)
        i = second % RATE_WINDOW
        if self._seconds[i] != second:
            self._seconds[i], self._buckets[i] = second, 0
        self._buckets[i] += n

    def per_minute(self, now: float) -> float:
        second = int(now)
        total = sum(b for b, s in zip(self._buckets, self._seconds, strict=True) if second - RATE_WINDOW < s <= second)
        return total * 60.0 / RATE_WINDOW


@dataclass(slots=True)
class DestinationStats:
    queued_in: int = 0  # entries this run queued for the destination (instances received for it)
    delivered: int = 0
    failed_attempts: int = 0  # instance-level failures (status, no context, association lost mid-operation)
    unreachable: int = 0  # attempts that found the destination down (connection refused, rejected)
    dead_letters: int = 0  # made by this run
    converted: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # wall clock: an old error under recent deliveries is history
    last_delivery: float | None = None
    rate: RateMeter = field(default_factory=RateMeter)  # deliveries
    in_rate: RateMeter = field(default_factory=RateMeter)  # entries queued: above the delivery rate, the queue grows

    def queued(self, now: float, n: int = 1) -> None:
        self.queued_in += n
        self.in_rate.add(now, n)

    def error(self, text: str, now: float | None = None) -> None:
        self.last_error, self.last_error_at = text, time.time() if now is None else now

    def snapshot(self, now: float) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("rate", "in_rate")}
        out["rate_per_minute"] = round(self.rate.per_minute(now), 1)
        out["queued_per_minute"] = round(self.in_rate.per_minute(now), 1)
        return out


# ---- reading the spool -------------------------------------------------------------------------------

def _count(folder: Path) -> tuple[int, str | None]:
    """Entries in a queue folder and the name of the oldest (names sort by arrival)."""
    n, oldest = 0, None
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.endswith(".dcm") and not e.name.startswith("."):
                    n += 1
                    if oldest is None or e.name < oldest:
                        oldest = e.name
    except FileNotFoundError:
        pass
    return n, oldest


def destinations_in(root: Path, configured: Iterable[str] = ()) -> list[str]:
    names = dict.fromkeys(configured)
    for sub in (QUEUE, DEAD, INBOX):
        with_entries = root / sub
        if with_entries.is_dir():
            names.update(dict.fromkeys(sorted(p.name for p in with_entries.iterdir() if p.is_dir())))
    return list(names)


def status_file(process: int) -> str:
    """The status file of the router's first process (0) or of one of its workers."""
    return STATUS_FILE if process == 0 else f"status.{process}.json"


_SUMMED: Final = ("in_flight", "queued_in", "delivered", "failed_attempts", "unreachable", "queued_per_minute",
                  "rate_per_minute", "associations", "associations_opened")


def _live_status(root: Path, now: float) -> dict[str, Any]:
    """The first process's status with its running workers' counters added in; {} when it is not running."""
    def load(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        fresh = isinstance(data, dict) and now - data.get("updated", 0) < STALE_AFTER and _alive(data.get("pid"))
        return data if fresh else {}

    live = load(root / STATUS_FILE)
    if not live:
        return {}
    for path in sorted(root.glob("status.*.json")):
        worker = load(path)
        for name, stats in worker.get("destinations", {}).items():
            row = live.setdefault("destinations", {}).setdefault(name, {})
            for key in _SUMMED:
                if isinstance(stats.get(key), (int, float)):
                    row[key] = round((row.get(key) or 0) + stats[key], 1)
            if stats.get("last_error") and (not row.get("last_error")  # the most recent error of all processes
                                            or (stats.get("last_error_at") or 0) > (row.get("last_error_at") or 0)):
                row["last_error"], row["last_error_at"] = stats.get("last_error"), stats.get("last_error_at")
            row["paused_for"] = max(row.get("paused_for") or 0, stats.get("paused_for") or 0)
        if worker:
            live.setdefault("workers", []).append(worker.get("pid"))
    return live


def read_status(root: Path, configured: Iterable[str] = (), now: float | None = None) -> dict[str, Any]:
    """Everything `route status` shows, as data."""
    now = time.time() if now is None else now
    live = _live_status(root, now)
    running = bool(live)
    out: dict[str, Any] = {"spool": str(root), "running": running, "pid": live.get("pid") if running else None,
                           "workers": live.get("workers", []),
                           "listeners": live.get("listeners", []) if running else [], "destinations": {}}
    for name in destinations_in(root, configured):
        queued, oldest = _count(root / QUEUE / name)
        waiting, _ = _count(root / INBOX / name)
        dead, _ = _count(root / DEAD / name)
        row: dict[str, Any] = {"queued": queued + waiting, "oldest": name_time(oldest) if oldest else None,
                               "oldest_age": round(now - name_time(oldest), 1) if oldest else None,
                               "dead_letters": dead}
        stats = live.get("destinations", {}).get(name) if running else None
        if stats:
            row.update({k: stats.get(k) for k in ("in_flight", "queued_in", "delivered", "failed_attempts",
                                                  "unreachable", "queued_per_minute", "rate_per_minute", "last_error",
                                                  "paused_for", "associations", "associations_opened")})
            at = stats.get("last_error_at")
            row["last_error_age"] = round(now - at, 1) if isinstance(at, (int, float)) else None
        out["destinations"][name] = row
    return out


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def format_status(status: dict[str, Any]) -> str:
    workers = status.get("workers") or []
    running = f"router running (pid {status['pid']}" + (f", workers {', '.join(map(str, workers))})" if workers else ")")
    lines = [f"spool {status['spool']}: " + (running if status["running"] else "router not running")]
    for li in status["listeners"]:
        lines.append(f"  listening on {li}")
    header = ("destination", "queued", "oldest", "dead", "in flight", "delivered", "in/min", "out/min", "failures",
              "last error")
    rows = [header]
    for name, d in status["destinations"].items():
        failures = d.get("failed_attempts")
        if failures is not None and d.get("unreachable"):
            failures = f"{failures} (+{d['unreachable']} unreachable)"
        rows.append((name, str(d["queued"]), _age(d["oldest_age"]), str(d["dead_letters"]),
                     _dash(d.get("in_flight")), _dash(d.get("delivered")), _dash(d.get("queued_per_minute")),
                     _dash(d.get("rate_per_minute")), _dash(failures), _last_error(d)))
    if len(rows) == 1:
        lines.append("  no destinations")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _last_error(d: dict[str, Any]) -> str:
    error = d.get("last_error")
    if not error:
        return "-"
    age = d.get("last_error_age")
    return shorten(error, 60) + (f" ({_age(age)} ago)" if age is not None else "")


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


# ---- dead letters --------------------------------------------------------------------------------------

def dead_letters(spool: Spool, destinations: Iterable[str]) -> list[Entry]:
    return [e for d in destinations for e in spool.dead_letters(d)]


def retry_dead_letters(spool: Spool, destinations: Iterable[str], *, uids: Iterable[str] = ()) -> list[Entry]:
    """Hand dead letters back to the router (all of them, or those whose SOP Instance UID is listed)."""
    wanted = set(uids)
    moved = []
    for entry in dead_letters(spool, destinations):
        if wanted and entry.sop_instance_uid not in wanted:
            continue
        moved.append(spool.retry(entry))
    return moved
