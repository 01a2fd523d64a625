"""Forwarding throughput through `aiodicom route` versus storing directly to the same destination.

    python bench/route_bench.py [--instances-per-sender 40] [--senders 8] [--destination storescp|serve|both]

Eight DCMTK `storescu` processes (the fastest sender at hand) each send their share of 0.5 MB instances
at once: first straight to the destination, then to a store-and-forward router (spool fsync'd before
every Success, as configured in production) that forwards to a fresh copy of the same destination over
pooled associations. The routed figure is end to end: from the first byte sent to the last instance
stored at the destination. Printed: instances/s both ways and routed/direct (the issue's target is at
least 0.80).
"""

from __future__ import annotations

import argparse
import shutil
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


def router_config(folder: Path, port: int, dest: peers.Server, associations: int, sync: bool = True) -> Path:
    path = folder / "route.toml"
    path.write_text(f"""
[router]
spool = "spool"
default = ["DEST"]
sync = {"true" if sync else "false"}

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


def routed(destination: Destination, files: FileSet, workdir: Path, associations: int,
           sync: bool = True) -> tuple[float, float]:
    """(end-to-end instances/s, instances/s acknowledged by the router to the senders)."""
    with destination(workdir / "routed-dest") as server:
        folder = workdir / "router"
        folder.mkdir(parents=True, exist_ok=True)
        port = peers.free_port()
        config = router_config(folder, port, server, associations, sync)
        argv = [sys.executable, "-m", "aiodicom", "route", "--config", str(config), "--log-format", "json"]
        with peers.start("aiodicom route", argv, port=port, aet="ROUTER", workdir=folder, nodelay=False):
            started = time.perf_counter()
            acknowledged = send_all(port, "ROUTER", files)
            wait_stored(server, files.count)
            elapsed = time.perf_counter() - started
        return files.count / elapsed, files.count / acknowledged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--senders", type=int, default=8, help="concurrent storescu processes (default 8)")
    p.add_argument("--instances-per-sender", type=int, default=40, help="0.5 MB instances each sends (default 40)")
    p.add_argument("--associations", type=int, default=8, help="the router's pooled associations to the destination")
    p.add_argument("--destination", choices=(*DESTINATIONS, "both"), default="both")
    p.add_argument("--repeat", type=int, default=1, help="runs of each case (the best is kept)")
    p.add_argument("--no-sync", action="store_true",
                   help="the router's spool without fsync (shows the router's own cost apart from the disk's)")
    p.add_argument("--workdir", type=Path, default=peers.REPO,
                   help="a temp folder is made here (default: the checkout)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix=".bench-route-", dir=args.workdir))
    try:
        files = make_files(work / "data", args.senders * args.instances_per_sender, HALF_MB, parts=args.senders,
                           series_size=args.instances_per_sender)
        print(f"route bench: {files.label}, {args.senders} concurrent storescu, router with "
              f"{args.associations} pooled associations, spool {'not ' if args.no_sync else ''}fsync'd", flush=True)
        names = list(DESTINATIONS) if args.destination == "both" else [args.destination]
        worst = None
        for name in names:
            best_direct = best_routed = best_ack = 0.0
            for rep in range(args.repeat):
                best_direct = max(best_direct, direct(DESTINATIONS[name], files, work / f"{name}-{rep}"))
                end_to_end, ack = routed(DESTINATIONS[name], files, work / f"{name}-{rep}", args.associations,
                                         sync=not args.no_sync)
                best_routed, best_ack = max(best_routed, end_to_end), max(best_ack, ack)
            ratio = best_routed / best_direct
            worst = ratio if worst is None else min(worst, ratio)
            mb_per_s = best_direct * files.size / 1e6
            print(f"  destination {name:9s} direct {best_direct:7.1f} inst/s ({mb_per_s:6.1f} MB/s)"
                  f" | routed {best_routed:7.1f} inst/s end to end (senders acknowledged at {best_ack:7.1f} inst/s)"
                  f" | ratio {ratio:.2f}", flush=True)
        print(f"routed/direct: {worst:.2f} (target >= 0.80)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
