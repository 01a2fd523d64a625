"""Start-up catch-up: index the files a previous run filed but did not get into the index.

The feeder (archive/feeder.py) indexes in batches after answering, and each batch records the time
before which its process's files are all indexed (a mark). A run killed with records queued leaves
an older mark; the oldest mark says where to look. Every file renamed into STORAGE/<Study>/<Series>/
after it also changed its series folder's mtime, so only series folders modified since (less a
margin for clock granularity and the gap between a rename and its record) are listed, and their
files the index does not know are read (headers only) and added. Cost: one stat per series folder,
plus a listing of the few that changed. Run it before serving; then the marks are cleared and each
process sets its own as it starts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Final

from . import index_schema as schema
from .index import INDEX_FILENAME
from .rebuild import add_files, read_record

MARGIN: Final = 10.0  # seconds before the oldest mark still searched
_LOOKUP: Final = 500  # SOP Instance UIDs per index lookup


@dataclass(frozen=True, slots=True)
class CatchUp:
    since: float | None  # the oldest mark (None: no process left one, nothing to do)
    folders: int  # series folders listed
    files: int  # .dcm files in them
    indexed: int  # of those, added now
    unreadable: tuple[tuple[Path, str], ...]
    seconds: float


def changed_series(storage_dir: Path, since: float) -> list[Path]:
    """Series folders (STORAGE/<Study>/<Series>) modified at or after `since`; hidden folders skipped."""
    found: list[Path] = []
    with os.scandir(storage_dir) as studies:
        for study in studies:
            if study.name.startswith(".") or not study.is_dir(follow_symlinks=False):
                continue
            with os.scandir(study.path) as series_dirs:
                for series in series_dirs:
                    if series.name.startswith(".") or not series.is_dir(follow_symlinks=False):
                        continue
                    if series.stat(follow_symlinks=False).st_mtime >= since:
                        found.append(Path(series.path))
    return found


def catch_up(storage_dir: Path | str, *, filename: str = INDEX_FILENAME, margin: float = MARGIN) -> CatchUp:
    """Blocking: index what the marks say may be missing, then clear the marks."""
    started = time.monotonic()
    storage_dir = Path(storage_dir)
    conn = schema.open_connection(storage_dir / filename)
    try:
        since = schema.oldest_mark(conn)
        folders = files = indexed = 0
        unreadable: list[tuple[Path, str]] = []
        if since is not None:
            for folder in changed_series(storage_dir, since - margin):
                folders += 1
                paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dcm" and not p.name.startswith("."))
                files += len(paths)
                missing = _unknown(conn, paths)
                if missing:
                    indexed += add_files(conn, storage_dir, ((p, read_record(p)) for p in missing), unreadable)
        conn.execute("BEGIN IMMEDIATE")
        schema.clear_marks(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return CatchUp(since=since, folders=folders, files=files, indexed=indexed, unreadable=tuple(unreadable),
                   seconds=time.monotonic() - started)


def _unknown(conn: sqlite3.Connection, paths: list[Path]) -> list[Path]:
    """The files whose SOP Instance UID (the file's name) the index does not have."""
    out: list[Path] = []
    it = iter(paths)
    while chunk := list(islice(it, _LOOKUP)):
        by_uid = {p.stem: p for p in chunk}
        known = {uid for (uid,) in conn.execute(f"SELECT SOPInstanceUID FROM instance WHERE SOPInstanceUID IN "
                                                 f"({','.join('?' * len(by_uid))})", tuple(by_uid))}
        out += [p for uid, p in by_uid.items() if uid not in known]
    return out
