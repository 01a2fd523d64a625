"""Query/Retrieve C-MOVE and C-GET (PS3.4 C.4.2, C.4.3) against real peers.

- DCMTK movescu asks `aiodicom serve` to move each level to DCMTK storescp and to a second `aiodicom serve`: every
  instance arrives with its data set byte for byte as stored. An unknown destination is refused with 0xA801; a
  destination that is down ends with every sub-operation failed and listed.
- DCMTK getscu and `aiodicom get` receive from `aiodicom serve` on the same association.
- `aiodicom move|get` against DCMTK dcmqrscp and Orthanc holding the same data deliver the same instances as
  `aiodicom serve` does.
- C-CANCEL in the middle of a C-MOVE to a slow destination (storescp sleeping after each store).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pydicom
import pytest
from pydicom.dataset import Dataset

import aiodicom
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.messages import CFindRQ, CGetRQ, CMoveRQ, Response
from aiodicom.uids import PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, VERIFICATION
from tests.dicomdata import Corpus, assert_same_content, assert_same_dataset_bytes, received_by_uid
from tests.peers import HOST, Running, aiodicom_serve, dcmtk_storescp, free_port, storescu
from tests.qrpeers import (
    OrthancRunning,
    QrData,
    QrRecord,
    aiodicom_retrieve,
    as_instance,
    build_qr_data,
    dcmqrscp,
    findscu,
    getscu,
    last_counts,
    load_into_aiodicom,
    load_into_dcmqrscp,
    movescu,
    orthanc,
    responses_with_cancel,
    statuses,
)

pytestmark = pytest.mark.interop

SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
MOVE_DESTINATION_UNKNOWN, OUT_OF_RESOURCES_SUBOPERATIONS = 0xA801, 0xA702


@pytest.fixture(scope="module")
def qr_data(tmp_path_factory: pytest.TempPathFactory) -> QrData:
    return build_qr_data(tmp_path_factory.mktemp("qr-data"))


@pytest.fixture(scope="module")
def storescp_dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with dcmtk_storescp(tmp_path_factory.mktemp("storescp"), aet="STORESCP") as server:
        yield server


@pytest.fixture(scope="module")
def slow_dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """storescp sleeping 1 s after each store: a C-MOVE to it is still running when its C-CANCEL arrives."""
    with dcmtk_storescp(tmp_path_factory.mktemp("slow"), "--sleep-after", "1", aet="SLOW") as server:
        yield server


@pytest.fixture(scope="module")
def aiodicom_dest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with aiodicom_serve(tmp_path_factory.mktemp("dest"), aet="DEST") as server:
        yield server


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, qr_data: QrData, storescp_dest: Running, slow_dest: Running,
           aiodicom_dest: Running) -> Iterator[Running]:
    """`aiodicom serve` holding the data set; destinations from a TOML file and from --peer (DOWN: nothing there)."""
    workdir = tmp_path_factory.mktemp("source")
    config = workdir / "peers.toml"
    config.write_text(f'[peers]\nSTORESCP = "{HOST}:{storescp_dest.port}"\nSLOW = "{HOST}:{slow_dest.port}"\n')
    with aiodicom_serve(workdir, "--config", str(config), "--peer", f"DEST={HOST}:{aiodicom_dest.port}",
                        "--peer", f"DOWN={HOST}:{free_port()}") as server:
        load_into_aiodicom(server.port, qr_data)
        yield server


def _emptied(server: Running) -> Path:
    """A storescp's folder, emptied: what a test finds there came from its own C-MOVE."""
    assert server.storage is not None
    for path in server.storage.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return server.storage


@pytest.fixture
def storescp_inbox(storescp_dest: Running) -> Path:
    return _emptied(storescp_dest)


@pytest.fixture
def slow_inbox(slow_dest: Running) -> Path:
    return _emptied(slow_dest)


def _check_byte_identical(received: dict[str, Path], expected: list[QrRecord]) -> None:
    assert set(received) == {r.sop_instance_uid for r in expected}
    for record in expected:
        assert_same_dataset_bytes(received[record.sop_instance_uid], as_instance(record))


@dataclass(frozen=True, slots=True)
class Selection:
    """A retrieve identifier as `-k` keys, its model (DCMTK flag) and the records it selects."""

    model: str
    keys: list[str]
    records: list[QrRecord]

    @property
    def model_name(self) -> str:   # aiodicom's --model
        return "patient" if self.model == "-P" else "study"


def _selection(data: QrData, name: str) -> Selection:
    """Named selections at every level, built around the data set's last instance (the non-ASCII patient)."""
    last = data.records[-1]
    study, series = f"StudyInstanceUID={last.study_uid}", f"SeriesInstanceUID={last.series_uid}"
    if name == "patient":
        return Selection("-P", ["QueryRetrieveLevel=PATIENT", f"PatientID={last.patient_id}"],
                         [r for r in data.records if r.patient_id == last.patient_id])
    if name == "patient-root-study":
        return Selection("-P", ["QueryRetrieveLevel=STUDY", f"PatientID={last.patient_id}", study],
                         [r for r in data.records if r.study_uid == last.study_uid])
    if name == "study":
        return Selection("-S", ["QueryRetrieveLevel=STUDY", study],
                         [r for r in data.records if r.study_uid == last.study_uid])
    if name == "study-uid-list":   # PS3.4 C.4.2.2.1: a list of UIDs at the retrieve level
        two = sorted(data.uids("STUDY"))[:2]
        return Selection("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + "\\".join(two)],
                         [r for r in data.records if r.study_uid in two])
    if name == "series":
        return Selection("-S", ["QueryRetrieveLevel=SERIES", study, series],
                         [r for r in data.records if r.series_uid == last.series_uid])
    if name == "image":
        return Selection("-S", ["QueryRetrieveLevel=IMAGE", study, series, f"SOPInstanceUID={last.sop_instance_uid}"],
                         [last])
    raise KeyError(name)


SELECTIONS = ("patient", "patient-root-study", "study", "study-uid-list", "series", "image")


# --- DCMTK movescu / getscu against aiodicom serve ------------------------------------------------------------------

@pytest.mark.parametrize("selection", SELECTIONS)
def test_movescu_moves_the_selection_to_storescp_byte_identical(
    source: Running, qr_data: QrData, storescp_inbox: Path, selection: str
) -> None:
    chosen = _selection(qr_data, selection)
    expected = chosen.records
    done = movescu(source.port, "STORESCP", *chosen.keys, model=chosen.model)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert statuses(log)[-1] == SUCCESS, log
    counts = last_counts(log)
    assert (counts["Completed"], counts["Failed"], counts["Warning"]) == (str(len(expected)), "0", "0"), log
    _check_byte_identical(received_by_uid(storescp_inbox), expected)


def test_movescu_to_a_second_aiodicom_serve_stores_and_indexes_every_instance(
    source: Running, aiodicom_dest: Running, qr_data: QrData, tmp_path: Path
) -> None:
    patient = qr_data.records[0].patient_id
    expected = [r for r in qr_data.records if r.patient_id == patient]
    done = movescu(source.port, "DEST", "QueryRetrieveLevel=PATIENT", f"PatientID={patient}", model="-P")
    log = done.stdout + done.stderr
    assert done.returncode == 0 and statuses(log)[-1] == SUCCESS, log
    assert aiodicom_dest.storage is not None
    for record in expected:
        assert_same_dataset_bytes(as_instance(record).stored_path(aiodicom_dest.storage), as_instance(record))
    # the destination indexed what it received: it answers for it
    result = findscu(aiodicom_dest.port, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={patient}",
                     "StudyInstanceUID", aec="DEST")
    assert {str(ds.StudyInstanceUID) for ds in result.responses} == {r.study_uid for r in expected}


def test_movescu_to_an_unknown_destination_is_refused_with_a801(source: Running, qr_data: QrData,
                                                                storescp_inbox: Path) -> None:
    done = movescu(source.port, "NOWHERE", *_selection(qr_data, "study").keys)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    assert statuses(log) == [MOVE_DESTINATION_UNKNOWN], log   # PS3.4 C.4.2.1.5: no sub-operation attempted
    assert received_by_uid(storescp_inbox) == {}


def test_movescu_to_a_destination_that_is_down_fails_every_sub_operation_and_lists_them(
    source: Running, qr_data: QrData
) -> None:
    chosen = _selection(qr_data, "study")
    expected = chosen.records
    done = movescu(source.port, "DOWN", *chosen.keys)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    # PS3.4 C.4.2.1.5: all sub-operations failed, none completed → A702 with the counts
    assert statuses(log)[-1] == OUT_OF_RESOURCES_SUBOPERATIONS, log
    counts = last_counts(log)
    assert (counts["Completed"], counts["Failed"]) == ("0", str(len(expected))), log
    # Failed SOP Instance UID List (0008,0058) in the final response's identifier
    assert "FailedSOPInstanceUIDList" in log, log
    for record in expected:
        assert record.sop_instance_uid in log


def test_aiodicom_move_to_a_destination_that_is_down_exits_1_naming_the_failed_instances(
    source: Running, qr_data: QrData
) -> None:
    chosen = _selection(qr_data, "series")
    expected = chosen.records
    done = aiodicom_retrieve("move", source.port, *chosen.keys, aec="AIODICOM", dest="DOWN")
    assert done.returncode == 1, done.stderr
    assert "0xA702" in done.stdout
    assert "(sub-association to DOWN: cannot connect to" in done.stdout  # the server's Error Comment: why
    assert {line.split("failed:")[1].strip() for line in done.stderr.splitlines() if "failed:" in line} == {
        r.sop_instance_uid for r in expected}
    logged = [line for line in source.output().splitlines() if "C-MOVE sub-association failed" in line]
    assert logged and "DOWN" in logged[-1] and "cannot connect" in logged[-1], logged


def test_aiodicom_move_to_an_unknown_destination_says_so_and_the_server_logs_it(source: Running, qr_data: QrData) -> None:
    done = aiodicom_retrieve("move", source.port, *_selection(qr_data, "study").keys, aec="AIODICOM", dest="NOWHERE")
    assert done.returncode == 1, done.stderr
    assert "0xA801" in done.stdout and "(unknown destination 'NOWHERE')" in done.stdout, done.stdout
    logged = [line for line in source.output().splitlines() if "C-MOVE refused: unknown destination" in line]
    assert logged and "NOWHERE" in logged[-1], logged


@pytest.mark.parametrize(("request_type", "named_class"), [("move", STUDY_ROOT_FIND), ("get", STUDY_ROOT_FIND),
                                                            ("find", STUDY_ROOT_MOVE)])
def test_a_request_naming_a_sop_class_of_another_operation_is_refused_with_0122(
    source: Running, request_type: str, named_class: str,
) -> None:
    """PS3.4 C.4.1.1.4 / C.4.2.1.5: 0x0122 SOP Class not supported, as DCMTK answers (it was an internal KeyError
    answered 0xC000 for C-MOVE/C-GET, and 0x0118, an N-service status, for C-FIND)."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3"
    message_id = 7
    message = {"move": lambda: CMoveRQ(message_id=message_id, affected_sop_class_uid=named_class, move_destination="X"),
               "get": lambda: CGetRQ(message_id=message_id, affected_sop_class_uid=named_class),
               "find": lambda: CFindRQ(message_id=message_id, affected_sop_class_uid=named_class)}[request_type]()

    async def ask() -> list[int]:
        async with aiodicom.connect(HOST, source.port, called_ae="AIODICOM",
                                    contexts=[STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET]) as assoc:
            cid = assoc.context_for(named_class)
            data = EncodedDataset.from_dataset(identifier, assoc.assoc.transfer_syntax(cid))
            return [rsp.status async for rsp, _ in assoc.request_iter(message, cid, data)]

    assert anyio.run(ask) == [0x0122]


@pytest.mark.parametrize("selection", ["patient", "study", "image"])
def test_getscu_receives_the_selection_byte_identical(source: Running, qr_data: QrData, tmp_path: Path,
                                                      selection: str) -> None:
    chosen = _selection(qr_data, selection)
    expected = chosen.records
    done = getscu(source.port, tmp_path / "got", *chosen.keys, model=chosen.model, extra=["+B"])
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert statuses(log)[-1] == SUCCESS, log
    assert last_counts(log)["Completed"] == str(len(expected)), log
    _check_byte_identical(received_by_uid(tmp_path / "got"), expected)


def test_aiodicom_get_from_aiodicom_serve_receives_the_selection_byte_identical(
    source: Running, qr_data: QrData, tmp_path: Path
) -> None:
    chosen = _selection(qr_data, "study-uid-list")
    expected = chosen.records
    done = aiodicom_retrieve("get", source.port, *chosen.keys, aec="AIODICOM", out=tmp_path / "got")
    assert done.returncode == 0, done.stderr
    assert f"{len(expected)} of {len(expected)} sub-operations completed" in done.stdout
    _check_byte_identical(received_by_uid(tmp_path / "got"), expected)


# --- aiodicom move|get against dcmqrscp and Orthanc -----------------------------------------------------------------

@pytest.fixture(scope="module")
def qr_peers(tmp_path_factory: pytest.TempPathFactory, qr_data: QrData,
             storescp_dest: Running) -> Iterator[dict[str, tuple[int, str]]]:
    """dcmqrscp and Orthanc holding the data set, each knowing storescp as move destination STORESCP."""
    with contextlib.ExitStack() as stack:
        qr = stack.enter_context(dcmqrscp(tmp_path_factory.mktemp("dcmqrscp"),
                                          peers={"STORESCP": storescp_dest.port}))
        load_into_dcmqrscp(qr, qr_data)
        ortho: OrthancRunning = stack.enter_context(
            orthanc(tmp_path_factory.mktemp("orthanc"), modalities={"STORESCP": storescp_dest.port}))
        ortho.upload(qr_data.files())
        yield {"dcmqrscp": (qr.port, "DCMQRSCP"), "orthanc": (ortho.port, "ORTHANC")}


PEERS = ("aiodicom", "dcmqrscp", "orthanc")


def _peer(name: str, qr_peers: dict[str, tuple[int, str]], source: Running) -> tuple[int, str]:
    """(port, AE title) of the SCP named: `aiodicom serve` (the reference) or a peer holding the same data."""
    return (source.port, "AIODICOM") if name == "aiodicom" else qr_peers[name]


@pytest.mark.parametrize("selection", ["patient", "study", "series"])
@pytest.mark.parametrize("peer", PEERS)
def test_aiodicom_move_delivers_the_same_instances_from_every_scp(
    source: Running, qr_peers: dict[str, tuple[int, str]], qr_data: QrData, storescp_inbox: Path, peer: str,
    selection: str
) -> None:
    chosen = _selection(qr_data, selection)
    expected = chosen.records
    port, aet = _peer(peer, qr_peers, source)
    done = aiodicom_retrieve("move", port, *chosen.keys, aec=aet, model=chosen.model_name, dest="STORESCP")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert f"{len(expected)} of {len(expected)} sub-operations completed" in done.stdout
    received = received_by_uid(storescp_inbox)
    assert set(received) == {r.sop_instance_uid for r in expected}
    for record in expected:   # dcmqrscp and Orthanc keep what storescu/REST gave them: same content
        assert_same_content(received[record.sop_instance_uid], as_instance(record))


@pytest.mark.parametrize("peer", PEERS)
def test_aiodicom_get_receives_the_same_instances_from_every_scp(
    source: Running, qr_peers: dict[str, tuple[int, str]], qr_data: QrData, tmp_path: Path, peer: str
) -> None:
    chosen = _selection(qr_data, "study")
    expected = chosen.records
    port, aet = _peer(peer, qr_peers, source)
    done = aiodicom_retrieve("get", port, *chosen.keys, aec=aet, model=chosen.model_name, out=tmp_path / "got")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    received = received_by_uid(tmp_path / "got")
    assert set(received) == {r.sop_instance_uid for r in expected}
    for record in expected:
        assert_same_content(received[record.sop_instance_uid], as_instance(record))


# What each SCP answers for a destination it does not know: PS3.4 C.4.2.1.5 says 0xA801; Orthanc 1.10 answers
# 0xC000 (unable to process) instead.
UNKNOWN_DESTINATION_STATUS = {"aiodicom": "0xA801", "dcmqrscp": "0xA801", "orthanc": "0xC000"}


@pytest.mark.parametrize("peer", PEERS)
def test_aiodicom_move_to_an_unknown_destination_reports_the_failure_and_exits_1(
    source: Running, qr_peers: dict[str, tuple[int, str]], qr_data: QrData, storescp_inbox: Path, peer: str
) -> None:
    keys = _selection(qr_data, "study").keys   # dcmqrscp answers A801 only for an identifier with matches
    port, aet = _peer(peer, qr_peers, source)
    done = aiodicom_retrieve("move", port, *keys, aec=aet, dest="NOWHERE")
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.startswith(UNKNOWN_DESTINATION_STATUS[peer]), done.stdout
    assert received_by_uid(storescp_inbox) == {}


# --- C-CANCEL in the middle of a C-MOVE -----------------------------------------------------------------------------

def _patient_identifier(record: QrRecord) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = record.patient_id
    return identifier


def _study_identifier(record: QrRecord) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = record.study_uid
    return identifier


def _image_identifier(record: QrRecord) -> Dataset:
    identifier = _study_identifier(record)
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.SeriesInstanceUID = record.series_uid
    identifier.SOPInstanceUID = record.sop_instance_uid
    return identifier


def test_movescu_cancel_after_the_first_response_ends_the_move_with_cancel_status(
    source: Running, qr_data: QrData, slow_inbox: Path
) -> None:
    patient = qr_data.records[0].patient_id
    selected = {r.sop_instance_uid for r in qr_data.records if r.patient_id == patient}
    done = movescu(source.port, "SLOW", "QueryRetrieveLevel=PATIENT", f"PatientID={patient}", model="-P",
                   extra=["--cancel", "1"])
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert statuses(log) == [PENDING, CANCEL], log   # PS3.4 C.4.2.3.1: sub-operations stop, Cancel follows
    assert len(set(received_by_uid(slow_inbox)) & selected) < len(selected)


def test_cancelled_move_final_response_carries_the_sub_operation_counts(
    source: Running, qr_data: QrData, slow_inbox: Path
) -> None:
    record = qr_data.records[-1]
    total = len([r for r in qr_data.records if r.patient_id == record.patient_id])

    async def scenario() -> list[Response]:
        async with aiodicom.connect(HOST, source.port, called_ae="AIODICOM", contexts=[PATIENT_ROOT_MOVE]) as assoc:
            message = CMoveRQ(message_id=assoc.next_message_id(), affected_sop_class_uid=PATIENT_ROOT_MOVE,
                              move_destination="SLOW")
            return await responses_with_cancel(assoc, message, _patient_identifier(record), cancel_after=1)

    responses = anyio.run(scenario)
    assert [r.status for r in responses] == [PENDING, CANCEL]
    final = responses[-1]
    assert None not in (final.completed, final.failed, final.warning), final
    assert final.completed >= 1
    if final.remaining is not None:
        assert final.completed + final.failed + final.warning + final.remaining == total


def test_python_api_move_left_after_the_first_progress_leaves_the_association_usable(
    source: Running, qr_data: QrData, slow_inbox: Path, storescp_inbox: Path
) -> None:
    record = qr_data.records[0]

    async def scenario() -> tuple[int, int, list[int]]:
        contexts = [STUDY_ROOT_MOVE, VERIFICATION]
        async with aiodicom.connect(HOST, source.port, called_ae="AIODICOM", contexts=contexts) as assoc:
            async with contextlib.aclosing(assoc.move(_study_identifier(record), "SLOW")) as moving:
                async for progress in moving:
                    first = progress.status
                    break
            echo = await assoc.echo()
            after = [p.status async for p in assoc.move(_image_identifier(record), "STORESCP")]
        return first, echo.code, after

    first, echo, after = anyio.run(scenario)
    assert first == PENDING
    assert echo == SUCCESS
    assert after[-1] == SUCCESS   # a new C-MOVE on the same association runs to the end
    assert set(received_by_uid(storescp_inbox)) == {record.sop_instance_uid}


def test_python_api_move_left_after_the_first_progress_stops_the_sub_operations(
    source: Running, qr_data: QrData, slow_inbox: Path
) -> None:
    record = qr_data.records[0]
    selected = {r.sop_instance_uid for r in qr_data.records if r.study_uid == record.study_uid}

    async def scenario() -> int:
        async with aiodicom.connect(HOST, source.port, called_ae="AIODICOM",
                                    contexts=[STUDY_ROOT_MOVE, VERIFICATION]) as assoc:
            async with contextlib.aclosing(assoc.move(_study_identifier(record), "SLOW")) as moving:
                async for _ in moving:
                    break
            return (await assoc.echo()).code   # the next request goes out after the C-CANCEL

    assert anyio.run(scenario) == SUCCESS
    # With the C-CANCEL read first, the SCP stops after the sub-operation in progress (PS3.4 C.4.2.3.1).
    assert len(set(received_by_uid(slow_inbox)) & selected) < len(selected)


# ---- compressed instances for peers that take only uncompressed syntaxes --------------------------------------------

DECOMPRESSED = ("bundled-jpeg-lossless", "bundled-rle-mr", "bundled-j2k-lossless", "bundled-jpeg-ls-lossless")


def test_compressed_instances_are_decompressed_for_movescu_and_getscu_that_take_only_uncompressed(
        corpus: Corpus, tmp_path: Path) -> None:
    pytest.importorskip("pylibjpeg", reason="the convert extra decodes compressed pixel data")
    sent = [corpus[n] for n in DECOMPRESSED]
    with dcmtk_storescp(tmp_path / "plain", "+xi", aet="PLAIN") as plain, \
            aiodicom_serve(tmp_path / "source", "--peer", f"PLAIN={HOST}:{plain.port}") as source:
        for inst in sent:
            done = storescu(source.port, [inst.path], propose=inst.transfer_syntax, aec="AIODICOM")
            assert done.returncode == 0, done.stderr
        for inst in sent:  # movescu's destination (storescp +xi) accepts Implicit VR Little Endian only
            done = movescu(source.port, "PLAIN", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={inst.study_uid}")
            assert done.returncode == 0 and "Failed SOP" not in done.stdout + done.stderr, done.stdout + done.stderr
        got_by_move = received_by_uid(plain.storage)
        fetched = tmp_path / "fetched"
        for inst in sent:  # getscu proposes the uncompressed syntaxes only
            done = getscu(source.port, fetched, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={inst.study_uid}")
            assert done.returncode == 0, done.stdout + done.stderr
        got_by_get = received_by_uid(fetched)
    for inst in sent:
        want = pydicom.dcmread(inst.path)
        for how, got in (("C-MOVE", got_by_move), ("C-GET", got_by_get)):
            ds = pydicom.dcmread(got[inst.sop_instance_uid])
            assert not ds.file_meta.TransferSyntaxUID.is_compressed, f"{inst.name} by {how}"
            assert ds.SOPInstanceUID == want.SOPInstanceUID
            assert (ds.pixel_array == want.pixel_array).all(), f"{inst.name} by {how}: decoded pixels differ"
