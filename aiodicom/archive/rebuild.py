"""Re-create the index from the files of a storage folder (backs `aiodicom index rebuild DIR`).

The files are the truth (PS3.10 files at STORAGE/<Study>/<Series>/<SOP>.dcm); the index is derived.
Headers are read with pydicom, only the indexed tags and never the pixel data, by a few threads
(file reads release the GIL); one connection inserts them in large transactions into a new file
that then replaces `index.sqlite` atomically. Run it while no server uses the folder.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pydicom import dcmread

from aiodicom.archive import index_schema as schema
from aiodicom.archive.index import INDEX_FILENAME, INDEXED_TAGS, IndexRecord


@dataclass(frozen=True, slots=True)
class RebuildStats:
    files: int  # .dcm files found
    indexed: int
    unreadable: tuple[tuple[Path, str], ...]  # file and why it was left out
    patients: int
    studies: int
    series: int
    instances: int
    seconds: float


def storage_files(storage_dir: Path) -> Iterator[Path]:
    """Every .dcm file under the folder, in a stable order, skipping hidden folders such as
    `.incoming/` where partial files wait for their atomic rename."""
    for root, dirs, files in os.walk(storage_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".dcm") and not name.startswith("."):
                yield Path(root, name)


def read_record(path: Path) -> IndexRecord | str:
    """The index record of one file, or why it cannot be indexed."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=list(INDEXED_TAGS))
        meta = ds.file_meta
        ts = str(meta.get("TransferSyntaxUID", "")).strip(" \0")
        if not ts:
            return "no Transfer Syntax UID in the file meta information"
        record = IndexRecord.from_dataset(ds, path=path, size=path.stat().st_size, transfer_syntax=ts)
    except Exception as exc:  # any unreadable file is reported, never fatal
        return f"{type(exc).__name__}: {exc}"
    # The data set is authoritative; the meta group (PS3.10 §7.1) fills gaps.
    return dataclasses.replace(
        record,
        sop_class_uid=record.sop_class_uid or str(meta.get("MediaStorageSOPClassUID", "")).strip(" \0"),
        sop_instance_uid=record.sop_instance_uid or str(meta.get("MediaStorageSOPInstanceUID", "")).strip(" \0"),
    )


def add_files(conn: sqlite3.Connection, storage_dir: Path, read: Iterable[tuple[Path, IndexRecord | str]],
              unreadable: list[tuple[Path, str]]) -> int:
    """Index files (each with its read_record result) in one transaction; returns how many were indexed
    and appends the others to `unreadable` with why."""
    indexed = 0
    touched = schema.Touched()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for path, result in read:
            if isinstance(result, str):
                unreadable.append((path, result))
                continue
            try:
                schema.add_decoded(conn, touched, schema.decode(result, storage_dir))
            except ValueError as exc:
                unreadable.append((path, str(exc)))
                continue
            indexed += 1
        schema.finish(conn, touched)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return indexed


def rebuild_index(
    storage_dir: Path | str,
    *,
    filename: str = INDEX_FILENAME,
    workers: int = 4,
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildStats:
    """Delete and re-create the index of `storage_dir` from its files.

    progress(files_seen, indexed) is called after each transaction of `batch` files.
    """
    started = time.monotonic()
    storage_dir = Path(storage_dir)
    target = storage_dir / filename
    scratch = storage_dir / f"{filename}.rebuild"
    for stale in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
        stale.unlink(missing_ok=True)

    files = indexed = 0
    unreadable: list[tuple[Path, str]] = []
    conn = schema.open_connection(scratch)
    try:
        paths = storage_files(storage_dir)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="index-rebuild") as pool:
            while chunk := list(islice(paths, batch)):
                files += len(chunk)
                indexed += add_files(conn, storage_dir, zip(chunk, pool.map(read_record, chunk)), unreadable)
                if progress is not None:
                    progress(files, indexed)
        counts = conn.execute(schema.COUNTS_SQL).fetchone()
    finally:
        conn.close()  # the last connection checkpoints the WAL into the file and deletes it

    # A WAL left by the old index must not be replayed onto the new file: remove it first.
    for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(scratch, target)
    return RebuildStats(files=files, indexed=indexed, unreadable=tuple(unreadable), patients=counts[0],
                        studies=counts[1], series=counts[2], instances=counts[3],
                        seconds=time.monotonic() - started)
