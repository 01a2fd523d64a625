"""`aiodicom serve` raises its own open-file soft limit to the hard limit at start, and says so when that limit caps
--max-associations (issue 6, target 4). The server is started with a low soft limit (set in the process that then
execs it, so nothing is raised for it by this test process); what it ends up with is read from /proc/PID/limits.
"""

from __future__ import annotations

import json
import re
import resource
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.peers import HOST, Running, aiodicom, aiodicom_serve

pytestmark = pytest.mark.interop

if not Path("/proc/self/limits").exists():
    pytest.skip("needs Linux /proc/PID/limits", allow_module_level=True)

CAP_WARNING = "open-file limit caps concurrent associations"
HEADROOM = 64  # descriptors the server keeps for itself beyond one per association (aiodicom/net/server.py)


def with_nofile(soft: int, hard: int) -> tuple[str, ...]:
    """An argv prefix: set RLIMIT_NOFILE to (soft, hard), then exec the rest of the command in the same process."""
    script = ("import os, resource, sys; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
              "os.execv(sys.argv[3], sys.argv[3:])")
    return (sys.executable, "-c", script, str(soft), str(hard))


def nofile_of(pid: int) -> tuple[int, int]:
    """(soft, hard) open-file limit of a running process, as the kernel reports it."""
    text = Path(f"/proc/{pid}/limits").read_text()
    m = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    assert m, text
    return int(m[1]), int(m[2])


def log_events(server: Running, event: str) -> list[dict[str, Any]]:
    lines = (line for line in server.output().splitlines() if line.startswith("{"))
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def our_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return sys.maxsize if hard == resource.RLIM_INFINITY else hard


def test_serve_raises_its_soft_limit_to_the_hard_limit(tmp_path: Path) -> None:
    hard = min(4096, our_hard_limit())
    soft = min(256, hard // 4)
    max_associations = hard - HEADROOM - 1  # fits under the raised limit: no warning
    with aiodicom_serve(tmp_path, "--max-associations", str(max_associations),
                        wrapper=with_nofile(soft, hard)) as server:
        limits = nofile_of(server.proc.pid)
        echoed = aiodicom("echo", HOST, str(server.port), "--aec", "AIODICOM")  # answered: the start-up log is out
        listening = log_events(server, "listening")
        warnings = log_events(server, CAP_WARNING)
    assert limits == (hard, hard), f"started with soft {soft}: the server did not raise it to {hard}"
    assert echoed.returncode == 0, echoed.stderr
    assert [e["open_files_limit"] for e in listening] == [hard]
    assert warnings == []


def test_serve_says_when_the_hard_limit_caps_max_associations(tmp_path: Path) -> None:
    hard = min(1024, our_hard_limit())
    soft = min(256, hard // 4)
    max_associations = hard  # more than the limit leaves room for, with the server's own descriptors
    with aiodicom_serve(tmp_path, "--max-associations", str(max_associations),
                        wrapper=with_nofile(soft, hard)) as server:
        limits = nofile_of(server.proc.pid)
        echoed = aiodicom("echo", HOST, str(server.port), "--aec", "AIODICOM")  # answered: the start-up log is out
        warnings = log_events(server, CAP_WARNING)
    assert echoed.returncode == 0, echoed.stderr
    assert limits == (hard, hard)
    assert len(warnings) == 1, server.output()
    w = warnings[0]
    assert (w["limit"], w["hard_limit"], w["max_associations"]) == (hard, hard, max_associations)
    assert w["level"] == "warning"
