"""Storage Commitment Push Model (PS3.4 Annex J) between aiodicom and pynetdicom in both directions: the report on the
requesting association and on a new one (SCP/SCU role selection), failure reasons per instance, the `aiodicom
commit` exit codes, and a request that outlives a restart of `aiodicom serve`."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.dicomdata import generated_dataset, write_part10
from tests.peers import (
    HOST,
    INTEROP,
    Running,
    aiodicom,
    aiodicom_serve,
    free_port,
    run,
    running,
    single_error_line,
    wait_until,
)

pytestmark = pytest.mark.interop

SCRIPT = INTEROP / "pynetdicom_commitment.py"
SC = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT = "1.2.840.10008.1.2.1"


def make_files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_part10(generated_dataset(pixel_bytes=64), folder / f"{i}.dcm", EXPLICIT) for i in range(n)]


def ref(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return f"{ds.SOPClassUID}:{ds.SOPInstanceUID}"


def store(port: int, files: list[Path], aec: str = "AIODICOM") -> None:
    done = aiodicom("store", HOST, str(port), *map(str, files), "--aec", aec, "--no-progress")
    assert done.returncode == 0, done.stderr


def scu_argv(port: int, *refs: str, **options: object) -> list[str]:
    argv = [sys.executable, str(SCRIPT), "scu", HOST, str(port), *refs]
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def pynetdicom_commitment_scp(workdir: Path, have: list[str], **options: object) -> Iterator[Running]:
    pytest.importorskip("pynetdicom")
    workdir.mkdir(parents=True, exist_ok=True)
    have_file = workdir / "have.json"
    have_file.write_text(json.dumps([r.split(":") for r in have]))
    port = free_port()
    argv = [sys.executable, str(SCRIPT), "scp", "--port", str(port), "--have", str(have_file)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    with running(argv, port=port, workdir=workdir, name="pynetdicom-commitment") as server:
        yield server


# --- pynetdicom SCU → aiodicom serve -----------------------------------------------------------------------------------

def test_pynetdicom_gets_the_report_on_its_association_with_failure_reasons(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    files = make_files(tmp_path / "src", 2)
    missing = f"{SC}:{generate_uid()}"
    unsupported = f"1.2.3.4.5:{generate_uid()}"
    with aiodicom_serve(tmp_path / "aiodicom") as server:
        store(server.port, files)
        done = run(scu_argv(server.port, *map(ref, files), missing, unsupported), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    action, report = json_lines(done.stdout)
    assert action["action_status"] == 0
    assert report["via"] == "same" and report["event_type"] == 2
    assert report["transaction_uid"] == action["transaction_uid"]
    assert sorted(":".join(c) for c in report["committed"]) == sorted(map(ref, files))
    assert sorted(report["failed"]) == sorted([[*missing.split(":"), 0x0112], [*unsupported.split(":"), 0x0122]])


def test_pynetdicom_that_released_gets_the_report_on_a_new_association(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    files = make_files(tmp_path / "src", 2)
    listen = free_port()
    with aiodicom_serve(tmp_path / "aiodicom", "--peer", f"PYNETDICOM={HOST}:{listen}") as server:
        store(server.port, files)
        done = run(scu_argv(server.port, *map(ref, files), listen_port=listen, release=True), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    _, report = json_lines(done.stdout)
    assert report["via"] == "new" and report["event_type"] == 1 and report["failed"] == []
    assert sorted(":".join(c) for c in report["committed"]) == sorted(map(ref, files))


def test_a_pending_request_is_answered_after_aiodicom_restarts(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    files = make_files(tmp_path / "src", 1)
    listen = free_port()  # nobody listens there until the server is down
    transaction = generate_uid()
    workdir, storage = tmp_path / "aiodicom", tmp_path / "storage"
    peer = ("--peer", f"PYNETDICOM={HOST}:{listen}")
    with aiodicom_serve(workdir, *peer, storage=storage) as server:
        store(server.port, files)
        asked = run(scu_argv(server.port, ref(files[0]), release=True, wait=0, transaction_uid=transaction))
        assert json_lines(asked.stdout)[0]["action_status"] == 0, asked.stdout + asked.stderr
        wait_until(lambda: "commitment report not delivered" in server.output(), timeout=30, what="a failed attempt")
    listener_argv = scu_argv(0, no_request=True, listen_port=listen, transaction_uid=transaction, wait=60)
    with running(listener_argv, port=listen, workdir=tmp_path / "listener", name="listener") as listener:
        with aiodicom_serve(workdir, *peer, storage=storage):
            listener.proc.wait(60)
        (report,) = json_lines(listener.output())
    assert listener.proc.returncode == 0
    assert report["transaction_uid"] == transaction and report["event_type"] == 1 and report["via"] == "new"


# --- aiodicom commit → pynetdicom SCP, and → aiodicom serve ------------------------------------------------------------

def test_aiodicom_commit_reads_the_report_on_its_association(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 3)
    with pynetdicom_commitment_scp(tmp_path / "pyn", [ref(f) for f in files[:2]], mode="same") as scp:
        done = aiodicom("commit", HOST, str(scp.port), *map(str, files), "--aec", "PYNETDICOM", "--wait", "30")
    assert done.returncode == 1, done.stderr  # one instance not committed
    lines = done.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines) == ["FAILED", "committed", "committed"]
    (failed,) = [line for line in lines if line.startswith("FAILED")]
    assert str(files[2]) in failed and "0x0112 No such object instance" in failed
    assert "2 committed, 1 failed" in done.stderr


def test_aiodicom_commit_takes_the_report_on_a_new_association_with_role_selection(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 2)
    listen = free_port()
    with pynetdicom_commitment_scp(tmp_path / "pyn", [ref(f) for f in files], mode="new",
                                   requestor_port=listen) as scp:
        done = aiodicom("commit", HOST, str(scp.port), *map(str, files), "--aec", "PYNETDICOM", "--aet", "MODALITY",
                        "--listen-port", str(listen), "--listen-host", HOST, "--wait", "30")
        assert "via new: 0x0000" in scp.output()
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["committed", "committed"]


def test_aiodicom_commit_against_aiodicom_serve(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 2)
    with aiodicom_serve(tmp_path / "aiodicom") as server:
        store(server.port, files[:1])
        partly = aiodicom("commit", HOST, str(server.port), *map(str, files), "--aec", "AIODICOM", "--wait", "30")
        store(server.port, files[1:])
        fully = aiodicom("commit", HOST, str(server.port), *map(str, files), "--aec", "AIODICOM", "--wait", "30")
    assert partly.returncode == 1 and "0x0112" in partly.stdout, partly.stdout + partly.stderr
    assert fully.returncode == 0, fully.stdout + fully.stderr


def test_aiodicom_commit_timeout_is_a_failure(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 1)
    # a peer that reports on a new association to a port nobody listens on: the report never arrives here
    with pynetdicom_commitment_scp(tmp_path / "pyn", [ref(files[0])], mode="new", requestor_port=free_port()) as scp:
        done = aiodicom("commit", HOST, str(scp.port), str(files[0]), "--aec", "PYNETDICOM", "--wait", "2")
    assert done.returncode == 1 and "no storage commitment report within 2 s" in done.stderr


def test_aiodicom_commit_reports_an_unreachable_peer_in_one_line(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 1)
    done = aiodicom("commit", HOST, str(free_port()), str(files[0]), "--aec", "NOBODY")
    assert done.returncode == 3
    assert "cannot connect" in single_error_line(done)
