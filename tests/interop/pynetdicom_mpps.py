"""pynetdicom as a Modality Performed Procedure Step SCU or SCP, for interop tests, run as its own process.

    python pynetdicom_mpps.py scu HOST PORT OP... [--aet A] [--aec B] [--uid UID] [--study-uid U] [--sps-id S]
                                                  [--accession N]
        OP: create | progress | complete | discontinue | late-set, run in order on one association. Each prints one
        JSON line: {"op": ..., "status": <int>, "comment": ..., "error_id": ..., "uid": ...}. `create` makes a new
        instance (its UID then used by the next OPs); without it --uid names an existing one.
    python pynetdicom_mpps.py scp --port P --out DIR [--aet A]
        An MPPS SCP keeping each instance as OUT/<SOP Instance UID>.json (DICOM JSON model), rewritten atomically
        after every accepted N-CREATE/N-SET; an N-SET once the step is COMPLETED or DISCONTINUED gets 0x0110.

Exit codes: 0 when every OP got the status it should have (late-set a failure, the others Success), 1 otherwise,
3 when no association.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

EXPECTED_FAILURE = {"late-set"}


def create_attributes(args: argparse.Namespace) -> Dataset:
    """Every Type 1 and 2 attribute of PS3.4 Table F.7.2-1 (N-CREATE), built the way pynetdicom's docs show."""
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = args.study_uid or generate_uid()
    step.ReferencedStudySequence = []
    step.AccessionNumber = args.accession
    step.RequestedProcedureID = "RP1"
    step.RequestedProcedureDescription = "CT HEAD"
    step.ScheduledProcedureStepID = args.sps_id
    step.ScheduledProcedureStepDescription = "HEAD PLAIN"
    step.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = "PYNETDICOM^MPPS"
    ds.PatientID = "PYN-1"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "O"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS-PYN"
    ds.PerformedStationAETitle = args.aet
    ds.PerformedStationName = "PYN STATION"
    ds.PerformedLocation = "ROOM 1"
    ds.PerformedProcedureStepStartDate = "20240301"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "HEAD"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def series_item() -> Dataset:
    item = Dataset()
    item.PerformingPhysicianName = ""
    item.ProtocolName = "HEAD ROUTINE"
    item.OperatorsName = ""
    item.SeriesInstanceUID = generate_uid()
    item.SeriesDescription = "AXIAL"
    item.RetrieveAETitle = ""
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = generate_uid()
    item.ReferencedImageSequence = [image]
    item.ReferencedNonImageCompositeSOPInstanceSequence = []
    return item


def modifications(op: str) -> Dataset:
    ds = Dataset()
    if op == "progress":
        ds.PerformedProcedureStepDescription = "HEAD WITH CONTRAST"
    elif op in ("complete", "discontinue"):
        ds.PerformedProcedureStepStatus = "COMPLETED" if op == "complete" else "DISCONTINUED"
        ds.PerformedProcedureStepEndDate = "20240301"
        ds.PerformedProcedureStepEndTime = "104500"
        ds.PerformedSeriesSequence = [series_item()]
    else:  # late-set
        ds.PerformedProcedureStepDescription = "AFTER THE END"
    return ds


def scu(args: argparse.Namespace) -> int:
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(MPPS)
    assoc = ae.associate(args.host, args.port, ae_title=args.aec)
    if not assoc.is_established:
        print("association failed", file=sys.stderr, flush=True)
        return 3
    uid, ok = args.uid, True
    try:
        for op in args.ops:
            if op == "create":
                uid = generate_uid()
                status, _ = assoc.send_n_create(create_attributes(args), MPPS, uid)
            else:
                status, _ = assoc.send_n_set(modifications(op), MPPS, uid)
            code = int(status.Status) if status and "Status" in status else -1
            print(json.dumps({"op": op, "status": code, "comment": status.get("ErrorComment") if status else None,
                              "error_id": status.get("ErrorID") if status else None, "uid": uid}), flush=True)
            ok = ok and ((code != 0) if op in EXPECTED_FAILURE else (code == 0))
    finally:
        assoc.release()
    return 0 if ok else 1


class Store:
    """MPPS instances in memory, mirrored to JSON files a test can read at any time."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.instances: dict[str, Dataset] = {}
        self.lock = threading.Lock()

    def save(self, uid: str, ds: Dataset) -> None:
        self.instances[uid] = ds
        tmp = self.out / f".{uid}.json"
        tmp.write_text(json.dumps(ds.to_json_dict()))
        os.replace(tmp, self.out / f"{uid}.json")

    def create(self, event) -> tuple[Dataset, Dataset | None]:
        uid = str(event.request.AffectedSOPInstanceUID or generate_uid())
        ds = event.attribute_list
        with self.lock:
            if uid in self.instances:
                return failure(0x0111, "duplicate"), None
            if ds.get("PerformedProcedureStepStatus") != "IN PROGRESS":
                return failure(0x0106, "status must be IN PROGRESS"), None
            ds.SOPClassUID, ds.SOPInstanceUID = MPPS, uid
            self.save(uid, ds)
        status = Dataset()
        status.Status = 0
        status.AffectedSOPInstanceUID = uid
        return status, ds

    def set(self, event) -> tuple[Dataset, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        with self.lock:
            ds = self.instances.get(uid)
            if ds is None:
                return failure(0x0112, "no such instance"), None
            if ds.PerformedProcedureStepStatus != "IN PROGRESS":
                status = failure(0x0110, "Performed Procedure Step Object may no longer be updated")
                status.ErrorID = 0xA710
                return status, None
            ds.update(event.modification_list)
            self.save(uid, ds)
        status = Dataset()
        status.Status = 0
        return status, ds


def failure(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment
    return status


def scp(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    store = Store(args.out)
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_supported_context(MPPS)
    print(f"listening on {args.port} as {args.aet}", flush=True)
    ae.start_server(("127.0.0.1", args.port), block=True,
                    evt_handlers=[(evt.EVT_N_CREATE, store.create), (evt.EVT_N_SET, store.set)])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("scu")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("ops", nargs="+", choices=["create", "progress", "complete", "discontinue", "late-set"])
    s.add_argument("--aet", default="PYNETDICOM")
    s.add_argument("--aec", default="AIODICOM")
    s.add_argument("--uid")
    s.add_argument("--study-uid")
    s.add_argument("--sps-id", default="")
    s.add_argument("--accession", default="")
    c = sub.add_parser("scp")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--aet", default="PYNETDICOM")
    c.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    return scu(args) if args.role == "scu" else scp(args)


if __name__ == "__main__":
    sys.exit(main())
