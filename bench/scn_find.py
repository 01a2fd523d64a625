"""C-FIND: a study-level wildcard query, timed from the request to the first response and to the last.

1. aiodicom alone on a 100,000-instance archive (the index built directly with SqliteIndex.add of
   synthetic records: C-FIND needs no file).
2. The same smaller data set (10,000 instances as files, in 500 studies: dcmqrscp's index holds at most
   500 studies, DB_UpperMaxStudies) in aiodicom, DCMTK dcmqrscp (indexed with dcmqridx) and Orthanc
   (sent with storescu): loading 100,000 into those two takes too long for a bench.
One client for all: aiodicom's association API, timing the raw responses (nothing decoded).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio

from aiodicom.archive.index_sqlite import SqliteIndex
from aiodicom.dimse import status as st
from aiodicom.dimse.dataset import EXPLICIT_VR_LITTLE_ENDIAN, EncodedDataset
from aiodicom.dimse.messages import CFindRQ
from aiodicom.net.client import connect
from aiodicom.uids import STUDY_ROOT_FIND
from bench import peers
from bench.core import Bench, Ratio
from bench.data import files_in, index_records, make_files

QUERY = ("QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=*", "PatientID", "StudyDate", "AccessionNumber")
INSTANCES_PER_STUDY = 10
DCMQRSCP_MAX_STUDIES = 500  # DCMTK dcmqrdbi.h DB_UpperMaxStudies: more, and dcmqridx drops the oldest studies
AIODICOM, DCMQRSCP, ORTHANC = "aiodicom serve", "DCMTK dcmqrscp", "Orthanc"


def _identifier() -> bytes:
    from aiodicom.cli.keys import build_identifier

    return EncodedDataset.from_dataset(build_identifier(QUERY), EXPLICIT_VR_LITTLE_ENDIAN).read_bytes()


async def _find(host: str, port: int, aet: str) -> tuple[float, float, int, int]:
    """(seconds to the first response, seconds to the final one, matches, final status)."""
    data = _identifier()
    async with connect(host, port, called_ae=aet, contexts=[(STUDY_ROOT_FIND, (EXPLICIT_VR_LITTLE_ENDIAN,))],
                       dimse_timeout=600) as client:
        cid = client.context_for(STUDY_ROOT_FIND)
        message = CFindRQ(message_id=client.next_message_id(), affected_sop_class_uid=STUDY_ROOT_FIND)
        first, matches, final = None, 0, -1
        t = time.perf_counter()
        async for rsp, payload in client.request_iter(message, cid, data):
            if first is None:
                first = time.perf_counter() - t
            if payload is not None:
                payload.close()
            if rsp.category is st.Category.PENDING:
                matches += 1
            else:
                final = rsp.status
        total = time.perf_counter() - t
    return first or total, total, matches, final


def find_once(host: str, port: int, aet: str) -> tuple[float, float, int, int]:
    return anyio.run(_find, host, port, aet, backend_options={"use_uvloop": True})


class FindData:
    def __init__(self, bench: Bench) -> None:
        self.big = 1_000 if bench.quick else 100_000
        self.equal = 100 if bench.quick else 10_000
        root = bench.folder("find")
        self.index_dir = root / "index-100k"
        self.index_dir.mkdir(exist_ok=True)
        t = time.perf_counter()
        anyio.run(self._build_index, backend_options={"use_uvloop": True})
        bench.note("find", f"aiodicom index of {self.big:,} instances built with SqliteIndex.add in "
                           f"{time.perf_counter() - t:.1f} s")
        per_study = max(self.equal // DCMQRSCP_MAX_STUDIES, 5)
        self.files = make_files(root / "equal", self.equal, 2048, parts=1, series_size=per_study)
        self.studies_big = self.big // INSTANCES_PER_STUDY
        self.studies_equal = -(-self.equal // per_study)
        bench.note("find", f"dcmqrscp and Orthanc get the same {self.equal:,} instances ({self.studies_equal:,} "
                           f"studies) as files, as does aiodicom for the side-by-side rows; loading "
                           f"{self.big:,} into them would take longer than the rest of the bench")

    async def _build_index(self) -> None:
        records = index_records(self.big, INSTANCES_PER_STUDY, self.index_dir)
        async with await SqliteIndex.open(self.index_dir) as index:
            for i in range(0, len(records), 5_000):
                await index.add(records[i : i + 5_000])


def _record(bench: Bench, case: str, target: str, expected: int, result: tuple[float, float, int, int]) -> None:
    first, total, matches, status = result
    if status != st.SUCCESS:
        bench.fail("find", case, target, "responses/s", f"final status 0x{status:04X}", expected=expected)
        return
    bench.record("find", case, target, "responses/s", matches / total, transferred=matches, expected=expected,
                 first_response_ms=round(first * 1000, 2), total_s=round(total, 3))
    bench.record("find", f"{case}: first response", target, "ms", first * 1000)


def find(bench: Bench, data: FindData, rep: int) -> None:
    big_case = f"{data.big:,} instances ({data.studies_big:,} studies)"
    equal_case = f"{data.equal:,} instances ({data.studies_equal:,} studies)"
    runs = bench.folder("runs", "find", str(rep))
    for case, target, expected, starter in (
        (big_case, AIODICOM, data.studies_big, lambda: _aiodicom_on(runs / "big", data.index_dir)),
        (equal_case, AIODICOM, data.studies_equal, lambda: _aiodicom_on(runs / "equal", data.files.folder)),
        (equal_case, DCMQRSCP, data.studies_equal, lambda: _dcmqrscp_on(runs / "dcmqrscp", data)),
        (equal_case, ORTHANC, data.studies_equal, lambda: _orthanc_on(runs / "orthanc", data)),
    ):
        try:
            with starter() as server:
                _record(bench, case, target, expected, find_once(peers.HOST, server.port, server.aet))
        except Exception as exc:
            bench.fail("find", case, target, "responses/s", f"{type(exc).__name__}: {exc}", expected=expected)
    shutil.rmtree(runs, ignore_errors=True)


def _aiodicom_on(workdir: Path, storage: Path):
    """`aiodicom serve` on an existing storage folder: its index (or, for files without one, the index it
    rebuilds at start, before listening)."""
    port = peers.free_port()
    argv = [sys.executable, "-m", "aiodicom", "serve", "--host", peers.HOST, "--port", str(port), "--aet", "AIODICOM",
            "--storage", str(storage), "--sync", "off", "--log-level", "warning",
            "--log-format", "json"]
    return peers.start("aiodicom serve", argv, port=port, aet="AIODICOM", workdir=workdir, nodelay=False,
                       timeout=900)


def _dcmqrscp_on(workdir: Path, data: FindData):
    db = data.files.folder.parent / "dcmqrscp-db"  # indexed once, shared by the repetitions
    if not (db / "index.dat").exists():
        db.mkdir(parents=True, exist_ok=True)
        files = [str(p) for p in files_in(data.files.folder)]
        for i in range(0, len(files), 2_000):
            done = subprocess.run([peers.dcmtk("dcmqridx"), "-q", str(db), *files[i : i + 2_000]],
                                  capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"dcmqridx failed: {done.stderr[-500:]}")
    return peers.dcmqrscp(workdir, db)


class _OrthancLoaded:
    """Orthanc started and loaded with the equal data set by storescu (before any timing)."""

    def __init__(self, workdir: Path, data: FindData) -> None:
        self.cm = peers.orthanc(workdir)
        self.data = data

    def __enter__(self) -> peers.Server:
        server = self.cm.__enter__()
        done = subprocess.run([peers.dcmtk("storescu"), "-aec", server.aet, "+sd", "+r", "+sp", "*.dcm", peers.HOST, str(server.port),
                               str(self.data.files.folder)], capture_output=True, text=True, timeout=3600,
                              env=peers.env(nodelay=True))
        if done.returncode != 0:
            self.cm.__exit__(None, None, None)
            raise RuntimeError(f"loading Orthanc failed: {done.stderr[-500:]}")
        return server

    def __exit__(self, *exc: object) -> None:
        self.cm.__exit__(*exc)


def _orthanc_on(workdir: Path, data: FindData) -> _OrthancLoaded:
    return _OrthancLoaded(workdir, data)


def find_ratios(bench: Bench, data: FindData) -> None:
    big_case = f"{data.big:,} instances ({data.studies_big:,} studies)"
    equal_case = f"{data.equal:,} instances ({data.studies_equal:,} studies)"
    bench.ratios += [
        Ratio(f"first response, {data.big:,} instances (ms, < 50)", "find", f"{big_case}: first response", AIODICOM,
              None, 50.0, at_most=True),
        Ratio(f"responses/s vs dcmqrscp ({data.equal:,})", "find", equal_case, AIODICOM, DCMQRSCP, 1.0),
        Ratio(f"responses/s vs Orthanc ({data.equal:,})", "find", equal_case, AIODICOM, ORTHANC, 1.0),
    ]
