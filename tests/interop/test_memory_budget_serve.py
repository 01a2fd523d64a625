"""1,000 associations storing at once into one `aiodicom serve` with a small memory budget: every instance is
stored, the budget is really what held memory back (instances sent to disk at once, connections paused), and
the server's peak RSS stays within budget + what each association may hold by itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiodicom.load import procstat
from tests.peers import HOST, aiodicom, aiodicom_serve
from tests.rawdicom import raise_nofile_limit

pytestmark = [pytest.mark.interop, pytest.mark.slow]

N = 1_000
INSTANCES = 2_000
SIZE = 256 << 10
BUDGET = 4 << 20
MAX_PDU = 16_384
# What one association may hold outside the budget: the PDU it is assembling (a copy of at most --max-pdu,
# or the read it arrived in) and its own objects (measured ~36 KiB while storing). Without the budget the
# growth measured ~300 KiB per association here, with reads of up to 256 KiB pinned per association.
PER_ASSOCIATION = 2 * MAX_PDU + (64 << 10)


def test_1000_associations_storing_at_once_stay_within_the_memory_budget(tmp_path: Path) -> None:
    limit = raise_nofile_limit()  # inherited by the server and the load generator
    assert limit >= N + 256, f"RLIMIT_NOFILE hard limit {limit} is too low for {N} associations"
    args = ("--sync", "off", "--memory-budget", str(BUDGET), "--max-pdu", str(MAX_PDU),
            "--max-associations", str(2 * N), "--max-associations-per-host", str(2 * N),
            "--log-format", "json", "--log-level", "info")
    with aiodicom_serve(tmp_path, *args) as server:
        before = procstat.sample(server.proc.pid, tree=False)
        done = aiodicom("load", HOST, str(server.port), "--aec", "AIODICOM", "--op", "store", "--size", "256k",
                        "-c", str(N), "--count", str(INSTANCES), "--json", "--no-progress", timeout=600)
        peak = procstat.peak_rss(server.proc.pid)
        server.stop()
        log = server.output()
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] == INSTANCES and report["errors"] == 0, report["errors_by_kind"]
    assert report["statuses"] == {"0x0000": INSTANCES}
    stored = [p for p in (tmp_path / "storage").rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(stored) == INSTANCES
    assert all(p.stat().st_size > SIZE for p in stored[:50])

    stopped = [json.loads(line) for line in log.splitlines() if '"stopped"' in line]
    assert stopped, log[-2000:]
    assert stopped[-1]["memory_budget_refusals"] > 0  # instances went to disk at once for want of room
    assert stopped[-1]["memory_budget_pauses"] > 0  # and connections waited for it
    assert before is not None and peak is not None
    growth = peak - before.rss
    bound = BUDGET + N * PER_ASSOCIATION
    assert growth <= bound, f"peak RSS grew {growth >> 20} MiB, over the bound of {bound >> 20} MiB"
