"""Basic Worklist Management SCP: the Modality Worklist Information Model - FIND (PS3.4 Annex K).

Worklist items live in the workflow database (`archive/workflow_db.py`). They come from the API,
from `aiodicom worklist add`, and from a folder of DCMTK `wlmscpfs`-style files (`.wl` or `.dcm`,
one data set each) that `WorklistFolder` polls and re-reads when a file changes. Each Scheduled
Procedure Step is one worklist item (K.6). A C-FIND identifier is matched with the shared C-FIND
matching rules (C.2.2.2, reused by K.2.2.1), sequence matching included, so a modality asking for
its Scheduled Station AE Title and a Start Date range gets exactly its steps, each answer holding
exactly the keys asked for, at both levels. Matches stream as Pending responses; a C-CANCEL ends
the stream with Cancel.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pydicom
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from ..archive.matching import Query, QueryError, compile_query
from ..archive.workflow_db import WorkflowDb
from ..dimse import status as st
from ..dimse.messages import CFindRQ
from ..log import get_logger
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..uids import (
    MODALITY_WORKLIST_FIND,
    PATIENT_ROOT_FIND,
    PATIENT_STUDY_ONLY_FIND,
    STUDY_ROOT_FIND,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from .query import FindOptions
from .router import SopClassRouter

WORKLIST_SUFFIXES: Final = (".wl", ".dcm")
# Type 1 return keys of Table K.6-1 (R/1 and O/1): an item without them is served, but logged, since a
# modality may refuse it (DCMTK's wlmscpfs silently skips such items).
TYPE1_KEYS: Final = ("PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID")
TYPE1_STEP_KEYS: Final = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                          "ScheduledProcedureStepStartTime", "Modality", "ScheduledProcedureStepID")


class MalformedWorklistFile(ValueError):
    """A worklist file that cannot be read as worklist items."""


def answer_worklist_negotiation(info: bytes) -> bytes:
    """K.4.1.1.2 reuses C.5.1.1.2: byte 1 (relational queries) means nothing for a single-level model
    (K.1.1 note 2) and is 0; combined date-time, fuzzy PN and timezone adjustment are granted when asked."""
    granted = [0] + [1 if b == 1 else 0 for b in info[1:4]]
    return bytes(granted[: max(len(info[:4]), 1)])


def check_identifier(identifier: Dataset) -> None:
    """PS3.4 C.2.2.2.6, K.6.1.2: a sequence key holds one item (the worklist item has one step)."""
    for elem in identifier:
        if elem.VR == "SQ" and elem.value is not None and len(elem.value) > 1:
            raise QueryError(elem.keyword or str(elem.tag), f"{len(elem.value)} items",
                             "a sequence key holds a single item")


def worklist_response(query: Query, item: Dataset) -> Dataset:
    """The answer for one item: exactly the requested keys (K.6.1.2.2: a requested key without a value
    is returned empty), with Specific Character Set when a value needs more than ASCII."""
    response = query.response(item)
    for elem in response.iterall():
        value = elem.value
        if value is not None and elem.VR != "SQ" and not str(value).isascii():
            response.SpecificCharacterSet = "ISO_IR 192"
            break
    return response


def missing_type1(item: Dataset) -> list[str]:
    missing = [k for k in TYPE1_KEYS if not item.get(k)]
    for step in item.get("ScheduledProcedureStepSequence") or ():
        missing += [f"ScheduledProcedureStepSequence>{k}" for k in TYPE1_STEP_KEYS if not step.get(k)]
    return missing


def split_items(ds: Dataset) -> list[Dataset]:
    """One worklist item per Scheduled Procedure Step (PS3.4 K.6); ValueError when there is none."""
    steps = ds.get("ScheduledProcedureStepSequence")
    if not steps:
        raise ValueError("no Scheduled Procedure Step Sequence (0040,0100) item: not a worklist item")
    out = []
    for step in steps:
        item = Dataset()
        for elem in ds:
            if elem.tag.group != 0x0002 and elem.keyword != "ScheduledProcedureStepSequence":
                item.add(elem)
        item.ScheduledProcedureStepSequence = DicomSequence([step])
        out.append(item)
    return out


def read_worklist_file(path: str | os.PathLike[str]) -> list[Dataset]:
    """The worklist items of one file (with or without a PS3.10 header, as dump2dcm writes them)."""
    try:
        ds = pydicom.dcmread(path, force=True)
        for _ in ds.iterall():  # decode every element now: a damaged value fails here, not in a query
            pass
        return split_items(ds)
    except Exception as exc:  # pydicom raises many types for damaged files; all mean "skip this one"
        raise MalformedWorklistFile(f"{path}: {exc}") from exc


class WorklistService:
    """The Modality Worklist C-FIND SCP over a WorkflowDb."""

    def __init__(self, db: WorkflowDb, *, hide_completed: bool = True, case_insensitive_pn: bool = False,
                 timezone: str | None = None) -> None:
        self.db = db
        self.hide_completed = hide_completed  # a step whose MPPS is COMPLETED is no longer on the worklist
        self.case_insensitive_pn = case_insensitive_pn
        self.timezone = timezone  # our UTC offset ("+0100") for timezone query adjustment

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support([MODALITY_WORKLIST_FIND], UNCOMPRESSED_TRANSFER_SYNTAXES)
        dispatcher.extended[MODALITY_WORKLIST_FIND] = answer_worklist_negotiation
        router = SopClassRouter.for_dispatcher(dispatcher)
        previous = dispatcher.handlers.get(CFindRQ)
        if previous is not None and not router.routes.get(CFindRQ):
            # a Q/R C-FIND service registered directly: it keeps its SOP classes behind the router
            for uid in (PATIENT_ROOT_FIND, STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND):
                router.add(CFindRQ, uid, previous)
        router.add(CFindRQ, MODALITY_WORKLIST_FIND, self.find)

    def compile(self, identifier: Dataset, options: FindOptions | None = None) -> Query:
        """QueryError when a key cannot be matched (0xA900). Scheduled Procedure Step Start Date and
        Time are always matched as one date-time range: CP-601 keeps this worklist behaviour."""
        check_identifier(identifier)
        options = options or FindOptions()
        return compile_query(identifier, case_insensitive_pn=self.case_insensitive_pn or options.fuzzy_pn,
                             fuzzy_pn=options.fuzzy_pn, combined_datetime=True,
                             timezone_adjust=self.timezone if options.timezone_adjust else None)

    async def find(self, req: ServiceRequest) -> AsyncIterator[Dataset | Result]:
        identifier = req.dataset()
        if identifier is None:
            yield Result(status=st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, error_comment="C-FIND-RQ without identifier")
            return
        options = FindOptions.from_bytes(req.assoc.negotiated.extended.get(MODALITY_WORKLIST_FIND))
        try:
            query = self.compile(identifier, options)
        except QueryError as exc:
            fields = {"offending_elements": (_tag(exc.keyword),)} if _tag(exc.keyword) else {}
            yield Result(status=st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, error_comment=str(exc), fields=fields)
            return
        items = self.db.worklist(query, hide_completed=self.hide_completed,
                                 project=lambda item: worklist_response(query, item))
        async with contextlib.aclosing(items):
            async for response in items:
                if req.cancelled.is_set():
                    return  # the dispatcher answers Cancel (PS3.4 K.4.1.3.1)
                yield response


def _tag(keyword: str) -> int:
    return int(pydicom.datadict.tag_for_keyword(keyword) or 0)


@dataclass(frozen=True, slots=True)
class ScanResult:
    read: int  # files (re-)read
    items: int  # items they hold
    removed: int  # files gone (their items removed)
    malformed: tuple[str, ...]  # files skipped, with the reason


class WorklistFolder:
    """Keeps the database in step with a folder of worklist files: polls modification times (no extra
    dependency, works on every file system) and re-reads what changed. A malformed file is logged and
    skipped (its previous items removed), never fatal."""

    def __init__(self, db: WorkflowDb, folder: str | os.PathLike[str], *, interval: float = 2.0,
                 log: Any = None) -> None:
        self.db = db
        self.folder = Path(folder).absolute()
        self.interval = interval
        self.log = log or get_logger(worklist_folder=str(self.folder))
        self._bad: dict[str, tuple[int, int]] = {}  # malformed file → (mtime_ns, size) it had when read

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Scan now (the worklist is complete when `started` is signalled), then every `interval`."""
        if not self.folder.is_dir():
            self.log.warning("worklist folder does not exist (yet): watching for it")
        await self._scan_logged()
        task_status.started()
        while True:
            await anyio.sleep(self.interval)
            await self._scan_logged()

    async def _scan_logged(self) -> None:
        try:
            result = await self.scan()
        except Exception:
            self.log.exception("worklist folder scan failed")
            return
        if result.read or result.removed:
            self.log.info("worklist folder re-indexed", files=result.read, items=result.items,
                          removed=result.removed, malformed=len(result.malformed))

    async def scan(self) -> ScanResult:
        files = await anyio.to_thread.run_sync(_list_files, self.folder)
        known = await self.db.sources()  # file items from a folder watched before are stale too: removed below
        read = items = removed = 0
        malformed: list[str] = []
        for path, (mtime_ns, size) in sorted(files.items()):
            if known.get(path) == mtime_ns or self._bad.get(path) == (mtime_ns, size):
                continue
            try:
                found = await anyio.to_thread.run_sync(read_worklist_file, path)
            except MalformedWorklistFile as exc:
                self._bad[path] = (mtime_ns, size)
                malformed.append(str(exc))
                self.log.warning("malformed worklist file skipped", path=path, error=str(exc))
                if path in known:
                    await self.db.remove_source(path)
                continue
            self._bad.pop(path, None)
            for item in found:
                if missing := missing_type1(item):
                    self.log.warning("worklist item lacks Type 1 attributes", path=path, missing=missing)
            await self.db.replace_source(path, found, mtime_ns=mtime_ns)
            read, items = read + 1, items + len(found)
        for path in known.keys() - files.keys():
            await self.db.remove_source(path)
            removed += 1
        for path in self._bad.keys() - files.keys():
            del self._bad[path]
        return ScanResult(read, items, removed, tuple(malformed))


def _list_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Worklist files under folder (sub-folders too: wlmscpfs keeps one per AE title), by absolute path."""
    out: dict[str, tuple[int, int]] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.lower().endswith(WORKLIST_SUFFIXES) and not name.startswith("."):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):  # removed while we looked
                    info = os.stat(path)
                    out[path] = (info.st_mtime_ns, info.st_size)
    return out


def install(dispatcher: Dispatcher, db: WorkflowDb, **kwargs: Any) -> WorklistService:
    service = WorklistService(db, **kwargs)
    service.install(dispatcher)
    return service
