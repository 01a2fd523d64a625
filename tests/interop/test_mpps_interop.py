"""Modality Performed Procedure Step (PS3.4 F.7) between aiodicom and pynetdicom in both directions, and the whole
life of a scheduled step through real processes: on the worklist (DCMTK findscu -W), IN PROGRESS, a server restart,
COMPLETED, gone from the worklist (or kept, marked COMPLETED), and final."""

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
from tests.interop.test_worklist_interop import AET, ITEMS, keys, write_folder
from tests.peers import HOST, INTEROP, Running, aiodicom, aiodicom_serve, free_port, run, running, wait_until
from tests.qrpeers import findscu

pytestmark = pytest.mark.interop

FINAL_COMMENT = "Performed Procedure Step Object may no longer be updated"  # PS3.4 Table F.7.2-2
SCRIPT = INTEROP / "pynetdicom_mpps.py"


def pynetdicom_mpps_scu(port: int, *ops: str, **options: str) -> tuple[int, list[dict]]:
    argv = [sys.executable, str(SCRIPT), "scu", HOST, str(port), *ops]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", value]
    done = run(argv, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(ops), done.stdout + done.stderr
    return done.returncode, lines


@contextlib.contextmanager
def pynetdicom_mpps_scp(workdir: Path) -> Iterator[Running]:
    pytest.importorskip("pynetdicom")
    port = free_port()
    out = workdir / "mpps"
    argv = [sys.executable, str(SCRIPT), "scp", "--port", str(port), "--aet", "PYNETDICOM", "--out", str(out)]
    with running(argv, port=port, workdir=workdir, name="pynetdicom-mpps", storage=out) as server:
        yield server


def instance_json(server: Running, uid: str) -> pydicom.Dataset:
    return pydicom.Dataset.from_json((server.storage / f"{uid}.json").read_text())


# --- pynetdicom SCU → aiodicom serve -----------------------------------------------------------------------------------

def test_pynetdicom_runs_the_state_machine_against_aiodicom(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    with aiodicom_serve(tmp_path / "aiodicom") as server:
        code, lines = pynetdicom_mpps_scu(server.port, "create", "progress", "complete", "late-set")
        assert [line["status"] for line in lines] == [0, 0, 0, 0x0110], lines
        assert lines[-1]["comment"] == FINAL_COMMENT and lines[-1]["error_id"] == 0xA710
        assert code == 0

        code, lines = pynetdicom_mpps_scu(server.port, "create", "discontinue", "late-set")
        assert [line["status"] for line in lines] == [0, 0, 0x0110], lines

        # a step created by one association ends on another
        _, (created,) = pynetdicom_mpps_scu(server.port, "create")
        _, (done,) = pynetdicom_mpps_scu(server.port, "complete", uid=created["uid"])
        assert done["status"] == 0


# --- aiodicom mpps CLI → pynetdicom SCP --------------------------------------------------------------------------------

def test_aiodicom_mpps_cli_against_pynetdicom(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    series = generate_uid()
    files = [write_part10(generated_dataset(pixel_bytes=64, series_uid=series), images / f"{n}.dcm",
                          "1.2.840.10008.1.2.1") for n in range(2)]
    with pynetdicom_mpps_scp(tmp_path / "pyn") as scp:
        created = aiodicom("mpps", HOST, str(scp.port), "create", "--aec", "PYNETDICOM", "--aet", "CT01",
                           "--modality", "CT", "--patient-id", "P-7", "--patient-name", "DOE^JOHN",
                           "-k", "PerformedProcedureStepDescription=HEAD")
        assert created.returncode == 0, created.stderr
        uid = created.stdout.strip()
        wait_until(lambda: (scp.storage / f"{uid}.json").exists(), timeout=10, what="MPPS stored")
        ds = instance_json(scp, uid)
        assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
        assert ds.PerformedStationAETitle == "CT01" and ds.Modality == "CT" and ds.PatientID == "P-7"
        assert ds.PerformedProcedureStepDescription == "HEAD"

        done = aiodicom("mpps", HOST, str(scp.port), "complete", uid, *map(str, files), "--aec", "PYNETDICOM",
                        "--retrieve-ae", "ARCHIVE")
        assert done.returncode == 0, done.stderr
        ds = instance_json(scp, uid)
        assert ds.PerformedProcedureStepStatus == "COMPLETED" and ds.PerformedProcedureStepEndDate
        (item,) = ds.PerformedSeriesSequence
        assert item.SeriesInstanceUID == series and item.RetrieveAETitle == "ARCHIVE"
        assert {r.ReferencedSOPInstanceUID for r in item.ReferencedImageSequence} == {
            pydicom.dcmread(f).SOPInstanceUID for f in files}

        late = aiodicom("mpps", HOST, str(scp.port), "set", uid, "--aec", "PYNETDICOM",
                        "-k", "PerformedProcedureStepDescription=late")
        assert late.returncode == 1 and "0x0110" in late.stderr, late.stderr

        second = aiodicom("mpps", HOST, str(scp.port), "create", "--aec", "PYNETDICOM").stdout.strip()
        stopped = aiodicom("mpps", HOST, str(scp.port), "discontinue", second, "--reason", "110514",
                           "--aec", "PYNETDICOM")
        assert stopped.returncode == 0, stopped.stderr
        ds = instance_json(scp, second)
        assert ds.PerformedProcedureStepStatus == "DISCONTINUED"
        reason = ds.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
        assert (reason.CodeValue, reason.CodingSchemeDesignator) == ("110514", "DCM")
        assert reason.CodeMeaning == "Incorrect worklist entry selected"


def test_aiodicom_mpps_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    bad = aiodicom("mpps", HOST, "1", "complete", "not-a-uid")
    assert bad.returncode == 2 and "UID" in bad.stderr
    bad = aiodicom("mpps", HOST, "1", "discontinue", "1.2.3", "--reason", "999999")
    assert bad.returncode == 2 and "CID 9300" in bad.stderr


# --- a scheduled step's life, through aiodicom serve restarts ---------------------------------------------------------

def scheduled(port: int, out: Path) -> dict[str, str]:
    """SPS ID → Scheduled Procedure Step Status, as DCMTK findscu -W sees the worklist."""
    result = findscu(port, out, *keys(), "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus",
                     model="-W", aec=AET)
    assert result.done.returncode == 0, result.log
    return {str(r.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID):
            str(r.ScheduledProcedureStepSequence[0].get("ScheduledProcedureStepStatus") or "")
            for r in result.responses}


def test_a_scheduled_step_from_worklist_to_completed_across_restarts(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "wl")
    item_file = folder / AET / f"{ITEMS[2].sps_id}.wl"
    workdir, storage = tmp_path / "aiodicom", tmp_path / "storage"
    serve_args = ("--worklist", str(folder))
    with aiodicom_serve(workdir, *serve_args, storage=storage) as server:
        assert scheduled(server.port, tmp_path / "r1")[ITEMS[2].sps_id] == ""
        created = aiodicom("mpps", HOST, str(server.port), "create", "--aec", AET, "--worklist-item", str(item_file),
                           "--modality", "CT", "--aet", "CT2")
        assert created.returncode == 0, created.stderr
        uid = created.stdout.strip()
        assert scheduled(server.port, tmp_path / "r2")[ITEMS[2].sps_id] == "STARTED"

    with aiodicom_serve(workdir, *serve_args, storage=storage) as server:  # restarted: the step is still IN PROGRESS
        assert scheduled(server.port, tmp_path / "r3")[ITEMS[2].sps_id] == "STARTED"
        done = aiodicom("mpps", HOST, str(server.port), "complete", uid, "--aec", AET)
        assert done.returncode == 0, done.stderr
        remaining = scheduled(server.port, tmp_path / "r4")
        assert ITEMS[2].sps_id not in remaining and len(remaining) == len(ITEMS) - 1
        late = aiodicom("mpps", HOST, str(server.port), "set", uid, "--aec", AET,
                        "-k", "PerformedProcedureStepDescription=x")
        assert late.returncode == 1 and "0x0110" in late.stderr

    with aiodicom_serve(workdir, *serve_args, "--keep-completed", storage=storage) as server:
        assert scheduled(server.port, tmp_path / "r5")[ITEMS[2].sps_id] == "COMPLETED"
        late = aiodicom("mpps", HOST, str(server.port), "discontinue", uid, "--aec", AET)
        assert late.returncode == 1 and "0x0110" in late.stderr  # still final after a restart


def test_an_operation_mpps_does_not_define_is_answered_unrecognized_operation(tmp_path: Path) -> None:
    """N-GET of an MPPS (PS3.4 F.7 defines only N-CREATE and N-SET): the class is served, the operation is not one
    of its own, 0x0211 Unrecognized operation (PS3.7 C.4.2); it was 0x0118 No such SOP Class."""
    import anyio

    import aiodicom
    from aiodicom.dimse.messages import NGetRQ
    from aiodicom.services.mpps import MPPS_SOP_CLASS as MODALITY_PERFORMED_PROCEDURE_STEP

    async def ask(port: int) -> int:
        async with aiodicom.connect(HOST, port, called_ae="AIODICOM",
                                    contexts=[MODALITY_PERFORMED_PROCEDURE_STEP]) as assoc:
            rq = NGetRQ(message_id=3, requested_sop_class_uid=MODALITY_PERFORMED_PROCEDURE_STEP,
                        requested_sop_instance_uid="1.2.3.4")
            rsp, _ = await assoc.assoc.request(rq, assoc.context_for(MODALITY_PERFORMED_PROCEDURE_STEP))
            return rsp.status

    with aiodicom_serve(tmp_path) as server:
        assert anyio.run(ask, server.port) == 0x0211
