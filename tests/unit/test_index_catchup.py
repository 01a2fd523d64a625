"""Start-up catch-up (archive/catchup.py): the files filed after the oldest mark but missing from the
index are indexed; series folders untouched since before the mark are not even listed; marks are
cleared afterwards."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from aiodicom.archive import index_schema as schema
from aiodicom.archive.catchup import MARGIN, catch_up
from aiodicom.archive.index import INDEX_FILENAME
from aiodicom.archive.index_sqlite import SqliteIndex
from aiodicom.archive.rebuild import read_record
from tests.dicomdata import Instance, generated_series


def file_into(storage: Path, instances: list[Instance]) -> list[Path]:
    """Place instances where the store files them (STORAGE/<Study>/<Series>/<SOP>.dcm)."""
    paths = []
    for inst in instances:
        target = inst.stored_path(storage)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inst.path, target)
        paths.append(target)
    return paths


def indexed_uids(storage: Path) -> set[str]:
    conn = sqlite3.connect(storage / INDEX_FILENAME)
    try:
        return {uid for (uid,) in conn.execute("SELECT SOPInstanceUID FROM instance")}
    finally:
        conn.close()


def index_with_mark(storage: Path, paths: list[Path], mark: float) -> None:
    records = [read_record(p) for p in paths]
    assert not any(isinstance(r, str) for r in records), records

    async def run() -> None:
        async with await SqliteIndex.open(storage) as index:
            await index.add(records, indexed_until=mark)
    anyio.run(run)


def test_files_filed_after_the_mark_are_indexed_and_the_marks_cleared(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    series = generated_series(tmp_path / "data", 6, pixel_bytes=1024, prefix="cu")
    first, rest = list(series)[:2], list(series)[2:]
    index_with_mark(storage, file_into(storage, first), time.time())
    file_into(storage, rest)  # filed, acknowledged, then the process died before its next batch

    result = catch_up(storage)

    assert result.since is not None and result.indexed == 4 and result.unreadable == ()
    assert indexed_uids(storage) == {i.sop_instance_uid for i in series}
    assert catch_up(storage).since is None  # marks cleared: the next start has nothing to do


def test_series_folders_unchanged_since_before_the_mark_are_not_listed(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    old = generated_series(tmp_path / "old", 2, pixel_bytes=1024, prefix="old")
    new = generated_series(tmp_path / "new", 2, pixel_bytes=1024, prefix="new")
    old_paths = file_into(storage, list(old))
    long_ago = time.time() - 10 * MARGIN
    os.utime(old_paths[0].parent, (long_ago, long_ago))  # its files were indexed long before the mark
    index_with_mark(storage, [], time.time())
    file_into(storage, list(new))

    result = catch_up(storage)

    assert result.folders == 1 and result.indexed == 2
    assert indexed_uids(storage) == {i.sop_instance_uid for i in new}


def test_without_marks_nothing_is_scanned(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    file_into(storage, list(generated_series(tmp_path / "data", 2, pixel_bytes=1024, prefix="nm")))
    conn = schema.open_connection(storage / INDEX_FILENAME)  # an index no feeder ever wrote to
    conn.close()
    result = catch_up(storage)
    assert result.since is None and result.folders == 0 and result.indexed == 0


@pytest.mark.parametrize("junk", ["not dicom at all", ""])
def test_an_unreadable_file_is_reported_not_fatal(tmp_path: Path, junk: str) -> None:
    storage = tmp_path / "storage"
    good = file_into(storage, list(generated_series(tmp_path / "data", 1, pixel_bytes=1024, prefix="ur")))
    index_with_mark(storage, [], time.time())
    bad = good[0].parent / "1.2.3.4.dcm"
    bad.write_text(junk)
    result = catch_up(storage)
    assert result.indexed == 1 and [p for p, _ in result.unreadable] == [bad]
