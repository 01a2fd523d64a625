"""Query/Retrieve C-FIND (PS3.4 C.4.1) against real peers.

- DCMTK findscu (Patient Root `-P` and Study Root `-S`) asks `aiodicom serve` at every level; every answer is
  checked against the data set the test built, not against another implementation: matching by wildcards, date and
  time ranges (closed and open), UID lists and universal keys (PS3.4 C.2.2.2), and the hierarchical rules whose
  violation must be answered 0xA900 (PS3.4 C.4.1.2.2).
- `aiodicom find` asks DCMTK dcmqrscp and Orthanc holding the same data; their answers must equal what
  `aiodicom find` gets from `aiodicom serve`.
- C-CANCEL (PS3.7 §9.3.2.3) on a find with 3,000 matches, from DCMTK and from the Python API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydicom.dataset import Dataset

import aiodicom
from aiodicom.dimse.messages import CFindRQ
from aiodicom.uids import STUDY_ROOT_FIND, VERIFICATION
from tests.peers import HOST, Running, aiodicom_serve
from tests.qrpeers import (
    UTF8,
    QrData,
    QrRecord,
    aiodicom_find,
    build_qr_data,
    column,
    dcmqrscp,
    findscu,
    load_into_aiodicom,
    load_into_dcmqrscp,
    orthanc,
    project,
    responses_with_cancel,
    statuses,
    text,
)

pytestmark = pytest.mark.interop

SUCCESS, PENDING, CANCEL, IDENTIFIER_DOES_NOT_MATCH = 0x0000, 0xFF00, 0xFE00, 0xA900
MANY = 3000  # streaming them all takes the server tens of ms: a C-CANCEL sent after the first one wins


@pytest.fixture(scope="module")
def qr_data(tmp_path_factory: pytest.TempPathFactory) -> QrData:
    """2 patients × 2 studies × 2 series × 2 instances."""
    return build_qr_data(tmp_path_factory.mktemp("qr-data"))


@pytest.fixture(scope="module")
def qr_server(tmp_path_factory: pytest.TempPathFactory, qr_data: QrData) -> Iterator[Running]:
    with aiodicom_serve(tmp_path_factory.mktemp("qr-serve")) as server:
        load_into_aiodicom(server.port, qr_data)
        yield server


@pytest.fixture(scope="module")
def many_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`aiodicom serve` holding MANY studies of one patient, one instance each: many more than the SQLite index reads
    per chunk (256 rows). A client that cancels after the first match races the server streaming the rest; with
    3,000 the client would have to stall for tens of milliseconds to lose (with 250 a loaded CI box lost 1 run in
    ~20)."""
    data = build_qr_data(tmp_path_factory.mktemp("many-data"), patients=1, studies=MANY, series=1, instances=1,
                         prefix="MANY", date_step=1)
    with aiodicom_serve(tmp_path_factory.mktemp("many-serve")) as server:
        load_into_aiodicom(server.port, data)
        yield server


# --- findscu at every level -----------------------------------------------------------------------------------------

RETURN_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription"),
    "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
MODEL_LEVELS = {"-P": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "-S": ("STUDY", "SERIES", "IMAGE")}
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}


@pytest.mark.parametrize(("model", "level"), [(m, lv) for m, levels in MODEL_LEVELS.items() for lv in levels])
def test_findscu_gets_every_entity_of_a_level_with_the_values_the_data_set_holds(
    qr_server: Running, qr_data: QrData, tmp_path: Path, model: str, level: str
) -> None:
    # Hierarchical search (PS3.4 C.4.1.2.2): one unique key per level above, taken from the non-ASCII patient's last
    # instance so that its Specific Character Set travels through every level.
    anchor = qr_data.records[-1]
    above = MODEL_LEVELS[model][: MODEL_LEVELS[model].index(level)]
    keys = [f"QueryRetrieveLevel={level}"] + [f"{UNIQUE[lv]}={anchor.uid(lv)}" for lv in above]
    returned = RETURN_KEYS[level] + (("PatientName", "PatientID") if model == "-S" and level == "STUDY" else ())
    result = findscu(qr_server.port, tmp_path, *keys, *returned, model=model)

    assert result.done.returncode == 0, result.log
    assert statuses(result.log)[-1] == SUCCESS, result.log
    want = qr_data.rows(level, returned, lambda r: all(r.uid(lv) == anchor.uid(lv) for lv in above))
    assert project(result.responses, returned) == want
    assert len(result.responses) == len(want), "an entity was answered twice"
    assert {text(ds, "QueryRetrieveLevel") for ds in result.responses} == {level}


@dataclass(frozen=True)
class Case:
    """A Study Root STUDY-level query and the studies it must match, as a plain predicate over the data set."""

    keys: Callable[[QrData], list[str]]
    matches: Callable[[QrData, QrRecord], bool]


def _study_uids(data: QrData, *positions: int) -> list[str]:
    studies = sorted(data.uids("STUDY"), key=lambda uid: data.entities("STUDY")[uid].study_date)
    return [studies[i] for i in positions]


MATCHING: dict[str, Case] = {
    # PS3.4 C.2.2.2.4 wild card matching: * any sequence (also empty), ? exactly one character.
    "name-prefix": Case(lambda d: ["PatientName=DOE*"], lambda d, r: r.patient_name.startswith("DOE")),
    "name-single-character-wildcards-over-non-ascii": Case(
        lambda d: ["PatientName=M?LLER^J?RG"], lambda d, r: r.patient_name == "MÜLLER^JÖRG"),
    "name-non-ascii-literal": Case(
        lambda d: [f"SpecificCharacterSet={UTF8}", "PatientName=MÜLLER^JÖRG"],
        lambda d, r: r.patient_name == "MÜLLER^JÖRG"),
    "name-non-ascii-suffix": Case(
        lambda d: [f"SpecificCharacterSet={UTF8}", "PatientName=*JÖRG"], lambda d, r: r.patient_name.endswith("JÖRG")),
    "id-single-character-wildcard": Case(lambda d: ["PatientID=QR-PAT-?"], lambda d, r: True),
    "accession-single-value": Case(lambda d: ["AccessionNumber=QR00003"], lambda d, r: r.accession == "QR00003"),
    "sex": Case(lambda d: ["PatientSex=F"], lambda d, r: r.sex == "F"),
    # PS3.4 C.2.2.2.5 range matching, both bounds inclusive, either may be absent.
    "date-closed-range": Case(lambda d: ["StudyDate=20190101-20201231"],
                              lambda d, r: "20190101" <= r.study_date <= "20201231"),
    "date-range-with-bounds-equal-to-dates": Case(lambda d: ["StudyDate=20190405-20200509"],
                                                  lambda d, r: r.study_date in ("20190405", "20200509")),
    "date-open-end": Case(lambda d: ["StudyDate=20200101-"], lambda d, r: r.study_date >= "20200101"),
    "date-open-start": Case(lambda d: ["StudyDate=-20190405"], lambda d, r: r.study_date <= "20190405"),
    "date-single-value": Case(lambda d: ["StudyDate=20210613"], lambda d, r: r.study_date == "20210613"),
    "date-range-without-studies": Case(lambda d: ["StudyDate=20300101-"], lambda d, r: False),
    "time-open-end": Case(lambda d: ["StudyTime=090000-"], lambda d, r: r.study_time >= "090000"),
    "date-and-name-together": Case(lambda d: ["PatientName=DOE*", "StudyDate=20190101-"],
                                   lambda d, r: r.patient_name.startswith("DOE") and r.study_date >= "20190101"),
    # PS3.4 C.2.2.2.2 list of UID matching.
    "uid-list": Case(lambda d: ["StudyInstanceUID=" + "\\".join(_study_uids(d, 0, 2))],
                     lambda d, r: r.study_uid in _study_uids(d, 0, 2)),
    # PS3.4 C.6.1.1.3: Modalities in Study matches when any series has the modality.
    "modalities-in-study": Case(lambda d: ["ModalitiesInStudy=CT"],
                                lambda d, r: "CT" in d.modalities_in_study(r.study_uid)),
}


@pytest.mark.parametrize("name", MATCHING)
def test_findscu_study_matching_selects_the_studies_the_data_set_says(
    qr_server: Running, qr_data: QrData, tmp_path: Path, name: str
) -> None:
    case = MATCHING[name]
    result = findscu(qr_server.port, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *case.keys(qr_data))
    assert statuses(result.log)[-1] == SUCCESS, result.log
    want = qr_data.uids("STUDY", lambda r: case.matches(qr_data, r))
    assert set(column(result.responses, "StudyInstanceUID")) == want


def test_findscu_series_and_image_keys_match_within_a_study(qr_server: Running, qr_data: QrData,
                                                            tmp_path: Path) -> None:
    mixed = next(uid for uid in qr_data.uids("STUDY") if qr_data.modalities_in_study(uid) == {"CT", "MR"})
    result = findscu(qr_server.port, tmp_path / "series", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={mixed}",
                     "SeriesInstanceUID", "Modality=MR")
    assert project(result.responses, ["SeriesInstanceUID", "Modality"]) == qr_data.rows(
        "SERIES", ["SeriesInstanceUID", "Modality"], lambda r: r.study_uid == mixed and r.modality == "MR")
    assert len(result.responses) == 1

    series = next(iter(qr_data.uids("SERIES", lambda r: r.study_uid == mixed)))
    sops = sorted(qr_data.uids("IMAGE", lambda r: r.series_uid == series))
    result = findscu(qr_server.port, tmp_path / "image", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={mixed}",
                     f"SeriesInstanceUID={series}", f"SOPInstanceUID={sops[1]}\\1.2.3.4.5.404", "InstanceNumber")
    assert project(result.responses, ["SOPInstanceUID", "InstanceNumber"]) == qr_data.rows(
        "IMAGE", ["SOPInstanceUID", "InstanceNumber"], lambda r: r.sop_instance_uid == sops[1])


def test_findscu_universal_keys_return_every_study_with_its_values_and_derived_counts(
    qr_server: Running, qr_data: QrData, tmp_path: Path
) -> None:
    keys = ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber",
            "StudyDescription")
    result = findscu(qr_server.port, tmp_path, "QueryRetrieveLevel=STUDY", *keys, "ModalitiesInStudy",
                     "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
    assert project(result.responses, keys) == qr_data.rows("STUDY", keys)
    for ds in result.responses:   # PS3.4 C.3.4 (Table C.6-5): derived attributes
        uid = text(ds, "StudyInstanceUID")
        assert set(text(ds, "ModalitiesInStudy").split("\\")) == qr_data.modalities_in_study(uid)
        assert text(ds, "NumberOfStudyRelatedSeries") == str(qr_data.count("SERIES", study_uid=uid))
        assert text(ds, "NumberOfStudyRelatedInstances") == str(qr_data.count("IMAGE", study_uid=uid))


def test_findscu_patient_level_counts_studies_and_instances(qr_server: Running, qr_data: QrData,
                                                             tmp_path: Path) -> None:
    result = findscu(qr_server.port, tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
                     "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances", model="-P")
    got = project(result.responses, ["PatientID", "PatientName", "NumberOfPatientRelatedStudies",
                                     "NumberOfPatientRelatedInstances"])
    want = {(r.patient_id, r.patient_name, str(qr_data.count("STUDY", patient_id=r.patient_id)),
             str(qr_data.count("IMAGE", patient_id=r.patient_id))) for r in qr_data.entities("PATIENT").values()}
    assert got == want


# --- hierarchical errors: 0xA900 (PS3.4 C.4.1.2.2, C.4.1.1.4) -------------------------------------------------------

@pytest.mark.parametrize(("model", "keys", "offending"), [
    pytest.param("-P", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], "(0010,0020)",
                 id="patient-root-study-level-without-patient-id"),
    pytest.param("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"], "(0020,000d)",
                 id="study-root-series-level-without-study-uid"),
    pytest.param("-P", ["QueryRetrieveLevel=STUDY", "PatientID=QR-PAT-*", "StudyInstanceUID"], "(0010,0020)",
                 id="patient-root-wildcard-in-a-unique-key-above"),
    pytest.param("-S", ["QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.3.4\\1.2.3.5", "SeriesInstanceUID"],
                 "(0020,000d)", id="study-root-uid-list-above-the-series-level"),
    pytest.param("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "Modality=CT"], "(0008,0060)",
                 id="series-key-in-a-study-level-query"),
    pytest.param("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "SOPInstanceUID"], "(0008,0018)",
                 id="image-key-in-a-study-level-query"),
    pytest.param("-S", ["QueryRetrieveLevel=PATIENT", "PatientID"], "(0008,0052)",
                 id="patient-level-in-study-root"),
])
def test_findscu_gets_a900_with_the_offending_element_for_a_query_breaking_the_hierarchy(
    qr_server: Running, tmp_path: Path, model: str, keys: list[str], offending: str
) -> None:
    result = findscu(qr_server.port, tmp_path, *keys, model=model)
    assert statuses(result.log) == [IDENTIFIER_DOES_NOT_MATCH], result.log
    assert result.responses == ()
    # PS3.7 C.4.1.1: a Failure response may name the Offending Element and carry an Error Comment.
    assert f"{offending}" in result.log.lower() and "OffendingElement" in result.log, result.log
    assert "ErrorComment" in result.log, result.log


# --- aiodicom find against dcmqrscp and Orthanc, compared with aiodicom serve ---------------------------------------

# (model, keys, compared keywords); every query is hierarchical so dcmqrscp can answer it (PEERS.md).
CROSS = {
    "patients": ("patient", ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientBirthDate",
                             "PatientSex"], ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")),
    "studies-of-a-patient": ("patient", ["QueryRetrieveLevel=STUDY", "PatientID=QR-PAT-2", "StudyInstanceUID",
                                         "StudyDate", "AccessionNumber"],
                             ("StudyInstanceUID", "StudyDate", "AccessionNumber")),
    "all-studies": ("study", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "PatientName",
                              "StudyDate", "StudyTime", "AccessionNumber", "StudyID"],
                    ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber",
                     "StudyID")),
    "name-wildcard": ("study", ["QueryRetrieveLevel=STUDY", "PatientName=DOE*", "StudyInstanceUID"],
                      ("StudyInstanceUID",)),
    "non-ascii-name": ("study", [f"SpecificCharacterSet={UTF8}", "QueryRetrieveLevel=STUDY",
                                 "PatientName=MÜLLER*", "StudyInstanceUID", "PatientName"],
                       ("StudyInstanceUID", "PatientName")),
    "date-range": ("study", ["QueryRetrieveLevel=STUDY", "StudyDate=20190101-20201231", "StudyInstanceUID"],
                   ("StudyInstanceUID",)),
    "open-date-range": ("study", ["QueryRetrieveLevel=STUDY", "StudyDate=20200101-", "StudyInstanceUID"],
                        ("StudyInstanceUID",)),
    "series-of-a-study": ("study", ["QueryRetrieveLevel=SERIES", "StudyInstanceUID={study}", "SeriesInstanceUID",
                                    "Modality", "SeriesNumber"], ("SeriesInstanceUID", "Modality", "SeriesNumber")),
    # (dcmqrscp's index has no SOP Class UID: not compared)
    "images-of-a-series": ("study", ["QueryRetrieveLevel=IMAGE", "StudyInstanceUID={study}",
                                     "SeriesInstanceUID={series}", "SOPInstanceUID", "InstanceNumber"],
                           ("SOPInstanceUID", "InstanceNumber")),
}


@pytest.fixture(scope="module")
def peers_with_data(tmp_path_factory: pytest.TempPathFactory, qr_data: QrData) -> Iterator[dict[str, tuple[int, str]]]:
    """DCMTK dcmqrscp (loaded with storescu) and Orthanc (loaded over REST), both holding the Q/R data set."""
    with contextlib.ExitStack() as stack:
        qr = stack.enter_context(dcmqrscp(tmp_path_factory.mktemp("dcmqrscp")))
        load_into_dcmqrscp(qr, qr_data)
        ortho = stack.enter_context(orthanc(tmp_path_factory.mktemp("orthanc")))
        ortho.upload(qr_data.files())
        yield {"dcmqrscp": (qr.port, "DCMQRSCP"), "orthanc": (ortho.port, "ORTHANC")}


@pytest.fixture(scope="module")
def serve_answers(qr_server: Running) -> dict[str, list[Dataset]]:
    """`aiodicom find` answers from `aiodicom serve`, one call per query however many peers compare with it."""
    return {}


def _cross_keys(name: str, data: QrData) -> tuple[str, list[str], tuple[str, ...]]:
    model, keys, compared = CROSS[name]
    anchor = data.records[0]
    return model, [k.format(study=anchor.study_uid, series=anchor.series_uid) for k in keys], compared


@pytest.mark.parametrize("peer", ["dcmqrscp", "orthanc"])
@pytest.mark.parametrize("name", CROSS)
def test_aiodicom_find_gets_the_same_answers_from_a_peer_as_from_aiodicom_serve(
    qr_server: Running, qr_data: QrData, peers_with_data: dict[str, tuple[int, str]],
    serve_answers: dict[str, list[Dataset]], name: str, peer: str
) -> None:
    model, keys, compared = _cross_keys(name, qr_data)
    if name not in serve_answers:
        done, matches = aiodicom_find(qr_server.port, *keys, aec="AIODICOM", model=model)
        assert done.returncode == 0, done.stderr
        serve_answers[name] = matches
    port, aet = peers_with_data[peer]
    done, matches = aiodicom_find(port, *keys, aec=aet, model=model)
    assert done.returncode == 0, done.stderr
    ours = project(serve_answers[name], compared)
    assert project(matches, compared) == ours
    assert len(matches) == len(serve_answers[name])
    assert ours, f"{name}: the query matches nothing, it compares nothing"


# --- C-CANCEL -------------------------------------------------------------------------------------------------------

def test_findscu_cancel_after_the_first_match_ends_with_cancel_status(many_server: Running, tmp_path: Path) -> None:
    result = findscu(many_server.port, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                     extra=["--cancel", "1"])
    seen = statuses(result.log)
    assert result.done.returncode == 0, result.log
    assert seen[0] == PENDING and seen[-1] == CANCEL, result.log   # PS3.4 C.4.1.3.1: FE00 after C-CANCEL
    assert len(seen) - 1 < MANY, "the server sent every match despite the C-CANCEL"


def test_c_cancel_stops_a_find_before_all_its_matches_are_sent(many_server: Running) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""

    async def scenario() -> list[int]:
        async with aiodicom.connect(HOST, many_server.port, called_ae="AIODICOM", contexts=[STUDY_ROOT_FIND]) as assoc:
            message = CFindRQ(message_id=assoc.next_message_id(), affected_sop_class_uid=STUDY_ROOT_FIND)
            return [r.status for r in await responses_with_cancel(assoc, message, identifier, cancel_after=1)]

    seen = anyio.run(scenario)
    assert seen[-1] == CANCEL
    assert len(seen) - 1 < MANY, "every match was sent although C-CANCEL followed the first one"


def test_python_api_find_left_after_the_first_match_cancels_and_the_association_goes_on(
    many_server: Running,
) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""

    async def scenario() -> tuple[str, int, list[int], int, int]:
        contexts = [STUDY_ROOT_FIND, VERIFICATION]
        async with aiodicom.connect(HOST, many_server.port, called_ae="AIODICOM", contexts=contexts) as assoc:
            async with contextlib.aclosing(assoc.find(identifier)) as matches:
                async for match in matches:
                    first = match
                    break   # leaving early sends C-CANCEL and drains the rest (aiodicom/net/qr.py)
            echo = await assoc.echo()
            message = CFindRQ(message_id=assoc.next_message_id(), affected_sop_class_uid=STUDY_ROOT_FIND)
            responses = await responses_with_cancel(assoc, message, identifier, cancel_after=1)
            everything = [m async for m in assoc.find(identifier)]
            echo_again = await assoc.echo()
        return text(first, "StudyInstanceUID"), echo.code, [r.status for r in responses], len(everything), \
            echo_again.code

    first_uid, echo, cancelled, total, echo_again = anyio.run(scenario)
    assert first_uid
    assert echo == SUCCESS
    assert cancelled[0] == PENDING and cancelled[-1] == CANCEL
    assert len(cancelled) - 1 < MANY
    assert total == MANY   # the association and the server's index cursor are in a clean state
    assert echo_again == SUCCESS
