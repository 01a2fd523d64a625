"""`aiodicom mpps HOST PORT create|set|complete|discontinue ...`: Modality Performed Procedure Step SCU.

    aiodicom mpps pacs 104 create --worklist-item rsp0001.dcm --modality CT     # prints the MPPS UID
    aiodicom mpps pacs 104 complete UID image1.dcm image2.dcm --retrieve-ae PACS
    aiodicom mpps pacs 104 discontinue UID --reason 110514
"""

from __future__ import annotations

import argparse
import sys

import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import Collection

from ..archive.uid import is_valid_uid
from ..net.client import connect
from ..scu.mpps import MppsFailed, MppsScu, in_progress, series_from_files
from ..services.mpps import MPPS_SOP_CLASS
from .common import EXIT_FAILURE_STATUS, EXIT_OK, EXIT_USAGE, add_client_options, fail, setup_logging, ssl_from_args
from .keys import KeySpecError, apply_key

ACTIONS = ("create", "set", "complete", "discontinue")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mpps", help="create and end Modality Performed Procedure Steps (N-CREATE, N-SET)",
                       description="MPPS SCU (PS3.4 F.7). create: a step IN PROGRESS, its SOP Instance UID printed; "
                                   "set UID: change attributes; complete UID [FILE...]: end it COMPLETED, the files "
                                   "listed as its Performed Series; discontinue UID: end it DISCONTINUED.")
    add_client_options(p)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("targets", nargs="*", metavar="UID [FILE...]",
                   help="the MPPS SOP Instance UID (set, complete, discontinue); for complete, the instances made")
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY=VALUE",
                   help="an attribute to send (keyword or gggg,eeee; Seq[0].Keyword for items), repeatable")
    g = p.add_argument_group("create")
    g.add_argument("--uid", help="SOP Instance UID of the new step (default: a new 2.25 UID)")
    g.add_argument("--worklist-item", metavar="FILE", help="the worklist item performed (e.g. a saved C-FIND answer)")
    g.add_argument("--modality", default="OT", help="Modality (0008,0060) (default OT)")
    g.add_argument("--station-aet", metavar="AET", help="Performed Station AE Title (default: --aet)")
    g.add_argument("--pps-id", help="Performed Procedure Step ID (default: from the time)")
    g.add_argument("--patient-id", help="Patient ID (without --worklist-item)")
    g.add_argument("--patient-name", help="Patient's Name (without --worklist-item)")
    g.add_argument("--study-uid", help="Study Instance UID (default: the worklist item's, or a new one)")
    g.add_argument("--description", default="", help="Performed Procedure Step Description")
    g = p.add_argument_group("complete and discontinue")
    g.add_argument("--retrieve-ae", default="", metavar="AET", help="where the instances listed can be retrieved")
    g.add_argument("--reason", metavar="CODE", help="discontinuation reason, a DCM code of CID 9300 (e.g. 110514)")
    p.set_defaults(func=main)


def _reason(code: str) -> Dataset:
    for concept in Collection("CID9300").concepts.values():
        if concept.value == code:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (concept.value, concept.scheme_designator,
                                                                            concept.meaning)
            return item
    raise KeySpecError(f"{code} is not a code of CID 9300 (Procedure Discontinuation Reasons), e.g. 110513")


def _keys(ds: Dataset, specs: list[str]) -> Dataset:
    for spec in specs:
        apply_key(ds, spec)
    return ds


def _request(args: argparse.Namespace) -> tuple[str | None, Dataset, list[str]]:
    """What to send: (UID, attribute or modification list, files), or KeySpecError/ValueError on bad usage."""
    if args.action == "create":
        if args.targets:
            raise ValueError("create takes no UID or files (use --uid)")
        item = pydicom.dcmread(args.worklist_item) if args.worklist_item else None
        patient = Dataset()
        patient.PatientID, patient.PatientName = args.patient_id or "", args.patient_name or ""
        ds = in_progress(station_aet=args.station_aet or args.aet, modality=args.modality, scheduled=item,
                         patient=patient, pps_id=args.pps_id, description=args.description, study_uid=args.study_uid)
        if args.uid and not is_valid_uid(args.uid):
            raise ValueError(f"--uid {args.uid!r} is not a UID")
        return args.uid, _keys(ds, args.key), []
    if not args.targets or not is_valid_uid(args.targets[0]):
        raise ValueError(f"{args.action} needs the MPPS SOP Instance UID first")
    uid, files = args.targets[0], args.targets[1:]
    if files and args.action != "complete":
        raise ValueError(f"{args.action} takes no files")
    if args.action == "set" and not args.key:
        raise ValueError("set needs -k KEY=VALUE")
    return uid, _keys(Dataset(), args.key), files


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    try:
        uid, ds, files = _request(args)
        reason = _reason(args.reason) if args.reason else None
        series = series_from_files(files, retrieve_ae=args.retrieve_ae) if files else []
    except (KeySpecError, ValueError, OSError, AttributeError, InvalidDicomError) as exc:
        return fail(str(exc), EXIT_USAGE)
    async with connect(args.host, args.port, calling_ae=args.aet, called_ae=args.aec, contexts=[MPPS_SOP_CLASS],
                       ssl_context=ssl_from_args(args), max_pdu=args.max_pdu, connect_timeout=args.timeout,
                       acse_timeout=args.timeout, dimse_timeout=args.dimse_timeout) as assoc:
        mpps = MppsScu(assoc)
        try:
            if args.action == "create":
                print(await mpps.create(ds, instance_uid=uid))
            elif args.action == "set":
                await mpps.update(uid, ds)  # type: ignore[arg-type]
            elif args.action == "complete":
                await mpps.complete(uid, performed_series=series, extra=ds)  # type: ignore[arg-type]
            else:
                await mpps.discontinue(uid, reason=reason, extra=ds)  # type: ignore[arg-type]
        except MppsFailed as exc:
            return fail(str(exc), EXIT_FAILURE_STATUS)
    if args.action != "create":
        print(f"{args.action}: {uid}", file=sys.stderr)
    return EXIT_OK

