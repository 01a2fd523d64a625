"""`python -m bench [--quick] [--repeat N] [--only SCENARIO,...] [--out DIR]`: see bench/__init__.py."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiodicom.net.transport import raise_open_file_limit
from bench import report, scn_assoc, scn_find, scn_store
from bench.core import Bench
from bench.peers import REPO

SCENARIOS = ("receive", "receive-x4", "send", "saturation", "associations", "hold", "find")


def plan(bench: Bench, only: tuple[str, ...]) -> list[tuple[str, Callable[[int], None]]]:
    """(name, run one repetition) per scenario; shared data is made once, before any timing."""
    steps: list[tuple[str, Callable[[int], None]]] = []
    store_data = None
    if {"receive", "receive-x4", "send", "saturation"} & set(only):
        store_data = scn_store.StoreData(bench)
    if "receive" in only:
        scn_store.receive_ratios(bench, store_data)
        steps.append(("receive", lambda rep: scn_store.receive(bench, store_data, rep)))
    if "receive-x4" in only:
        scn_store.concurrent_ratios(bench, store_data)
        steps.append(("receive-x4", lambda rep: scn_store.receive_concurrent(bench, store_data, rep)))
    if "send" in only:
        scn_store.send_ratios(bench, store_data)
        steps.append(("send", lambda rep: scn_store.send(bench, store_data, rep)))
    if "saturation" in only:
        scn_store.saturation_ratios(bench, store_data)
        steps.append(("saturation", lambda rep: scn_store.saturation(bench, store_data, rep)))
    if "associations" in only:
        scn_assoc.associations_ratios(bench)
        steps.append(("associations", lambda rep: scn_assoc.associations_per_second(bench, rep)))
    if "hold" in only:
        scn_assoc.hold_ratios(bench)
        steps.append(("hold", lambda rep: (scn_assoc.hold(bench, rep), scn_assoc.storing_at_once(bench, rep))))
    if "find" in only:
        find_data = scn_find.FindData(bench)
        scn_find.find_ratios(bench, find_data)
        steps.append(("find", lambda rep: scn_find.find(bench, find_data, rep)))
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny counts, one repetition (< 2 minutes)")
    p.add_argument("--repeat", type=int, help="repetitions of each scenario (default 3; 1 with --quick)")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="where latest.json and latest.png go (default bench/results)")
    p.add_argument("--workdir", type=Path, default=REPO,
                   help="a temp folder is made here for data and servers (default: the checkout, so files land on "
                        "the disk an archive would use)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--merge", action="store_true",
                   help="replace only the scenarios run (--only) in OUT/latest.json, keep the others")
    p.add_argument("--markdown", action="store_true",
                   help="print OUT/latest.json as the README's markdown tables and exit (runs nothing)")
    args = p.parse_args(argv)
    if args.markdown:
        print(report.markdown(json.loads((args.out / "latest.json").read_text())), end="")
        return 0
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    repeat = args.repeat or (1 if args.quick else 3)
    raise_open_file_limit()  # inherited by every server and client started from here
    Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a folder given that does not exist yet
    workdir = Path(tempfile.mkdtemp(prefix=".bench-run-", dir=args.workdir))
    bench = Bench(quick=args.quick, repeat=repeat, workdir=workdir)
    started = time.monotonic()
    try:
        print(f"bench: preparing data in {workdir}", flush=True)
        steps = plan(bench, only)
        for name, step in steps:
            t = time.monotonic()
            for rep in range(repeat):
                print(f"bench: {name}, repetition {rep + 1}/{repeat}", flush=True)
                step(rep)
            bench.scenario_seconds[name] = time.monotonic() - t
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.print_tables(bench)
    info = {"command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
            "seconds": round(time.monotonic() - started, 1), "scenarios": list(only)}
    json_path, chart_path = args.out / "latest.json", args.out / "latest.png"
    doc = report.document(bench, info)
    if args.merge and json_path.exists():
        doc = report.merge(json.loads(json_path.read_text()), doc)
    report.write_json(doc, json_path)
    charted = report.write_chart(doc, chart_path)
    incomplete = [m for m in bench.measures.values() if not m.complete]
    print(f"bench: {len(bench.measures)} measures in {info['seconds']:.0f} s, {len(incomplete)} incomplete; "
          f"wrote {json_path}" + (f" and {chart_path}" if charted else ""))
    for m in incomplete:
        print(f"bench: incomplete: {m.scenario} / {m.case} / {m.target}: "
              f"{(m.errors or [f'transferred {m.transferred} of {m.expected}'])[0][:300]}", file=sys.stderr)
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
