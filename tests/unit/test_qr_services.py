"""Q/R service rules without a network: the identifier checks of C-FIND (PS3.4 C.4.1.2), the keys that select what a
C-MOVE/C-GET retrieves (PS3.4 C.4.2.2.1), the final status of a retrieve from its sub-operation counts (PS3.4
C.4.2.1.5, C.4.2.3.1) and the DCMTK-style `-k` keys of the CLI."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from aiodicom.archive.index import Level, Model
from aiodicom.cli.keys import KeySpecError, build_identifier
from aiodicom.dimse import status as s
from aiodicom.dimse.messages import CMoveRSP, encode_message
from aiodicom.services.query import IdentifierError, check_identifier
from aiodicom.services.retrieve import Counts, retrieve_keys

A900 = s.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
STUDY_UID, STUDY_UID_2 = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
SERIES_UID, SOP_UID = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.111"


def identifier(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


# --- check_identifier: C-FIND identifiers (PS3.4 C.4.1.2.2 hierarchical, C.4.1.2.3 relational) ----------------------

@pytest.mark.parametrize(("model", "ds", "level"), [
    (Model.PATIENT_ROOT, identifier(QueryRetrieveLevel="PATIENT", PatientName="DOE*", PatientID=""), Level.PATIENT),
    (Model.PATIENT_ROOT, identifier(QueryRetrieveLevel="STUDY", PatientID="P1", StudyInstanceUID=""), Level.STUDY),
    (Model.PATIENT_ROOT, identifier(QueryRetrieveLevel="IMAGE", PatientID="P1", StudyInstanceUID=STUDY_UID,
                                    SeriesInstanceUID=SERIES_UID, SOPInstanceUID=""), Level.IMAGE),
    (Model.STUDY_ROOT, identifier(QueryRetrieveLevel="STUDY", StudyDate="20200101-", ModalitiesInStudy="CT"),
     Level.STUDY),
    # Study Root has no patient level: the patient's attributes are study-level keys there (PS3.4 C.6.2.1.2).
    (Model.STUDY_ROOT, identifier(QueryRetrieveLevel="STUDY", PatientName="DOE*", PatientBirthDate=""), Level.STUDY),
    (Model.STUDY_ROOT, identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=STUDY_UID, Modality="MR"),
     Level.SERIES),
    (Model.PATIENT_STUDY_ONLY, identifier(QueryRetrieveLevel="STUDY", PatientID="P1", StudyDate=""), Level.STUDY),
])
def test_check_identifier_accepts_a_well_formed_hierarchical_query_and_returns_its_level(
    model: Model, ds: Dataset, level: Level
) -> None:
    assert check_identifier(ds, model, relational=False) is level


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_check_identifier_reads_the_level_case_and_padding_insensitively() -> None:
    assert check_identifier(identifier(QueryRetrieveLevel="study "), Model.STUDY_ROOT, relational=False) is Level.STUDY


def test_check_identifier_accepts_keys_that_belong_to_no_level_at_any_level() -> None:
    # PS3.4 C.4.1.1.3.1: Specific Character Set, Retrieve AE Title, Timezone Offset... are not level keys.
    ds = identifier(QueryRetrieveLevel="PATIENT", SpecificCharacterSet="ISO_IR 192", RetrieveAETitle="",
                    InstanceAvailability="", TimezoneOffsetFromUTC="+0100", PatientID="")
    assert check_identifier(ds, Model.PATIENT_ROOT, relational=False) is Level.PATIENT


@pytest.mark.parametrize(("ds", "model", "offending"), [
    (identifier(PatientID="P1"), Model.PATIENT_ROOT, 0x00080052),
    (identifier(QueryRetrieveLevel="FRAME"), Model.STUDY_ROOT, 0x00080052),
    (identifier(QueryRetrieveLevel="PATIENT", PatientID=""), Model.STUDY_ROOT, 0x00080052),
    (identifier(QueryRetrieveLevel="SERIES", PatientID="P1", StudyInstanceUID=STUDY_UID), Model.PATIENT_STUDY_ONLY,
     0x00080052),
], ids=["no-level", "unknown-level", "patient-level-in-study-root", "series-level-in-patient-study-only"])
def test_check_identifier_refuses_a_missing_or_foreign_level_with_a900_naming_0008_0052(
    ds: Dataset, model: Model, offending: int
) -> None:
    with pytest.raises(IdentifierError) as caught:
        check_identifier(ds, model, relational=False)
    assert caught.value.status == A900
    assert caught.value.offending == (offending,)
    result = caught.value.result()
    assert result.status == A900 and result.error_comment and result.fields["offending_elements"] == (offending,)


@pytest.mark.parametrize(("ds", "offending"), [
    (identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="", Modality="CT"), 0x00080060),
    (identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="", SeriesInstanceUID=""), 0x0020000E),
    (identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=STUDY_UID, SOPInstanceUID=""), 0x00080018),
    (identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=STUDY_UID, InstanceNumber="1"), 0x00200013),
], ids=["series-key-at-study", "series-uid-at-study", "image-uid-at-series", "instance-number-at-series"])
@pytest.mark.parametrize("relational", [False, True])
def test_check_identifier_refuses_a_key_below_the_query_level_even_in_relational_search(
    ds: Dataset, offending: int, relational: bool
) -> None:
    with pytest.raises(IdentifierError) as caught:
        check_identifier(ds, Model.STUDY_ROOT, relational=relational)
    assert caught.value.status == A900
    assert caught.value.offending == (offending,)


@pytest.mark.parametrize(("ds", "model", "offending"), [
    (identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), Model.PATIENT_ROOT, 0x00100020),
    (identifier(QueryRetrieveLevel="STUDY", PatientID="", StudyInstanceUID=""), Model.PATIENT_ROOT, 0x00100020),
    (identifier(QueryRetrieveLevel="STUDY", PatientID="P*"), Model.PATIENT_ROOT, 0x00100020),
    (identifier(QueryRetrieveLevel="STUDY", PatientID="P?"), Model.PATIENT_ROOT, 0x00100020),
    (identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID=""), Model.STUDY_ROOT, 0x0020000D),
    (identifier(QueryRetrieveLevel="IMAGE", StudyInstanceUID=STUDY_UID), Model.STUDY_ROOT, 0x0020000E),
    (identifier(QueryRetrieveLevel="IMAGE", PatientID="P1", SeriesInstanceUID=SERIES_UID), Model.PATIENT_ROOT,
     0x0020000D),
], ids=["no-patient-id", "empty-patient-id", "wildcard-star", "wildcard-question", "no-study-uid",
        "no-series-uid", "no-study-uid-under-patient"])
def test_hierarchical_search_needs_one_value_for_each_unique_key_above_the_level(
    ds: Dataset, model: Model, offending: int
) -> None:
    with pytest.raises(IdentifierError) as caught:
        check_identifier(ds, model, relational=False)
    assert caught.value.status == A900
    assert caught.value.offending == (offending,)


def test_hierarchical_search_refuses_a_list_of_uids_above_the_query_level() -> None:
    # PS3.4 C.4.1.2.2.1: each level above holds a *single value* unique key; a UID list is for the query level only.
    ds = identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=f"{STUDY_UID}\\{STUDY_UID_2}")
    assert isinstance(ds.StudyInstanceUID, MultiValue)
    with pytest.raises(IdentifierError) as caught:
        check_identifier(ds, Model.STUDY_ROOT, relational=False)
    assert caught.value.offending == (0x0020000D,)


def test_relational_search_lets_unique_keys_above_the_level_be_absent() -> None:
    ds = identifier(QueryRetrieveLevel="IMAGE", SOPInstanceUID="", PatientName="DOE*")
    assert check_identifier(ds, Model.PATIENT_ROOT, relational=True) is Level.IMAGE
    with pytest.raises(IdentifierError):
        check_identifier(ds, Model.PATIENT_ROOT, relational=False)


# --- retrieve_keys: what a C-MOVE/C-GET selects (PS3.4 C.4.2.2.1) ---------------------------------------------------

def test_retrieve_keys_takes_the_level_key_and_the_unique_keys_given_above() -> None:
    ds = identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=STUDY_UID, SeriesInstanceUID=SERIES_UID)
    assert retrieve_keys(ds, Model.STUDY_ROOT) == (
        Level.SERIES, {"StudyInstanceUID": [STUDY_UID], "SeriesInstanceUID": [SERIES_UID]})


def test_retrieve_keys_reads_a_list_of_uids_at_the_retrieve_level() -> None:
    ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=f"{STUDY_UID}\\{STUDY_UID_2}")
    assert retrieve_keys(ds, Model.STUDY_ROOT) == (Level.STUDY, {"StudyInstanceUID": [STUDY_UID, STUDY_UID_2]})


def test_retrieve_keys_patient_level_selects_by_patient_id() -> None:
    ds = identifier(QueryRetrieveLevel="PATIENT", PatientID="P1")
    assert retrieve_keys(ds, Model.PATIENT_ROOT) == (Level.PATIENT, {"PatientID": ["P1"]})


def test_retrieve_keys_leave_out_empty_keys_above_and_ignore_non_unique_keys() -> None:
    ds = identifier(QueryRetrieveLevel="IMAGE", PatientID="", StudyInstanceUID=STUDY_UID, SeriesInstanceUID=SERIES_UID,
                    SOPInstanceUID=SOP_UID, PatientName="DOE*", Modality="CT")
    assert retrieve_keys(ds, Model.PATIENT_ROOT) == (Level.IMAGE, {
        "StudyInstanceUID": [STUDY_UID], "SeriesInstanceUID": [SERIES_UID], "SOPInstanceUID": [SOP_UID]})


@pytest.mark.parametrize(("ds", "model"), [
    (identifier(QueryRetrieveLevel="STUDY"), Model.STUDY_ROOT),
    (identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), Model.STUDY_ROOT),
    (identifier(QueryRetrieveLevel="IMAGE", StudyInstanceUID=STUDY_UID, SeriesInstanceUID=SERIES_UID),
     Model.STUDY_ROOT),
    (identifier(StudyInstanceUID=STUDY_UID), Model.STUDY_ROOT),
    (identifier(QueryRetrieveLevel="PATIENT", PatientID="P1"), Model.STUDY_ROOT),
    (identifier(QueryRetrieveLevel="SERIES", SeriesInstanceUID=SERIES_UID), Model.PATIENT_STUDY_ONLY),
], ids=["no-level-key", "empty-level-key", "no-sop-uid", "no-level", "patient-in-study-root",
        "series-in-patient-study-only"])
def test_retrieve_keys_refuses_an_identifier_that_selects_nothing_definite(ds: Dataset, model: Model) -> None:
    with pytest.raises(IdentifierError) as caught:
        retrieve_keys(ds, model)
    assert caught.value.status == A900


# --- Counts: sub-operation accounting and the final status (PS3.4 C.4.2.1.5, C.4.2.3.1) -----------------------------

def test_counts_all_completed_is_success_without_remaining_or_failed_list() -> None:
    counts = Counts(remaining=3)
    for uid in ("1", "2", "3"):
        counts.add(s.SUCCESS, uid)
    final = counts.final()
    assert final.status == s.SUCCESS
    # PS3.4 C.4.2.1.6: a final Success/Warning/Failure response carries no Number of Remaining Sub-operations.
    assert final.fields == {"completed": 3, "failed": 0, "warning": 0}
    assert final.dataset is None


def test_counts_nothing_to_do_is_success() -> None:
    final = Counts(remaining=0).final()
    assert final.status == s.SUCCESS
    assert final.fields == {"completed": 0, "failed": 0, "warning": 0}


def test_counts_every_sub_operation_failed_is_a702_listing_the_failed_instance() -> None:
    counts = Counts(remaining=1)
    counts.add(None, "1.2.3")       # could not even be sent
    final = counts.final(comment="sub-association refused")
    assert final.status == s.OUT_OF_RESOURCES_SUBOPERATIONS
    assert final.fields == {"completed": 0, "failed": 1, "warning": 0}
    assert final.dataset.FailedSOPInstanceUIDList == "1.2.3"
    assert final.error_comment == "sub-association refused"


def test_counts_some_failed_is_b000_listing_every_failed_instance() -> None:
    counts = Counts(remaining=4)
    counts.add(s.SUCCESS, "1")
    counts.add(0xA700, "2")         # the destination ran out of resources
    counts.add(0xC000, "3")
    counts.add(s.SUCCESS, "4")
    final = counts.final()
    assert final.status == s.SUBOPERATIONS_COMPLETE_WITH_FAILURES
    assert final.fields == {"completed": 2, "failed": 2, "warning": 0}
    assert list(final.dataset.FailedSOPInstanceUIDList) == ["2", "3"]


def test_counts_warnings_only_is_b000_without_a_failed_list() -> None:
    counts = Counts(remaining=2)
    counts.add(s.COERCION_OF_DATA_ELEMENTS, "1")
    counts.add(s.ELEMENTS_DISCARDED, "2")
    final = counts.final()
    assert final.status == s.SUBOPERATIONS_COMPLETE_WITH_FAILURES
    assert final.fields == {"completed": 0, "failed": 0, "warning": 2}
    assert final.dataset is None


def test_counts_cancelled_is_fe00_with_the_remaining_count() -> None:
    counts = Counts(remaining=5)
    counts.add(s.SUCCESS, "1")
    counts.add(0xA700, "2")
    final = counts.final(cancelled=True)
    assert final.status == s.CANCEL
    # PS3.4 C.4.2.3.1: a Cancel response holds the counts, Remaining = the sub-operations never started.
    assert final.fields == {"completed": 1, "failed": 1, "warning": 0, "remaining": 3}
    assert final.dataset.FailedSOPInstanceUIDList == "2"


def test_counts_above_65535_are_sent_as_65535_and_the_retrieve_goes_on() -> None:
    """Sub-operation counts are US (PS3.7 9.3.3.2): a study of 70,000 instances still moves, its counts capped."""
    counts = Counts(remaining=70_000)
    counts.add(s.SUCCESS, "1")
    pending = counts.pending()
    assert pending.fields == {"completed": 1, "failed": 0, "warning": 0, "remaining": 65535}
    encode_message(CMoveRSP(message_id_being_responded_to=1, affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2",
                            status=s.PENDING, **pending.fields))   # raised for a count above 65535
    for _ in range(69_000):
        counts.add(s.SUCCESS, "x")
    assert counts.pending().fields["remaining"] == 999
    assert counts.final().fields == {"completed": 65535, "failed": 0, "warning": 0}


def test_counts_pending_reports_every_count() -> None:
    counts = Counts(remaining=3)
    counts.add(s.SUCCESS, "1")
    pending = counts.pending()
    assert pending.status == s.PENDING
    assert pending.fields == {"completed": 1, "failed": 0, "warning": 0, "remaining": 2}


SUB_OPERATION_STATUSES = st.sampled_from([s.SUCCESS, s.COERCION_OF_DATA_ELEMENTS, s.ELEMENTS_DISCARDED, 0xB007,
                                          0xA700, 0xA900, 0xC000, 0x0110, 0x0122, None])


@given(st.lists(SUB_OPERATION_STATUSES, max_size=40), st.integers(min_value=0, max_value=5))
def test_counts_add_up_and_the_final_status_follows_c_4_2_3_1(statuses: list[int | None], extra: int) -> None:
    total = len(statuses) + extra
    counts = Counts(remaining=total)
    for i, status in enumerate(statuses):
        counts.add(status, f"1.2.{i}")
    assert counts.completed + counts.failed + counts.warning + counts.remaining == total
    completed = sum(1 for x in statuses if x == s.SUCCESS)
    warning = sum(1 for x in statuses if x is not None and 0xB000 <= x <= 0xBFFF)
    failed = len(statuses) - completed - warning
    assert (counts.completed, counts.warning, counts.failed) == (completed, warning, failed)
    assert counts.failed_uids == [f"1.2.{i}" for i, x in enumerate(statuses)
                                  if x is None or not (x == s.SUCCESS or 0xB000 <= x <= 0xBFFF)]
    final = counts.final()
    if failed and not completed and not warning:
        assert final.status == s.OUT_OF_RESOURCES_SUBOPERATIONS   # every sub-operation failed
    elif failed or warning:
        assert final.status == s.SUBOPERATIONS_COMPLETE_WITH_FAILURES
    else:
        assert final.status == s.SUCCESS
    assert "remaining" not in final.fields


# --- build_identifier: the CLI's -k keys ----------------------------------------------------------------------------

def test_keyword_with_a_value_sets_that_value() -> None:
    ds = build_identifier(["QueryRetrieveLevel=STUDY", "PatientName=DOE*", "StudyDate=20200101-20201231"])
    assert (ds.QueryRetrieveLevel, ds.PatientName, ds.StudyDate) == ("STUDY", "DOE*", "20200101-20201231")
    assert ds["PatientName"].VR == "PN"


@pytest.mark.parametrize("spec", ["StudyDate", "StudyDate=", "0008,0020", "0008,0020=", "(0008,0020)="])
def test_a_key_without_a_value_is_a_universal_return_key(spec: str) -> None:
    ds = build_identifier([spec])
    assert 0x00080020 in ds
    assert ds[0x00080020].VR == "DA"
    assert not ds[0x00080020].value


def test_a_tag_in_hex_names_the_same_attribute_as_its_keyword() -> None:
    assert build_identifier(["0010,0020=P1"]).PatientID == "P1"
    assert build_identifier(["(0010,0020)=P1"]).PatientID == "P1"


def test_a_later_key_for_the_same_attribute_overrides_the_earlier_one() -> None:
    ds = build_identifier(["PatientID=A", "PatientName", "PatientID=B"])
    assert ds.PatientID == "B"
    assert [e.keyword for e in ds] == ["PatientName", "PatientID"]   # one element each, in tag order


def test_a_backslash_makes_a_list_of_values() -> None:
    ds = build_identifier([f"StudyInstanceUID={STUDY_UID}\\{STUDY_UID_2}"])
    assert list(ds.StudyInstanceUID) == [STUDY_UID, STUDY_UID_2]


def test_sequence_item_keys_build_the_item() -> None:
    ds = build_identifier(["ScheduledProcedureStepSequence[0].Modality=MR",
                           "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                           "ReferencedStudySequence[1].ReferencedSOPInstanceUID=1.2.3"])
    sps = ds.ScheduledProcedureStepSequence
    assert len(sps) == 1 and sps[0].Modality == "MR" and "ScheduledStationAETitle" in sps[0]
    refs = ds.ReferencedStudySequence
    assert len(refs) == 2 and len(refs[0]) == 0 and refs[1].ReferencedSOPInstanceUID == "1.2.3"


def test_a_bare_sequence_is_an_empty_sequence_and_an_indexed_one_has_an_empty_item() -> None:
    ds = build_identifier(["OtherPatientIDsSequence", "ReferencedStudySequence[0]"])
    assert isinstance(ds.OtherPatientIDsSequence, Sequence) and len(ds.OtherPatientIDsSequence) == 0
    assert len(ds.ReferencedStudySequence) == 1 and len(ds.ReferencedStudySequence[0]) == 0


def test_binary_vrs_get_numbers() -> None:
    ds = build_identifier(["Rows=512", "Columns=0x100", "EventTimeOffset=1.5"])
    assert (ds.Rows, ds.Columns, ds.EventTimeOffset) == (512, 256, 1.5)


@pytest.mark.parametrize("spec", [
    "NoSuchKeyword=1", "0009,1001=x", "12,34=x", "Patient Name=x", "TransferSyntaxUID=1.2.840.10008.1.2",
    "OtherPatientIDsSequence=abc", "PatientName[0].PatientID=1", "Rows=many", "EventTimeOffset=soon",
], ids=["unknown-keyword", "unknown-private-tag", "malformed-tag", "space-in-keyword", "file-meta-group",
        "value-for-a-sequence", "item-of-a-non-sequence", "text-for-us", "text-for-fd"])
def test_an_impossible_key_raises_key_spec_error(spec: str) -> None:
    with pytest.raises(KeySpecError):
        build_identifier([spec])


TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*?-^", min_size=1, max_size=32)


@given(TEXT, TEXT)
def test_text_values_arrive_unchanged(patient_id: str, name: str) -> None:
    ds = build_identifier([f"PatientID={patient_id}", f"PatientName={name}"])
    assert ds.PatientID == patient_id
    assert str(ds.PatientName) == name


def test_an_error_comment_fits_lo_and_keeps_section_numbers_readable() -> None:
    from aiodicom.net.dispatch import error_comment

    text = error_comment("invalid SOP Instance UID: '1.2.abc' (PS3.5 §9.1: digits) é \\ and then far too much more text")
    assert text == "invalid SOP Instance UID: '1.2.abc' (PS3.5 9.1: digits) ? /..."  # a cut-off says so
    assert len(text) <= 64 and text.isascii() and "\\" not in text
    assert error_comment("PatientID (unique key of the PATIENT level) needs one value!") == (
        "PatientID (unique key of the PATIENT level) needs one value!")  # 60 characters: whole
    cut = error_comment("SeriesInstanceUID (unique key of the SERIES level) needs one value")
    assert cut == "SeriesInstanceUID (unique key of the SERIES level) needs one..."  # not "... needs one val"
    assert len(error_comment("x" * 100)) == 64
