"""Query/Retrieve interop helpers: a hierarchical test data set, DCMTK's Q/R tools (findscu, movescu, getscu,
dcmqrscp) and Orthanc, all on 127.0.0.1, started in a temp dir and stopped by PID.

The data set is small and fully known (patients × studies × series × instances with generated UIDs, one patient
name with non-ASCII letters, study dates spread over years, CT and MR series), so a test can compute every expected
C-FIND answer from it in plain Python instead of trusting any implementation's matching.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.messages import CCancelRQ, CFindRQ, CGetRQ, CMoveRQ, Response
from aiodicom.dimse.status import Category
from aiodicom.net.client import Client
from tests.dicomdata import Instance
from tests.peers import (
    HOST,
    Running,
    aiodicom,
    free_port,
    peer_env,
    require_dcmtk,
    require_tool,
    run,
    running,
    storescu,
    wait_for_port,
)

# Names cycle through these; the second needs more than ASCII (UTF-8, Specific Character Set ISO_IR 192).
PATIENT_NAMES: Final = ("DOE^JOHN", "MÜLLER^JÖRG", "ROE^JANE", "SMITH^ANNA")
UTF8: Final = "ISO_IR 192"
FIRST_STUDY_DATE: Final = date(2018, 3, 1)


# --- the data set ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QrRecord:
    """One instance of the Q/R data set, with every attribute a query may ask about."""

    path: Path
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession: str
    study_id: str
    study_description: str
    series_uid: str
    modality: str
    series_number: int
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int

    def uid(self, level: str) -> str:
        return {"PATIENT": self.patient_id, "STUDY": self.study_uid, "SERIES": self.series_uid,
                "IMAGE": self.sop_instance_uid}[level]

    def value(self, keyword: str) -> str:
        """The attribute as text, the way `text()` renders an answer's."""
        return str(getattr(self, FIELDS[keyword]))


# DICOM keyword → QrRecord field.
FIELDS: Final[Mapping[str, str]] = {
    "PatientID": "patient_id", "PatientName": "patient_name", "PatientBirthDate": "birth_date", "PatientSex": "sex",
    "StudyInstanceUID": "study_uid", "StudyDate": "study_date", "StudyTime": "study_time",
    "AccessionNumber": "accession", "StudyID": "study_id", "StudyDescription": "study_description",
    "SeriesInstanceUID": "series_uid", "Modality": "modality", "SeriesNumber": "series_number",
    "SOPClassUID": "sop_class_uid", "SOPInstanceUID": "sop_instance_uid", "InstanceNumber": "instance_number",
}


@dataclass(frozen=True, slots=True)
class QrData:
    """The instances as files in `folder`, and the entities they form at each level."""

    folder: Path
    records: tuple[QrRecord, ...]

    def files(self) -> list[Path]:
        return [r.path for r in self.records]

    def entities(self, level: str, where: Callable[[QrRecord], bool] = lambda r: True) -> dict[str, QrRecord]:
        """One record per entity of `level` (keyed by its unique key) among the records `where` selects."""
        out: dict[str, QrRecord] = {}
        for r in self.records:
            if where(r):
                out.setdefault(r.uid(level), r)
        return out

    def uids(self, level: str, where: Callable[[QrRecord], bool] = lambda r: True) -> set[str]:
        return set(self.entities(level, where))

    def count(self, level: str, **equal: str) -> int:
        """How many entities of `level` have records with these field values, e.g. count("IMAGE", study_uid=u)."""
        return len(self.entities(level, lambda r: all(getattr(r, k) == v for k, v in equal.items())))

    def rows(self, level: str, keywords: Sequence[str], where: Callable[[QrRecord], bool] = lambda r: True
             ) -> set[tuple[str, ...]]:
        """What a C-FIND at `level` returning `keywords` must answer, as `project()` renders answers."""
        return {tuple(r.value(k) for k in keywords) for r in self.entities(level, where).values()}

    def modalities_in_study(self, study_uid: str) -> set[str]:
        return {r.modality for r in self.records if r.study_uid == study_uid}


def _instance(record: QrRecord, charset: str | None) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = record.sop_class_uid
    ds.SOPInstanceUID = record.sop_instance_uid
    ds.StudyDate = record.study_date
    ds.StudyTime = record.study_time
    ds.AccessionNumber = record.accession
    ds.Modality = record.modality
    ds.ReferringPhysicianName = "REFERRER^ONE"
    ds.StudyDescription = record.study_description
    ds.SeriesDescription = f"{record.modality} series {record.series_number}"
    ds.PatientName = record.patient_name
    ds.PatientID = record.patient_id
    ds.PatientBirthDate = record.birth_date
    ds.PatientSex = record.sex
    ds.StudyInstanceUID = record.study_uid
    ds.SeriesInstanceUID = record.series_uid
    ds.StudyID = record.study_id
    ds.SeriesNumber = record.series_number
    ds.InstanceNumber = record.instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))   # 8 × 8 × 2 bytes
    return ds


def _write(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def build_qr_data(dest: Path, *, patients: int = 2, studies: int = 2, series: int = 2, instances: int = 2,
                  prefix: str = "QR", date_step: int = 400) -> QrData:
    """patients × studies × series × instances Explicit VR Little Endian files in dest.

    Study g (counted over all patients) is dated FIRST_STUDY_DATE + g × date_step days. Its series are CT then MR
    (g % 3 == 0), all MR (1) or all CT (2), so Modalities in Study differs between studies.
    """
    dest.mkdir(parents=True, exist_ok=True)
    records: list[QrRecord] = []
    g = 0
    for p in range(patients):
        name = PATIENT_NAMES[p % len(PATIENT_NAMES)]
        charset = None if name.isascii() else UTF8
        pid, birth, sex = f"{prefix}-PAT-{p + 1}", f"19{50 + p * 7 % 50:02d}0{1 + p % 9}15", "MF"[p % 2]
        for s in range(studies):
            study_uid = generate_uid()
            day = FIRST_STUDY_DATE + timedelta(days=g * date_step)
            for k in range(series):
                series_uid = generate_uid()
                modality = ("CT" if k % 2 == 0 else "MR", "MR", "CT")[g % 3]
                for i in range(instances):
                    sop = generate_uid()
                    path = dest / f"{sop}.dcm"
                    record = QrRecord(
                        path=path, patient_id=pid, patient_name=name, birth_date=birth, sex=sex,
                        study_uid=study_uid, study_date=day.strftime("%Y%m%d"), study_time=f"{8 + s % 10:02d}3000",
                        accession=f"{prefix}{g + 1:05d}", study_id=str(s + 1), study_description=f"study {g + 1}",
                        series_uid=series_uid, modality=modality, series_number=k + 1,
                        sop_class_uid=CTImageStorage if modality == "CT" else MRImageStorage,
                        sop_instance_uid=sop, instance_number=i + 1,
                    )
                    _write(_instance(record, charset), path)
                    records.append(record)
            g += 1
    return QrData(dest, tuple(records))


def as_instance(record: QrRecord) -> Instance:
    """The record as tests/dicomdata.py's Instance, for its stored-versus-sent checks."""
    return Instance(name=f"{record.modality}-{record.sop_instance_uid}", path=record.path,
                    transfer_syntax=UID(ExplicitVRLittleEndian), sop_class_uid=UID(record.sop_class_uid),
                    sop_instance_uid=UID(record.sop_instance_uid), study_uid=UID(record.study_uid),
                    series_uid=UID(record.series_uid))


def load_into_aiodicom(port: int, data: QrData, *, aec: str = "AIODICOM") -> None:
    done = aiodicom("store", HOST, str(port), "--aec", aec, "--no-progress", "-q", *map(str, data.files()),
                    timeout=300)
    assert done.returncode == 0, f"aiodicom store failed:\n{done.stdout}\n{done.stderr}"


# --- comparing answers ----------------------------------------------------------------------------------------------

def text(ds: Dataset, keyword: str) -> str:
    """An attribute as comparable text: absent and empty are both '', multi-values joined with backslashes."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def project(answers: Iterable[Dataset], keywords: Sequence[str]) -> set[tuple[str, ...]]:
    """Answers as a set of tuples of the given attributes (order of answers does not matter in C-FIND)."""
    return {tuple(text(ds, k) for k in keywords) for ds in answers}


def column(answers: Iterable[Dataset], keyword: str) -> list[str]:
    return sorted(text(ds, keyword) for ds in answers)


# --- DCMTK Q/R tools ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FindscuResult:
    done: subprocess.CompletedProcess[str]
    responses: tuple[Dataset, ...]   # the Pending responses' identifiers, in the order received

    @property
    def log(self) -> str:
        return self.done.stdout + self.done.stderr


def findscu(port: int, out: Path, *keys: str, model: str = "-S", aec: str = "AIODICOM", aet: str = "FINDSCU",
            extra: Sequence[str] = ()) -> FindscuResult:
    """DCMTK findscu with `-X`: every Pending response's identifier is written to out/rspNNNN.dcm and read back.
    `-d` makes it print every DIMSE status, so a test can also read the final status from the log."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("rsp*.dcm"):
        stale.unlink()
    argv = [require_dcmtk("findscu"), "-d", model, "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "30",
            "-X", "-od", str(out), *extra]
    for key in keys:
        argv += ["-k", key]
    done = run([*argv, HOST, str(port)], env=peer_env(), timeout=120)
    responses = tuple(pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm")))
    return FindscuResult(done, responses)


def movescu(port: int, dest: str, *keys: str, model: str = "-S", aec: str = "AIODICOM", aet: str = "MOVESCU",
            extra: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """DCMTK movescu in debug mode (`-d` prints every response with its status and sub-operation counts)."""
    argv = [require_dcmtk("movescu"), "-d", model, "-aet", aet, "-aec", aec, "-aem", dest, "-to", "10", "-ta", "10",
            "-td", "60", *extra]
    for key in keys:
        argv += ["-k", key]
    return run([*argv, HOST, str(port)], env=peer_env(), timeout=180)


def getscu(port: int, out: Path, *keys: str, model: str = "-S", aec: str = "AIODICOM", aet: str = "GETSCU",
           extra: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """DCMTK getscu in debug mode, writing what it receives to out (`+B` in extra: bit-preserving)."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [require_dcmtk("getscu"), "-d", model, "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "60",
            "-od", str(out), *extra]
    for key in keys:
        argv += ["-k", key]
    return run([*argv, HOST, str(port)], env=peer_env(), timeout=180)


_DIMSE_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9A-Fa-f]{4})")
_SUB_OPERATIONS = re.compile(r"(Remaining|Completed|Failed|Warning) Suboperations\s*:\s*(\w+)")


def statuses(log: str) -> list[int]:
    """Every DIMSE status a DCMTK tool printed in debug mode (`DIMSE Status : 0xff00: Pending: ...`), in order."""
    return [int(m, 16) for m in _DIMSE_STATUS.findall(log)]


def last_counts(log: str) -> dict[str, str]:
    """The sub-operation counts of the last C-MOVE/C-GET response movescu/getscu printed in debug mode, e.g.
    {"Remaining": "none", "Completed": "4", "Failed": "0", "Warning": "0"} ("none": the field was absent)."""
    counts: dict[str, str] = {}
    for name, value in _SUB_OPERATIONS.findall(log):
        counts[name] = value
    return counts


# --- aiodicom's Q/R CLI ---------------------------------------------------------------------------------------------

def aiodicom_find(port: int, *keys: str, aec: str, model: str = "study",
                  extra: Sequence[str] = ()) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    """`aiodicom find --json`: the matches as pydicom data sets (decoded from the DICOM JSON model, PS3.18 F.2)."""
    args = ["find", HOST, str(port), "--aec", aec, "--model", model, "--json", *extra]
    for key in keys:
        args += ["-k", key]
    done = aiodicom(*args)
    matches = [Dataset.from_json(obj) for obj in json.loads(done.stdout)] if done.stdout.strip() else []
    return done, matches


def aiodicom_retrieve(verb: str, port: int, *keys: str, aec: str, model: str = "study", dest: str | None = None,
                      out: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`aiodicom move --dest AET` or `aiodicom get --out DIR`."""
    args = [verb, HOST, str(port), "--aec", aec, "--model", model]
    args += ["--dest", dest] if dest is not None else []
    args += ["--out", str(out)] if out is not None else []
    for key in keys:
        args += ["-k", key]
    return aiodicom(*args)


async def responses_with_cancel(client: Client, message: CFindRQ | CMoveRQ | CGetRQ, identifier: Dataset, *,
                                cancel_after: int = 1) -> list[Response]:
    """Send a C-FIND/C-MOVE/C-GET with the Python API's low-level calls; after `cancel_after` Pending responses send
    C-CANCEL (PS3.7 §9.3.2.3) and keep reading: every response up to the final one, which the high-level iterators
    drain and hide."""
    cid = client.context_for(message.affected_sop_class_uid)
    data = EncodedDataset.from_dataset(identifier, client.assoc.transfer_syntax(cid))
    responses: list[Response] = []
    async with contextlib.aclosing(client.request_iter(message, cid, data)) as stream:
        async for rsp, payload in stream:
            if payload is not None and hasattr(payload, "close"):
                payload.close()
            responses.append(rsp)
            if rsp.category is not Category.PENDING:
                break
            if len(responses) == cancel_after:
                await client.assoc.send(CCancelRQ(message_id_being_responded_to=message.message_id), cid)
    return responses


# --- DCMTK dcmqrscp -------------------------------------------------------------------------------------------------

def _dcmqrscp_config(port: int, aet: str, db: Path, peers: Mapping[str, int]) -> str:
    """dcmqrscp.cfg (see /usr/share/doc/dcmtk/dcmqrscp.txt): one AE with its storage area, a host table entry per
    move destination. `ANY` lets every peer query and retrieve; the quota is large enough for any test."""
    hosts = "\n".join(f"{aet_.lower()}_host = ({aet_}, {HOST}, {p})" for aet_, p in peers.items())
    return (
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n"
        f"HostTable BEGIN\n{hosts}\nHostTable END\n\n"
        "VendorTable BEGIN\nVendorTable END\n\n"
        f"AETable BEGIN\n{aet} {db} RW (10000, 1024mb) ANY\nAETable END\n"
    )


@contextlib.contextmanager
def dcmqrscp(workdir: Path, *, aet: str = "DCMQRSCP", peers: Mapping[str, int] | None = None,
             extra: Sequence[str] = ()) -> Iterator[Running]:
    """DCMTK dcmqrscp on a free port with an empty storage area (Running.storage). `-ta 5`: it reads each
    A-ASSOCIATE-RQ in its parent process, so an idle connection would block everyone for the ACSE timeout.

    No association profile (`-xf`): its built-in contexts cover the uncompressed CT/MR data set, C-GET's storage
    sub-operations included; give `extra=["-xf", cfg, in, out]` for compressed syntaxes (PEERS.md)."""
    port = free_port()
    db = workdir / "db"
    db.mkdir(parents=True, exist_ok=True)
    config = workdir / "dcmqrscp.cfg"
    config.write_text(_dcmqrscp_config(port, aet, db, peers or {}))
    argv = [require_dcmtk("dcmqrscp"), "-d", "-c", str(config), "-ta", "5", "-td", "30", *extra]
    with running(argv, port=port, workdir=workdir, env=peer_env(), name="dcmqrscp", storage=db) as r:
        yield r


def load_into_dcmqrscp(server: Running, data: QrData, *, aec: str = "DCMQRSCP") -> None:
    done = storescu(server.port, data.files(), aec=aec)
    assert done.returncode == 0, f"storescu -> dcmqrscp failed:\n{done.stdout}\n{done.stderr}"


# --- Orthanc --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OrthancRunning:
    """A running Orthanc: its DICOM port (`port`) and its REST API."""

    server: Running
    http_port: int

    @property
    def port(self) -> int:
        return self.server.port

    def rest(self, path: str, *, body: bytes | None = None, timeout: float = 30) -> object:
        """One REST call on 127.0.0.1 (Orthanc listens on every interface: only ever talk to loopback)."""
        request = urllib.request.Request(f"http://{HOST}:{self.http_port}{path}", data=body,
                                         method="POST" if body is not None else "GET")
        if body is not None:
            request.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def upload(self, files: Iterable[Path]) -> None:
        for path in files:
            answer = self.rest("/instances", body=path.read_bytes())
            assert isinstance(answer, dict) and answer.get("Status") in ("Success", "AlreadyStored"), answer


@contextlib.contextmanager
def orthanc(workdir: Path, *, aet: str = "ORTHANC", modalities: Mapping[str, int] | None = None
            ) -> Iterator[OrthancRunning]:
    """Our own Orthanc: DICOM and HTTP on free ports, storage and index in workdir, HTTP refused from other hosts.
    Unregistered AEs may find/move/get. A system instance (`service orthanc`) uses other ports and does not interfere.

    Every destination in `modalities` must have a real port (a port of 0 makes Orthanc exit at start)."""
    binary = require_tool("Orthanc")
    workdir.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    while http_port == port:
        http_port = free_port()
    for name, p in (modalities or {}).items():
        if not 0 < p < 65536:
            raise ValueError(f"Orthanc modality {name}: port {p} would make Orthanc exit")
    config = {
        "Name": "aiodicom-interop", "DicomAet": aet, "DicomPort": port, "HttpPort": http_port,
        "StorageDirectory": str(workdir / "storage"), "IndexDirectory": str(workdir / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpServerEnabled": True,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": True,
        "DicomModalities": {name: [name, HOST, p] for name, p in (modalities or {}).items()},
        "DicomScpTimeout": 30, "Plugins": [], "ConcurrentJobs": 2, "LimitFindResults": 0, "LimitFindInstances": 0,
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    with running([binary, str(path)], port=port, workdir=workdir, env=peer_env(), name="orthanc") as server:
        wait_for_port(http_port, server.proc)
        ortho = OrthancRunning(server, http_port)
        _wait_rest(ortho)
        yield ortho


def _wait_rest(server: OrthancRunning, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.rest("/system")
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
