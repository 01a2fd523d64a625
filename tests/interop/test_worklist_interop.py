"""Modality Worklist (PS3.4 Annex K) against DCMTK: `findscu -W` asks `aiodicom serve --worklist DIR` and DCMTK's
`wlmscpfs` serving the same folder of worklist files, `aiodicom find --model worklist` asks both too, and every
answer set must be the same, and the one computed from the items in plain Python."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.peers import Running, aiodicom_serve, free_port, peer_env, require_dcmtk, run, running, wait_until
from tests.qrpeers import aiodicom_find, findscu

pytestmark = pytest.mark.interop

AET = "AIODICOM"
STEP = "ScheduledProcedureStepSequence"
# What every query returns: top-level keys, then keys of the Scheduled Procedure Step item.
RETURN_KEYS = ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID")
STEP_KEYS = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
             "Modality", "ScheduledProcedureStepID", "ScheduledPerformingPhysicianName")
SPS_ID = len(RETURN_KEYS) + STEP_KEYS.index("ScheduledProcedureStepID")  # its place in an answer row


@dataclass(frozen=True, slots=True)
class Item:
    sps_id: str
    station: str
    date: str
    time: str
    modality: str
    patient: str
    physician: str
    charset: str = "ISO_IR 100"

    def dataset(self) -> Dataset:
        """A complete worklist item: wlmscpfs skips items lacking Type 1 attributes (PEERS.md)."""
        ds = Dataset()
        ds.SpecificCharacterSet = self.charset
        ds.AccessionNumber = f"ACC-{self.sps_id}"
        ds.PatientName, ds.PatientID = self.patient, f"PID-{self.sps_id}"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID = generate_uid()
        ds.RequestedProcedureID, ds.RequestedProcedureDescription = f"RP-{self.sps_id}", "PROCEDURE"
        ds.RequestedProcedureCodeSequence = Sequence([code("RPC1", "Requested")])
        step = Dataset()
        step.ScheduledStationAETitle = self.station.split("\\") if "\\" in self.station else self.station
        step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = self.date, self.time
        step.Modality, step.ScheduledPerformingPhysicianName = self.modality, self.physician
        step.ScheduledProcedureStepDescription, step.ScheduledProcedureStepID = "STEP", self.sps_id
        step.ScheduledProtocolCodeSequence = Sequence([code("SPC1", "Protocol")])
        ds.ScheduledProcedureStepSequence = Sequence([step])
        return ds


def code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99TEST", meaning
    return item


ITEMS = (
    Item("SPS01", "CT1", "20240301", "080000", "CT", "DOE^JOHN", "HOUSE^GREGORY"),
    Item("SPS02", "CT1", "20240301", "133000", "CT", "ROE^JANE", "HOUSE^GREGORY"),
    Item("SPS03", "CT2", "20240302", "090000", "CT", "MÜLLER^JÖRG", "WILSON^JAMES"),
    Item("SPS04", "MR1", "20240302", "101500", "MR", "DOE^ANNA", "CUDDY^LISA"),
    Item("SPS05", "MR1", "20240315", "070000", "MR", "SMITH^ANNA", "HOUSE^GREGORY"),
    Item("SPS06", "US1", "20240229", "235900", "US", "DOE^JOHN", "CHASE^ROBERT", charset="ISO_IR 192"),
)


def write_folder(folder: Path) -> Path:
    """DIR/AIODICOM/*.wl plus the lockfile wlmscpfs needs; one file made by DCMTK's own dump2dcm."""
    aet_dir = folder / AET
    aet_dir.mkdir(parents=True)
    (aet_dir / "lockfile").touch()
    for item in ITEMS[1:]:
        ds = item.dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(aet_dir / f"{item.sps_id}.wl", enforce_file_format=True)
    dcmtk_made(ITEMS[0], aet_dir / f"{ITEMS[0].sps_id}.wl")
    return folder


def dcmtk_made(item: Item, path: Path) -> None:
    ds = item.dataset()
    lines = []
    for elem in ds:
        if elem.VR == "SQ":
            lines.append(f"({elem.tag.group:04x},{elem.tag.element:04x}) SQ")
            for sub in elem.value:
                lines.append("(fffe,e000) -")
                for e in sub:
                    if e.VR == "SQ":
                        lines.append(f"({e.tag.group:04x},{e.tag.element:04x}) SQ")
                        for leaf in e.value:
                            lines.append("(fffe,e000) -")
                            lines += [f"({x.tag.group:04x},{x.tag.element:04x}) {x.VR} [{x.value}]" for x in leaf]
                            lines.append("(fffe,e00d) -")
                        lines.append("(fffe,e0dd) -")
                    else:
                        lines.append(f"({e.tag.group:04x},{e.tag.element:04x}) {e.VR} [{e.value}]")
                lines.append("(fffe,e00d) -")
            lines.append("(fffe,e0dd) -")
        else:
            lines.append(f"({elem.tag.group:04x},{elem.tag.element:04x}) {elem.VR} [{elem.value}]")
    dump = path.with_suffix(".dump")
    dump.write_text("\n".join(lines) + "\n", encoding="latin-1")
    done = run([require_dcmtk("dump2dcm"), "-g", str(dump), str(path)], env=peer_env())
    assert done.returncode == 0, done.stderr
    dump.unlink()


@contextlib.contextmanager
def wlmscpfs(workdir: Path, folder: Path) -> Iterator[Running]:
    port = free_port()
    argv = [require_dcmtk("wlmscpfs"), "-dfp", str(folder), "-ta", "10", str(port)]
    with running(argv, port=port, workdir=workdir, env=peer_env(), name="wlmscpfs") as server:
        yield server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Running, Path]]:
    root = tmp_path_factory.mktemp("worklist")
    folder = write_folder(root / "wl")
    with aiodicom_serve(root / "aiodicom", "--worklist", str(folder)) as ours, wlmscpfs(root / "wlm", folder) as theirs:
        yield ours, theirs, folder


def keys(**matching: str) -> list[str]:
    out = [f"{k}={matching.get(k, '')}" if k in matching else k for k in RETURN_KEYS]
    out += [f"{STEP}[0].{k}" + (f"={matching[k]}" if k in matching else "") for k in STEP_KEYS]
    return out


def answers(datasets) -> set[tuple[str, ...]]:
    rows = set()
    for ds in datasets:
        (step,) = ds.get(STEP) or [Dataset()]
        rows.add(tuple(_text(ds, k) for k in RETURN_KEYS) + tuple(_text(step, k) for k in STEP_KEYS))
    return rows


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def expected(where: Callable[[Item], bool]) -> set[str]:
    return {i.sps_id for i in ITEMS if where(i)}


QUERIES: dict[str, tuple[dict[str, str], Callable[[Item], bool]]] = {
    "everything": ({}, lambda i: True),
    "station": ({"ScheduledStationAETitle": "CT1"}, lambda i: i.station == "CT1"),
    "modality": ({"Modality": "MR"}, lambda i: i.modality == "MR"),
    "date": ({"ScheduledProcedureStepStartDate": "20240302"}, lambda i: i.date == "20240302"),
    "date-range": ({"ScheduledProcedureStepStartDate": "20240301-20240302"},
                   lambda i: "20240301" <= i.date <= "20240302"),
    "date-from": ({"ScheduledProcedureStepStartDate": "20240302-"}, lambda i: i.date >= "20240302"),
    "date-and-time": ({"ScheduledProcedureStepStartDate": "20240301",
                       "ScheduledProcedureStepStartTime": "0700-1000"},
                      lambda i: i.date == "20240301" and "070000" <= i.time <= "100000"),
    "physician": ({"ScheduledPerformingPhysicianName": "HOUSE^GREGORY"}, lambda i: i.physician == "HOUSE^GREGORY"),
    "patient-wildcard": ({"PatientName": "DOE*"}, lambda i: i.patient.startswith("DOE")),
    "station-and-date": ({"ScheduledStationAETitle": "MR1", "ScheduledProcedureStepStartDate": "20240301-20240310"},
                         lambda i: i.station == "MR1" and "20240301" <= i.date <= "20240310"),
    "no-match": ({"ScheduledStationAETitle": "NOBODY"}, lambda i: False),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_findscu_gets_the_same_worklist_from_aiodicom_and_wlmscpfs(servers, tmp_path: Path, name: str) -> None:
    ours, theirs, _ = servers
    matching, where = QUERIES[name]
    from_us = findscu(ours.port, tmp_path / "ours", *keys(**matching), model="-W", aec=AET)
    from_them = findscu(theirs.port, tmp_path / "theirs", *keys(**matching), model="-W", aec=AET)
    assert from_us.done.returncode == 0, from_us.log
    assert from_them.done.returncode == 0, from_them.log
    assert answers(from_us.responses) == answers(from_them.responses)
    assert {row[SPS_ID] for row in answers(from_us.responses)} == expected(where)


@pytest.mark.parametrize("name", ["everything", "station", "date-range", "date-and-time", "patient-wildcard",
                                  "no-match"])
def test_aiodicom_find_gets_the_same_worklist_from_wlmscpfs_and_aiodicom(servers, name: str) -> None:
    ours, theirs, _ = servers
    matching, where = QUERIES[name]
    done_them, from_them = aiodicom_find(theirs.port, *keys(**matching), aec=AET, model="worklist")
    done_us, from_us = aiodicom_find(ours.port, *keys(**matching), aec=AET, model="worklist")
    assert done_them.returncode == 0, done_them.stderr
    assert done_us.returncode == 0, done_us.stderr
    assert answers(from_them) == answers(from_us)
    assert {row[SPS_ID] for row in answers(from_them)} == expected(where)


def test_non_ascii_names_arrive_intact_from_both(servers, tmp_path: Path) -> None:
    ours, theirs, _ = servers
    for server in (ours, theirs):
        # an ASCII key (wlmscpfs compares bytes, and the file is Latin-1): the answer carries its character set
        result = findscu(server.port, tmp_path / str(server.port), "PatientName=M*LLER*",
                         f"{STEP}[0].ScheduledProcedureStepID", model="-W", aec=AET)
        assert [str(r.PatientName) for r in result.responses] == ["MÜLLER^JÖRG"], result.log


def test_a_changed_folder_is_followed_and_a_malformed_file_skipped(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "wl")
    with aiodicom_serve(tmp_path / "aiodicom", "--worklist", str(folder)) as ours:
        def count() -> int:
            return len(findscu(ours.port, tmp_path / "rsp", *keys(), model="-W", aec=AET).responses)

        assert count() == len(ITEMS)
        (folder / AET / "garbage.wl").write_bytes(b"this is not DICOM" * 10)
        extra = Item("SPS99", "CT9", "20240401", "080000", "CT", "NEW^ITEM", "WHO^DR").dataset()
        extra.save_as(folder / AET / "new.wl", implicit_vr=True, little_endian=True)  # no file meta, like dump2dcm -F
        (folder / AET / f"{ITEMS[1].sps_id}.wl").unlink()

        def new_item() -> list[str]:
            found = findscu(ours.port, tmp_path / "rsp2", *keys(ScheduledStationAETitle="CT9"), model="-W", aec=AET)
            return [str(r.PatientName) for r in found.responses]

        wait_until(lambda: new_item() == ["NEW^ITEM"], timeout=30, what="new file indexed")
        wait_until(lambda: count() == len(ITEMS), timeout=30, what="deleted file dropped")  # one gone, one added
        wait_until(lambda: "malformed worklist file skipped" in ours.output(), timeout=30, what="log line")
        assert "garbage.wl" in ours.output()
        assert ours.proc.poll() is None


def test_wild_cards_on_the_station_ae_title(servers, tmp_path: Path) -> None:
    """C.2.2.2.4 allows wild cards in AE keys; wlmscpfs matches ScheduledStationAETitle by single value only, so
    here the answer is checked against the items alone."""
    ours, _, _ = servers
    found = findscu(ours.port, tmp_path / "rsp", *keys(ScheduledStationAETitle="CT*"), model="-W", aec=AET)
    assert {row[SPS_ID] for row in answers(found.responses)} == expected(lambda i: i.station.startswith("CT"))


def test_dump2dcm_file_is_read_like_wlmscpfs_reads_it(servers, tmp_path: Path) -> None:
    ours, _, folder = servers
    found = findscu(ours.port, tmp_path / "rsp", *keys(ScheduledProcedureStepID=ITEMS[0].sps_id), model="-W", aec=AET)
    assert [str(r.PatientName) for r in found.responses] == [ITEMS[0].patient]
    assert (folder / AET / f"{ITEMS[0].sps_id}.wl").read_bytes()[128:132] == b"DICM"  # dump2dcm -g wrote a header
