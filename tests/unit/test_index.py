"""The archive index (SQLite): add/query at every level, upserts, counts, streaming, concurrency,
and rebuilding from a folder of PS3.10 files."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydicom import Dataset
from hypothesis import given
from hypothesis import strategies as hs
from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from aiodicom.archive.index import INDEX_FILENAME, IndexCounts, IndexRecord, Level, Model
from aiodicom.archive.index_schema import _texts
from aiodicom.archive.index_sqlite import IndexClosedError, SqliteIndex
from aiodicom.archive.matching import Matcher, Query, candidate_values, compile_query
from aiodicom.archive.rebuild import read_record, rebuild_index

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def instance(patient: str, study: str, series: str, sop: str, **attrs: Any) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = patient
    ds.PatientName = attrs.pop("PatientName", f"Name^{patient}")
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.SOPClassUID = attrs.pop("SOPClassUID", CTImageStorage)
    ds.Modality = attrs.pop("Modality", "CT")
    ds.StudyDate = attrs.pop("StudyDate", "20240115")
    ds.StudyTime = attrs.pop("StudyTime", "101500")
    ds.InstanceNumber = sop.rsplit(".", 1)[-1]
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def record(storage: Path, ds: Dataset, size: int = 1000) -> IndexRecord:
    path = storage / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    return IndexRecord.from_dataset(ds, path=path, size=size, transfer_syntax=ExplicitVRLittleEndian)


def archive() -> Iterator[Dataset]:
    """Two patients, three studies, four series, eleven instances."""
    yield from (instance("P1", "1.1", "1.1.1", f"1.1.1.{i}", SeriesNumber=1, AccessionNumber="A11") for i in range(3))
    yield from (instance("P1", "1.1", "1.1.2", f"1.1.2.{i}", SeriesNumber=2, Modality="PR", AccessionNumber="A11")
                for i in range(2))
    yield from (instance("P1", "1.2", "1.2.1", f"1.2.1.{i}", StudyDate="20230301", Modality="MR",
                         SOPClassUID=MRImageStorage) for i in range(4))
    yield from (instance("P2", "2.1", "2.1.1", f"2.1.1.{i}", PatientName="Müller^Hans", StudyDate="20240120")
                for i in range(2))


def identifier(**keys: str) -> Dataset:
    """A C-FIND identifier as received: raw UTF-8 values, ranges and wild cards verbatim."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        raw = value.encode() + (b" " if len(value.encode()) % 2 else b"")
        ds[tag] = RawDataElement(Tag(tag), dictionary_VR(tag), len(raw), raw, 0, False, True)
    return ds


async def rows(index: SqliteIndex, level: Level, model: Model = Model.STUDY_ROOT, **keys: Any) -> list[dict[str, Any]]:
    out = [row async for row in index.query(level, compile_query(identifier(**keys)), model=model)]
    return sorted(out, key=lambda r: tuple(str(v) for v in r.values()))


@pytest.fixture
async def index(tmp_path: Path):
    async with await SqliteIndex.open(tmp_path) as idx:
        await idx.add([record(tmp_path, ds) for ds in archive()])
        yield idx


async def test_query_at_every_level_returns_that_level_with_its_counts(index: SqliteIndex):
    patients = await rows(index, Level.PATIENT, Model.PATIENT_ROOT, PatientID="", NumberOfPatientRelatedStudies="")
    assert [(r["PatientID"], r["NumberOfPatientRelatedStudies"], r["NumberOfPatientRelatedSeries"],
             r["NumberOfPatientRelatedInstances"]) for r in patients] == [("P1", 2, 3, 9), ("P2", 1, 1, 2)]

    studies = await rows(index, Level.STUDY, PatientID="P1", ModalitiesInStudy="", SOPClassesInStudy="")
    assert [(r["StudyInstanceUID"], r["NumberOfStudyRelatedSeries"], r["NumberOfStudyRelatedInstances"],
             r["ModalitiesInStudy"], r["SOPClassesInStudy"]) for r in studies] == [
        ("1.1", 2, 5, "CT\\PR", CTImageStorage), ("1.2", 1, 4, "MR", MRImageStorage)]
    assert studies[0]["PatientName"] == "Name^P1" and studies[0]["AccessionNumber"] == "A11"

    series = await rows(index, Level.SERIES, StudyInstanceUID="1.1", SeriesInstanceUID="")
    assert [(r["SeriesInstanceUID"], r["SeriesNumber"], r["Modality"], r["NumberOfSeriesRelatedInstances"])
            for r in series] == [("1.1.1", 1, "CT", 3), ("1.1.2", 2, "PR", 2)]

    images = await rows(index, Level.IMAGE, SeriesInstanceUID="1.1.2", SOPInstanceUID="")
    assert [(r["SOPInstanceUID"], r["InstanceNumber"], r["AvailableTransferSyntaxUID"]) for r in images] == [
        ("1.1.2.0", 0, ExplicitVRLittleEndian), ("1.1.2.1", 1, ExplicitVRLittleEndian)]
    assert await index.counts() == IndexCounts(2, 3, 4, 11, 11_000)


async def test_matching_is_pushed_down_and_completed_in_python(index: SqliteIndex):
    assert [r["StudyInstanceUID"] for r in await rows(index, Level.STUDY, StudyDate="20240101-")] == ["1.1", "2.1"]
    assert [r["StudyInstanceUID"] for r in await rows(index, Level.STUDY, ModalitiesInStudy="MR\\PR")] == ["1.1", "1.2"]
    assert [r["PatientID"] for r in await rows(index, Level.STUDY, PatientName="Mü*")] == ["P2"]
    fuzzy = compile_query(identifier(PatientName="mul^ha"), fuzzy_pn=True)
    assert [r["PatientID"] async for r in index.query(Level.STUDY, fuzzy)] == ["P2"]
    assert await rows(index, Level.STUDY, AccessionNumber='""', PatientID="P1") == await rows(
        index, Level.STUDY, StudyInstanceUID="1.2")
    # a key the index does not hold is not matched (universal), only returned empty by the service
    assert len(await rows(index, Level.STUDY, PatientComments="nothing like this")) == 3


async def test_levels_must_exist_in_the_model(index: SqliteIndex):
    with pytest.raises(ValueError):
        await rows(index, Level.PATIENT, Model.STUDY_ROOT)
    with pytest.raises(ValueError):
        await rows(index, Level.SERIES, Model.PATIENT_STUDY_ONLY)
    assert "PatientName" in index.supported_keys(Level.IMAGE) and "SOPInstanceUID" not in index.supported_keys(
        Level.SERIES)


async def test_instances_for_retrieval_and_their_count(index: SqliteIndex, tmp_path: Path):
    got = [i async for i in index.instances(Level.SERIES, {"SeriesInstanceUID": ["1.1.2", "2.1.1"]})]
    assert sorted(i.sop_instance_uid for i in got) == ["1.1.2.0", "1.1.2.1", "2.1.1.0", "2.1.1.1"]
    first = min(got, key=lambda i: i.sop_instance_uid)
    assert first.path == tmp_path / "1.1" / "1.1.2" / "1.1.2.0.dcm"
    assert (first.study_instance_uid, first.patient_id, first.size) == ("1.1", "P1", 1000)
    assert await index.instance_count(Level.STUDY, {"PatientID": ["P1"], "StudyInstanceUID": ["1.1", "2.1"]}) == 5
    assert await index.instance_count(Level.PATIENT, {"PatientID": ["P2"]}) == 2
    with pytest.raises(ValueError):  # a retrieval must name the entities of its level
        await index.instance_count(Level.STUDY, {"PatientID": ["P1"]})
    assert (await index.get("1.2.1.3")).sop_class_uid == MRImageStorage
    assert await index.get("9.9") is None


async def test_an_instance_stored_again_replaces_its_row(index: SqliteIndex, tmp_path: Path):
    again = instance("P1", "1.1", "1.1.1", "1.1.1.0", SeriesNumber=1, SeriesDescription="late description")
    await index.add([record(tmp_path, again, size=5)])
    assert await index.counts() == IndexCounts(2, 3, 4, 11, 10_005)
    series = await rows(index, Level.SERIES, SeriesInstanceUID="1.1.1")
    assert series[0]["SeriesDescription"] == "late description"
    assert series[0]["NumberOfSeriesRelatedInstances"] == 3
    # empty values of a later instance never erase what an earlier one provided
    assert (await rows(index, Level.STUDY, StudyInstanceUID="1.1"))[0]["AccessionNumber"] == "A11"


async def test_moves_between_entities_keep_counts_and_drop_empty_parents(index: SqliteIndex, tmp_path: Path):
    # study 2.1 re-stored under another Patient ID: P2 is left empty and disappears
    await index.add([record(tmp_path, instance("P3", "2.1", "2.1.1", f"2.1.1.{i}")) for i in range(2)])
    assert [r["PatientID"] for r in await rows(index, Level.PATIENT, Model.PATIENT_ROOT)] == ["P1", "P3"]
    # an instance moved to another series of another study
    await index.add([record(tmp_path, instance("P1", "1.2", "1.2.1", "1.1.2.0", Modality="MR"))])
    studies = {r["StudyInstanceUID"]: r for r in await rows(index, Level.STUDY, PatientID="P1")}
    assert studies["1.1"]["NumberOfStudyRelatedInstances"] == 4 and studies["1.2"]["NumberOfStudyRelatedInstances"] == 5
    assert await index.counts() == IndexCounts(2, 3, 4, 11, 11_000)


async def test_remove_recounts_and_deletes_emptied_entities(index: SqliteIndex):
    for i in range(4):
        assert await index.remove(f"1.2.1.{i}")
    assert not await index.remove("1.2.1.0")
    assert await index.counts() == IndexCounts(2, 2, 3, 7, 7000)
    patients = await rows(index, Level.PATIENT, Model.PATIENT_ROOT, PatientID="P1")
    assert (patients[0]["NumberOfPatientRelatedStudies"], patients[0]["NumberOfPatientRelatedInstances"]) == (1, 5)


async def test_character_sets_are_decoded_before_indexing(tmp_path: Path):
    latin = instance("L1", "3.1", "3.1.1", "3.1.1.1", PatientName="Müller^Jürgen")
    latin.SpecificCharacterSet = "ISO_IR 100"
    japanese = instance("J1", "3.2", "3.2.1", "3.2.1.1")
    japanese.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    japanese.PatientName = "Yamada^Tarou=山田^太郎"
    recs = [record(tmp_path, latin), record(tmp_path, japanese)]
    assert recs[0].attributes[0x00100010] == "Müller^Jürgen".encode("latin-1")
    assert b"\x1b$B" in recs[1].attributes[0x00100010]  # ISO 2022 escape sequence kept as received
    async with await SqliteIndex.open(tmp_path) as idx:
        await idx.add(recs)
        assert [r["PatientID"] for r in await rows(idx, Level.STUDY, PatientName="Mü*")] == ["L1"]
        found = await rows(idx, Level.STUDY, PatientName="山田*")
        assert [r["PatientName"] for r in found] == ["Yamada^Tarou=山田^太郎"]


async def test_same_bytes_in_two_character_sets_index_as_two_names(tmp_path: Path):
    # Values are made into text once per distinct raw value (index_schema._texts): bytes whose meaning
    # depends on the character set must not take the text they had under another one.
    raw = "Müller^Jürgen".encode("latin-1")  # in ISO_IR 144 (Cyrillic) the same bytes read otherwise
    latin = instance("L1", "4.1", "4.1.1", "4.1.1.1", SpecificCharacterSet="ISO_IR 100")
    cyrillic = instance("C1", "4.2", "4.2.1", "4.2.1.1", SpecificCharacterSet="ISO_IR 144")
    recs = [record(tmp_path, latin), record(tmp_path, cyrillic)]
    for rec in recs:
        rec.attributes[0x00100010] = raw  # type: ignore[index]
    async with await SqliteIndex.open(tmp_path) as idx:
        await idx.add(recs)
        names = {r["PatientID"]: r["PatientName"] for r in await rows(idx, Level.STUDY, PatientName="*")}
    assert names == {"L1": raw.decode("latin-1"), "C1": raw.decode("iso8859_5")}


class CountingMatcher(Matcher):
    """Accepts everything but counts the rows it saw: a residual Python filter has no SQL."""

    __slots__ = ("key", "seen")

    def __init__(self) -> None:
        from aiodicom.archive.matching import Key

        self.key = Key(0x00100020, "PatientID", "LO")
        self.seen = 0

    def matches(self, candidate: Any) -> bool:
        self.seen += 1
        return True


async def test_results_stream_in_chunks_and_an_early_close_releases_the_reader(tmp_path: Path):
    async with await SqliteIndex.open(tmp_path, chunk_size=16) as idx:
        await idx.add([record(tmp_path, instance("P", "5.1", "5.1.1", f"5.1.1.{i}")) for i in range(600)])
        counter = CountingMatcher()
        query = Query((counter,), ())
        async with aclosing(idx.query(Level.IMAGE, query)) as stream:
            first = await anext(stream)
            assert first["StudyInstanceUID"] == "5.1"
            assert counter.seen == 16  # one chunk fetched, not 600 rows
            assert [await anext(stream) for _ in range(15)] and counter.seen == 16
            await anext(stream)
            assert counter.seen == 32
        # the read transaction ended with the stream: writes and reads carry on
        await idx.add([record(tmp_path, instance("P", "5.1", "5.1.1", "5.1.1.999"))])
        assert (await idx.counts()).instances == 601


async def test_concurrent_adds_are_group_committed_and_durable_on_return(tmp_path: Path):
    async with await SqliteIndex.open(tmp_path) as idx:
        blocker = sqlite3.connect(tmp_path / INDEX_FILENAME, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock while 200 adds queue up
        commits = idx.commits
        recs = [record(tmp_path, instance(f"P{i % 5 % 3}", f"6.{i % 5}", f"6.{i % 5}.{i % 3}", f"6.9.{i}"))
                for i in range(200)]
        durable: list[bool] = []

        async def add_one(rec: IndexRecord) -> None:
            await idx.add([rec])
            fresh = sqlite3.connect(tmp_path / INDEX_FILENAME)  # another connection sees it: committed
            durable.append(fresh.execute("SELECT 1 FROM instance WHERE SOPInstanceUID = ?",
                                         (rec.sop_instance_uid,)).fetchone() is not None)
            fresh.close()

        async def read_meanwhile() -> None:
            for _ in range(20):
                assert len(await rows(idx, Level.STUDY)) <= 5

        async with anyio.create_task_group() as tg:
            for rec in recs:
                tg.start_soon(add_one, rec)
            tg.start_soon(read_meanwhile)
            await anyio.wait_all_tasks_blocked()
            blocker.execute("ROLLBACK")
            blocker.close()
        assert durable == [True] * 200
        assert idx.commits - commits <= 2  # the first job alone, then everything that queued behind it
        assert await idx.counts() == IndexCounts(3, 5, 15, 200, 200_000)


async def test_a_bad_record_fails_alone_not_its_batch(tmp_path: Path):
    async with await SqliteIndex.open(tmp_path) as idx:
        blocker = sqlite3.connect(tmp_path / INDEX_FILENAME, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        bad = instance("P", "7.1", "7.1.1", "7.1.1.1")
        del bad.StudyInstanceUID
        outcomes: dict[str, str] = {}

        async def add(name: str, rec: IndexRecord) -> None:
            try:
                await idx.add([rec])
                outcomes[name] = "ok"
            except ValueError:
                outcomes[name] = "rejected"

        async with anyio.create_task_group() as tg:
            tg.start_soon(add, "first", record(tmp_path, instance("P", "7.1", "7.1.1", "7.1.1.0")))
            tg.start_soon(add, "bad", IndexRecord.from_dataset(bad, path=tmp_path / "x.dcm", size=1,
                                                             transfer_syntax=ExplicitVRLittleEndian))
            for i in range(2, 6):
                tg.start_soon(add, f"good{i}", record(tmp_path, instance("P", "7.1", "7.1.1", f"7.1.1.{i}")))
            await anyio.wait_all_tasks_blocked()
            blocker.execute("ROLLBACK")
            blocker.close()
        assert outcomes.pop("bad") == "rejected" and set(outcomes.values()) == {"ok"}
        assert (await idx.counts()).instances == 5


async def test_closed_index_refuses_work_and_reopens_with_its_data(tmp_path: Path):
    idx = await SqliteIndex.open(tmp_path)
    await idx.add([record(tmp_path, instance("P", "8.1", "8.1.1", "8.1.1.1"))])
    await idx.close()
    await idx.close()  # idempotent
    with pytest.raises(IndexClosedError):
        await idx.add([record(tmp_path, instance("P", "8.1", "8.1.1", "8.1.1.2"))])
    async with await SqliteIndex.open(tmp_path) as again:
        assert (await again.counts()).instances == 1


async def test_paths_are_stored_relative_so_the_archive_can_move(tmp_path: Path):
    old = tmp_path / "old"
    async with await SqliteIndex.open(old) as idx:
        await idx.add([record(old, instance("P", "9.1", "9.1.1", "9.1.1.1"))])
    new = old.rename(tmp_path / "new")
    async with await SqliteIndex.open(new) as idx:
        assert (await idx.get("9.1.1.1")).path == new / "9.1" / "9.1.1" / "9.1.1.1.dcm"


# ---- equivalence with brute-force matching ---------------------------------------------------

def random_archive(seed: int) -> list[Dataset]:
    rnd = random.Random(seed)
    names = ["Smith^John", "SMITH^Jane", "Müller^Hans", "Doe^J=ドウ^ジェイ", "O'Brien^Pat", ""]
    out = []
    for p in range(6):
        for s in range(rnd.randint(1, 3)):
            study = f"1.{p}.{s}"
            date, time = f"2024{rnd.randint(1, 3):02d}{rnd.randint(10, 28)}", rnd.choice(["", "0930", "12", "183015.5"])
            for se in range(rnd.randint(1, 3)):
                modality = rnd.choice(["CT", "MR", "PT", "US"])
                for i in range(rnd.randint(1, 4)):
                    out.append(instance(f"PID{p}", study, f"{study}.{se}", f"{study}.{se}.{i}", PatientName=names[p],
                                        StudyDate=date, StudyTime=time, Modality=modality, SeriesNumber=se,
                                        AccessionNumber=rnd.choice(["", f"ACC{p}{s}"]) if se == 0 else "",
                                        PatientSex=rnd.choice("MFO") if s == 0 else ""))
    return out


QUERIES: list[dict[str, Any]] = [
    {"PatientName": "SMITH*"}, {"PatientName": "*o*"}, {"PatientName": "ドウ*"}, {"PatientName": '""'},
    {"StudyDate": "20240201-20240315"}, {"StudyDate": "-20240115", "StudyTime": "0900-1300"},
    {"StudyTime": "1200-"}, {"ModalitiesInStudy": "CT\\PT"}, {"ModalitiesInStudy": "M?"},
    {"PatientID": "PID1\\PID3", "StudyDate": "20240101-20241231"}, {"AccessionNumber": "ACC*"}, {"AccessionNumber": '""'},
    {"StudyInstanceUID": "1.2.0\\1.4.1\\1.5.2"}, {"NumberOfStudyRelatedSeries": "2"},
]


def expected_studies(archive: list[Dataset], query: Query) -> set[str]:
    studies: dict[str, dict[str, Any]] = {}
    for ds in archive:
        st = studies.setdefault(ds.StudyInstanceUID, {"series": set(), "modalities": set(), "acc": ""})
        st.update(PatientID=ds.PatientID, PatientName=str(ds.PatientName), StudyDate=ds.StudyDate,
                  StudyTime=ds.StudyTime, StudyInstanceUID=ds.StudyInstanceUID)
        st["series"].add(ds.SeriesInstanceUID)
        st["modalities"].add(ds.Modality)
        st["acc"] = st["acc"] or ds.get("AccessionNumber", "")
    return {uid for uid, st in studies.items() if query.matches({
        **st, "AccessionNumber": st["acc"], "ModalitiesInStudy": "\\".join(sorted(st["modalities"])),
        "NumberOfStudyRelatedSeries": len(st["series"])})}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_index_results_equal_brute_force_matching(tmp_path: Path, seed: int):
    data = random_archive(seed)
    async with await SqliteIndex.open(tmp_path) as idx:
        await idx.add([record(tmp_path, ds) for ds in data])
        for keys in QUERIES:
            query = compile_query(identifier(**keys))
            got = {r["StudyInstanceUID"] async for r in idx.query(Level.STUDY, query)}
            assert got == expected_studies(data, query), keys


# ---- rebuild ---------------------------------------------------------------------------------

def write_files(storage: Path, datasets: list[Dataset]) -> list[Path]:
    paths = []
    for ds in datasets:
        path = storage / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


async def snapshot(idx: SqliteIndex) -> dict[str, list[dict[str, Any]]]:
    everything = identifier(ModalitiesInStudy="", SOPClassesInStudy="")
    return {level: [r async for r in idx.query(Level(level), compile_query(everything), model=Model.PATIENT_ROOT)]
            for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")}


async def test_rebuild_from_files_gives_the_live_index_results(tmp_path: Path):
    data = random_archive(7)
    paths = write_files(tmp_path, data)
    (tmp_path / ".incoming").mkdir()
    (tmp_path / ".incoming" / "partial.dcm").write_bytes(b"half a file")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    async with await SqliteIndex.open(tmp_path) as idx:  # live: values re-encoded from memory
        await idx.add([record(tmp_path, ds, size=p.stat().st_size) for ds, p in zip(data, paths)])
        live = await snapshot(idx)
    assert all(isinstance(read_record(p), IndexRecord) for p in paths)  # rebuild: raw bytes from the files

    stats = rebuild_index(tmp_path, workers=3, batch=7)
    assert (stats.files, stats.indexed, stats.instances) == (len(data) + 1, len(data), len(data))
    assert [p.name for p, _ in stats.unreadable] == ["junk.dcm"]
    async with await SqliteIndex.open(tmp_path) as idx:
        assert await snapshot(idx) == live
        assert (await idx.counts()).bytes == sum(p.stat().st_size for p in paths)

    (tmp_path / INDEX_FILENAME).unlink()  # a lost index comes back from the files
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{INDEX_FILENAME}{suffix}").unlink(missing_ok=True)
    progress: list[tuple[int, int]] = []
    rebuild_index(tmp_path, progress=lambda seen, indexed: progress.append((seen, indexed)))
    async with await SqliteIndex.open(tmp_path) as idx:
        assert await snapshot(idx) == live
    assert progress[-1] == (len(data) + 1, len(data))
    assert not list(tmp_path.glob(f"{INDEX_FILENAME}.rebuild*"))



# ---- decoding shortcuts -------------------------------------------------------------------------
CHARSETS = [[""], ["ISO_IR 100"], ["ISO_IR 192"], ["ISO_IR 13"], ["", "ISO 2022 IR 87"], ["GB18030"],
            ["ISO 2022 IR 6", "ISO 2022 IR 149"], ["ISO_IR 144"]]
TEXT_KEYWORDS = ("PatientName", "PatientID", "StudyDescription", "AccessionNumber", "ReferringPhysicianName",
                 "StudyDate", "Modality")


def pydicom_texts(attrs: dict[int, bytes], encodings: list[str]) -> dict[str, str]:
    """What the index stores for each value, decoded by pydicom alone."""
    out = {}
    for tag, raw in attrs.items():
        if raw:
            vr = dictionary_VR(tag)
            delims = TEXT_VR_DELIMS | ({0x5C, 0x5E, 0x3D} if vr == "PN" else {0x5C})
            text = decode_bytes(raw, encodings, delims) if vr in ("SH", "LO", "PN") else raw.decode("latin-1")
            out[keyword_for_tag(tag)] = "\\".join(candidate_values(vr, text))
    return out


@given(charset=hs.sampled_from(CHARSETS),
       values=hs.lists(hs.text(hs.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
                       min_size=len(TEXT_KEYWORDS), max_size=len(TEXT_KEYWORDS)))
def test_ascii_values_are_indexed_as_pydicom_decodes_them_in_every_character_set(charset: list[str],
                                                                                values: list[str]) -> None:
    encodings = convert_encodings(charset)
    attrs = {tag_for_keyword(k): v.encode("ascii") for k, v in zip(TEXT_KEYWORDS, values)}
    assert _texts(attrs, encodings) == pydicom_texts(attrs, encodings)
