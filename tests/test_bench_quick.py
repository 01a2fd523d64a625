"""`python -m bench --quick` still works: every scenario runs against every peer and transfers what it should.

Only completion is asserted (counts received, statuses, associations established), never a speed: the figures of a
smoke run on a shared CI machine mean nothing. The full run (`python -m bench`) is what the README's table comes from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import REPO, base_env, require_dcmtk, require_tool

pytestmark = pytest.mark.interop

SCENARIOS = {"receive", "receive x4", "send", "saturation", "associations/s", "hold", "find"}


def test_quick_bench_completes_every_scenario(tmp_path: Path) -> None:
    for tool in ("storescu", "storescp", "dcmqrscp", "dcmqridx"):
        require_dcmtk(tool)
    if not Path("/usr/sbin/Orthanc").exists():
        require_tool("Orthanc")
    pytest.importorskip("pynetdicom")
    pytest.importorskip("matplotlib")
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), "--workdir", str(tmp_path)],
                          cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    report = json.loads((out / "latest.json").read_text())
    incomplete = [f"{m['scenario']} / {m['case']} / {m['target']}: {m['errors'] or m['transferred']}"
                  for m in report["measures"] if not m["complete"]]
    assert not incomplete, "\n".join(incomplete) + "\n" + done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert {m["scenario"] for m in report["measures"]} == SCENARIOS
    for m in report["measures"]:
        assert m["values"] and all(v >= 0 for v in m["values"]), m
        assert m["transferred"] == m["expected"], m  # per repetition: what arrived is what was sent
    targets = {(m["scenario"], m["target"]) for m in report["measures"]}
    for peer in ("DCMTK storescp", "Orthanc", "pynetdicom storescp", "aiodicom serve (sync on)", "aiodicom discard",
                 "fsync ceiling"):
        assert ("receive", peer) in targets
    assert ("receive x4", "aiodicom serve (sync on, --sync-method syncfs)") in targets
    assert all(t["value"] is not None for t in report["targets"]), report["targets"]
    assert (out / "latest.png").stat().st_size > 10_000
    assert report["machine"]["cores"] >= 1 and report["quick"] is True


def test_route_bench_runs_both_ways_and_everything_arrives(tmp_path: Path) -> None:
    """bench/route_bench.py (issue 7's figure): direct and routed, both destinations, two router processes.
    It raises (non-zero exit) unless every instance sent is stored at the destination."""
    require_dcmtk("storescu")
    require_dcmtk("storescp")
    done = subprocess.run([sys.executable, "bench/route_bench.py", "--senders", "2", "--instances-per-sender", "3",
                           "--repeat", "1", "--workers", "2", "--workdir", str(tmp_path)],
                          cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "destination storescp" in done.stdout and "destination serve" in done.stdout, done.stdout
    assert "routed/direct:" in done.stdout
