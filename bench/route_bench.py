"""Forwarding throughput through `aiodicom route` versus storing directly to the same destination.

    python bench/route_bench.py [--instances-per-sender 40] [--senders 8] [--destination storescp|serve|both]

Eight DCMTK `storescu` processes (the fastest sender at hand) each send their share of 0.5 MB instances
at once: first straight to the destination, then to a store-and-forward router (spool fsync'd before
every Success, as configured in production) that forwards to a fresh copy of the same destination over
pooled associations. The routed figure is end to end: from the first byte sent to the last instance
stored at the destination. Printed: instances/s both ways and routed/direct (the issue's target is at
least 0.80).

Placement (`--placement`): "shared" lets every process use every core, so on a small machine the router
competes with the senders and the destination it serves. "pinned" models the deployment (a routing node
on its own machine): the senders and the destination run on CPU 0 in both runs, the router on the other
cores; the question is then whether the router keeps up with what the rest can send and store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers
from bench.data import HALF_MB, FileSet, make_files

Destination = Callable[[Path], AbstractContextManager[peers.Server]]
DESTINATIONS: dict[str, Destination] = {
    "storescp": lambda w: peers.dcmtk_storescp(w),  # forks per association, writes files, no fsync
    "serve": lambda w: peers.aiodicom_serve(w, sync=True),  # fsync'd before Success, like a PACS should
}


def storescu(port: int, aec: str, folder: Path) -> list[str]:
    return [peers.dcmtk("storescu"), "-aet", "MODALITY", "-aec", aec, "-ta", "30", "-td", "120", "+sd", "+r",
            peers.HOST, str(port), str(folder)]


def send_all(port: int, aec: str, files: FileSet) -> float:
    """All senders at once; seconds until the last one is done (each must succeed)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(storescu(port, aec, part), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=peers.env(nodelay=True), stdin=subprocess.DEVNULL) for part in files.parts]
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    elapsed = time.perf_counter() - started
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed ({p.returncode}): {out[-800:]}")
    return elapsed


def wait_stored(server: peers.Server, expected: int, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while server.stored_files() < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.name} holds {server.stored_files()} of {expected} instances after {timeout} s")
        time.sleep(0.01)


def router_config(folder: Path, port: int, dest: peers.Server, associations: int, sync: bool = True,
                  workers: int = 1) -> Path:
    path = folder / "route.toml"
    path.write_text(f"""
[router]
spool = "spool"
default = ["DEST"]
sync = {"true" if sync else "false"}
workers = {workers}

[[listener]]
host = "{peers.HOST}"
port = {port}
ae_title = "ROUTER"

[destination.DEST]
ae_title = "{dest.aet}"
host = "{peers.HOST}"
port = {dest.port}
max_associations = {associations}
""")
    return path


def direct(destination: Destination, files: FileSet, workdir: Path) -> float:
    with destination(workdir / "direct") as server:
        started = time.perf_counter()
        send_all(server.port, server.aet, files)
        wait_stored(server, files.count)
        return files.count / (time.perf_counter() - started)


@contextlib.contextmanager
def on_cores(cores: set[int] | None):
    """Processes started inside run on `cores` (they inherit this process's CPU affinity); None: no change."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def routed(destination: Destination, files: FileSet, workdir: Path, associations: int,
           sync: bool = True, workers: int = 1, router_cores: set[int] | None = None) -> tuple[float, float]:
    """(end-to-end instances/s, instances/s acknowledged by the router to the senders)."""
    with destination(workdir / "routed-dest") as server:
        folder = workdir / "router"
        folder.mkdir(parents=True, exist_ok=True)
        port = peers.free_port()
        config = router_config(folder, port, server, associations, sync, workers)
        argv = [sys.executable, "-m", "aiodicom", "route", "--config", str(config), "--log-format", "json"]
        with contextlib.ExitStack() as stack:
            with on_cores(router_cores):  # only the router's process (and its workers) start there
                router = stack.enter_context(peers.start("aiodicom route", argv, port=port, aet="ROUTER",
                                                         workdir=folder, nodelay=False))
            peers.wait_for_listeners(router, workers)  # the workers start after the first
            started = time.perf_counter()
            acknowledged = send_all(port, "ROUTER", files)
            wait_stored(server, files.count)
            elapsed = time.perf_counter() - started
        return files.count / elapsed, files.count / acknowledged


def _spread(values: list[float]) -> str:
    """median [min-max]"""
    return f"{statistics.median(values):7.1f} [{min(values):.0f}-{max(values):.0f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--senders", type=int, default=8, help="concurrent storescu processes (default 8)")
    p.add_argument("--instances-per-sender", type=int, default=40, help="0.5 MB instances each sends (default 40)")
    p.add_argument("--associations", type=int, default=8, help="the router's pooled associations to the destination")
    p.add_argument("--destination", choices=(*DESTINATIONS, "both"), default="both")
    p.add_argument("--workers", type=int, default=1, help="router processes (its `workers` setting)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each case (medians are compared)")
    p.add_argument("--placement", choices=("shared", "pinned", "both"), default="both",
                   help="shared: all processes on all cores; pinned: senders and destination on CPU 0, the router "
                        "on the others (needs 2 or more cores)")
    p.add_argument("--no-sync", action="store_true",
                   help="the router's spool without fsync (shows the router's own cost apart from the disk's)")
    p.add_argument("--workdir", type=Path, default=peers.REPO,
                   help="a temp folder is made here (default: the checkout)")
    args = p.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a folder given that does not exist yet
    work = Path(tempfile.mkdtemp(prefix=".bench-route-", dir=args.workdir))
    try:
        files = make_files(work / "data", args.senders * args.instances_per_sender, HALF_MB, parts=args.senders,
                           series_size=args.instances_per_sender)
        print(f"route bench: {files.label}, {args.senders} concurrent storescu, router with "
              f"{args.associations} pooled associations and {args.workers} process(es), spool "
              f"{'not ' if args.no_sync else ''}fsync'd", flush=True)
        names = list(DESTINATIONS) if args.destination == "both" else [args.destination]
        cpus = sorted(os.sched_getaffinity(0))
        placements = ["shared", "pinned"] if args.placement == "both" else [args.placement]
        if len(cpus) < 2 and "pinned" in placements:
            print("  one core: pinned placement skipped", flush=True)
            placements.remove("pinned")
        worst = None
        for placement in placements:
            rest, router_cores = ({cpus[0]}, set(cpus[1:])) if placement == "pinned" else (None, None)
            for name in names:
                directs: list[float] = []
                routeds: list[float] = []
                acks: list[float] = []
                with on_cores(rest):
                    for rep in range(args.repeat):  # interleaved, so that a slow spell of the machine hits both
                        work_rep = work / f"{placement}-{name}-{rep}"
                        directs.append(direct(DESTINATIONS[name], files, work_rep))
                        end_to_end, ack = routed(DESTINATIONS[name], files, work_rep, args.associations,
                                                 sync=not args.no_sync, workers=args.workers,
                                                 router_cores=router_cores)
                        routeds.append(end_to_end)
                        acks.append(ack)
                ratio = statistics.median(routeds) / statistics.median(directs)
                worst = ratio if worst is None else min(worst, ratio)
                print(f"  {placement:6s} destination {name:9s} direct {_spread(directs)} inst/s | routed "
                      f"{_spread(routeds)} inst/s end to end (senders acknowledged at {statistics.median(acks):7.1f})"
                      f" | ratio of medians {ratio:.2f}", flush=True)
        print(f"routed/direct: {worst:.2f} (target >= 0.80)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
