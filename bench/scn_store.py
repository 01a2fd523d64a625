"""C-STORE scenarios: receiving (one association and four), sending, and whether `aiodicom load` saturates
a server where DCMTK `storescu` and pynetdicom cannot.

The sender for every receive figure is DCMTK `storescu` (the fastest SCU at hand, the same for every
server); each server is started fresh for each case and repetition, so no one meets duplicates.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aiodicom.load import procstat
from bench import peers
from bench.core import Bench, Ratio, aiodicom_cli, failure, load_json, timed
from bench.data import HALF_MB, KB, FileSet, files_in, make_files
from bench.filestore_ceiling import ceiling
from bench.pagecache import write_rate

ServerFactory = Callable[[Path], contextlib.AbstractContextManager[peers.Server]]

SYNC_ON, SYNC_OFF, DISCARD = "aiodicom serve (sync on)", "aiodicom serve (sync off)", "aiodicom discard"
DCMTK_FILES, DCMTK_IGNORE = "DCMTK storescp", "DCMTK storescp --ignore"
PYNETDICOM, ORTHANC, CEILING = "pynetdicom storescp", "Orthanc", "fsync ceiling"

RECEIVERS: dict[str, ServerFactory] = {
    SYNC_ON: lambda w: peers.aiodicom_serve(w, sync=True),
    SYNC_OFF: lambda w: peers.aiodicom_serve(w, sync=False),
    DISCARD: peers.aiodicom_discard,
    DCMTK_FILES: lambda w: peers.dcmtk_storescp(w),
    DCMTK_IGNORE: lambda w: peers.dcmtk_storescp(w, ignore=True),
    PYNETDICOM: lambda w: peers.pynetdicom_storescp(w),
    ORTHANC: peers.orthanc,
}
CONCURRENT_RECEIVERS = (SYNC_ON, SYNC_OFF, DCMTK_FILES, ORTHANC, PYNETDICOM)


class StoreData:
    """The two file sets every store scenario sends, made once per bench run."""

    def __init__(self, bench: Bench, *, parts: int = 4) -> None:
        big, tiny = ((20, HALF_MB), (100, 10 * KB)) if bench.quick else ((500, HALF_MB), (5000, 10 * KB))
        root = bench.folder("data")
        self.sets = [make_files(root / "ct-0.5MB", big[0], big[1], parts=parts),
                     make_files(root / "ct-10KB", tiny[0], tiny[1], parts=parts)]
        help_text = subprocess.run(aiodicom_cli("store", "--help"), capture_output=True, text=True,
                                   env=peers.env()).stdout
        self.store_has_associations = "--associations" in help_text  # engine work of issue 6 may add it


def storescu(server: peers.Server, folders: list[Path]) -> list[str]:
    return [peers.dcmtk("storescu"), "-aet", "STORESCU", "-aec", server.aet, "-ta", "30", "-td", "60",
            "+sd", "+r", peers.HOST, str(server.port), *map(str, folders)]


def received(server: peers.Server, target: str, expected: int, client_ok: bool) -> int:
    """How many instances the server got, from the server's side wherever it keeps anything."""
    if target == DISCARD:
        server.stop()
        counts = server.workdir / "received.json"
        return json.loads(counts.read_text())["instances"] if counts.exists() else 0
    if target == ORTHANC:
        return peers.orthanc_instances(server)
    if target == DCMTK_IGNORE:
        return expected if client_ok else 0  # stores nothing: storescu halts on the first failure (exit ≠ 0)
    return server.stored_files()


def _send(bench: Bench, scenario: str, target: str, files: FileSet, associations: int, rep: int) -> None:
    unit = "instances/s"
    workdir = bench.folder("runs", scenario, f"{target}-{files.size}-{rep}".replace(" ", "_").replace("/", "_"))
    page_cache = round(write_rate(workdir / "page-cache-probe"), 1)  # the state of memory this run meets
    try:
        with (RECEIVERS.get(target) or X4_ONLY_RECEIVERS[target])(workdir) as server:
            groups = [[p] for p in files.parts] if associations > 1 else [list(files.parts)]
            before = procstat.sample(server.pid)
            t = time.perf_counter()
            procs = [subprocess.Popen(storescu(server, g), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=peers.env(nodelay=True), stdin=subprocess.DEVNULL)
                     for g in groups]
            outputs = [p.communicate(timeout=1800)[0] for p in procs]
            elapsed = time.perf_counter() - t
            after = procstat.sample(server.pid)
            ok = all(p.returncode == 0 for p in procs)
            got = received(server, target, files.count, ok)
            if not ok:
                bad = next(o for p, o in zip(procs, outputs) if p.returncode != 0)
                bench.fail(scenario, files.label, target, unit, f"storescu failed: {bad[-500:]}", expected=files.count)
                return
            cpu = (after.cpu - before.cpu) if before and after else None
            bench.record(scenario, files.label, target, unit, files.count / elapsed, transferred=got,
                         expected=files.count, mb_per_s=round(files.total_bytes / elapsed / 1e6, 1),
                         server_cpu_percent=round(100 * cpu / elapsed, 1) if cpu is not None else None,
                         page_cache_mb_per_s=page_cache)
    except peers.PeerUnavailable as exc:
        bench.fail(scenario, files.label, target, unit, str(exc), expected=files.count)
    except Exception as exc:  # one peer failing must not end the bench
        bench.fail(scenario, files.label, target, unit, f"{type(exc).__name__}: {exc}", expected=files.count)
    # What the server wrote stays until the bench ends: deleting thousands of files makes creating files
    # slow for a while on ext4 (the inode allocator skips recently deleted inodes), which would tax
    # whichever server runs next.


def rotated(targets: list[str], rep: int) -> list[str]:
    """Each repetition starts with another server, so none always runs right after the same one."""
    k = rep % len(targets)
    return targets[k:] + targets[:k]


# ---- 1. receive over one association, and the fsync ceiling ----------------------------------------
def receive(bench: Bench, data: StoreData, rep: int) -> None:
    for files in data.sets:
        for target in rotated(list(RECEIVERS), rep):
            _send(bench, "receive", target, files, 1, rep)
        root = bench.folder("ceiling", f"{files.size}-{rep}")
        bench.record("receive", files.label, CEILING, "instances/s",
                     ceiling(root, files.size, 0.5 if bench.quick else 3.0, keep=True))


def receive_ratios(bench: Bench, data: StoreData) -> None:
    for files in data.sets:
        c = files.label
        bench.ratios += [
            Ratio(f"sync on / fsync ceiling ({c})", "receive", c, SYNC_ON, CEILING, 0.8),
            Ratio(f"sync on / Orthanc ({c})", "receive", c, SYNC_ON, ORTHANC, 2.0),
            Ratio(f"sync off / DCMTK storescp ({c})", "receive", c, SYNC_OFF, DCMTK_FILES, 1.0),
            Ratio(f"sync off / pynetdicom ({c})", "receive", c, SYNC_OFF, PYNETDICOM, 4.0),
            Ratio(f"discard / DCMTK --ignore ({c})", "receive", c, DISCARD, DCMTK_IGNORE, 1.0),
        ]


# ---- 2. receive over four associations --------------------------------------------------------------
def workers_factory(n: int, *, sync: bool = True) -> ServerFactory:
    return lambda w: peers.aiodicom_serve(w, "--workers", str(n), sync=sync)


WORKERS_ON, WORKERS_OFF = "aiodicom serve --workers 2 (sync on)", "aiodicom serve --workers 2 (sync off)"
SYNCFS = "aiodicom serve (sync on, --sync-method syncfs)"
X4_ONLY_RECEIVERS: dict[str, ServerFactory] = {}  # run over four associations only


def _add_x4_only() -> bool:
    """`serve --workers 2` and `serve --sync-method syncfs` among the receivers (once; False when this serve has no
    --workers). Sync on is bound by the disk's flushes (and each process batches only its own); sync off shows what a
    second core adds to the CPU-bound receive path; syncfs syncs a whole group of concurrent instances at once."""
    if not X4_ONLY_RECEIVERS and peers.aiodicom_serve_argv_has("--workers"):
        X4_ONLY_RECEIVERS[WORKERS_ON] = workers_factory(2)
        X4_ONLY_RECEIVERS[WORKERS_OFF] = workers_factory(2, sync=False)
        if peers.aiodicom_serve_argv_has("--sync-method"):  # group commit with one syncfs per group
            X4_ONLY_RECEIVERS[SYNCFS] = lambda w: peers.aiodicom_serve(w, "--sync-method", "syncfs")
    return bool(X4_ONLY_RECEIVERS)


def receive_concurrent(bench: Bench, data: StoreData, rep: int) -> None:
    _add_x4_only()
    targets = list(CONCURRENT_RECEIVERS) + list(X4_ONLY_RECEIVERS)
    for files in data.sets:
        for target in rotated(targets, rep):
            _send(bench, "receive x4", target, files, len(files.parts), rep)


def concurrent_ratios(bench: Bench, data: StoreData) -> None:
    for files in data.sets:
        c = files.label
        bench.ratios.append(Ratio(f"4 assoc: sync on / DCMTK storescp ({c})", "receive x4", c, SYNC_ON, DCMTK_FILES,
                                  1.0))
        bench.ratios.append(Ratio(f"4 assoc / 1 assoc, sync on ({c})", "receive x4", c, SYNC_ON, SYNC_ON, 1.0,
                                  denominator_scenario="receive"))
        if _add_x4_only():
            bench.ratios.append(Ratio(f"--workers 2 / 1 worker, sync on ({c})", "receive x4", c, WORKERS_ON, SYNC_ON,
                                      1.0))
            bench.ratios.append(Ratio(f"--workers 2 / 1 worker, sync off ({c})", "receive x4", c, WORKERS_OFF,
                                      SYNC_OFF, 1.0))
        if SYNCFS in X4_ONLY_RECEIVERS:
            bench.ratios.append(Ratio(f"4 assoc: sync on (syncfs) / DCMTK storescp ({c})", "receive x4", c, SYNCFS,
                                      DCMTK_FILES, 1.0))


# ---- 3. sending -------------------------------------------------------------------------------------
def send(bench: Bench, data: StoreData, rep: int) -> None:
    scenario, unit = "send", "instances/s"
    workdir = bench.folder("runs", "send", str(rep))
    try:
        with peers.dcmtk_storescp(workdir, ignore=True) as server:
            for files in data.sets:
                folder = str(files.folder)
                senders: list[tuple[str, list[str], int]] = [
                    ("DCMTK storescu", storescu(server, list(files.parts)), files.count),
                    ("aiodicom store", aiodicom_cli("store", "-q", "--no-progress", "-r", "--aec", server.aet,
                                                    peers.HOST, str(server.port), folder), files.count),
                    ("aiodicom load -c 4 (synthetic, same size)",
                     aiodicom_cli("load", peers.HOST, str(server.port), "--aec", server.aet, "--op", "store",
                                  "--size", str(files.size), "-c", "4", "--count", str(files.count), "--json",
                                  "--no-progress"), files.count),
                ]
                if data.store_has_associations:
                    senders.append(("aiodicom store --associations 4",
                                    aiodicom_cli("store", "-q", "--no-progress", "-r", "--associations", "4", "--aec",
                                                 server.aet, peers.HOST, str(server.port), folder), files.count))
                # pynetdicom sends ~20 small instances/s: a subset keeps the run short, the rate is the same
                subset = files_in(files.folder)[: 100 if files.size < 100 * KB else files.count]
                if bench.quick:
                    subset = subset[:20]
                senders.append(("pynetdicom storescu",
                                [sys.executable, "-m", "pynetdicom", "storescu", "-aec", server.aet, "-q",
                                 peers.HOST, str(server.port), *map(str, subset)], len(subset)))
                for label, argv, n in senders:
                    wall, done = timed(argv, timeout=3600, nodelay=label.startswith("DCMTK"))
                    ok, elapsed = done.returncode == 0, wall
                    sent = n if ok else 0
                    if label.startswith("aiodicom load"):
                        report = load_json(done)
                        sent, elapsed = int(report["ok"]), float(report["elapsed_s"])
                    elif label.startswith("aiodicom store") and ok:
                        # its own "Stored N/N instances (...) in T s": the transfer, without the ~0.5 s
                        # of interpreter start-up and the reading of every file's meta beforehand
                        m = re.search(r"Stored (\d+)/(\d+) instances .* in ([0-9.]+) s", done.stdout)
                        if m is None:
                            bench.fail(scenario, files.label, label, unit, f"no summary line: {done.stdout[-300:]}")
                            continue
                        sent, elapsed = int(m[1]), float(m[3])
                    if not ok:
                        bench.fail(scenario, files.label, label, unit, failure(done, label), expected=n)
                        continue
                    bench.record(scenario, files.label, label, unit, n / elapsed, transferred=sent, expected=n,
                                 mb_per_s=round(n * files.size / elapsed / 1e6, 1), wall_s=round(wall, 3))
    except peers.PeerUnavailable as exc:
        bench.fail(scenario, "all", "DCMTK storescp --ignore", unit, str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def send_ratios(bench: Bench, data: StoreData) -> None:
    for files in data.sets:
        c = files.label
        bench.ratios.append(Ratio(f"aiodicom store / storescu ({c})", "send", c, "aiodicom store", "DCMTK storescu",
                                  1.0))
        bench.ratios.append(Ratio(f"aiodicom load -c 4 / storescu ({c})", "send", c,
                                  "aiodicom load -c 4 (synthetic, same size)", "DCMTK storescu", 1.0))


# ---- 4. can the load generator saturate a server? ---------------------------------------------------
SATURATION_CLIENTS = ("DCMTK storescu", "pynetdicom storescu", "aiodicom load -c 1", "aiodicom load -c 4",
                      "aiodicom load -c 16")


def saturation(bench: Bench, data: StoreData, rep: int) -> None:
    """10 KB instances into DCMTK storescp --fork (files) and Orthanc, from each client: instances/s and the
    server's CPU while it ran. A client saturates a server when adding concurrency adds nothing."""
    scenario, unit = "saturation", "instances/s"
    files = data.sets[1]
    for name, factory in (("DCMTK storescp --fork", RECEIVERS[DCMTK_FILES]), ("Orthanc", RECEIVERS[ORTHANC])):
        case = f"10 KB into {name}"
        workdir = bench.folder("runs", "saturation", f"{name}-{rep}".replace(" ", "_"))
        try:
            with factory(workdir) as server:  # one server for every client, in the same order each repetition
                for client in SATURATION_CLIENTS:
                    try:
                        _saturate(bench, server, client, case, files)
                    except Exception as exc:
                        bench.fail(scenario, case, client, unit, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            for client in SATURATION_CLIENTS:
                bench.fail(scenario, case, client, unit, f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _saturate(bench: Bench, server: peers.Server, client: str, case: str, files: FileSet) -> None:
    before = procstat.sample(server.pid)
    if client == "DCMTK storescu":
        n = files.count
        elapsed, done = timed(storescu(server, list(files.parts)), timeout=3600, nodelay=True)
    elif client == "pynetdicom storescu":
        subset = files_in(files.folder)[: 10 if bench.quick else 200]
        n = len(subset)
        elapsed, done = timed([sys.executable, "-m", "pynetdicom", "storescu", "-aec", server.aet, "-q", peers.HOST,
                               str(server.port), *map(str, subset)], timeout=3600)
    else:
        _, done = timed(aiodicom_cli("load", peers.HOST, str(server.port), "--aec", server.aet, "--op", "store",
                                     "--size", str(files.size), "-c", client.rsplit(" ", 1)[1], "--duration",
                                     "1" if bench.quick else "5", "--json", "--no-progress"), timeout=600)
        report = load_json(done)
        n, elapsed = int(report["ok"]), float(report["elapsed_s"])
        if report["errors"]:
            raise RuntimeError(f"{report['errors']} errors: {report['error_examples']}")
    after = procstat.sample(server.pid)
    if done.returncode != 0:
        raise RuntimeError(failure(done, client))
    cpu = after.cpu - before.cpu if before and after else 0.0
    bench.record("saturation", case, client, "instances/s", n / elapsed, transferred=n, expected=n,
                 server_cpu_percent=round(100 * cpu / elapsed, 1))


def saturation_ratios(bench: Bench, data: StoreData) -> None:
    for name in ("DCMTK storescp --fork", "Orthanc"):
        case = f"10 KB into {name}"
        bench.ratios.append(Ratio(f"load -c 16 / storescu into {name}", "saturation", case, "aiodicom load -c 16",
                                  "DCMTK storescu", 1.0))
        bench.ratios.append(Ratio(f"load -c 16 / pynetdicom into {name}", "saturation", case, "aiodicom load -c 16",
                                  "pynetdicom storescu", 1.0))
