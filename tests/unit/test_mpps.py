"""MPPS SCP (PS3.4 F.7): the attribute rules of Table F.7.2-1, the IN PROGRESS → COMPLETED/DISCONTINUED state
machine over the network with our own SCU, persistence across a restart, and the worklist it updates."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

import aiodicom
from aiodicom.archive.workflow_db import WorkflowDb, decode_dataset, encode_dataset
from aiodicom.dimse import status as st
from aiodicom.net.dispatch import Dispatcher
from aiodicom.scu.mpps import MppsFailed, MppsScu, in_progress, performed_series
from aiodicom.services import mpps, verification, worklist
from aiodicom.services.commitment import InstanceRef
from aiodicom.services.mpps import (
    FINAL_COMMENT,
    FINAL_ERROR_ID,
    MPPS_SOP_CLASS,
    Refusal,
    check_create,
    check_set,
    merge,
)
from aiodicom.uids import MODALITY_WORKLIST_FIND, VERIFICATION
from aiodicom.ul.pdu import AsyncOpsWindow
from tests.integration.conftest import running_server

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def worklist_item(sps_id: str = "SPS1", *, study_uid: str | None = None, name: str = "DOE^JANE") -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, "P1", "19700101", "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.AccessionNumber, ds.RequestedProcedureID, ds.RequestedProcedureDescription = "ACC1", "RP1", "CT HEAD"
    step = Dataset()
    step.ScheduledStationAETitle, step.Modality = "CT1", "CT"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "20240301", "0900"
    step.ScheduledProcedureStepID, step.ScheduledProcedureStepDescription = sps_id, "HEAD PLAIN"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def refusal(fn, *args, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as caught:
        fn(*args, **kwargs)
    return caught.value


# --- Table F.7.2-1, without the network ----------------------------------------------------------------------------

def test_a_complete_in_progress_attribute_list_passes():
    check_create(in_progress(scheduled=worklist_item(), station_aet="CT1", modality="CT"))


@pytest.mark.parametrize("keyword", ["PerformedProcedureStepID", "Modality", "ScheduledStepAttributesSequence"])
def test_a_missing_type1_attribute_is_0120_naming_it(keyword):
    ds = in_progress(station_aet="CT1", modality="CT")
    delattr(ds, keyword)
    r = refusal(check_create, ds)
    assert r.status == st.MISSING_ATTRIBUTE == 0x0120
    assert keyword in r.comment
    assert r.fields["attribute_identifier_list"] == (tag_for_keyword(keyword),)


def test_an_empty_type1_attribute_is_0121():
    ds = in_progress(station_aet="CT1", modality="CT")
    ds.PerformedStationAETitle = ""
    r = refusal(check_create, ds)
    assert r.status == st.MISSING_ATTRIBUTE_VALUE == 0x0121
    assert "PerformedStationAETitle" in r.comment


def test_a_type1_attribute_inside_the_scheduled_step_item_is_required():
    ds = in_progress(station_aet="CT1", modality="CT")
    del ds.ScheduledStepAttributesSequence[0].StudyInstanceUID
    r = refusal(check_create, ds)
    assert r.status == st.MISSING_ATTRIBUTE
    assert "ScheduledStepAttributesSequence[1]>StudyInstanceUID" in r.comment


def test_a_missing_type2_attribute_is_refused_only_when_strict():
    ds = in_progress(station_aet="CT1", modality="CT")
    del ds.PerformedLocation
    assert refusal(check_create, ds).status == st.MISSING_ATTRIBUTE
    check_create(ds, strict=False)


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", "STARTED"])
def test_creating_in_another_status_than_in_progress_is_0106(status):
    ds = in_progress(station_aet="CT1", modality="CT")
    ds.PerformedProcedureStepStatus = status
    r = refusal(check_create, ds)
    assert r.status == st.INVALID_ATTRIBUTE_VALUE == 0x0106
    assert r.fields["offending_elements"] == (0x00400252,)
    assert "IN PROGRESS" in r.comment


def test_a_study_uid_that_is_not_a_uid_is_0106():
    ds = in_progress(station_aet="CT1", modality="CT", study_uid="1.2.abc")
    assert refusal(check_create, ds).status == st.INVALID_ATTRIBUTE_VALUE


@pytest.mark.parametrize("keyword,value", [("PatientName", "X^Y"), ("PerformedStationAETitle", "OTHER"),
                                           ("PerformedProcedureStepStartDate", "20240101"), ("Modality", "MR")])
def test_n_set_of_an_attribute_fixed_at_creation_is_0105(keyword, value):
    mods = Dataset()
    setattr(mods, keyword, value)
    r = refusal(check_set, mods)
    assert r.status == st.NO_SUCH_ATTRIBUTE == 0x0105
    assert keyword in r.comment and "F.7.2-1" in r.comment


def test_n_set_status_must_be_one_of_the_three():
    mods = Dataset()
    mods.PerformedProcedureStepStatus = "DONE"
    assert refusal(check_set, mods).status == st.INVALID_ATTRIBUTE_VALUE


def test_n_set_series_item_without_protocol_name_is_0120():
    item = performed_series("1.2.3", [InstanceRef(CT_IMAGE, "1.2.3.4")], protocol_name="P")
    del item.ProtocolName
    mods = Dataset()
    mods.PerformedSeriesSequence = Sequence([item])
    r = refusal(check_set, mods)
    assert r.status == st.MISSING_ATTRIBUTE and "PerformedSeriesSequence[1]>ProtocolName" in r.comment


def test_merge_replaces_values_and_keeps_text_in_one_character_set():
    current = Dataset()
    current.SpecificCharacterSet = "ISO_IR 100"
    current.PatientName = "MÜLLER^JÖRG"
    current.PerformedProcedureStepDescription = "old"
    current.PerformedSeriesSequence = Sequence([Dataset(), Dataset()])
    mods = Dataset()
    mods.PerformedProcedureStepDescription = "Лёгкие"  # needs UTF-8
    mods.PerformedSeriesSequence = Sequence([Dataset()])
    merged = merge(current, mods)
    assert merged.SpecificCharacterSet == "ISO_IR 192"
    assert str(merged.PatientName) == "MÜLLER^JÖRG"
    assert merged.PerformedProcedureStepDescription == "Лёгкие"
    assert len(merged.PerformedSeriesSequence) == 1  # a sequence is replaced whole (PS3.7 §10.1.3)
    again = decode_dataset(encode_dataset(merged))
    assert str(again.PatientName) == "MÜLLER^JÖRG" and again.PerformedProcedureStepDescription == "Лёгкие"


# --- over the network ------------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def mpps_server(storage: Path, *, hide_completed: bool = True) -> AsyncIterator[tuple[int, WorkflowDb]]:
    async with await WorkflowDb.open(storage) as db:
        dispatcher = Dispatcher()
        verification.install(dispatcher)
        mpps.install(dispatcher, db)
        worklist.install(dispatcher, db, hide_completed=hide_completed)
        async with running_server(storage, dispatcher=dispatcher) as server:
            yield server.port, db


def connect(port: int):
    """Up to 8 operations in flight (PS3.7 D.3.3.3): the SCP runs concurrent requests concurrently."""
    return aiodicom.connect("127.0.0.1", port, calling_ae="MODALITY", called_ae="AIODICOM",
                            contexts=[VERIFICATION, MPPS_SOP_CLASS, MODALITY_WORKLIST_FIND],
                            async_ops=AsyncOpsWindow(max_invoked=8, max_performed=1))


async def step_ids(assoc) -> list[str]:
    query = Dataset()
    query.PatientName = ""
    step = Dataset()
    step.ScheduledProcedureStepID = ""
    step.ScheduledProcedureStepStatus = ""
    query.ScheduledProcedureStepSequence = Sequence([step])
    return [f"{m.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID}:"
            f"{m.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus or ''}"
            async for m in assoc.find(query, model="worklist")]


@pytest.mark.anyio
async def test_the_full_state_machine_create_set_complete_then_set_fails(tmp_path):
    item = worklist_item("SPS1")
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        await db.add_items([item, worklist_item("SPS2")])
        scu = MppsScu(assoc)
        uid = await scu.create(in_progress(scheduled=item, station_aet="CT1", modality="CT"))
        assert (await db.get_mpps(uid)).status == "IN PROGRESS"
        assert sorted(await step_ids(assoc)) == ["SPS1:STARTED", "SPS2:"]

        mods = Dataset()
        mods.PerformedProcedureStepDescription = "HEAD WITH CONTRAST"
        await scu.update(uid, mods)
        series = performed_series(generate_uid(), [InstanceRef(CT_IMAGE, generate_uid())], protocol_name="HEAD")
        await scu.complete(uid, performed_series=[series])
        record = await db.get_mpps(uid)
        assert record.status == "COMPLETED"
        assert record.dataset.PerformedProcedureStepDescription == "HEAD WITH CONTRAST"
        assert record.dataset.PerformedSeriesSequence[0].ProtocolName == "HEAD"
        assert record.dataset.PerformedProcedureStepEndDate  # set by complete()

        # completed steps leave the worklist
        assert await step_ids(assoc) == ["SPS2:"]

        # COMPLETED is final: N-SET gets 0x0110 with Table F.7.2-2's comment and error ID
        late = Dataset()
        late.PerformedProcedureStepDescription = "too late"
        result = await assoc.n_set(MPPS_SOP_CLASS, uid, late)
        assert result.status.code == st.PROCESSING_FAILURE == 0x0110
        assert result.status.error_comment == FINAL_COMMENT
        assert result.status.response.error_id == FINAL_ERROR_ID
        assert (await db.get_mpps(uid)).dataset.PerformedProcedureStepDescription == "HEAD WITH CONTRAST"
        with pytest.raises(MppsFailed) as failed:
            await scu.discontinue(uid)
        assert failed.value.status.code == 0x0110
        assert (await assoc.echo()).ok  # the association carries on after refusals


@pytest.mark.anyio
async def test_discontinue_is_final_and_keeps_the_step_on_the_worklist(tmp_path):
    item = worklist_item("SPS9")
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        await db.add_items([item])
        scu = MppsScu(assoc)
        uid = await scu.create(in_progress(scheduled=item, station_aet="CT1", modality="CT"))
        reason = Dataset()
        reason.CodeValue, reason.CodingSchemeDesignator, reason.CodeMeaning = "110514", "DCM", "Equipment failure"
        await scu.discontinue(uid, reason=reason)
        record = await db.get_mpps(uid)
        assert record.status == "DISCONTINUED"
        assert record.dataset.PerformedProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110514"
        assert await step_ids(assoc) == ["SPS9:DISCONTINUED"]
        mods = Dataset()
        mods.PerformedProcedureStepStatus = "COMPLETED"
        assert (await assoc.n_set(MPPS_SOP_CLASS, uid, mods)).status.code == 0x0110


@pytest.mark.anyio
async def test_keep_completed_shows_the_step_as_completed(tmp_path):
    item = worklist_item("SPS3")
    async with mpps_server(tmp_path, hide_completed=False) as (port, db), connect(port) as assoc:
        await db.add_items([item])
        scu = MppsScu(assoc)
        uid = await scu.create(in_progress(scheduled=item, station_aet="CT1", modality="CT"))
        await scu.complete(uid)
        assert await step_ids(assoc) == ["SPS3:COMPLETED"]


@pytest.mark.anyio
async def test_refusals_over_the_network(tmp_path):
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        attrs = in_progress(station_aet="CT1", modality="CT")
        uid = generate_uid()
        assert (await assoc.n_create(MPPS_SOP_CLASS, attrs, instance_uid=uid)).ok
        duplicate = await assoc.n_create(MPPS_SOP_CLASS, attrs, instance_uid=uid)
        assert duplicate.status.code == st.DUPLICATE_SOP_INSTANCE == 0x0111
        assert "exists" in duplicate.status.error_comment
        assert duplicate.status.response.affected_sop_instance_uid == uid

        wrong = in_progress(station_aet="CT1", modality="CT")
        wrong.PerformedProcedureStepStatus = "COMPLETED"
        result = await assoc.n_create(MPPS_SOP_CLASS, wrong, instance_uid=generate_uid())
        assert result.status.code == 0x0106 and result.status.response.offending_elements == (0x00400252,)

        missing = in_progress(station_aet="CT1", modality="CT")
        del missing.PerformedStationAETitle
        result = await assoc.n_create(MPPS_SOP_CLASS, missing, instance_uid=generate_uid())
        assert result.status.code == 0x0120
        assert result.status.response.attribute_identifier_list == (0x00400241,)
        assert "PerformedStationAETitle" in result.status.error_comment

        bad_uid = await assoc.n_create(MPPS_SOP_CLASS, attrs, instance_uid="1.2.3.x")
        assert bad_uid.status.code == st.INVALID_OBJECT_INSTANCE

        mods = Dataset()
        mods.PerformedProcedureStepDescription = "x"
        unknown = await assoc.n_set(MPPS_SOP_CLASS, generate_uid(), mods)
        assert unknown.status.code == st.NO_SUCH_OBJECT_INSTANCE == 0x0112

        fixed = Dataset()
        fixed.PatientID = "OTHER"
        not_allowed = await assoc.n_set(MPPS_SOP_CLASS, uid, fixed)
        assert not_allowed.status.code == 0x0105
        assert not_allowed.status.response.attribute_identifier_list == (0x00100020,)
        assert (await db.get_mpps(uid)).dataset.PatientID == attrs.PatientID
        assert (await assoc.echo()).ok


@pytest.mark.anyio
async def test_the_scp_assigns_an_instance_uid_when_none_is_given(tmp_path):
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        result = await assoc.n_create(MPPS_SOP_CLASS, in_progress(station_aet="CT1", modality="CT"))
        assert result.ok
        uid = result.status.response.affected_sop_instance_uid
        assert uid and uid.startswith("2.25.")
        record = await db.get_mpps(uid)
        assert record is not None and record.dataset.SOPInstanceUID == uid
        assert record.calling_ae == "MODALITY"


@pytest.mark.anyio
async def test_state_survives_a_restart(tmp_path):
    async with mpps_server(tmp_path) as (port, _db), connect(port) as assoc:
        scu = MppsScu(assoc)
        open_uid = await scu.create(in_progress(station_aet="CT1", modality="CT"))
        done_uid = await scu.create(in_progress(station_aet="CT1", modality="CT"))
        await scu.complete(done_uid)
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        assert (await db.get_mpps(open_uid)).status == "IN PROGRESS"
        scu = MppsScu(assoc)
        await scu.complete(open_uid)  # the step created before the restart can still end
        assert (await db.get_mpps(open_uid)).status == "COMPLETED"
        mods = Dataset()
        mods.PerformedProcedureStepDescription = "x"
        assert (await assoc.n_set(MPPS_SOP_CLASS, done_uid, mods)).status.code == 0x0110


@pytest.mark.anyio
async def test_concurrent_n_sets_after_completion_all_fail(tmp_path):
    """The check and the write are one transaction: racing a COMPLETED against other N-SETs never lets one
    of them land after the step became final."""
    async with mpps_server(tmp_path) as (port, db), connect(port) as assoc:
        scu = MppsScu(assoc)
        uid = await scu.create(in_progress(station_aet="CT1", modality="CT"))
        codes: list[int] = []

        async def set_description(n: int) -> None:
            mods = Dataset()
            mods.PerformedProcedureStepDescription = f"d{n}"
            if n == 0:
                mods.PerformedProcedureStepStatus = "COMPLETED"
            codes.append((await assoc.n_set(MPPS_SOP_CLASS, uid, mods)).status.code)

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(set_description, n)
        final = (await db.get_mpps(uid)).dataset
        assert final.PerformedProcedureStepStatus == "COMPLETED"
        # every N-SET that succeeded ran before the completing one, which is therefore the last to have landed
        assert final.PerformedProcedureStepDescription == "d0"
        assert len(codes) == 8 and set(codes) <= {0, 0x0110}
