"""`aiodicom serve --workers 2`: two processes on one port sharing one storage folder and its index, and each of
them serving associations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.dicomdata import generated_series
from tests.peers import HOST, Running, aiodicom, aiodicom_serve, storescu, wait_until
from tests.rawdicom import SUCCESS, VERIFICATION, AsyncRawClient, ProposedContext

pytestmark = pytest.mark.interop

HELD = 40  # associations open at once: the kernel hashes each connection to one of the two listening sockets, so
#            both processes get some (all to one: probability 2 x 2^-40)
TCP_ESTABLISHED = "01"  # the state column of /proc/net/tcp


def log_events(server: Running, event: str) -> list[dict]:
    lines = (line for line in server.output().splitlines() if line.startswith("{"))
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def connections_held(pid: int, port: int) -> int:
    """How many established TCP connections to local `port` process `pid` holds: its descriptors' socket inodes
    matched against the kernel's table (/proc/net/tcp: local address, remote address, state, ..., inode)."""
    inodes = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == TCP_ESTABLISHED:
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed while we look
            held += os.readlink(fd) in inodes
    return held


async def hold_and_attribute(port: int, pids: list[int]) -> tuple[list[int], list[int]]:
    """Open HELD associations and keep them all open while reading which process holds each one's socket; then
    echo on each and release it. (associations per process, echo statuses)."""
    clients: list[AsyncRawClient] = []
    try:
        for _ in range(HELD):
            clients.append(await AsyncRawClient.connect(HOST, port, timeout=30))
        await asyncio.gather(*(c.associate("AIODICOM", f"HOLD{i}", [ProposedContext(1, VERIFICATION)])
                               for i, c in enumerate(clients)))
        # every association is accepted, so its socket is in the descriptor table of the process that accepted it
        per_process = [connections_held(pid, port) for pid in pids]
        statuses = await asyncio.gather(*(c.echo(1) for c in clients))
        await asyncio.gather(*(c.release() for c in clients))
        return per_process, list(statuses)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def test_two_workers_store_and_index_everything_four_senders_send(tmp_path: Path) -> None:
    batches = [generated_series(tmp_path / f"data{n}", 15, pixel_bytes=8 * 1024, prefix=f"w{n}") for n in range(4)]
    with aiodicom_serve(tmp_path / "serve", "--workers", "2") as server:
        # the port answers once the first process listens; the worker binds it a moment later
        wait_until(lambda: len(log_events(server, "listening")) == 2, what="both processes listening")
        pids = [server.proc.pid, *(e["pid"] for e in log_events(server, "worker started"))]
        assert len(pids) == 2
        per_process, statuses = asyncio.run(hold_and_attribute(server.port, pids))
        assert sum(per_process) == HELD, per_process
        assert all(per_process), f"one process held every association: {per_process}"
        assert statuses == [SUCCESS] * HELD
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda batch: storescu(server.port, [i.path for i in batch], aec="AIODICOM"),
                                    batches))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
        for batch in batches:  # every instance on disk, and in the index shared by both workers
            assert all(inst.stored_path(server.storage).exists() for inst in batch)
            study, series = batch[0].study_uid, batch[0].series_uid
            found = aiodicom("find", HOST, str(server.port), "--aec", "AIODICOM", "--json",
                             "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study}",
                             "-k", f"SeriesInstanceUID={series}", "-k", "SOPInstanceUID")
            assert found.returncode == 0, found.stderr
            assert found.stdout.count('"00080018"') == len(batch)
        server.stop(signal.SIGTERM)
        log = server.output()
    assert log.count('"event": "listening"') == 2
    # with workers every line says which process wrote it: both served associations
    accepted = [json.loads(line) for line in log.splitlines() if '"association accepted"' in line]
    assert {a.get("pid") for a in accepted} == set(pids)
    assert '"event": "worker stopped"' in log and '"exit_code": 0' in log
    assert server.proc.returncode == 0


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    done = aiodicom("serve", "--port", "0", "--workers", "2", "--storage", str(tmp_path / "s"))
    assert done.returncode == 2 and "fixed --port" in done.stderr
