"""The workflow database: worklist items, MPPS instances and pending storage commitment requests.

`workflow.sqlite` in the storage folder, in WAL mode so that readers never wait for the writer and
several processes (the server, `aiodicom worklist add`) can share it. Every statement runs in a
worker thread: writes on one connection behind a CapacityLimiter of one (each a short transaction),
reads on pooled connections behind their own limiter, streamed in chunks. Nothing blocks the loop.

Data sets are stored encoded (Explicit VR Little Endian) and decoded only where they are needed, in
the reader thread. A worklist item holds exactly one Scheduled Procedure Step (PS3.4 K.6: one
worklist item per step); a few of its attributes are copied into columns so that the keys a modality
always sends (station AE, modality, start date, patient ID, accession) narrow the search in SQL
before every key is matched in Python by `archive.matching`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import anyio.to_thread
from pydicom import Dataset

from aiodicom.archive.matching import Query, SequenceMatcher, SqlColumn, SqlFilter
from aiodicom.archive.sqlite_readers import ReaderPool
from aiodicom.archive.values import candidate_values, normalize_da
from aiodicom.dimse.dataset import EXPLICIT_VR_LITTLE_ENDIAN, EncodedDataset

T = TypeVar("T")
WORKFLOW_FILENAME: Final = "workflow.sqlite"
SCHEMA_VERSION: Final = 1
API_SOURCE: Final = "api"  # items added through the API or `aiodicom worklist add`, not from a watched file
_CHUNK: Final = 128

SCHEMA: Final = """
CREATE TABLE worklist_item (
    pk INTEGER PRIMARY KEY,
    source TEXT NOT NULL,                   -- the file the item came from, or 'api'
    item_key TEXT NOT NULL,                 -- unique within its source
    mtime_ns INTEGER NOT NULL DEFAULT 0,    -- of the file when read
    study_uid TEXT NOT NULL DEFAULT '', accession TEXT NOT NULL DEFAULT '', sps_id TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL DEFAULT '', modality TEXT NOT NULL DEFAULT '',
    station_aet TEXT NOT NULL DEFAULT '',   -- values joined with backslashes
    start_date TEXT NOT NULL DEFAULT '',    -- YYYYMMDD, as values.normalize_da
    dataset BLOB NOT NULL, added REAL NOT NULL,
    UNIQUE (source, item_key)
);
CREATE INDEX worklist_start ON worklist_item (start_date);
CREATE INDEX worklist_step ON worklist_item (sps_id);
CREATE TABLE step_state (                   -- Scheduled Procedure Step Status (0040,0020) an MPPS implies
    study_uid TEXT NOT NULL, accession TEXT NOT NULL, sps_id TEXT NOT NULL,
    status TEXT NOT NULL, mpps_uid TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (study_uid, accession, sps_id)
);
CREATE TABLE mpps (
    uid TEXT PRIMARY KEY, status TEXT NOT NULL, calling_ae TEXT NOT NULL DEFAULT '',
    dataset BLOB NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE commitment (
    transaction_uid TEXT PRIMARY KEY, calling_ae TEXT NOT NULL, request BLOB NOT NULL, received REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'reported')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
    event_type INTEGER, reported REAL
);
CREATE INDEX commitment_due ON commitment (state, next_attempt);
"""

# A step's state, found from a worklist row: the same Scheduled Procedure Step ID and the same study
# (or, when one side has no Study Instance UID, the same accession number).
_STEP_STATUS: Final = """(SELECT s.status FROM step_state s WHERE w.sps_id != '' AND s.sps_id = w.sps_id AND (
    (s.study_uid != '' AND s.study_uid = w.study_uid)
    OR (s.accession != '' AND s.accession = w.accession AND (s.study_uid = '' OR w.study_uid = '')))
    ORDER BY s.updated DESC LIMIT 1)"""

# Worklist keys with a column: (sequence keyword or None for the top level, keyword) → column.
_COLUMNS: Final = {
    (None, "PatientID"): SqlColumn("w.patient_id"),
    (None, "AccessionNumber"): SqlColumn("w.accession"),
    (None, "StudyInstanceUID"): SqlColumn("w.study_uid"),
    ("ScheduledProcedureStepSequence", "ScheduledStationAETitle"): SqlColumn("w.station_aet", multi_valued=True),
    ("ScheduledProcedureStepSequence", "Modality"): SqlColumn("w.modality"),
    ("ScheduledProcedureStepSequence", "ScheduledProcedureStepStartDate"): SqlColumn("w.start_date"),
    ("ScheduledProcedureStepSequence", "ScheduledProcedureStepID"): SqlColumn("w.sps_id"),
}
# MPPS status (0040,0252) → the status (0040,0020) of the scheduled step it performs (PS3.3 C.4.10, C.4.14).
STEP_STATUS_OF_MPPS: Final = {"IN PROGRESS": "STARTED", "COMPLETED": "COMPLETED", "DISCONTINUED": "DISCONTINUED"}


class WorkflowDbError(RuntimeError):
    """The database cannot be opened or used (wrong schema, closed)."""


class NoSuchInstance(KeyError):
    """No MPPS instance has this SOP Instance UID."""


def encode_dataset(ds: Dataset) -> bytes:
    return EncodedDataset.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN).read_bytes()


def decode_dataset(blob: bytes) -> Dataset:
    ds = EncodedDataset(EXPLICIT_VR_LITTLE_ENDIAN, blob).dataset()
    del ds.file_meta
    return ds


def _text(ds: Dataset, keyword: str, vr: str) -> str:
    return "\\".join(candidate_values(vr, ds.get(keyword)))


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """A stored worklist item with the status its MPPS gave its step (None: no MPPS yet)."""

    source: str
    item_key: str
    dataset: Dataset
    step_status: str | None


@dataclass(frozen=True, slots=True)
class MppsRecord:
    uid: str
    status: str
    calling_ae: str
    dataset: Dataset
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class CommitmentRecord:
    transaction_uid: str
    calling_ae: str
    request: Dataset
    received: float
    state: str
    attempts: int
    next_attempt: float
    last_error: str


def _item_row(item: Dataset) -> dict[str, Any]:
    step = item.ScheduledProcedureStepSequence[0]
    dates = [d for d in map(normalize_da, candidate_values("DA", step.get("ScheduledProcedureStepStartDate"))) if d]
    return {
        "study_uid": _text(item, "StudyInstanceUID", "UI"), "accession": _text(item, "AccessionNumber", "SH"),
        "sps_id": _text(step, "ScheduledProcedureStepID", "SH"), "patient_id": _text(item, "PatientID", "LO"),
        "station_aet": _text(step, "ScheduledStationAETitle", "AE"), "modality": _text(step, "Modality", "CS"),
        "start_date": dates[0] if dates else "", "dataset": encode_dataset(item),
    }


def api_item_key(item: Dataset) -> str:
    """Items added through the API replace an earlier item for the same step."""
    step = item.ScheduledProcedureStepSequence[0]
    return "|".join((_text(item, "StudyInstanceUID", "UI"), _text(item, "AccessionNumber", "SH"),
                     _text(item, "RequestedProcedureID", "SH"), _text(step, "ScheduledProcedureStepID", "SH")))


def step_refs(mpps: Dataset) -> list[tuple[str, str, str]]:
    """(Study Instance UID, Accession Number, Scheduled Procedure Step ID) of each step an MPPS performs
    (Scheduled Step Attributes Sequence, PS3.3 C.4.13); unscheduled steps (no SPS ID) reference none."""
    refs = []
    for item in mpps.get("ScheduledStepAttributesSequence") or ():
        sps_id = _text(item, "ScheduledProcedureStepID", "SH")
        if sps_id:
            refs.append((_text(item, "StudyInstanceUID", "UI"), _text(item, "AccessionNumber", "SH"), sps_id))
    return refs


def worklist_filters(query: Query) -> list[SqlFilter]:
    """SQL conditions every matching item satisfies (necessary, not sufficient: matching re-checks)."""
    out: list[SqlFilter] = []

    def collect(matchers: Iterable[Any], sequence: str | None) -> None:
        for m in matchers:
            if isinstance(m, SequenceMatcher):
                if sequence is None and m.key.keyword == "ScheduledProcedureStepSequence":
                    collect(m.item.matchers, m.key.keyword)
                continue
            if len(m.keywords) != 1 or (col := _COLUMNS.get((sequence, m.keywords[0]))) is None:
                continue
            f = m.to_sql(col)
            if f is not None:
                out.append(f)

    collect(query.matchers, None)
    return out


class WorkflowDb:
    """Open with `await WorkflowDb.open(storage_dir)`; close with `await db.close()` or `async with`."""

    def __init__(self, path: Path, readers: int) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._write_limiter = anyio.CapacityLimiter(1)
        self._readers = ReaderPool(lambda: _open_reader(path), readers=readers, chunk_size=_CHUNK,
                                   closed_error=lambda: WorkflowDbError(f"{path} is closed"))
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, storage_dir: Path | str, *, filename: str = WORKFLOW_FILENAME, readers: int = 4) -> Self:
        db = cls(Path(storage_dir) / filename, readers)
        db._writer = await anyio.to_thread.run_sync(_open_writer, db.path, limiter=db._write_limiter)
        return db

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            await anyio.to_thread.run_sync(self._writer.close, limiter=self._write_limiter)
        self._readers.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ---- plumbing ----------------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one IMMEDIATE transaction on the writer connection, in a worker thread."""
        def run() -> T:
            conn = self._writer
            if conn is None or self._closed:
                raise WorkflowDbError(f"{self.path} is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

        return await anyio.to_thread.run_sync(run, limiter=self._write_limiter)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        return self._readers.read(fn)

    def _stream(self, sql: str, params: Sequence[Any], convert: Callable[[tuple[Any, ...]], T | None]
                ) -> AsyncIterator[T]:
        return self._readers.stream(sql, params, convert)

    # ---- worklist ----------------------------------------------------------------------------

    async def replace_source(self, source: str, items: Sequence[Dataset], *, mtime_ns: int = 0) -> int:
        """Make `items` (each with one scheduled step) the whole content of `source`: a file re-read."""
        now = time.time()

        def run(conn: sqlite3.Connection) -> int:
            rows = [(str(i), _item_row(item)) for i, item in enumerate(items)]
            conn.execute("DELETE FROM worklist_item WHERE source = ?", (source,))
            _insert(conn, source, rows, mtime_ns, now)
            return len(rows)

        return await self._write(run)

    async def add_items(self, items: Sequence[Dataset], *, source: str = API_SOURCE) -> list[str]:
        """Add items (one scheduled step each), replacing an item of `source` for the same step."""
        now = time.time()

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = [(api_item_key(item), _item_row(item)) for item in items]
            for key, _ in rows:
                conn.execute("DELETE FROM worklist_item WHERE source = ? AND item_key = ?", (source, key))
            _insert(conn, source, rows, 0, now)
            return [key for key, _ in rows]

        return await self._write(run)

    async def remove_source(self, source: str) -> int:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM worklist_item WHERE source = ?", (source,)).rowcount)

    async def remove_steps(self, sps_ids: Iterable[str], *, source: str = API_SOURCE) -> int:
        ids = list(sps_ids)
        return await self._write(lambda conn: sum(conn.execute(
            "DELETE FROM worklist_item WHERE source = ? AND sps_id = ?", (source, i)).rowcount for i in ids))

    async def sources(self) -> dict[str, int]:
        """Every source but the API, with the modification time it was read at."""
        return await self._read(lambda conn: dict(conn.execute(
            "SELECT source, max(mtime_ns) FROM worklist_item WHERE source != ? GROUP BY source", (API_SOURCE,))))

    def worklist(self, query: Query | None = None, *, hide_completed: bool = True,
                 project: Callable[[Dataset], Any] | None = None) -> AsyncGenerator[Any, None]:
        """Stream the items matching `query` (all without one), each passed through `project` (the
        response builder, run in the reader thread). The step status an MPPS gave each item replaces
        its Scheduled Procedure Step Status before matching; completed steps are left out when
        `hide_completed`."""
        filters = worklist_filters(query) if query is not None else []
        where = " AND ".join(f.sql for f in filters) or "1"
        sql = (f"SELECT dataset, step_status FROM (SELECT w.pk, w.start_date, w.dataset, {_STEP_STATUS} AS step_status"
               f" FROM worklist_item w WHERE {where})"
               + (" WHERE coalesce(step_status, '') != 'COMPLETED'" if hide_completed else "")
               + " ORDER BY start_date, pk")
        params = [p for f in filters for p in f.params]
        convert = project or (lambda ds: ds)

        def row(values: tuple[Any, ...]) -> Any:
            ds = _with_status(decode_dataset(values[0]), values[1])
            return convert(ds) if query is None or query.matches(ds) else None

        return self._stream(sql, params, row)

    def entries(self) -> AsyncGenerator[WorklistEntry, None]:
        """Every stored item with its source and step status (for listing)."""
        sql = (f"SELECT w.source, w.item_key, w.dataset, {_STEP_STATUS} FROM worklist_item w"
               " ORDER BY w.start_date, w.pk")
        return self._stream(sql, (), lambda r: WorklistEntry(r[0], r[1], _with_status(decode_dataset(r[2]), r[3]),
                                                               r[3]))

    # ---- MPPS --------------------------------------------------------------------------------

    async def create_mpps(self, uid: str, dataset: Dataset, *, calling_ae: str = "") -> bool:
        """Store a new MPPS instance and mark the steps it performs; False when the UID exists."""
        status, now = str(dataset.get("PerformedProcedureStepStatus", "")), time.time()

        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM mpps WHERE uid = ?", (uid,)).fetchone():
                return False
            conn.execute("INSERT INTO mpps VALUES (?, ?, ?, ?, ?, ?)",
                         (uid, status, calling_ae, encode_dataset(dataset), now, now))
            _mark_steps(conn, step_refs(dataset), status, uid, now)
            return True

        return await self._write(run)

    async def get_mpps(self, uid: str) -> MppsRecord | None:
        row = await self._read(lambda conn: conn.execute(
            "SELECT uid, status, calling_ae, dataset, created, updated FROM mpps WHERE uid = ?", (uid,)).fetchone())
        return None if row is None else MppsRecord(row[0], row[1], row[2], decode_dataset(row[3]), row[4], row[5])

    async def update_mpps(self, uid: str, change: Callable[[MppsRecord], Dataset]) -> MppsRecord:
        """Read-modify-write one MPPS instance in a single transaction: `change` gets the current record
        and returns the new data set, or raises (nothing is written). NoSuchInstance when unknown."""
        now = time.time()

        def run(conn: sqlite3.Connection) -> MppsRecord:
            row = conn.execute("SELECT uid, status, calling_ae, dataset, created, updated FROM mpps WHERE uid = ?",
                               (uid,)).fetchone()
            if row is None:
                raise NoSuchInstance(uid)
            new = change(MppsRecord(row[0], row[1], row[2], decode_dataset(row[3]), row[4], row[5]))
            status = str(new.get("PerformedProcedureStepStatus", ""))
            conn.execute("UPDATE mpps SET status = ?, dataset = ?, updated = ? WHERE uid = ?",
                         (status, encode_dataset(new), now, uid))
            if status != row[1]:
                _mark_steps(conn, step_refs(new), status, uid, now)
            return MppsRecord(uid, status, row[2], new, row[4], now)

        return await self._write(run)

    # ---- storage commitment ------------------------------------------------------------------

    async def add_commitment(self, transaction_uid: str, calling_ae: str, request: Dataset) -> bool:
        """Keep a request until its report is delivered; False when the Transaction UID was used before."""
        now = time.time()

        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM commitment WHERE transaction_uid = ?", (transaction_uid,)).fetchone():
                return False
            cur = conn.execute("INSERT INTO commitment (transaction_uid, calling_ae, request, received, state)"
                               " VALUES (?, ?, ?, ?, 'pending')",
                               (transaction_uid, calling_ae, encode_dataset(request), now))
            return cur.rowcount == 1

        return await self._write(run)

    async def get_commitment(self, transaction_uid: str) -> CommitmentRecord | None:
        row = await self._read(lambda conn: conn.execute(_COMMITMENT_SELECT + " WHERE transaction_uid = ?",
                                                         (transaction_uid,)).fetchone())
        return None if row is None else _commitment(row)

    async def pending_schedule(self) -> list[tuple[str, float]]:
        """(Transaction UID, next attempt time) of every request not reported yet."""
        return await self._read(lambda conn: conn.execute(
            "SELECT transaction_uid, next_attempt FROM commitment WHERE state = 'pending'").fetchall())

    async def commitment_reported(self, transaction_uid: str, event_type: int) -> None:
        """The report was delivered: the Transaction UID is no longer active (PS3.4 J.3.3.1.2)."""
        now = time.time()
        await self._write(lambda conn: conn.execute(
            "UPDATE commitment SET state = 'reported', event_type = ?, reported = ?, request = x''"
            " WHERE transaction_uid = ?", (event_type, now, transaction_uid)))

    async def commitment_failed(self, transaction_uid: str, error: str, retry_at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE commitment SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
            " WHERE transaction_uid = ? AND state = 'pending'", (error[:500], retry_at, transaction_uid)))


_COMMITMENT_SELECT: Final = ("SELECT transaction_uid, calling_ae, request, received, state, attempts, next_attempt,"
                             " last_error FROM commitment")


def _commitment(row: Sequence[Any]) -> CommitmentRecord:
    request = decode_dataset(row[2]) if row[2] else Dataset()
    return CommitmentRecord(row[0], row[1], request, row[3], row[4], row[5], row[6], row[7])


def _insert(conn: sqlite3.Connection, source: str, rows: Sequence[tuple[str, dict[str, Any]]], mtime_ns: int,
            now: float) -> None:
    conn.executemany(
        "INSERT INTO worklist_item (source, item_key, mtime_ns, study_uid, accession, sps_id, patient_id, station_aet,"
        " modality, start_date, dataset, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(source, key, mtime_ns, r["study_uid"], r["accession"], r["sps_id"], r["patient_id"], r["station_aet"],
          r["modality"], r["start_date"], r["dataset"], now) for key, r in rows])


def _mark_steps(conn: sqlite3.Connection, refs: Sequence[tuple[str, str, str]], mpps_status: str, uid: str,
                now: float) -> None:
    step_status = STEP_STATUS_OF_MPPS.get(mpps_status)
    if step_status is None:
        return
    conn.executemany("INSERT OR REPLACE INTO step_state VALUES (?, ?, ?, ?, ?, ?)",
                     [(study, accession, sps_id, step_status, uid, now) for study, accession, sps_id in refs])


def _with_status(item: Dataset, status: str | None) -> Dataset:
    if status:
        for step in item.get("ScheduledProcedureStepSequence") or ():
            step.ScheduledProcedureStepStatus = status
    return item


def _open_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA query_only = ON")
    return conn


def _open_writer(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")  # `aiodicom worklist add` may write while the server runs
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # an acknowledged MPPS or commitment request survives power loss
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in SCHEMA.split(";"):  # not executescript(): it would commit half-way
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
        if version not in (0, SCHEMA_VERSION):
            raise WorkflowDbError(f"{path}: schema version {version}, expected {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn
