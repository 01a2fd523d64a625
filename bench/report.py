"""The bench's output: a table per scenario (min/median/max, ratio to a reference), the targets, JSON, a chart."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.core import Bench, Measure, meets

# The reference each scenario's ratio column divides by (the first present).
REFERENCES = {
    "receive": ("DCMTK storescp",),
    "receive x4": ("DCMTK storescp",),
    "send": ("DCMTK storescu",),
    "saturation": ("DCMTK storescu",),
    "associations/s": ("DCMTK storescp (single process)",),
    "hold": ("aiodicom serve",),
    "find": ("DCMTK dcmqrscp",),
}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass

    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except Exception:
            return "not installed"

    try:
        import pynetdicom

        pyn = pynetdicom.__version__
    except ImportError:
        pyn = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem / 2**30, 1), "kernel": platform.release(),
            "python": platform.python_version(), "dcmtk": version(["/usr/bin/storescp", "--version"]),
            "orthanc": version(["/usr/sbin/Orthanc", "--version"]), "pynetdicom": pyn,
            "filesystem": _filesystem(Path(__file__).resolve().parent)}


def _filesystem(path: Path) -> str:
    try:
        done = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, timeout=10)
        fields = done.stdout.splitlines()[1].split()
        return f"{fields[1]} on {fields[0]}"
    except Exception:
        return "?"


def _by_case(measures: Iterable[Measure]) -> dict[tuple[str, str], list[Measure]]:
    out: dict[tuple[str, str], list[Measure]] = {}
    for m in measures:
        out.setdefault((m.scenario, m.case), []).append(m)
    return out


def print_tables(bench: Bench, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=150, highlight=False)
    for (scenario, case), rows in _by_case(bench.measures.values()).items():
        ref = next((m for name in REFERENCES.get(scenario, ()) for m in rows if m.target == name and m.median), None)
        table = Table(title=f"{scenario}: {case}", title_justify="left")
        for col in ("target", "unit", "min", "median", "max", f"× {ref.target}" if ref else "ratio", "complete"):
            table.add_column(col, justify="left" if col in ("target", "unit") else "right")
        for m in rows:
            if m.values:
                ratio = f"{m.median / ref.median:.2f}" if ref and ref.median else ""
                table.add_row(m.target, m.unit, f"{min(m.values):,.1f}", f"{m.median:,.1f}", f"{max(m.values):,.1f}",
                              ratio, "yes" if m.complete else "NO")
            else:
                table.add_row(m.target, m.unit, "", "failed", "", "", (m.errors or ["?"])[0][:60])
        console.print(table)
    targets = Table(title="targets of issue 6 (median ratios)", title_justify="left")
    for col in ("target", "value", "goal", "met"):
        targets.add_column(col, justify="left" if col == "target" else "right")
    for r in bench.ratio_values():
        goal = ("≤ " if r["at_most"] else "≥ ") + f"{r['goal']:g}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "[red]NO[/red]")
        targets.add_row(r["name"], _value(r), goal, met)
    console.print(targets)


def document(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    return {"machine": machine(), **info, "quick": bench.quick, "repetitions": bench.repeat,
            "scenario_seconds": {k: round(v, 1) for k, v in bench.scenario_seconds.items()}, "notes": bench.notes,
            "measures": [m.to_dict() for m in bench.measures.values()], "targets": bench.ratio_values()}


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s scenarios replace those of `old`; the rest of `old` stays (a scenario re-run on its own)."""
    ran = {m["scenario"] for m in new["measures"]}
    out = dict(old)
    out["measures"] = [m for m in old["measures"] if m["scenario"] not in ran] + new["measures"]
    out["targets"] = [t for t in old["targets"] if t["scenario"] not in ran] + new["targets"]
    medians = {(m["scenario"], m["case"], m["target"]): m["median"] for m in out["measures"]}
    for t in out["targets"]:  # a ratio across scenarios (4 associations / 1): its other side may be in `old`
        if t["value"] is None and t.get("denominator_scenario"):
            num = medians.get((t["scenario"], t["case"], t["numerator"]))
            den = medians.get((t["denominator_scenario"], t["denominator_case"], t["denominator"]))
            if num is not None and den:
                t["value"] = round(num / den, 3)
                t["met"] = meets(t["value"], t)
    out["notes"] = {**old.get("notes", {}), **new.get("notes", {})}
    out["scenario_seconds"] = {**old.get("scenario_seconds", {}), **new.get("scenario_seconds", {})}
    out["merged"] = [*old.get("merged", []), {"command": new.get("command"), "scenarios": sorted(ran)}]
    return out


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_chart(doc: dict[str, Any], path: Path) -> bool:
    """Horizontal bars of every relative target (value / goal: 1.0 means just met), green when met."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install -e '.[test]'): no chart", file=sys.stderr)
        return False
    rows = [r for r in doc["targets"] if r["value"] is not None]
    if not rows:
        return False
    def judged(r: dict[str, Any]) -> float:  # the value the target is judged on (bench.core._like_for_like)
        same = list(r.get("like_for_like", {}).values())
        return (max(same) if r["at_most"] else min(same)) if same else r["value"]

    # normalise so that 1.0 is the goal whichever way it points: higher is better on every bar
    scores = [min(max(r["goal"] / max(judged(r), r["goal"] / 100) if r["at_most"] else judged(r) / r["goal"],
                      0.01), 100.0) for r in rows]  # clipped to 1/100..100× the goal, so a 0 still shows
    labels = [f"{r['name']}  [{_value(r)} vs {'≤' if r['at_most'] else '≥'} {r['goal']:g}]" for r in rows]
    fig, ax = plt.subplots(figsize=(12, 0.34 * len(rows) + 1.5))
    colors = ["#2e7d32" if r["met"] else "#c62828" for r in rows]
    ax.barh(range(len(rows)), scores, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("measured / goal (log scale; ≥ 1 meets the target)")
    m = doc["machine"]
    ax.set_title(f"aiodicom bench{' (quick)' if doc.get('quick') else ''}: {m['cores']} cores, {m['cpu']}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(doc: dict[str, Any]) -> str:
    """The README's Performance tables from a results JSON: medians per case, then the targets."""
    lines: list[str] = []
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in doc["measures"]:
        cases.setdefault((m["scenario"], m["case"]), []).append(m)
    for (scenario, case), rows in cases.items():
        ref_name = next((n for n in REFERENCES.get(scenario, ()) if any(r["target"] == n and r["median"]
                                                                       for r in rows)), None)
        ref = next((r for r in rows if r["target"] == ref_name), None)
        lines += [f"**{scenario}: {case}** ({rows[0]['unit']}, median [min–max] of {len(rows[0]['values']) or '–'})",
                  "", f"| target | median | min–max | × {ref_name or 'ref'} |", "|---|---:|---:|---:|"]
        for r in rows:
            if r["median"] is None:
                lines.append(f"| {r['target']} | failed | | |")
                continue
            ratio = f"{r['median'] / ref['median']:.2f}" if ref and ref["median"] else ""
            lines.append(f"| {r['target']} | {r['median']:,.1f} | {r['min']:,.1f}–{r['max']:,.1f} | {ratio} |")
        probes = [v for r in rows for v in r.get("extra", {}).get("page_cache_mb_per_s", []) if v]
        if probes:  # bench/pagecache.py: what writing into the page cache cost while these runs went on
            lines += ["", f"Page-cache writes measured before each run: {min(probes):,.0f}–{max(probes):,.0f} MB/s."]
        lines.append("")
    lines += ["| target of issue 6 | measured | goal | met |", "|---|---:|---:|:-:|"]
    for t in doc["targets"]:
        value = "–" if t["value"] is None else _value(t)
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['name']} | {value} | {'≤' if t['at_most'] else '≥'} {t['goal']:g} | {met} |")
    if any(t.get("page_cache_states_differ") for t in doc["targets"]):
        lines += ["", "Where the two sides' runs met the page cache in different states (bench/pagecache.py), the "
                      "target is judged on the runs in the same state (\"like for like\"), not on the ratio of medians."]
    return "\n".join(lines) + "\n"


def _value(t: dict[str, Any]) -> str:
    """A target's ratio of medians, and its like-for-like ratios when the page cache states differed."""
    if t["value"] is None:
        return ""
    text = f"{t['value']:,.2f}"
    if t.get("page_cache_states_differ"):
        same = ", ".join(f"{state} {v:,.2f}" for state, v in t.get("like_for_like", {}).items()) or "none"
        text += f" (like for like: {same})"
    return text
