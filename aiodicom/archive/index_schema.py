"""SQLite schema of the archive index and the synchronous statements on it.

Everything here runs in worker threads (`SqliteIndex`) or offline (`rebuild_index`), never on the
event loop. Tables follow the four levels of PS3.4 C.6.1: patient ← study ← series ← instance.
Columns are named after DICOM keywords; `*_key` columns hold the normalised form that matching
compares (see matching.py), `*_folded` the case/accent folded person names.

Derived counts (PS3.4 Table C.3-1: Number of ... Related ...) are maintained, not computed per
query: each transaction remembers the series/studies/patients it touched and recounts just those
before it commits, then drops any left empty.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword

from aiodicom.archive.index import INDEXED_KEYWORDS, IndexRecord, Level, StoredInstance
from aiodicom.archive.matching import Matcher, Query, SqlColumn
from aiodicom.archive.values import candidate_values, clean, fold, normalize_da, normalize_tm
from aiodicom.dimse.vrs import CHARSET_VRS

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
CREATE TABLE patient (
    pk INTEGER PRIMARY KEY,
    PatientID TEXT NOT NULL UNIQUE,
    PatientName TEXT NOT NULL DEFAULT '',
    PatientName_folded TEXT NOT NULL DEFAULT '',
    PatientBirthDate TEXT NOT NULL DEFAULT '',
    PatientBirthDate_key TEXT NOT NULL DEFAULT '',
    PatientSex TEXT NOT NULL DEFAULT '',
    OtherPatientIDs TEXT NOT NULL DEFAULT '',
    n_studies INTEGER NOT NULL DEFAULT 0,
    n_series INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX patient_name ON patient (PatientName);
CREATE TABLE study (
    pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patient (pk),
    StudyInstanceUID TEXT NOT NULL UNIQUE,
    StudyDate TEXT NOT NULL DEFAULT '',
    StudyDate_key TEXT NOT NULL DEFAULT '',
    StudyTime TEXT NOT NULL DEFAULT '',
    StudyTime_key TEXT NOT NULL DEFAULT '',
    AccessionNumber TEXT NOT NULL DEFAULT '',
    StudyID TEXT NOT NULL DEFAULT '',
    StudyDescription TEXT NOT NULL DEFAULT '',
    ReferringPhysicianName TEXT NOT NULL DEFAULT '',
    ReferringPhysicianName_folded TEXT NOT NULL DEFAULT '',
    n_series INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX study_patient ON study (patient_pk);
CREATE INDEX study_date ON study (StudyDate_key);
CREATE INDEX study_accession ON study (AccessionNumber);
CREATE TABLE series (
    pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES study (pk),
    SeriesInstanceUID TEXT NOT NULL UNIQUE,
    Modality TEXT NOT NULL DEFAULT '',
    SeriesNumber INTEGER,
    SeriesDescription TEXT NOT NULL DEFAULT '',
    BodyPartExamined TEXT NOT NULL DEFAULT '',
    n_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX series_study ON series (study_pk);
CREATE TABLE instance (
    pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series (pk),
    SOPInstanceUID TEXT NOT NULL UNIQUE,
    SOPClassUID TEXT NOT NULL DEFAULT '',
    InstanceNumber INTEGER,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    transfer_syntax TEXT NOT NULL
);
CREATE INDEX instance_series ON instance (series_pk);
"""

# Columns written from a record, per table (the *_key/*_folded ones are derived in decode()).
PATIENT_COLS: Final = ("PatientName", "PatientName_folded", "PatientBirthDate", "PatientBirthDate_key",
                       "PatientSex", "OtherPatientIDs")
STUDY_COLS: Final = ("StudyDate", "StudyDate_key", "StudyTime", "StudyTime_key", "AccessionNumber", "StudyID",
                     "StudyDescription", "ReferringPhysicianName", "ReferringPhysicianName_folded")
SERIES_COLS: Final = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined")
INSTANCE_COLS: Final = ("SOPClassUID", "InstanceNumber", "path", "size", "transfer_syntax")
_NUMERIC_COLS: Final = frozenset({"SeriesNumber", "InstanceNumber"})
_KEYWORDS: Final[Mapping[int, str]] = {tag_for_keyword(k): k for k in INDEXED_KEYWORDS}  # type: ignore[misc]


def open_connection(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any one thread at a time."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")  # several server processes may share one archive
    if readonly:
        conn.execute("PRAGMA query_only = ON")
        return conn
    conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, consistent always
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32768")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # another process may have won
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    elif version != SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(f"{path}: index schema version {version}, expected {SCHEMA_VERSION}: rebuild it")
    conn.execute(_MARKS)  # added after version 1 shipped: created where missing, no rebuild needed
    return conn


# ---- marks: how far each writing process has indexed what it filed (archive/feeder.py, catchup.py) ----

_MARKS: Final = "CREATE TABLE IF NOT EXISTS indexed_until (writer TEXT PRIMARY KEY, at REAL NOT NULL)"


def set_mark(conn: sqlite3.Connection, writer: str, at: float) -> None:
    """Everything `writer` filed before `at` (wall clock) is indexed once this transaction commits."""
    conn.execute("INSERT OR REPLACE INTO indexed_until (writer, at) VALUES (?, ?)", (writer, at))


def oldest_mark(conn: sqlite3.Connection) -> float | None:
    """Before this time every writer's files are indexed; None when no writer left a mark."""
    row = conn.execute("SELECT min(at) FROM indexed_until").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def clear_marks(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM indexed_until")


# ---- decoding a record ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Decoded:
    patient_id: str
    patient: tuple[Any, ...]  # PATIENT_COLS order
    study_uid: str
    study: tuple[Any, ...]
    series_uid: str
    series: tuple[Any, ...]
    sop_instance_uid: str
    instance: tuple[Any, ...]


# tag → (keyword, VR, delimiters when the value is coded in the character set, else None)
_DECODING: Final = {
    tag: (keyword, vr, (TEXT_VR_DELIMS | ({0x5C, 0x5E, 0x3D} if vr == "PN" else {0x5C})) if vr in CHARSET_VRS else None)
    for tag, keyword in _KEYWORDS.items()
    for vr in (dictionary_VR(tag),)
}


# The values of a series' instances repeat (patient, study, series attributes): each distinct one is made
# into column text once. Only values whose text does not depend on the character set are kept, never those
# that differ in every instance, and the cache is emptied when it grows past its size.
_TEXT_CACHE: dict[tuple[int, bytes], str] = {}
_TEXT_CACHE_SIZE: Final = 20_000
_PER_INSTANCE: Final = frozenset({0x00080018, 0x00200013, 0x00080012, 0x00080013, 0x00080023, 0x00080033})


def _texts(attrs: Mapping[int, bytes], encodings: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    cache = _TEXT_CACHE
    for tag, raw in attrs.items():
        spec = _DECODING.get(tag)
        if not raw or spec is None:
            continue
        keyword, vr, delims = spec
        raw = bytes(raw)
        text = cache.get((tag, raw))
        if text is not None:
            out[keyword] = text
            continue
        if delims is None:
            text = raw.decode("latin-1")
        elif raw.isascii() and 0x1B not in raw:
            # Every DICOM character set has ASCII in G0 until an escape sequence switches it: pydicom
            # would decode these bytes to the same text, at many times the cost.
            text = raw.decode("ascii")
        else:
            text = decode_bytes(raw, encodings, delims)
            delims = ()  # depends on the character set: not cached
        # one value without PN structure: candidate_values would only clean it
        text = "\\".join(candidate_values(vr, text)) if vr == "PN" or "\\" in text else clean(vr, text)
        out[keyword] = text
        if delims != () and tag not in _PER_INSTANCE:
            if len(cache) >= _TEXT_CACHE_SIZE:
                cache.clear()
            cache[(tag, raw)] = text
    return out


def _integer(text: str) -> int | None:
    try:
        return int(text.split("\\")[0])
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _encodings(specific_character_set: bytes) -> list[str]:
    """Python codecs of a raw Specific Character Set value (pydicom's conversion is slow, values are few)."""
    charset = [c.strip() for c in specific_character_set.decode("ascii", "replace").split("\\")]
    return convert_encodings(charset) if any(charset) else ["iso8859"]


def _first(text: str) -> str:
    return text.split("\\")[0]


# a series' instances carry the same patient and study values: their columns are worked out once
@functools.lru_cache(maxsize=4096)
def _patient_row(name: str, birth_date: str, sex: str, other_ids: str) -> tuple[Any, ...]:
    return name, fold(name), birth_date, normalize_da(_first(birth_date)), sex, other_ids


@functools.lru_cache(maxsize=4096)
def _study_row(date: str, time: str, accession: str, study_id: str, description: str,
               referring: str) -> tuple[Any, ...]:
    return (date, normalize_da(_first(date)), time, normalize_tm(_first(time)), accession, study_id, description,
            referring, fold(referring))


def decode(record: IndexRecord, storage_dir: Path) -> Decoded:
    """Decode a record's peeked values with its Specific Character Set into column values."""
    t = _texts(record.attributes, _encodings(bytes(record.attributes.get(0x00080005, b""))))
    study_uid, series_uid = t.get("StudyInstanceUID", ""), t.get("SeriesInstanceUID", "")
    sop_uid = record.sop_instance_uid.strip(" \0") or t.get("SOPInstanceUID", "")
    if not (study_uid and series_uid and sop_uid):
        raise ValueError(f"{record.path}: Study, Series and SOP Instance UIDs are required")
    path, root = str(record.path), f"{storage_dir}{os.sep}"
    stored_path = path[len(root):] if path.startswith(root) else path  # relative: the archive folder can move

    return Decoded(
        patient_id=t.get("PatientID", ""),
        patient=_patient_row(t.get("PatientName", ""), t.get("PatientBirthDate", ""), t.get("PatientSex", ""),
                             t.get("OtherPatientIDs", "")),
        study_uid=study_uid,
        study=_study_row(t.get("StudyDate", ""), t.get("StudyTime", ""), t.get("AccessionNumber", ""),
                         t.get("StudyID", ""), t.get("StudyDescription", ""), t.get("ReferringPhysicianName", "")),
        series_uid=series_uid,
        series=(t.get("Modality", ""), _integer(t.get("SeriesNumber", "")), t.get("SeriesDescription", ""),
                t.get("BodyPartExamined", "")),
        sop_instance_uid=sop_uid,
        instance=(record.sop_class_uid.strip(" \0") or t.get("SOPClassUID", ""),
                  _integer(t.get("InstanceNumber", "")), stored_path, record.size, record.transfer_syntax.strip(" \0")),
    )


# ---- writing -------------------------------------------------------------------------------

@dataclass(slots=True)
class Touched:
    """Rows a transaction changed, to recount (and drop when empty) before it commits."""

    series: set[int] = field(default_factory=set)
    studies: set[int] = field(default_factory=set)
    patients: set[int] = field(default_factory=set)
    cache: dict[tuple[str, str], tuple[int, int | None, tuple[Any, ...]]] = field(default_factory=dict)


def _upsert(conn: sqlite3.Connection, t: Touched, table: str, key_col: str, key: str, parent_col: str | None,
            parent_pk: int | None, cols: Sequence[str], values: tuple[Any, ...]) -> int:
    """Insert or update one patient/study/series row. New non-empty values replace stored ones;
    empty ones never erase what an earlier instance of the same entity provided."""
    hit = t.cache.get((table, key))
    if hit is not None and hit[1] == parent_pk and hit[2] == values:
        return hit[0]
    parent = f", {parent_col}" if parent_col else ""
    row = conn.execute(f"SELECT pk{parent} FROM {table} WHERE {key_col} = ?", (key,)).fetchone()
    if row is None:
        names = [key_col, *([parent_col] if parent_col else []), *cols]
        pk = int(conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                              (key, *([parent_pk] if parent_col else []), *values)).lastrowid or 0)
    else:
        pk = row[0]
        sets = [f"{c} = coalesce(?, {c})" if c in _NUMERIC_COLS else f"{c} = coalesce(nullif(?, ''), {c})"
                for c in cols]
        if parent_col:
            sets.insert(0, f"{parent_col} = ?")
            if row[1] != parent_pk:  # the entity moved (e.g. a study re-stored under another Patient ID)
                {"study": t.studies, "series": t.series}[table].add(pk)
                {"study": t.patients, "series": t.studies}[table].add(row[1])
        conn.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE pk = ?",
                     (*([parent_pk] if parent_col else []), *values, pk))
    t.cache[(table, key)] = (pk, parent_pk, values)
    return pk


def add_records(conn: sqlite3.Connection, t: Touched, records: Iterable[IndexRecord], storage_dir: Path) -> None:
    for record in records:
        add_decoded(conn, t, decode(record, storage_dir))


def add_decoded(conn: sqlite3.Connection, t: Touched, d: Decoded) -> None:
    patient_pk = _upsert(conn, t, "patient", "PatientID", d.patient_id, None, None, PATIENT_COLS, d.patient)
    study_pk = _upsert(conn, t, "study", "StudyInstanceUID", d.study_uid, "patient_pk", patient_pk, STUDY_COLS, d.study)
    series_pk = _upsert(conn, t, "series", "SeriesInstanceUID", d.series_uid, "study_pk", study_pk, SERIES_COLS,
                        d.series)
    row = conn.execute("SELECT series_pk FROM instance WHERE SOPInstanceUID = ?", (d.sop_instance_uid,)).fetchone()
    if row is None:
        conn.execute(f"INSERT INTO instance (SOPInstanceUID, series_pk, {', '.join(INSTANCE_COLS)}) "
                     f"VALUES (?, ?, {', '.join('?' * len(INSTANCE_COLS))})",
                     (d.sop_instance_uid, series_pk, *d.instance))
        t.series.add(series_pk)
        return
    conn.execute(f"UPDATE instance SET series_pk = ?, {', '.join(c + ' = ?' for c in INSTANCE_COLS)} "
                 "WHERE SOPInstanceUID = ?", (series_pk, *d.instance, d.sop_instance_uid))
    if row[0] != series_pk:
        t.series.update((row[0], series_pk))


def remove_instance(conn: sqlite3.Connection, t: Touched, sop_instance_uid: str) -> bool:
    row = conn.execute("DELETE FROM instance WHERE SOPInstanceUID = ? RETURNING series_pk",
                       (sop_instance_uid,)).fetchone()
    if row is None:
        return False
    t.series.add(row[0])
    return True


_IN: Final = "pk IN (SELECT value FROM json_each(?))"


def finish(conn: sqlite3.Connection, t: Touched) -> None:
    """Recount what the transaction touched, bottom-up, and delete the entities left empty."""
    if t.series:
        ids = (json.dumps(sorted(t.series)),)
        conn.execute(f"UPDATE series SET n_instances = (SELECT count(*) FROM instance WHERE series_pk = series.pk)"
                     f" WHERE {_IN}", ids)
        t.studies.update(r[0] for r in conn.execute(f"SELECT study_pk FROM series WHERE {_IN}", ids))
        conn.execute(f"DELETE FROM series WHERE n_instances = 0 AND {_IN}", ids)
    if t.studies:
        ids = (json.dumps(sorted(t.studies)),)
        conn.execute("UPDATE study SET n_series = (SELECT count(*) FROM series WHERE study_pk = study.pk),"
                     " n_instances = (SELECT coalesce(sum(n_instances), 0) FROM series WHERE study_pk = study.pk)"
                     f" WHERE {_IN}", ids)
        t.patients.update(r[0] for r in conn.execute(f"SELECT patient_pk FROM study WHERE {_IN}", ids))
        conn.execute(f"DELETE FROM study WHERE n_series = 0 AND {_IN}", ids)
    if t.patients:
        ids = (json.dumps(sorted(t.patients)),)
        conn.execute("UPDATE patient SET n_studies = (SELECT count(*) FROM study WHERE patient_pk = patient.pk),"
                     " n_series = (SELECT coalesce(sum(n_series), 0) FROM study WHERE patient_pk = patient.pk),"
                     " n_instances = (SELECT coalesce(sum(n_instances), 0) FROM study WHERE patient_pk = patient.pk)"
                     f" WHERE {_IN}", ids)
        conn.execute(f"DELETE FROM patient WHERE n_studies = 0 AND {_IN}", ids)
    t.series.clear()
    t.studies.clear()
    t.patients.clear()
    t.cache.clear()


# ---- reading -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Column:
    keyword: str
    select: str  # SQL expression returned under the keyword
    match: SqlColumn  # what matchers compare
    computed: bool = False  # costly: selected only when the query names the keyword


def _text(table: str, keyword: str, **kw: Any) -> Column:
    return Column(keyword, f"{table}.{keyword}", SqlColumn(f"{table}.{keyword}", **kw))


_MODALITIES: Final = "EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.pk AND {cond})"
_SOP_CLASSES: Final = ("EXISTS (SELECT 1 FROM instance y JOIN series x ON x.pk = y.series_pk"
                       " WHERE x.study_pk = st.pk AND {cond})")

_PATIENT: Final = (
    _text("p", "PatientID"),
    Column("PatientName", "p.PatientName", SqlColumn("p.PatientName", folded="p.PatientName_folded")),
    Column("PatientBirthDate", "p.PatientBirthDate", SqlColumn("p.PatientBirthDate_key")),
    _text("p", "PatientSex"),
    _text("p", "OtherPatientIDs", multi_valued=True),
)
_PATIENT_COUNTS: Final = tuple(
    Column(k, f"p.{c}", SqlColumn(f"p.{c}", numeric=True)) for k, c in (
        ("NumberOfPatientRelatedStudies", "n_studies"), ("NumberOfPatientRelatedSeries", "n_series"),
        ("NumberOfPatientRelatedInstances", "n_instances")))
_STUDY: Final = (
    _text("st", "StudyInstanceUID"),
    Column("StudyDate", "st.StudyDate", SqlColumn("st.StudyDate_key")),
    Column("StudyTime", "st.StudyTime", SqlColumn("st.StudyTime_key")),
    _text("st", "AccessionNumber"),
    _text("st", "StudyID"),
    _text("st", "StudyDescription"),
    Column("ReferringPhysicianName", "st.ReferringPhysicianName",
           SqlColumn("st.ReferringPhysicianName", folded="st.ReferringPhysicianName_folded")),
)
_STUDY_COUNTS: Final = (
    Column("NumberOfStudyRelatedSeries", "st.n_series", SqlColumn("st.n_series", numeric=True)),
    Column("NumberOfStudyRelatedInstances", "st.n_instances", SqlColumn("st.n_instances", numeric=True)),
    Column("ModalitiesInStudy",  # PS3.4 C.6.2.1.2: all distinct Modality values of the study's series
           "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT x.Modality AS m FROM series x"
           " WHERE x.study_pk = st.pk AND x.Modality != '' ORDER BY m))",
           SqlColumn("x.Modality", exists=_MODALITIES), computed=True),
    Column("SOPClassesInStudy",
           "(SELECT group_concat(c, '\\') FROM (SELECT DISTINCT y.SOPClassUID AS c FROM instance y"
           " JOIN series x ON x.pk = y.series_pk WHERE x.study_pk = st.pk AND y.SOPClassUID != '' ORDER BY c))",
           SqlColumn("y.SOPClassUID", exists=_SOP_CLASSES), computed=True),
)
_SERIES: Final = (
    _text("se", "SeriesInstanceUID"),
    _text("se", "Modality"),
    _text("se", "SeriesNumber", numeric=True),
    _text("se", "SeriesDescription"),
    _text("se", "BodyPartExamined"),
)
_SERIES_COUNTS: Final = (
    Column("NumberOfSeriesRelatedInstances", "se.n_instances", SqlColumn("se.n_instances", numeric=True)),
)
_INSTANCE: Final = (
    _text("i", "SOPInstanceUID"),
    _text("i", "SOPClassUID"),
    _text("i", "InstanceNumber", numeric=True),
    Column("AvailableTransferSyntaxUID", "i.transfer_syntax", SqlColumn("i.transfer_syntax")),
)

LEVEL_COLUMNS: Final[Mapping[Level, tuple[Column, ...]]] = {
    Level.PATIENT: _PATIENT + _PATIENT_COUNTS,
    Level.STUDY: _PATIENT + _STUDY + _STUDY_COUNTS,
    Level.SERIES: _PATIENT + _STUDY + _SERIES + _SERIES_COUNTS,
    Level.IMAGE: _PATIENT + _STUDY + _SERIES + _INSTANCE,
}
_FROM: Final[Mapping[Level, str]] = {
    Level.PATIENT: "patient p",
    Level.STUDY: "study st JOIN patient p ON p.pk = st.patient_pk",
    Level.SERIES: "series se JOIN study st ON st.pk = se.study_pk JOIN patient p ON p.pk = st.patient_pk",
    Level.IMAGE: "instance i JOIN series se ON se.pk = i.series_pk JOIN study st ON st.pk = se.study_pk"
                 " JOIN patient p ON p.pk = st.patient_pk",
}


@dataclass(frozen=True, slots=True)
class Select:
    sql: str
    params: tuple[Any, ...]
    names: tuple[str, ...]  # keyword of each selected column
    residual: tuple[Matcher, ...]  # matchers SQL could not decide exactly: re-check each row in Python


def select(level: Level, query: Query) -> Select:
    """SELECT for a C-FIND at `level`: matchers pushed down as far as they render exactly."""
    columns = {c.keyword: c for c in LEVEL_COLUMNS[level]}
    wanted = query.keywords
    chosen = [c for c in LEVEL_COLUMNS[level] if not c.computed or c.keyword in wanted]
    where: list[str] = []
    params: list[Any] = []
    residual: list[Matcher] = []
    for m in query.matchers:
        cols = [columns.get(k) for k in m.keywords]
        if any(c is None for c in cols):
            continue  # not held by the index: universal (PS3.4 C.2.2.1.3)
        f = m.to_sql(*(c.match for c in cols if c is not None))
        if f is None or not f.exact:
            residual.append(m)
        if f is not None:
            where.append(f.sql)
            params.extend(f.params)
    sql = (f"SELECT {', '.join(c.select for c in chosen)} FROM {_FROM[level]}"
           + (f" WHERE {' AND '.join(where)}" if where else ""))
    return Select(sql, tuple(params), tuple(c.keyword for c in chosen), tuple(residual))


_UID_COLUMNS: Final = {"PatientID": "p.PatientID", "StudyInstanceUID": "st.StudyInstanceUID",
                       "SeriesInstanceUID": "se.SeriesInstanceUID", "SOPInstanceUID": "i.SOPInstanceUID"}
_INSTANCE_SELECT: Final = ("SELECT i.path, i.size, i.transfer_syntax, i.SOPClassUID, i.SOPInstanceUID,"
                           " se.SeriesInstanceUID, st.StudyInstanceUID, p.PatientID FROM " + _FROM[Level.IMAGE])


def select_instances(uids: Mapping[str, Sequence[str]], *, count: bool = False) -> tuple[str, tuple[Any, ...]]:
    """Instances under the entities named by unique keys (list of UID matching, C.2.2.2.2)."""
    where, params = [], []
    for keyword, values in uids.items():
        if values:
            where.append(f"{_UID_COLUMNS[keyword]} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(values)))
    sql = _INSTANCE_SELECT if not count else "SELECT count(*) FROM " + _FROM[Level.IMAGE]
    return sql + (f" WHERE {' AND '.join(where)}" if where else ""), tuple(params)


def stored_instance(row: Sequence[Any], storage_dir: Path) -> StoredInstance:
    path = Path(row[0])
    return StoredInstance(path=path if path.is_absolute() else storage_dir / path, size=row[1],
                          transfer_syntax=row[2], sop_class_uid=row[3], sop_instance_uid=row[4],
                          series_instance_uid=row[5], study_instance_uid=row[6], patient_id=row[7])


COUNTS_SQL: Final = ("SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study),"
                     " (SELECT count(*) FROM series), (SELECT count(*) FROM instance),"
                     " (SELECT coalesce(sum(size), 0) FROM instance)")


def supported_keys(level: Level) -> frozenset[str]:
    return frozenset(c.keyword for c in LEVEL_COLUMNS[level])

