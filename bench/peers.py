"""Every server the bench measures, started on 127.0.0.1 with a free port in its own folder, stopped by PID.

DCMTK and Orthanc get TCP_NODELAY=1 (without it they wait ~40 ms for a delayed ACK on every message) and
larger PDUs than their defaults, so each peer is measured at its best. DCMTK tools are run from
/usr/bin: pynetdicom installs Python scripts of the same names earlier on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
DCMTK_PDU = "131072"  # the largest storescp/storescu accept (their default is 16 KB)
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


class PeerUnavailable(RuntimeError):
    """A peer's program is not installed: its rows are reported as missing, not as failures."""


def dcmtk(tool: str) -> str:
    for candidate in (f"/usr/bin/{tool}", f"/usr/local/bin/{tool}"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise PeerUnavailable(f"DCMTK's {tool} is not installed (apt-get install dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def env(*, nodelay: bool = False) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e["PYTHONUNBUFFERED"] = "1"
    if nodelay:
        e["TCP_NODELAY"] = "1"
    return e


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


def listening_sockets(port: int) -> int:
    """Sockets listening on `port` here (one per process sharing it with SO_REUSEPORT), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    count += 1
    return count


def wait_for_listeners(server: Server, count: int, timeout: float = 60.0) -> None:
    """Until `count` processes listen on the server's port: the workers of `serve --workers` start after the
    first one answers, and one still starting up would compete with the run for the CPU."""
    deadline = time.monotonic() + timeout
    while listening_sockets(server.port) < count:
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {count} processes not listening on {server.port}\n{server.log()}")
        time.sleep(0.05)


@dataclass
class Server:
    """A running server process: where it listens, what it is called, where it writes."""

    name: str
    proc: subprocess.Popen
    port: int
    aet: str
    workdir: Path
    storage: Path | None = None
    http_port: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> str:
        """SIGTERM (then SIGKILL) the process we started; its stdout+stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        return self.log()

    # ---- what a server received ------------------------------------------------------------
    def stored_files(self) -> int:
        if self.storage is None or not self.storage.exists():
            return 0
        n = 0
        for root, dirs, names in os.walk(self.storage):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            n += sum(1 for name in names if not name.startswith(".") and not name.endswith((".sqlite", ".sqlite-wal",
                                                                                           ".sqlite-shm", ".lock")))
        return n

    def orthanc(self, path: str) -> object:
        assert self.http_port is not None
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=30) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def start(name: str, argv: Sequence[str], *, port: int, aet: str, workdir: Path, nodelay: bool,
          storage: Path | None = None, http_port: int | None = None, timeout: float = 60.0,
          cwd: Path | None = None) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "server.log", "ab") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd or workdir, env=env(nodelay=nodelay), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(name, proc, port, aet, workdir, storage, http_port)
    try:
        try:
            wait_for_port(http_port or port, proc, timeout)
            if http_port:
                wait_for_port(port, proc, timeout)
        except Exception as exc:
            server.stop()
            raise RuntimeError(f"{name} did not start: {exc}\n{server.log()}") from None
        yield server
    finally:
        server.stop()


# ---- aiodicom --------------------------------------------------------------------------------------
@contextlib.contextmanager
def aiodicom_serve(workdir: Path, *extra: str, sync: bool = True) -> Iterator[Server]:
    """Logging at warning, as DCMTK storescp logs by default (info writes two lines per association)."""
    port, storage = free_port(), workdir / "storage"
    argv = [sys.executable, "-m", "aiodicom", "serve", "--host", HOST, "--port", str(port), "--aet", "AIODICOM",
            "--storage", str(storage), "--sync", "on" if sync else "off", "--max-associations", "20000",
            "--max-associations-per-host", "20000", "--log-level", "warning", "--log-format", "json", *extra]
    workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
    with start("aiodicom serve", argv, port=port, aet="AIODICOM", workdir=workdir, nodelay=False,
               storage=storage) as server:
        wait_for_listeners(server, workers)
        yield server


def aiodicom_discard(workdir: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    argv = [sys.executable, str(BENCH / "discard_scp.py"), "--port", str(port), "--count-file",
            str(workdir / "received.json")]
    return start("aiodicom discard", argv, port=port, aet="AIODICOM", workdir=workdir, nodelay=False)


def aiodicom_serve_argv_has(option: str) -> bool:
    """Whether `aiodicom serve` knows an option (engine features land while the bench is in use)."""
    done = subprocess.run([sys.executable, "-m", "aiodicom", "serve", "--help"], capture_output=True, text=True,
                          env=env(), timeout=60)
    return option in done.stdout


# ---- DCMTK -----------------------------------------------------------------------------------------
def dcmtk_storescp(workdir: Path, *, ignore: bool = False, fork: bool = True) -> contextlib.AbstractContextManager[Server]:
    port, storage = free_port(), workdir / "received"
    storage.mkdir(parents=True, exist_ok=True)
    argv = [dcmtk("storescp"), "-aet", "STORESCP", "+xa", "+B", "-pdu", DCMTK_PDU, "-ta", "30", "-od", str(storage)]
    argv += (["--fork"] if fork else []) + (["--ignore"] if ignore else []) + [str(port)]
    label = "DCMTK storescp" + (" --ignore" if ignore else "") + ("" if fork else " (single process)")
    return start(label, argv, port=port, aet="STORESCP", workdir=workdir, nodelay=True, storage=storage)


def dcmqrscp(workdir: Path, db: Path) -> contextlib.AbstractContextManager[Server]:
    """dcmqrscp over an index made by dcmqridx in `db` (AE QRSCP, Study Root C-FIND)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = {DCMTK_PDU}\nMaxAssociations = 16\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nQRSCP {db} RW (200000, 100000mb) ANY\nAETable END\n")
    argv = [dcmtk("dcmqrscp"), "-c", str(config), "--single-process", "-ta", "5", str(port)]
    return start("DCMTK dcmqrscp", argv, port=port, aet="QRSCP", workdir=workdir, nodelay=True)


# ---- pynetdicom ------------------------------------------------------------------------------------
def _has_pynetdicom() -> None:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        raise PeerUnavailable("pynetdicom is not installed (pip install pynetdicom)") from None


def pynetdicom_storescp(workdir: Path, *, ignore: bool = False) -> contextlib.AbstractContextManager[Server]:
    """pynetdicom's own storescp app (decodes and writes each data set with pydicom, no fsync)."""
    _has_pynetdicom()
    port, storage = free_port(), workdir / "received"
    argv = [sys.executable, "-m", "pynetdicom", "storescp", "-aet", "PYNETDICOM", "-od", str(storage),
            "--max-pdu", DCMTK_PDU, "-ta", "30", "-td", "30", "-tn", "30", *(["--ignore"] if ignore else []),
            str(port)]
    return start("pynetdicom storescp", argv, port=port, aet="PYNETDICOM", workdir=workdir, nodelay=False,
                 storage=storage)


def pynetdicom_echoscp(workdir: Path, *, max_associations: int) -> contextlib.AbstractContextManager[Server]:
    _has_pynetdicom()
    port = free_port()
    argv = [sys.executable, str(BENCH / "pynetdicom_echo_scp.py"), "--port", str(port), "--max-associations",
            str(max_associations)]
    return start("pynetdicom echo SCP", argv, port=port, aet="PYNETDICOM", workdir=workdir, nodelay=False)


# ---- Orthanc ---------------------------------------------------------------------------------------
def orthanc(workdir: Path) -> contextlib.AbstractContextManager[Server]:
    """Orthanc with its defaults (it fsyncs what it stores), DICOM and REST on free ports; it listens on
    every interface (no bind option in 1.10) and is only ever addressed as 127.0.0.1."""
    if not os.access(ORTHANC, os.X_OK):
        raise PeerUnavailable("Orthanc is not installed (apt-get install orthanc)")
    port, http = free_port(), free_port()
    storage = workdir / "orthanc-storage"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "bench", "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": http,
        "StorageDirectory": str(storage), "IndexDirectory": str(storage), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "MaximumPduLength": int(DCMTK_PDU),
        "DicomAssociationCloseDelay": 0, "Plugins": [], "HttpServerEnabled": True, "LimitFindResults": 0,
        "LimitFindInstances": 0, "StorageCompression": False,
    }))
    return start("Orthanc", [ORTHANC, str(config)], port=port, aet="ORTHANC", workdir=workdir, nodelay=True,
                 storage=storage, http_port=http)


def orthanc_instances(server: Server) -> int:
    stats = server.orthanc("/statistics")
    assert isinstance(stats, dict)
    return int(stats["CountInstances"])
