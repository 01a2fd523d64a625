"""Association scenarios: how many associate + C-ECHO + release cycles a server takes per second (one and four
clients, with the server's CPU per association), what holding many idle associations costs it, and how much
memory 1,000 associations storing at once take under a small --memory-budget.

The client is `aiodicom load --op echo --per-operation-association` (its lean pre-encoded cycle), the same
for every server; `--server-pid` makes it read the server's CPU from /proc.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

from aiodicom.load import procstat
from bench import peers
from bench.core import Bench, Ratio, aiodicom_cli, load_json, timed

ServerFactory = Callable[[Path], contextlib.AbstractContextManager[peers.Server]]

AIODICOM, DCMTK_SINGLE, ORTHANC, PYNETDICOM = ("aiodicom serve", "DCMTK storescp (single process)", "Orthanc",
                                              "pynetdicom")
ECHO_SERVERS: dict[str, ServerFactory] = {
    AIODICOM: lambda w: peers.aiodicom_serve(w, sync=False),
    DCMTK_SINGLE: lambda w: peers.dcmtk_storescp(w, ignore=True, fork=False),
    ORTHANC: peers.orthanc,
    PYNETDICOM: lambda w: peers.pynetdicom_echoscp(w, max_associations=64),
}
CLIENTS = (1, 4)


def associations_per_second(bench: Bench, rep: int) -> None:
    scenario, unit = "associations/s", "assoc/s"
    duration = "1" if bench.quick else "4"
    for target, factory in ECHO_SERVERS.items():
        workdir = bench.folder("runs", "assoc", f"{target}-{rep}".replace(" ", "_").replace("(", "").replace(")", ""))
        try:
            with factory(workdir) as server:
                for clients in CLIENTS:
                    case = f"{clients} client" + ("s" if clients > 1 else "")
                    _, done = timed(aiodicom_cli("load", peers.HOST, str(server.port), "--aec", server.aet, "--op",
                                                 "echo", "--per-operation-association", "-c", str(clients),
                                                 "--duration", duration, "--json", "--no-progress", "--server-pid",
                                                 str(server.pid)), timeout=600)
                    try:
                        report = load_json(done)
                    except RuntimeError as exc:
                        bench.fail(scenario, case, target, unit, str(exc))
                        continue
                    if report["errors"]:
                        bench.fail(scenario, case, target, unit,
                                   f"{report['errors']} errors: {report['error_examples']}",
                                   expected=report["operations"])
                        continue
                    server_stats = report.get("server") or {}
                    bench.record(scenario, case, target, unit, float(report["ok_per_s"]), transferred=report["ok"],
                                 expected=report["operations"],
                                 server_cpu_ms_per_association=server_stats.get("cpu_ms_per_op"),
                                 server_cpu_percent=server_stats.get("cpu_percent"),
                                 latency_p99_ms=report["latency_ms"]["p99"])
        except Exception as exc:
            for clients in CLIENTS:
                bench.fail(scenario, f"{clients} client" + ("s" if clients > 1 else ""), target, unit,
                           f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def associations_ratios(bench: Bench) -> None:
    for clients in CLIENTS:
        case = f"{clients} client" + ("s" if clients > 1 else "")
        bench.ratios.append(Ratio(f"assoc/s vs DCMTK single process ({case})", "associations/s", case, AIODICOM,
                                  DCMTK_SINGLE, 1.0))
        bench.ratios.append(Ratio(f"assoc/s vs pynetdicom ({case})", "associations/s", case, AIODICOM, PYNETDICOM,
                                  10.0))
        bench.ratios.append(Ratio(f"assoc/s vs Orthanc ({case})", "associations/s", case, AIODICOM, ORTHANC, 1.0))


# ---- idle associations held -------------------------------------------------------------------------------
def hold_counts(bench: Bench) -> dict[str, tuple[int, ...]]:
    if bench.quick:
        return {AIODICOM: (200,), PYNETDICOM: (20,)}
    return {AIODICOM: (1_000, 10_000), PYNETDICOM: (100,)}


def hold(bench: Bench, rep: int) -> None:
    scenario = "hold"
    for target, counts in hold_counts(bench).items():
        for n in counts:
            workdir = bench.folder("runs", "hold", f"{target}-{n}-{rep}".replace(" ", "_"))
            factory = (lambda w: peers.aiodicom_serve(w, sync=False)) if target == AIODICOM else \
                (lambda w, n=n: peers.pynetdicom_echoscp(w, max_associations=n + 16))
            case = f"{n:,} held"
            try:
                with factory(workdir) as server:
                    _, done = timed(aiodicom_cli("load", peers.HOST, str(server.port), "--aec", server.aet,
                                                 "--hold", str(n), "--echo-interval", "5", "--idle",
                                                 "1" if bench.quick else "3", "--echo-duration",
                                                 "2" if bench.quick else "10", "--json", "--no-progress",
                                                 "--server-pid", str(server.pid), "--timeout", "120"),
                                    timeout=1200)
                    report = load_json(done)
                s = report.get("server") or {}
                established = int(report["established"])
                failures = sum(report["release_errors"].values()) + report["echo"]["errors"]
                if not established:
                    bench.fail(scenario, case, target, "bytes/assoc", f"none established: {report['error_examples']}",
                               expected=n)
                    continue
                bench.record(scenario, case, target, "bytes/assoc", float(s["rss_bytes_per_association"]),
                             transferred=established, expected=n)
                if established != n or failures:  # shown, but the row stays incomplete
                    bench.measure(scenario, case, target, "bytes/assoc").errors.append(
                        f"{established}/{n} established, {failures} failed later: {report['error_examples']}")
                bench.record(scenario, f"{case}: idle CPU", target, "% CPU", float(s["cpu_percent_idle"]))
                bench.record(scenario, f"{case}: echo p99", target, "ms", float(report["echo"]["latency_ms"]["p99"]),
                             echoes=report["echo"]["operations"], cpu_percent_echo=s.get("cpu_percent_echo"))
            except Exception as exc:
                bench.fail(scenario, case, target, "bytes/assoc", f"{type(exc).__name__}: {exc}", expected=n)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)


STORING_BUDGET = 4 << 20
STORING_PDU = 16_384
STORING_PER_ASSOCIATION = 2 * STORING_PDU + (64 << 10)  # a PDU in assembly and the association's own objects


def storing_count(bench: Bench) -> int:
    return 200 if bench.quick else 1_000


def storing_case(bench: Bench) -> str:
    return f"{storing_count(bench):,} storing at once, 256 KB, 4 MiB budget"


def storing_at_once(bench: Bench, rep: int) -> None:
    """`load -c N --op store` into serve with a 4 MiB budget: peak RSS growth, and that every store succeeded."""
    n, case, scenario = storing_count(bench), storing_case(bench), "hold"
    workdir = bench.folder("runs", "storing", f"{n}-{rep}")
    try:
        with peers.aiodicom_serve(workdir, "--memory-budget", str(STORING_BUDGET), "--max-pdu", str(STORING_PDU),
                                  sync=False) as server:
            before = procstat.sample(server.pid, tree=False)
            seconds, done = timed(aiodicom_cli("load", peers.HOST, str(server.port), "--aec", server.aet, "--op",
                                               "store", "--size", "256k", "-c", str(n), "--count", str(2 * n),
                                               "--json", "--no-progress", "--timeout", "120"), timeout=1200)
            peak = procstat.peak_rss(server.pid)
            if before is None or peak is None:
                raise RuntimeError("the server ended during the run")
            growth = (peak - before.rss) / (1 << 20)
            report = load_json(done)
        bench.record(scenario, case, AIODICOM, "MiB peak RSS growth", round(growth, 1), transferred=int(report["ok"]),
                     expected=2 * n, stores_per_s=round(report["ops_per_s"], 1))
        if report["errors"]:
            bench.measure(scenario, case, AIODICOM, "MiB peak RSS growth").errors.append(
                f"{report['errors']} failed: {report['errors_by_kind']}")
    except Exception as exc:
        bench.fail(scenario, case, AIODICOM, "MiB peak RSS growth", f"{type(exc).__name__}: {exc}", expected=2 * n)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def hold_ratios(bench: Bench) -> None:
    n = max(hold_counts(bench)[AIODICOM])
    case = f"{n:,} held"
    bench.ratios += [
        Ratio(f"RSS per association, {n:,} held (bytes, ≤ 20 KB)", "hold", case, AIODICOM, None, 20 * 1024,
              at_most=True),
        Ratio(f"idle CPU, {n:,} held (%, near zero)", "hold", f"{case}: idle CPU", AIODICOM, None, 2.0, at_most=True),
        Ratio(f"echo p99 while {n:,} held (ms, < 50)", "hold", f"{case}: echo p99", AIODICOM, None, 50.0,
              at_most=True),
    ]
    n = storing_count(bench)
    bound = (STORING_BUDGET + n * STORING_PER_ASSOCIATION) / (1 << 20)
    bench.ratios.append(Ratio(f"peak RSS growth, {n:,} storing at once (MiB, ≤ budget + 96 KiB each = {bound:.0f})",
                              "hold", storing_case(bench), AIODICOM, None, bound, at_most=True))
    p = max(hold_counts(bench)[PYNETDICOM])
    bench.ratios.append(Ratio(f"RSS per association: pynetdicom / aiodicom ({p} held)", "hold", f"{p:,} held",
                              PYNETDICOM, AIODICOM, 1.0, denominator_case=case))
