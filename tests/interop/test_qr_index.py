"""The archive index is derived from the files (STORAGE/<study>/<series>/<sop>.dcm): delete it, rebuild it with
`aiodicom index rebuild DIR`, or start `aiodicom serve` on a folder with files and no index, and DCMTK findscu
gets the same answers as before; C-GET still finds every file the rebuilt index points to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.dicomdata import assert_same_dataset_bytes, received_by_uid
from tests.peers import aiodicom, aiodicom_serve
from tests.qrpeers import (
    QrData,
    as_instance,
    build_qr_data,
    findscu,
    getscu,
    load_into_aiodicom,
    statuses,
    text,
)

pytestmark = pytest.mark.interop

INDEX_FILES = ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm")
Answers = dict[str, set[tuple[tuple[str, str], ...]]]


@pytest.fixture(scope="module")
def qr_data(tmp_path_factory: pytest.TempPathFactory) -> QrData:
    return build_qr_data(tmp_path_factory.mktemp("qr-data"))


def _queries(data: QrData) -> dict[str, tuple[str, list[str]]]:
    """Every level of both models: patients, studies, the series of each study and the images of each series, with
    the derived counts (PS3.4 C.3.4) that the index computes rather than reads from a file."""
    queries = {
        "patients": ("-P", ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientBirthDate",
                            "PatientSex", "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                            "NumberOfPatientRelatedInstances"]),
        "studies": ("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "PatientName", "StudyDate",
                           "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
                           "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]),
        "studies-in-a-date-range": ("-S", ["QueryRetrieveLevel=STUDY", "StudyDate=20190101-20201231",
                                           "StudyInstanceUID"]),
    }
    for study in sorted(data.uids("STUDY")):
        queries[f"series-of-{study}"] = ("-S", [
            "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}", "SeriesInstanceUID", "Modality",
            "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances"])
    for series, record in sorted(data.entities("SERIES").items()):
        queries[f"images-of-{series}"] = ("-S", [
            "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={record.study_uid}", f"SeriesInstanceUID={series}",
            "SOPInstanceUID", "SOPClassUID", "InstanceNumber"])
    return queries


def _answers(port: int, data: QrData, out: Path) -> Answers:
    """Each query's responses, each as the sorted (keyword, value) pairs of every attribute it carries."""
    answers: Answers = {}
    for name, (model, keys) in _queries(data).items():
        result = findscu(port, out / "find", *keys, model=model)
        assert statuses(result.log)[-1] == 0x0000, result.log
        answers[name] = {tuple(sorted((e.keyword, text(ds, e.keyword)) for e in ds)) for ds in result.responses}
    return answers


def _check_answers_match_the_data(answers: Answers, data: QrData) -> None:
    """Spot checks that the answers are the data set's (so that two equal but empty answers cannot pass)."""
    assert len(answers["patients"]) == len(data.uids("PATIENT"))
    assert len(answers["studies"]) == len(data.uids("STUDY"))
    images = sum(len(v) for k, v in answers.items() if k.startswith("images-of-"))
    assert images == len(data.records)
    found = {dict(row)["StudyInstanceUID"] for row in answers["studies-in-a-date-range"]}
    assert found == data.uids("STUDY", lambda r: "20190101" <= r.study_date <= "20201231")


def _lay_out(data: QrData, storage: Path) -> None:
    """The files where `aiodicom serve` keeps them: STORAGE/<study>/<series>/<sop>.dcm (the CLI contract)."""
    for record in data.records:
        target = as_instance(record).stored_path(storage)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.path, target)


def test_index_deleted_and_rebuilt_gives_the_same_c_find_answers_and_c_get_finds_every_file(
    qr_data: QrData, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    with aiodicom_serve(tmp_path / "first", storage=storage) as server:
        load_into_aiodicom(server.port, qr_data)
        before = _answers(server.port, qr_data, tmp_path)
    _check_answers_match_the_data(before, qr_data)

    for name in INDEX_FILES:   # the server is stopped: nothing holds the index open
        (storage / name).unlink(missing_ok=True)
    done = aiodicom("index", "rebuild", str(storage))
    assert done.returncode == 0, done.stderr
    assert f"indexed {len(qr_data.records)} of {len(qr_data.records)} files" in done.stdout
    assert (storage / "index.sqlite").is_file()

    with aiodicom_serve(tmp_path / "second", storage=storage) as server:
        assert _answers(server.port, qr_data, tmp_path) == before
        study = qr_data.records[-1].study_uid
        got = getscu(server.port, tmp_path / "got", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}",
                     extra=["+B"])
        assert statuses(got.stdout + got.stderr)[-1] == 0x0000, got.stdout + got.stderr
    expected = [r for r in qr_data.records if r.study_uid == study]
    received = received_by_uid(tmp_path / "got")
    assert set(received) == {r.sop_instance_uid for r in expected}
    for record in expected:
        assert_same_dataset_bytes(received[record.sop_instance_uid], as_instance(record))


def test_server_started_on_files_without_an_index_rebuilds_it_and_answers(qr_data: QrData, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    _lay_out(qr_data, storage)
    assert not (storage / "index.sqlite").exists()
    with aiodicom_serve(tmp_path / "serve", storage=storage) as server:
        answers = _answers(server.port, qr_data, tmp_path)
        log = server.output()
    assert "rebuilding" in log, log
    assert (storage / "index.sqlite").is_file()
    _check_answers_match_the_data(answers, qr_data)
    studies = {dict(row)["StudyInstanceUID"]: dict(row) for row in answers["studies"]}
    for uid, record in qr_data.entities("STUDY").items():
        row = studies[uid]
        assert (row["PatientName"], row["StudyDate"], row["AccessionNumber"]) == (
            record.patient_name, record.study_date, record.accession)
        assert set(row["ModalitiesInStudy"].split("\\")) == qr_data.modalities_in_study(uid)


def test_index_rebuild_names_unreadable_files_exits_1_and_indexes_the_rest(qr_data: QrData, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    _lay_out(qr_data, storage)
    junk = storage / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a DICOM file at all")
    partial = storage / ".incoming" / "upload.dcm"   # hidden folder: temp files waiting for their rename
    partial.parent.mkdir(parents=True)
    shutil.copyfile(qr_data.records[0].path, partial)

    done = aiodicom("index", "rebuild", str(storage))
    assert done.returncode == 1, done.stderr
    assert str(junk) in done.stderr
    assert str(partial) not in done.stderr + done.stdout
    assert f"indexed {len(qr_data.records)} of {len(qr_data.records) + 1} files" in done.stdout

    with aiodicom_serve(tmp_path / "serve", storage=storage) as server:
        answers = _answers(server.port, qr_data, tmp_path)
    _check_answers_match_the_data(answers, qr_data)
