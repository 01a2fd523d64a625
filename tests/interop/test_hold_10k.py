"""10,000 concurrent associations held by one `aiodicom serve` (issue 6, target 4): every one associated, every one
echoing every few seconds while all are held, every one released; the server's resident memory grows by at most
20 KB per association.

The client is `aiodicom load --hold` in its own process (it raises its own open-file limit); it reads the server's
RSS from /proc before opening (after a warm-up association) and once all are open, and its CPU while they idle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import HOST, Running, aiodicom, aiodicom_serve
from tests.rawdicom import raise_nofile_limit

pytestmark = [pytest.mark.interop, pytest.mark.slow]

N = 10_000
RSS_BUDGET = 20 * 1024  # bytes of server RSS per held association


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    limit = raise_nofile_limit()  # inherited by the server; each side needs a descriptor per association
    if limit < N + 256:
        message = (f"RLIMIT_NOFILE hard limit {limit} is too low for {N} associations (needs {N + 256}: "
                   "raise it with `ulimit -Hn` or the runner's nofile setting)")
        if os.environ.get("CI"):  # as tests/peers.py require_tool: under CI a missing prerequisite is a failure
            pytest.fail(message)
        pytest.skip(message)
    with aiodicom_serve(tmp_path, "--max-associations", str(2 * N), "--max-associations-per-host", str(2 * N),
                        "--sync", "off") as r:
        yield r


def test_10000_associations_held_echoing_with_bounded_memory(server: Running,
                                                            record_property: pytest.RecordProperty) -> None:
    done = aiodicom("load", HOST, str(server.port), "--aec", "AIODICOM", "--hold", str(N), "--echo-interval", "5",
                    "--idle", "3", "--echo-duration", "10", "--timeout", "120", "--server-pid", str(server.proc.pid),
                    "--json", "--no-progress", timeout=600)
    report = json.loads(done.stdout)
    s = report["server"]
    for key in ("rss_bytes_per_association", "cpu_percent_idle", "cpu_percent_echo"):
        record_property(key, s[key])
    record_property("echo_p99_ms", report["echo"]["latency_ms"]["p99"])
    print(f"\nRSS per association {s['rss_bytes_per_association']} B, idle CPU {s['cpu_percent_idle']} %, CPU while "
          f"echoing {s['cpu_percent_echo']} %, echo p99 {report['echo']['latency_ms']['p99']} ms, opened in "
          f"{report['phases_s']['open']} s")
    assert report["established"] == N, report["error_examples"]
    assert report["failed"] == 0 and not report["release_errors"], report["error_examples"]
    assert report["echo"]["errors"] == 0 and report["echo"]["failed_statuses"] == 0
    assert report["echo"]["ok"] >= N  # each association echoed at least once while all were held
    assert done.returncode == 0, done.stderr
    assert s["rss_bytes_per_association"] <= RSS_BUDGET, f"{s['rss_bytes_per_association']} bytes per association"
    assert server.proc.poll() is None
