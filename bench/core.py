"""The bench's bookkeeping: measurements (one value per repetition), the ratios the issue sets as targets,
and small helpers to run clients and time them."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import env


@dataclass
class Measure:
    """One (scenario, case, target): a value per repetition, and what was transferred each time."""

    scenario: str
    case: str
    target: str
    unit: str
    values: list[float] = field(default_factory=list)
    transferred: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)  # per repetition (a timed run's count varies)
    extra: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def complete(self) -> bool:
        """Every repetition produced a value and transferred what it should."""
        if not self.values or self.errors:
            return False
        return self.transferred == self.expected

    def to_dict(self) -> dict[str, Any]:
        v = self.values
        return {"scenario": self.scenario, "case": self.case, "target": self.target, "unit": self.unit,
                "values": [round(x, 3) for x in v], "min": round(min(v), 3) if v else None,
                "median": round(self.median, 3) if v else None, "max": round(max(v), 3) if v else None,
                "transferred": self.transferred, "expected": self.expected, "complete": self.complete,
                "extra": self.extra, "errors": self.errors, "note": self.note}


@dataclass(frozen=True, slots=True)
class Ratio:
    """A target of the issue: median(numerator) / median(denominator) ≥ goal (or ≤ goal when `at_most`)."""

    name: str
    scenario: str
    case: str
    numerator: str
    denominator: str | None  # None: the numerator's value is compared with the goal as it is
    goal: float
    at_most: bool = False
    denominator_case: str | None = None  # default: the numerator's
    denominator_scenario: str | None = None  # default: the numerator's


class Bench:
    def __init__(self, *, quick: bool, repeat: int, workdir: Path) -> None:
        self.quick = quick
        self.repeat = repeat
        self.workdir = workdir
        self.measures: dict[tuple[str, str, str], Measure] = {}
        self.ratios: list[Ratio] = []
        self.notes: dict[str, list[str]] = {}
        self.scenario_seconds: dict[str, float] = {}

    def measure(self, scenario: str, case: str, target: str, unit: str) -> Measure:
        key = (scenario, case, target)
        m = self.measures.get(key)
        if m is None:
            m = self.measures[key] = Measure(scenario, case, target, unit)
        return m

    def record(self, scenario: str, case: str, target: str, unit: str, value: float, *,
               transferred: int | None = None, expected: int | None = None, **extra: Any) -> None:
        m = self.measure(scenario, case, target, unit)
        m.values.append(value)
        if transferred is not None or expected is not None:
            m.transferred.append(-1 if transferred is None else transferred)
            m.expected.append(-1 if expected is None else expected)
        for k, v in extra.items():
            m.extra.setdefault(k, []).append(v)
        print(f"  {scenario:<20} {case:<28} {target:<40} {value:12.1f} {unit}"
              + (f"  [{transferred}/{expected}]" if expected is not None else ""), flush=True)

    def fail(self, scenario: str, case: str, target: str, unit: str, error: str, *, expected: int | None = None) -> None:
        m = self.measure(scenario, case, target, unit)
        m.errors.append(error)
        if expected is not None:
            m.expected.append(expected)
        print(f"  {scenario:<20} {case:<28} {target:<40} FAILED: {error.splitlines()[0] if error else ''}", flush=True)

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)

    def folder(self, *parts: str) -> Path:
        d = self.workdir.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def get(self, scenario: str, case: str, target: str) -> Measure | None:
        return self.measures.get((scenario, case, target))

    def ratio_values(self) -> list[dict[str, Any]]:
        out = []
        for r in self.ratios:
            num = self.get(r.scenario, r.case, r.numerator)
            den = self.get(r.denominator_scenario or r.scenario, r.denominator_case or r.case, r.denominator) \
                if r.denominator else None
            value = None
            if num is not None and num.median is not None:
                if r.denominator is None:
                    value = num.median
                elif den is not None and den.median:
                    value = num.median / den.median
            met = None if value is None else meets(value, r)
            row = {"name": r.name, "scenario": r.scenario, "case": r.case, "numerator": r.numerator,
                   "denominator": r.denominator, "denominator_scenario": r.denominator_scenario or r.scenario,
                   "denominator_case": r.denominator_case or r.case, "goal": r.goal, "at_most": r.at_most,
                   "value": None if value is None else round(value, 3), "met": met}
            if num is not None and den is not None and value is not None:
                row.update(_like_for_like(num, den, r))
            out.append(row)
        return out


def meets(value: float, target: Ratio | dict[str, Any]) -> bool:
    """Whether `value` reaches the goal of a Ratio (or of a target as written to latest.json)."""
    goal, at_most = (target["goal"], target["at_most"]) if isinstance(target, dict) else (target.goal, target.at_most)
    return value <= goal if at_most else value >= goal


WARM_PAGE_CACHE = 1500.0  # MB/s: above it the page cache was written at memory speed (bench/pagecache.py)


def _like_for_like(num: Measure, den: Measure, r: Ratio) -> dict[str, Any]:
    """When the two sides' runs met the page cache in different states (bench/pagecache.py), the ratio of
    medians compares the machine, not the servers: judge the target on runs in the same state instead."""
    a, b = num.extra.get("page_cache_mb_per_s"), den.extra.get("page_cache_mb_per_s")
    if not a or not b or len(a) != len(num.values) or len(b) != len(den.values):
        return {}
    warm = [x >= WARM_PAGE_CACHE for x in a], [x >= WARM_PAGE_CACHE for x in b]
    if sorted(warm[0]) == sorted(warm[1]):
        return {}  # as many warm runs on each side: the medians compare like with like
    ratios = {}
    for state, flag in (("warm", True), ("cold", False)):
        xs = [v for v, w in zip(num.values, warm[0]) if w == flag]
        ys = [v for v, w in zip(den.values, warm[1]) if w == flag]
        if xs and ys and statistics.median(ys):
            ratios[state] = round(statistics.median(xs) / statistics.median(ys), 3)
    met = [meets(v, r) for v in ratios.values()]
    return {"page_cache_states_differ": True, "like_for_like": ratios, "met": all(met) if met else None}


def timed(argv: Sequence[str], *, timeout: float, nodelay: bool = False, cwd: Path | None = None
          ) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a client to completion: (wall seconds, the completed process)."""
    t = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env(nodelay=nodelay),
                          cwd=cwd, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t, done


def aiodicom_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiodicom", *args]


def load_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The --json report `aiodicom load` printed (exit codes 0, 1 and 3 all print one)."""
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"aiodicom load printed no JSON (exit {done.returncode}):\n{done.stderr[-2000:]}") from None


def failure(done: subprocess.CompletedProcess[str], what: str) -> str:
    return f"{what} exited {done.returncode}: {(done.stderr or done.stdout)[-600:]}"
