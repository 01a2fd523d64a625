"""FileStore: instances land complete under STUDY/SERIES/SOP.dcm, or not at all."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pydicom
import pytest
from pydicom.data import get_testdata_file

from aiodicom.archive import (
    ArchiveError,
    DataSetMismatch,
    DataSync,
    DuplicateInstance,
    DuplicatePolicy,
    FileStore,
    InvalidDataSet,
    InvalidUID,
    StorageError,
    StorageFull,
    StoreOutcome,
    parse_file_meta,
)
from aiodicom.archive.errors import storage_error
from aiodicom.archive.peek import PATIENT_NAME, STUDY_INSTANCE_UID, inflate_head, is_deflated, peek
from aiodicom.implementation import IMPLEMENTATION_CLASS_UID

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
STUDY, SERIES = "1.2.826.0.1.3680043.9.7.1", "1.2.826.0.1.3680043.9.7.1.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    with FileStore(tmp_path / "archive") as s:
        yield s


def el(tag: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element (PS3.5 §7.1.2), value padded to even length."""
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def dataset(sop: str, *, study: str | None = STUDY, series: str | None = SERIES, cls: str | None = CT,
            before_study: bytes = b"", pixels: bytes = bytes(256)) -> bytes:  # fmt: skip
    parts = [
        el(0x00080016, "UI", cls.encode()) if cls else b"",
        el(0x00080018, "UI", sop.encode()) if sop else b"",
        el(0x00100010, "PN", b"DOE^JANE"),
        before_study,
        el(0x0020000D, "UI", study.encode()) if study else b"",
        el(0x0020000E, "UI", series.encode()) if series else b"",
        el(0x7FE00010, "OW", pixels),
    ]
    return b"".join(parts)


async def store_bytes(
    store: FileStore, ds: bytes, sop: str, *, cls: str = CT, ts: str = EXPLICIT, fragment: int = 1000
):  # type: ignore[no-untyped-def]
    inc = store.begin(sop_class_uid=cls, sop_instance_uid=sop, transfer_syntax=ts, source_ae="MODALITY")
    view = memoryview(ds)
    for i in range(0, len(view), fragment):  # as PDV fragments arrive
        inc.write(view[i : i + fragment])
    return await inc.commit()


def leftovers(store: FileStore) -> list[str]:
    """Everything in .incoming except this store's own session lock."""
    return sorted(n for n in os.listdir(store.incoming) if not n.endswith(".lock"))


def final_files(store: FileStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*.dcm") if store.incoming not in p.parents)


# --- the happy path ------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_stored_file_is_our_meta_then_the_received_bytes_unchanged(store: FileStore) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    src = parse_file_meta(data)
    ds = data[src.dataset_offset :]
    stored = await store_bytes(store, ds, src.sop_instance_uid, cls=src.sop_class_uid, ts=src.transfer_syntax)

    ref = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert stored.path == store.root / ref.StudyInstanceUID / ref.SeriesInstanceUID / f"{ref.SOPInstanceUID}.dcm"
    content = stored.path.read_bytes()
    meta = parse_file_meta(content)
    assert content[meta.dataset_offset :] == ds  # byte for byte as received, never re-encoded
    assert meta.dataset_offset == stored.dataset_offset
    assert (meta.sop_instance_uid, meta.sop_class_uid, meta.transfer_syntax) == (
        ref.SOPInstanceUID, ref.SOPClassUID, src.transfer_syntax)  # fmt: skip
    assert meta.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert meta.source_ae == "MODALITY"
    assert stored.size == len(content) == os.path.getsize(stored.path)
    assert stored.outcome is StoreOutcome.STORED
    assert (stored.study_instance_uid, stored.series_instance_uid) == (ref.StudyInstanceUID, ref.SeriesInstanceUID)
    assert stored.attributes[PATIENT_NAME] == b"CompressedSamples^CT1 "
    assert pydicom.dcmread(stored.path).PatientName == ref.PatientName
    assert leftovers(store) == []
    assert oct(stored.path.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm"]
)
async def test_every_transfer_syntax_is_filed_under_its_own_uids(store: FileStore, name: str) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    src = parse_file_meta(data)
    stored = await store_bytes(store, data[src.dataset_offset :], src.sop_instance_uid, cls=src.sop_class_uid,
                               ts=src.transfer_syntax, fragment=4096)  # fmt: skip
    ref = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert stored.path.parent == store.root / ref.StudyInstanceUID / ref.SeriesInstanceUID
    assert pydicom.dcmread(stored.path, stop_before_pixels=True).SOPInstanceUID == ref.SOPInstanceUID


@pytest.mark.anyio
async def test_attributes_beyond_the_first_64_kib_are_read_back_from_the_file(store: FileStore) -> None:
    big_private = el(0x00090010, "LO", b"ACME") + el(0x00091001, "OB", os.urandom(200_000))
    ds = dataset("1.2.3.100", before_study=big_private)
    stored = await store_bytes(store, ds, "1.2.3.100", fragment=16_384)
    assert stored.path.parent == store.root / STUDY / SERIES
    assert stored.attributes[STUDY_INSTANCE_UID] == STUDY.encode() + b"\0"  # raw: UI padding kept


@pytest.mark.anyio
async def test_deflated_data_set_with_attributes_far_into_the_stream(store: FileStore) -> None:
    ds = dataset("1.2.3.101", before_study=el(0x00091001, "OB", os.urandom(300_000)))
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = c.compress(ds) + c.flush()
    assert len(inflate_head(packed[:65_536], 1 << 20)) < 300_000  # the head alone cannot hold the Study UID
    stored = await store_bytes(store, packed, "1.2.3.101", ts=DEFLATED, fragment=16_384)
    assert stored.path.parent == store.root / STUDY / SERIES
    assert stored.path.read_bytes()[stored.dataset_offset :] == packed


@pytest.mark.anyio
async def test_small_deflated_data_set_inflating_far_is_scanned_in_memory(store: FileStore) -> None:
    ds = dataset("1.2.3.102", before_study=el(0x00091001, "OB", bytes(2_000_000)))  # zeros: deflates to ~2 KB
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = c.compress(ds) + c.flush()
    assert len(packed) < 65_536
    stored = await store_bytes(store, packed, "1.2.3.102", ts=DEFLATED)
    assert stored.path.parent == store.root / STUDY / SERIES


@pytest.mark.anyio
async def test_sync_false_stores_the_same_files(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a", sync=False) as fast:
        stored = await store_bytes(fast, dataset("1.2.3.5"), "1.2.3.5")
        assert stored.path.read_bytes()[stored.dataset_offset :] == dataset("1.2.3.5")
        assert leftovers(fast) == []


# --- nothing partial, ever ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../x", "1.2..3", "1" * 65, "", "١"])
def test_invalid_command_uid_is_refused_before_anything_is_written(store: FileStore, bad: str) -> None:
    with pytest.raises(InvalidUID):
        store.begin(sop_class_uid=CT, sop_instance_uid=bad, transfer_syntax=EXPLICIT)
    with pytest.raises(InvalidUID):
        store.begin(sop_class_uid=bad, sop_instance_uid="1.2.3", transfer_syntax=EXPLICIT)
    assert leftovers(store) == []
    assert sorted(os.listdir(store.root)) == [".incoming"]


def test_a_small_instance_touches_no_file_before_commit(store: FileStore) -> None:
    inc = store.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.6", transfer_syntax=EXPLICIT)
    inc.write(dataset("1.2.3.6"))
    assert inc.in_memory and not inc.temp_path.exists() and leftovers(store) == []
    inc.abort()
    assert leftovers(store) == [] and final_files(store) == []


def test_abort_removes_the_temp_file_and_is_idempotent(store: FileStore) -> None:
    inc = store.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.6", transfer_syntax=EXPLICIT)
    ds = dataset("1.2.3.6", pixels=bytes(100_000))  # more than the 64 KiB kept in memory
    inc.write(ds[:50_000])
    assert inc.in_memory
    inc.write(ds[50_000:])
    store.wait_for_writes()  # fragments past memory are written by the store's writer thread
    assert not inc.in_memory and inc.temp_path.exists() and leftovers(store) == [inc.temp_path.name]
    content = inc.temp_path.read_bytes()
    assert content[parse_file_meta(content).dataset_offset :] == ds  # meta, the head, then the rest
    inc.abort()
    inc.abort()
    store.wait_for_writes()
    assert leftovers(store) == [] and final_files(store) == []
    with pytest.raises(ArchiveError):
        inc.write(b"more")


def test_leaving_the_context_without_commit_aborts(store: FileStore) -> None:
    with (
        pytest.raises(RuntimeError),
        store.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.7", transfer_syntax=EXPLICIT) as inc,
    ):
        inc.write(dataset("1.2.3.7")[:100])
        raise RuntimeError("association aborted")
    assert leftovers(store) == []


@pytest.mark.anyio
async def test_committed_instance_cannot_be_written_or_committed_again(store: FileStore) -> None:
    inc = store.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.8", transfer_syntax=EXPLICIT)
    inc.write(dataset("1.2.3.8"))
    await inc.commit()
    with pytest.raises(ArchiveError):
        inc.write(b"x")
    with pytest.raises(ArchiveError):
        await inc.commit()
    inc.abort()  # a no-op now: the stored file stays
    assert len(final_files(store)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ds", "error"),
    [
        (dataset("1.2.3.9", study=None), InvalidDataSet),
        (dataset("1.2.3.9", series=None), InvalidDataSet),
        (dataset("1.2.3.9", study="../../etc"), InvalidDataSet),
        (dataset("1.2.3.9", series="1.2.3/4"), InvalidDataSet),
        (dataset(""), InvalidDataSet),  # no SOP Instance UID in the data set
        (dataset("1.2.3.999"), DataSetMismatch),  # not the instance the command announced
        (dataset("1.2.3.9", cls=MR), DataSetMismatch),
        (b"\x08\x00\x16\x00??" + bytes(20), InvalidDataSet),  # malformed: PeekError
        (b"", InvalidDataSet),
    ],
)
async def test_data_sets_that_cannot_be_filed_leave_nothing(store: FileStore, ds: bytes, error: type) -> None:
    with pytest.raises(error):
        await store_bytes(store, ds, "1.2.3.9")
    assert leftovers(store) == [] and final_files(store) == []
    assert sorted(os.listdir(store.root)) == [".incoming"]


def test_mismatch_answers_a900_and_cannot_understand_answers_c000() -> None:
    assert DataSetMismatch.status == 0xA900 and InvalidDataSet.status == 0xC000
    assert StorageFull.status == 0xA700 and DuplicateInstance.status == 0x0111


# --- duplicates ----------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_overwrite_replaces_the_earlier_copy(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a", duplicates=DuplicatePolicy.OVERWRITE) as s:
        first = await store_bytes(s, dataset("1.2.3.10", pixels=b"\x01" * 64), "1.2.3.10")
        second = await store_bytes(s, dataset("1.2.3.10", pixels=b"\x02" * 64), "1.2.3.10")
        assert (first.outcome, second.outcome) == (StoreOutcome.STORED, StoreOutcome.REPLACED)
        assert second.path.read_bytes().endswith(b"\x02" * 64)
        assert leftovers(s) == [] and final_files(s) == [second.path]


@pytest.mark.anyio
async def test_keep_first_discards_the_new_copy_and_succeeds(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a", duplicates=DuplicatePolicy.KEEP_FIRST) as s:
        await store_bytes(s, dataset("1.2.3.11", pixels=b"\x01" * 64), "1.2.3.11")
        again = await store_bytes(s, dataset("1.2.3.11", pixels=b"\x02" * 64), "1.2.3.11")
        assert again.outcome is StoreOutcome.DUPLICATE_KEPT_FIRST
        assert again.path.read_bytes().endswith(b"\x01" * 64)
        assert leftovers(s) == [] and final_files(s) == [again.path]


@pytest.mark.anyio
async def test_reject_raises_and_keeps_the_first(tmp_path: Path) -> None:
    with FileStore(tmp_path / "a", duplicates=DuplicatePolicy.REJECT) as s:
        first = await store_bytes(s, dataset("1.2.3.12", pixels=b"\x01" * 64), "1.2.3.12")
        with pytest.raises(DuplicateInstance):
            await store_bytes(s, dataset("1.2.3.12", pixels=b"\x02" * 64), "1.2.3.12")
        assert first.path.read_bytes().endswith(b"\x01" * 64)
        assert leftovers(s) == [] and final_files(s) == [first.path]


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [True, False])
async def test_concurrent_duplicates_under_keep_first_store_exactly_one(tmp_path: Path, sync: bool) -> None:
    outcomes: list[StoreOutcome] = []
    with FileStore(tmp_path / "a", duplicates=DuplicatePolicy.KEEP_FIRST, sync=sync) as s:

        async def one(k: int) -> None:
            outcomes.append((await store_bytes(s, dataset("1.2.3.13", pixels=bytes([k]) * 64), "1.2.3.13")).outcome)

        async with anyio.create_task_group() as tg:
            for k in range(12):
                tg.start_soon(one, k)
        assert sorted(o.value for o in outcomes) == ["duplicate-kept-first"] * 11 + ["stored"]
        assert leftovers(s) == [] and len(final_files(s)) == 1


# --- concurrency and group commit ------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("data_sync", list(DataSync))
async def test_concurrent_commits_all_land_complete(tmp_path: Path, data_sync: DataSync) -> None:
    expected: dict[Path, bytes] = {}
    with FileStore(tmp_path / "a", data_sync=data_sync, workers=4) as s:

        async def one(k: int) -> None:
            sop = f"1.2.3.20.{k}"
            ds = dataset(sop, series=f"{SERIES}.{k % 3}", study=f"{STUDY}.{k % 2}", pixels=os.urandom(2048))
            stored = await store_bytes(s, ds, sop, fragment=700)
            expected[stored.path] = ds

        async with anyio.create_task_group() as tg:
            for k in range(60):
                tg.start_soon(one, k)
        assert len(expected) == 60 and sorted(expected) == final_files(s)
        for path, ds in expected.items():
            content = path.read_bytes()
            assert content[parse_file_meta(content).dataset_offset :] == ds
        assert leftovers(s) == []


def hold_first_fdatasync(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The first fdatasync waits for `gate` (a slow disk under the first batch); `entered` tells it began."""
    gate, entered = threading.Event(), threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if not entered.is_set():
            entered.set()
            gate.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return gate, entered


@pytest.mark.anyio
async def test_commits_arriving_during_a_sync_share_the_next_batch(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, entered = hold_first_fdatasync(monkeypatch)
    batches: list[int] = []
    finish = store._committer._finish

    def counting_finish(batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        return finish(batch)

    monkeypatch.setattr(store._committer, "_finish", counting_finish)

    async with anyio.create_task_group() as tg:
        tg.start_soon(store_bytes, store, dataset("1.2.3.30"), "1.2.3.30")
        await anyio.to_thread.run_sync(entered.wait, 30)  # batch 1 is syncing
        for k in range(1, 6):
            tg.start_soon(store_bytes, store, dataset(f"1.2.3.30.{k}"), f"1.2.3.30.{k}")
        for _ in range(100):
            await anyio.lowlevel.checkpoint()  # let the five queue up behind the running batch
        gate.set()
    assert batches == [1, 5]
    assert len(final_files(store)) == 6 and leftovers(store) == []


@pytest.mark.anyio
async def test_a_commit_cancelled_while_queued_leaves_nothing(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, entered = hold_first_fdatasync(monkeypatch)
    waiting = store.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.41", transfer_syntax=EXPLICIT)
    waiting.write(dataset("1.2.3.41"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(store_bytes, store, dataset("1.2.3.40"), "1.2.3.40")
        await anyio.to_thread.run_sync(entered.wait, 30)
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_soon, scope, store)
            await waiting.commit()
        assert scope.cancelled_caught
        assert not waiting.temp_path.exists()
        gate.set()
    assert [p.name for p in final_files(store)] == ["1.2.3.40.dcm"]
    assert leftovers(store) == []


async def _cancel_soon(scope: anyio.CancelScope, store: FileStore) -> None:
    while not store._committer._queue:  # the commit under test has joined the queue
        await anyio.lowlevel.checkpoint()
    scope.cancel()


# --- crash leftovers and sessions ----------------------------------------------------------------------
def test_open_sweeps_leftovers_of_dead_sessions_only(tmp_path: Path) -> None:
    root = tmp_path / "a"
    incoming = root / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "0badc0de-1.part").write_bytes(b"partial, no lock: its process is gone")
    (incoming / "deadbeef.lock").write_bytes(b"")  # a lock nobody holds: crashed session
    (incoming / "deadbeef-2.part").write_bytes(b"partial")
    (incoming / "notes.txt").write_bytes(b"not ours")
    with FileStore(root) as live:
        live_inc = live.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.50", transfer_syntax=EXPLICIT)
        live_inc.write(bytes(70_000))  # spilled to its temp file
        assert sorted(os.listdir(incoming)) == sorted(["notes.txt", f"{live._session}.lock", live_inc.temp_path.name])
        # A second process opening the same root must not sweep the live session's temp file.
        with FileStore(root) as other:
            assert live_inc.temp_path.exists()
            assert other._session != live._session
        live_inc.abort()
    assert sorted(os.listdir(incoming)) == ["notes.txt"]


def test_parts_of_a_closed_store_are_swept_by_the_next_open(tmp_path: Path) -> None:
    first = FileStore(tmp_path / "a")
    inc = first.begin(sop_class_uid=CT, sop_instance_uid="1.2.3.51", transfer_syntax=EXPLICIT)
    inc.write(bytes(70_000))  # spilled, never committed
    assert inc.temp_path.exists()
    first.close()  # as if the process died: its lock is released
    with FileStore(tmp_path / "a") as second:
        assert second.sweep() == 0  # open() already swept it
        assert leftovers(second) == []


def test_a_held_lock_file_marks_a_live_session(tmp_path: Path) -> None:
    incoming = tmp_path / "a" / ".incoming"
    incoming.mkdir(parents=True)
    fd = os.open(incoming / "cafe.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process, alive, holding its session
    try:
        (incoming / "cafe-1.part").write_bytes(b"in flight elsewhere")
        with FileStore(tmp_path / "a"):
            assert (incoming / "cafe-1.part").exists()
    finally:
        os.close(fd)


@pytest.mark.anyio
async def test_a_study_directory_deleted_behind_our_back_is_recreated(store: FileStore) -> None:
    first = await store_bytes(store, dataset("1.2.3.60"), "1.2.3.60")
    shutil.rmtree(store.root / STUDY)  # e.g. the study was deleted from the archive
    again = await store_bytes(store, dataset("1.2.3.61"), "1.2.3.61")
    assert again.path.exists() and not first.path.exists()
    assert leftovers(store) == []


# --- storage full ----------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.anyio
async def test_a_full_disk_during_write_raises_storage_full_and_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=256k") as mnt, FileStore(mnt) as s:
        with pytest.raises(StorageFull) as info:
            await store_bytes(s, dataset("1.2.3.70", pixels=bytes(1 << 20)), "1.2.3.70", fragment=16_384)
        assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
        assert leftovers(s) == [] and final_files(s) == []
        # Once space is back (the failed file was removed), storing works again.
        ok = await store_bytes(s, dataset("1.2.3.71"), "1.2.3.71")
        assert ok.path.exists()


@pytest.mark.anyio
async def test_a_full_disk_when_a_small_instance_is_written_out_raises_storage_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=32k") as mnt, FileStore(mnt) as s:
        with pytest.raises(StorageFull):  # 60 KB held in memory until commit, where it meets the full disk
            await store_bytes(s, dataset("1.2.3.74", pixels=bytes(60_000)), "1.2.3.74")
        assert leftovers(s) == [] and final_files(s) == []


@pytest.mark.anyio
async def test_no_inode_left_for_the_study_directory_raises_storage_full(tmp_path: Path) -> None:
    # nr_inodes=4: the mount root, .incoming, the session lock and one temp file; no room for a directory.
    with tmpfs(tmp_path / "few", "size=1m,nr_inodes=4") as mnt, FileStore(mnt) as s:
        with pytest.raises(StorageFull):
            await store_bytes(s, dataset("1.2.3.72"), "1.2.3.72")
        assert leftovers(s) == [] and final_files(s) == []


@pytest.mark.anyio
async def test_enospc_from_fdatasync_raises_storage_full_and_leaves_nothing(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:  # delayed allocation: the space runs out only at writeback
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(StorageFull):
        await store_bytes(store, dataset("1.2.3.73"), "1.2.3.73")
    assert leftovers(store) == [] and final_files(store) == []


def test_os_errors_map_to_storage_full_or_storage_error() -> None:
    assert isinstance(storage_error(OSError(errno.EDQUOT, "quota"), "writing"), StorageFull)
    eio = storage_error(OSError(errno.EIO, "I/O error"), "writing")
    assert type(eio) is StorageError and eio.errno == errno.EIO and "writing" in str(eio)
    assert issubclass(StorageFull, StorageError) and issubclass(StorageError, ArchiveError)


def test_a_store_that_cannot_be_opened_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError):
        FileStore(blocker / "archive")


def test_peek_of_the_stored_head_agrees_with_the_attributes(store: FileStore) -> None:
    ds = dataset("1.2.3.80")
    stored = anyio.run(store_bytes, store, ds, "1.2.3.80")
    assert dict(stored.attributes) == {
        k: v for k, v in peek(ds, EXPLICIT, frozenset(stored.attributes), complete=True).items()
    }
    assert not is_deflated(stored.transfer_syntax)
