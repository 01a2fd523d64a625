"""`aiodicom worklist add|list|remove`: the worklist items of a storage folder's workflow database.

The server (`aiodicom serve --storage DIR`) answers Modality Worklist queries from the same database,
so an item added here is on the worklist at once, whether the server runs or not (SQLite WAL).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..archive.workflow_db import API_SOURCE, WorkflowDb
from ..services.worklist import MalformedWorklistFile, missing_type1, read_worklist_file
from .common import EXIT_FAILURE_STATUS, EXIT_OK, EXIT_USAGE, add_log_options, fail, setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worklist", help="add, list and remove Modality Worklist items",
                       description="Manage the worklist items `aiodicom serve` answers C-FIND (worklist model) from.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add items from DICOM files (.wl as DCMTK's wlmscpfs reads them, or .dcm)",
                           description="Add each file's Scheduled Procedure Steps as worklist items; an item for "
                                       "the same step (study, accession, requested procedure, SPS ID) is replaced.")
    add.add_argument("files", nargs="+", metavar="FILE")
    lst = verbs.add_parser("list", help="list the items and the status their MPPS gave them")
    lst.add_argument("--json", action="store_true", help="print the items in the DICOM JSON model")
    rm = verbs.add_parser("remove", help="remove items added with `add` (files in a watched folder: delete the file)")
    rm.add_argument("sps_ids", nargs="+", metavar="SPS_ID", help="Scheduled Procedure Step ID (0040,0009)")
    for q in (add, lst, rm):
        q.add_argument("--storage", default="storage", metavar="DIR", help="storage folder (default ./storage)")
        add_log_options(q)
        q.set_defaults(func=main)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    if args.verb != "add" and not Path(args.storage).is_dir():  # a typo must not read as an empty worklist
        return fail(f"{args.storage}: no such storage folder (as given to serve --storage)", EXIT_USAGE)
    async with await WorkflowDb.open(Path(args.storage)) as db:
        if args.verb == "add":
            return await _add(db, args.files)
        if args.verb == "remove":
            removed = await db.remove_steps(args.sps_ids)
            print(f"{removed} item{'s' if removed != 1 else ''} removed", file=sys.stderr)
            return EXIT_OK if removed else EXIT_FAILURE_STATUS
        return await _list(db, args.json)


def _steps(item) -> list[tuple[str, tuple[str, str, str]]]:
    """(SPS ID, the step's identity besides it: study, accession, requested procedure) of each step."""
    ident = tuple(str(item.get(k, "")) for k in ("StudyInstanceUID", "AccessionNumber", "RequestedProcedureID"))
    return [(str(step.ScheduledProcedureStepID), ident) for step in item.get("ScheduledProcedureStepSequence") or ()
            if step.get("ScheduledProcedureStepID")]


async def _add(db: WorkflowDb, files: list[str]) -> int:
    code = EXIT_OK
    scheduled: dict[str, list[tuple[str, tuple[str, str, str]]]] = {}
    async for e in db.entries():
        for sps, ident in _steps(e.dataset):
            scheduled.setdefault(sps, []).append((e.source, ident))
    for path in files:
        try:
            items = await anyio.to_thread.run_sync(read_worklist_file, path)
        except MalformedWorklistFile as exc:
            code = fail(f"not added: {exc}", EXIT_FAILURE_STATUS)
            continue
        for item in items:
            if missing := missing_type1(item):
                print(f"{path}: warning: Type 1 attributes missing: {', '.join(missing)}", file=sys.stderr)
            for sps, ident in _steps(item):
                # Another item with this step ID (not this same step added before, which is replaced): an MPPS
                # that references the ID would be ambiguous.
                others = [src for src, other in scheduled.get(sps, []) if (src, other) != (API_SOURCE, ident)]
                if others:
                    print(f"{path}: warning: Scheduled Procedure Step ID {sps} is already in the worklist "
                          f"(from {others[0]})", file=sys.stderr)
                scheduled.setdefault(sps, []).append((API_SOURCE, ident))
        await db.add_items(items)
        print(f"{path}: {len(items)} item{'s' if len(items) != 1 else ''} added")
    return code


_COLUMNS = (("STATUS", None, "ScheduledProcedureStepStatus"), ("SPS ID", None, "ScheduledProcedureStepID"),
            ("STATION", None, "ScheduledStationAETitle"), ("MODALITY", None, "Modality"),
            ("START", None, "ScheduledProcedureStepStartDate"), ("", None, "ScheduledProcedureStepStartTime"),
            ("PATIENT ID", "PatientID", None), ("PATIENT", "PatientName", None),
            ("ACCESSION", "AccessionNumber", None))


async def _list(db: WorkflowDb, as_json: bool) -> int:
    entries = [e async for e in db.entries()]
    if as_json:
        print(json.dumps([{"source": e.source, "step_status": e.step_status, "item": e.dataset.to_json_dict()}
                          for e in entries], indent=1))
        return EXIT_OK
    rows = []
    for e in entries:
        step = e.dataset.ScheduledProcedureStepSequence[0]
        row = [_text(e.dataset.get(top) if top else step.get(inner)) for _, top, inner in _COLUMNS]
        row[0] = row[0] or "-"  # no status in the item and no MPPS yet: C-FIND returns it empty too
        row[4] = f"{row[4]} {row.pop(5)}".strip()
        rows.append(row + [e.source])
    names = [n for n, _, _ in _COLUMNS if n] + ["SOURCE"]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    for r in [names, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"{len(rows)} item{'s' if len(rows) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
