"""Modality Worklist SCP (PS3.4 Annex K): items in the workflow database, SQL pre-filtering that never loses a
match, the folder watcher, and C-FIND over the network with our own SCU (return keys at both levels, sequence
matching, Pending responses, C-CANCEL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import aiodicom
from aiodicom.archive.index_sqlite import SqliteIndex
from aiodicom.archive.matching import compile_query
from aiodicom.archive.workflow_db import WorkflowDb, worklist_filters
from aiodicom.dimse import status as st
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.messages import CCancelRQ, CFindRQ
from aiodicom.net.dispatch import Dispatcher
from aiodicom.services import query as qr_find
from aiodicom.services import verification, worklist
from aiodicom.services.worklist import WorklistFolder, answer_worklist_negotiation, read_worklist_file, split_items
from aiodicom.uids import MODALITY_WORKLIST_FIND, STUDY_ROOT_FIND, VERIFICATION
from tests.integration.conftest import running_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def item(sps_id: str, *, aet: str | list[str] = "CT1", modality: str = "CT", date: str = "20240301",
         time: str = "090000", name: str = "DOE^JANE", patient_id: str = "P1", steps: int = 1) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, patient_id, "19700101", "F"
    ds.StudyInstanceUID, ds.AccessionNumber = generate_uid(), f"A{sps_id}"
    ds.RequestedProcedureID, ds.RequestedProcedureDescription = f"RP{sps_id}", "PROCEDURE"
    items = []
    for n in range(steps):
        step = Dataset()
        step.ScheduledStationAETitle, step.Modality = aet, modality
        step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, time
        step.ScheduledPerformingPhysicianName = "WHO^DR"
        step.ScheduledProcedureStepID = sps_id if steps == 1 else f"{sps_id}.{n}"
        step.ScheduledProcedureStepDescription = "STEP"
        items.append(step)
    ds.ScheduledProcedureStepSequence = Sequence(items)
    return ds


def step_query(**keys: str) -> Dataset:
    q = Dataset()
    q.PatientName = ""
    step = Dataset()
    for keyword in ("ScheduledStationAETitle", "Modality", "ScheduledProcedureStepStartDate",
                    "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID"):
        setattr(step, keyword, keys.get(keyword, ""))
    q.ScheduledProcedureStepSequence = Sequence([step])
    return q


def ids(matches) -> list[str]:
    return sorted(str(m.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID) for m in matches)


# --- items ---------------------------------------------------------------------------------------------------------

def test_a_data_set_with_several_steps_becomes_one_item_per_step():
    parts = split_items(item("S", steps=3))
    assert [len(p.ScheduledProcedureStepSequence) for p in parts] == [1, 1, 1]
    assert [p.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for p in parts] == ["S.0", "S.1", "S.2"]
    assert {str(p.PatientName) for p in parts} == {"DOE^JANE"}


def test_a_data_set_without_a_step_is_not_a_worklist_item():
    ds = item("S")
    del ds.ScheduledProcedureStepSequence
    with pytest.raises(ValueError, match="Scheduled Procedure Step"):
        split_items(ds)


def test_worklist_negotiation_refuses_relational_and_grants_the_rest():
    assert answer_worklist_negotiation(bytes([1, 1, 1, 1])) == bytes([0, 1, 1, 1])
    assert answer_worklist_negotiation(bytes([0, 0, 1])) == bytes([0, 0, 1])


def test_keys_with_a_column_are_pushed_down_to_sql():
    filters = worklist_filters(compile_query(step_query(ScheduledStationAETitle="CT1",
                                                        ScheduledProcedureStepStartDate="20240101-20240131")))
    sql = " ".join(f.sql for f in filters)
    assert "w.station_aet" in sql and "w.start_date" in sql


# --- SQL pre-filter never drops a match: compare with matching every item in Python ---------------------------------

AETS = ["CT1", "CT2", "MR1", ["CT1", "CT2"]]
DATES = ["20240229", "20240301", "20240315", ""]
ITEMS = [item(f"S{n}", aet=AETS[n % 4], modality=("CT", "MR")[n % 2], date=DATES[n % 4],
              patient_id=f"P{n % 3}", time=("080000", "123000")[n % 2]) for n in range(16)]

queries = hst.fixed_dictionaries({}, optional={
    "ScheduledStationAETitle": hst.sampled_from(["CT1", "CT*", "C?2", "MR1\\CT2", '""', "*"]),
    "Modality": hst.sampled_from(["CT", "MR", "C*", "US"]),
    "ScheduledProcedureStepStartDate": hst.sampled_from(["20240301", "20240301-", "-20240301", "20240201-20240310",
                                                         '""']),
    "ScheduledProcedureStepStartTime": hst.sampled_from(["0800-1000", "12", "-0900"]),
    "ScheduledProcedureStepID": hst.sampled_from(["S1", "S1*", "S1\\S2"]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=queries, patient=hst.sampled_from(["", "P1", "P*"]))
def test_database_query_returns_exactly_what_matching_accepts(tmp_path_factory, keys, patient):
    identifier = step_query(**keys)
    if patient:
        identifier.PatientID = patient
    query = compile_query(identifier, combined_datetime=True)
    expected = ids(d for d in (p for i in ITEMS for p in split_items(i)) if query.matches(d))

    async def run() -> list[str]:
        async with await WorkflowDb.open(tmp_path_factory.mktemp("wl")) as db:
            await db.add_items([p for i in ITEMS for p in split_items(i)])
            return ids([m async for m in db.worklist(query, project=query.response)])

    assert anyio.run(run) == expected


# --- over the network ------------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def worklist_server(storage: Path, **kwargs) -> AsyncIterator[tuple[int, WorkflowDb]]:
    async with await WorkflowDb.open(storage) as db, await SqliteIndex.open(storage) as index:
        dispatcher = Dispatcher()
        verification.install(dispatcher)
        qr_find.install(dispatcher, index)  # a Q/R C-FIND SCP installed first, as `serve` does
        worklist.install(dispatcher, db, **kwargs)
        async with running_server(storage, dispatcher=dispatcher) as server:
            yield server.port, db


def connect(port: int):
    return aiodicom.connect("127.0.0.1", port, calling_ae="CT1", called_ae="AIODICOM",
                            contexts=[VERIFICATION, MODALITY_WORKLIST_FIND, STUDY_ROOT_FIND])


@pytest.mark.anyio
async def test_return_keys_at_both_levels_are_exactly_those_asked(tmp_path):
    async with worklist_server(tmp_path) as (port, db), connect(port) as assoc:
        await db.add_items(split_items(item("S1", name="MÜLLER^JÖRG")) + split_items(item("S2", aet="MR1")))
        q = Dataset()
        q.PatientName = ""
        q.AccessionNumber = ""
        q.ReferringPhysicianName = ""  # not in the item: returned empty (K.6.1.2.2)
        step = Dataset()
        step.ScheduledStationAETitle = "CT1"
        step.Modality = ""
        q.ScheduledProcedureStepSequence = Sequence([step])
        matches = [m async for m in assoc.find(q, model="worklist")]
        assert len(matches) == 1
        m = matches[0]
        assert str(m.PatientName) == "MÜLLER^JÖRG" and m.SpecificCharacterSet == "ISO_IR 192"
        assert {e.keyword for e in m} == {"SpecificCharacterSet", "PatientName", "AccessionNumber",
                                          "ReferringPhysicianName", "ScheduledProcedureStepSequence"}
        assert m.ReferringPhysicianName in ("", None)
        (answer_step,) = m.ScheduledProcedureStepSequence
        assert {e.keyword for e in answer_step} == {"ScheduledStationAETitle", "Modality"}
        assert answer_step.Modality == "CT"


@pytest.mark.anyio
async def test_sequence_matching_on_station_date_time_modality_and_physician(tmp_path):
    async with worklist_server(tmp_path) as (port, db), connect(port) as assoc:
        await db.add_items([p for i in (item("A", date="20240301", time="0800"),
                                        item("B", date="20240301", time="1400"),
                                        item("C", date="20240302", time="0800", aet=["CT1", "CT9"]),
                                        item("D", date="20240301", modality="MR"))
                            for p in split_items(i)])

        async def find(**keys: str) -> list[str]:
            return ids([m async for m in assoc.find(step_query(**keys), model="worklist")])

        assert await find(ScheduledStationAETitle="CT1") == ["A", "B", "C", "D"]
        assert await find(ScheduledStationAETitle="CT9") == ["C"]
        assert await find(ScheduledProcedureStepStartDate="20240301", Modality="CT") == ["A", "B"]
        # date and time ranges are matched as one date-time range (CP-601)
        assert await find(ScheduledProcedureStepStartDate="20240301-20240302",
                          ScheduledProcedureStepStartTime="1200-0900") == ["B", "C"]
        assert await find(ScheduledProcedureStepStartDate="20240301-20240301",
                          ScheduledProcedureStepStartTime="1200-1500") == ["B"]
        physician = step_query()
        physician.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName = "WHO*"
        assert len([m async for m in assoc.find(physician, model="worklist")]) == 4
        physician.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName = "NOBODY"
        assert [m async for m in assoc.find(physician, model="worklist")] == []


@pytest.mark.anyio
async def test_each_match_is_a_pending_response_and_cancel_stops_the_stream(tmp_path):
    async with worklist_server(tmp_path) as (port, db), connect(port) as assoc:
        await db.add_items([p for n in range(300) for p in split_items(item(f"S{n:03d}"))])
        cid = assoc.context_for(MODALITY_WORKLIST_FIND)
        message = CFindRQ(message_id=assoc.next_message_id(), affected_sop_class_uid=MODALITY_WORKLIST_FIND)
        data = EncodedDataset.from_dataset(step_query(), assoc.assoc.transfer_syntax(cid))
        statuses = []
        async for rsp, payload in assoc.request_iter(message, cid, data):
            statuses.append(rsp.status)
            if payload is not None:
                payload.close()
            if len(statuses) == 3:
                await assoc.assoc.send(CCancelRQ(message_id_being_responded_to=message.message_id), cid)
        assert statuses[:3] == [st.PENDING] * 3
        assert statuses[-1] == st.CANCEL  # PS3.4 K.4.1.3.1
        assert len(statuses) < 301
        assert (await assoc.echo()).ok


@pytest.mark.anyio
async def test_a_sequence_key_with_two_items_is_a900_and_the_association_goes_on(tmp_path):
    async with worklist_server(tmp_path) as (port, _db), connect(port) as assoc:
        q = step_query()
        q.ScheduledProcedureStepSequence.append(Dataset())
        with pytest.raises(aiodicom.net.errors.OperationFailed) as failed:
            [m async for m in assoc.find(q, model="worklist")]
        assert failed.value.response.status == st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
        assert (await assoc.echo()).ok


@pytest.mark.anyio
async def test_query_retrieve_c_find_still_answers_beside_the_worklist(tmp_path):
    async with worklist_server(tmp_path) as (port, _db), connect(port) as assoc:
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = ""
        assert [m async for m in assoc.find(q, model="study")] == []  # Success, not "No such SOP Class"


# --- the folder watcher ------------------------------------------------------------------------------------------------

def write(ds: Dataset, path: Path, *, meta: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset(ds)
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # DCMTK's worklist files
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def test_a_worklist_file_without_a_file_header_is_read(tmp_path):
    path = write(item("S1"), tmp_path / "x.wl", meta=False)
    (read,) = read_worklist_file(path)
    assert read.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "S1"


@pytest.mark.anyio
async def test_the_folder_is_indexed_then_followed_as_files_change(tmp_path):
    folder = tmp_path / "worklist"
    write(item("S1"), folder / "AIODICOM" / "one.wl")
    write(item("S2", steps=2), folder / "AIODICOM" / "two.wl", meta=False)
    (folder / "AIODICOM" / "notes.txt").write_text("ignored")
    (folder / "broken.wl").write_bytes(b"\x00" * 7 + b"not dicom at all")
    async with await WorkflowDb.open(tmp_path / "storage") as db:
        watcher = WorklistFolder(db, folder)
        first = await watcher.scan()
        assert (first.read, first.items) == (2, 3)
        assert len(first.malformed) == 1 and "broken.wl" in first.malformed[0]
        assert ids([e.dataset async for e in db.entries()]) == ["S1", "S2.0", "S2.1"]

        again = await watcher.scan()  # nothing changed: nothing re-read, the bad file not retried
        assert (again.read, again.removed, again.malformed) == (0, 0, ())

        changed = item("S1-NEW")
        path = write(changed, folder / "AIODICOM" / "one.wl")
        import os

        os.utime(path, ns=(1, 2_000_000_000_000_000_000))  # a different mtime even on coarse clocks
        (folder / "AIODICOM" / "two.wl").unlink()
        third = await watcher.scan()
        assert (third.read, third.removed) == (1, 1)
        assert ids([e.dataset async for e in db.entries()]) == ["S1-NEW"]

        (folder / "broken.wl").unlink()
        write(item("S3"), folder / "broken.wl")
        assert (await watcher.scan()).read == 1
        assert ids([e.dataset async for e in db.entries()]) == ["S1-NEW", "S3"]

        # another folder watched now: the old folder's items go, items added through the API stay
        await db.add_items(split_items(item("API")))
        other = tmp_path / "other"
        write(item("O1"), other / "o.wl")
        moved = await WorklistFolder(db, other).scan()
        assert (moved.read, moved.removed) == (1, 2)
        assert ids([e.dataset async for e in db.entries()]) == ["API", "O1"]


@pytest.mark.anyio
async def test_the_watcher_task_picks_up_a_new_file_while_serving(tmp_path):
    folder = tmp_path / "worklist"
    folder.mkdir()
    async with worklist_server(tmp_path / "storage") as (port, db), connect(port) as assoc, \
            anyio.create_task_group() as tg:
        await tg.start(WorklistFolder(db, folder, interval=0.05).run)
        assert [m async for m in assoc.find(step_query(), model="worklist")] == []
        write(item("NEW"), folder / "new.wl")
        with anyio.fail_after(10):
            while not [m async for m in assoc.find(step_query(), model="worklist")]:
                await anyio.sleep(0.05)
        assert ids([m async for m in assoc.find(step_query(), model="worklist")]) == ["NEW"]
        tg.cancel_scope.cancel()


def test_worklist_add_warns_of_a_step_id_another_item_already_has(tmp_path):
    from tests.peers import aiodicom  # a process of its own: the CLI configures logging for the whole process

    storage = str(tmp_path / "archive")
    first = write(item("SPS-0042"), tmp_path / "first.wl")
    other = write(item("SPS-0042"), tmp_path / "other.wl")  # another study, same step ID
    done = aiodicom("worklist", "add", "--storage", storage, str(first))
    assert done.returncode == 0, done.stderr
    done = aiodicom("worklist", "add", "--storage", storage, str(first))  # the same step again: replaced
    assert done.returncode == 0 and "already in the worklist" not in done.stderr, done.stderr
    done = aiodicom("worklist", "add", "--storage", storage, str(other))
    assert done.returncode == 0, done.stderr
    assert f"{other}: warning: Scheduled Procedure Step ID SPS-0042 is already in the worklist (from api)" in done.stderr
