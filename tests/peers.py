"""Start and stop real processes for interop tests: our own server and the peers (DCMTK, pynetdicom, Orthanc).

Every process is started on 127.0.0.1 with a free port, in a temp dir, and ended by PID. pynetdicom runs in
subprocesses (tests/interop/pynetdicom_scp.py, pynetdicom_scu.py) so its threads never live in the pytest process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dicomdata import STORESCU_PROPOSE

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
INTEROP = Path(__file__).resolve().parent / "interop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on HOST:port (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


def require_tool(name: str) -> str:
    """Path of a peer's binary. Missing: fail under CI (the README's test command installs it), skip locally."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; the README's test command installs it")
        pytest.skip(f"{name} is not installed")
    return path


@functools.cache
def require_dcmtk(name: str) -> str:
    """Path of a DCMTK binary. pynetdicom installs Python apps under the same names (storescp, echoscu, ...) and
    they may come first on PATH (pyenv shims do): pick the first candidate that reports itself as DCMTK."""
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        candidate = shutil.which(name, path=folder) if folder else None
        if candidate is None:
            continue
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=20)
            if "$dcmtk:" in version.stdout:
                return candidate
    message = f"DCMTK's {name} is not installed (apt-get install dcmtk)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def base_env() -> dict[str, str]:
    """Our environment, with this checkout importable from any working directory (`python -m aiodicom` runs in
    a temp dir, and the package is not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def peer_env() -> dict[str, str]:
    """Environment for DCMTK/Orthanc processes: TCP_NODELAY=1 or they stall ~40 ms per message."""
    env = base_env()
    env["TCP_NODELAY"] = "1"
    return env


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    workdir: Path
    log: Path
    storage: Path | None = None   # where the process writes what it receives, for servers that store

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """End the process we started, by PID (SIGKILL if it does not go)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    *,
    port: int,
    workdir: Path,
    env: dict[str, str] | None = None,
    name: str = "proc",
    wait: bool = True,
    storage: Path | None = None,
) -> Iterator[Running]:
    """Run argv in workdir, wait until it listens on port, stop it (by PID) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:   # append: a server restarted in the same workdir keeps its earlier log
        proc = subprocess.Popen(
            list(argv), cwd=workdir, env=env or base_env(), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    r = Running(proc, port, workdir, log, storage)
    try:
        if wait:
            try:
                wait_for_port(port, proc)
            except Exception:
                r.stop()
                raise RuntimeError(f"{name} did not start:\n{r.output()}") from None
        yield r
    finally:
        r.stop()


def aiodicom_argv(*args: str) -> list[str]:
    """Run our CLI from this checkout with the interpreter running the tests."""
    return [sys.executable, "-m", "aiodicom", *args]


@contextlib.contextmanager
def aiodicom_serve(
    workdir: Path, *extra: str, port: int | None = None, aet: str = "AIODICOM", storage: Path | None = None,
    wrapper: Sequence[str] = (),
) -> Iterator[Running]:
    """`aiodicom serve` on 127.0.0.1 with its own storage folder (workdir/storage unless given). wrapper: an argv
    prefix the server runs under (SmallDisk.wrapper)."""
    port = port or free_port()
    storage = storage or workdir / "storage"
    argv = [*wrapper, *aiodicom_argv(
        "serve", "--host", HOST, "--port", str(port), "--aet", aet, "--storage", str(storage), *extra
    )]
    with running(argv, port=port, workdir=workdir, name="aiodicom-serve", storage=storage) as r:
        yield r


def run(argv: Sequence[str], *, timeout: float = 60, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client command to completion, capturing text output."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env or base_env(), cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def aiodicom(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one `python -m aiodicom ...` client command to completion."""
    return run(aiodicom_argv(*args), timeout=timeout)


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll predicate() until it is true; a synchronisation point, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s")
        time.sleep(interval)


# --- TLS material ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A private CA, a server and a client certificate it signed, and a 'rogue' client signed by another CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run([require_tool("openssl"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}")


def make_tls_files(folder: Path) -> TlsFiles:
    """Generate the certificates with the openssl CLI. RSA 2048 and SHA-256: DCMTK's default BCP 195 profile
    (PS3.15 B.9) only negotiates TLS 1.2+ ECDHE-RSA suites, so EC keys would make it fail the handshake."""
    folder.mkdir(parents=True, exist_ok=True)
    days = "3650"

    def key(name: str) -> Path:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{name}.key",
                 cwd=folder)
        return folder / f"{name}.key"

    def ca(name: str) -> tuple[Path, Path]:
        k = key(name)
        _openssl("req", "-x509", "-new", "-key", k, "-sha256", "-days", days, "-subj", f"/CN=aiodicom test {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", f"{name}.crt", cwd=folder)
        return folder / f"{name}.crt", k

    def leaf(name: str, ca_cert: Path, ca_key: Path, cn: str, usage: str, san: str | None) -> tuple[Path, Path]:
        k = key(name)
        _openssl("req", "-new", "-key", k, "-subj", f"/CN={cn}", "-out", f"{name}.csr", cwd=folder)
        ext = folder / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else "")
        )
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                 "-sha256", "-days", days, "-extfile", ext, "-out", f"{name}.crt", cwd=folder)
        return folder / f"{name}.crt", k

    ca_cert, ca_key = ca("ca")
    server_cert, server_key = leaf("server", ca_cert, ca_key, "127.0.0.1", "serverAuth",
                                   "IP:127.0.0.1,DNS:localhost")
    client_cert, client_key = leaf("client", ca_cert, ca_key, "AIODICOM-CLIENT", "clientAuth", None)
    rogue_ca_cert, rogue_ca_key = ca("rogue-ca")
    rogue_cert, rogue_key = leaf("rogue", rogue_ca_cert, rogue_ca_key, "ROGUE-CLIENT", "clientAuth", None)
    return TlsFiles(ca_cert, server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key)


def aiodicom_tls_args(tls: TlsFiles, *, ca: bool = True, client_cert: bool = True) -> list[str]:
    """`aiodicom echo/store` options for a TLS association (CLI contract: --tls [--tls-ca] [--tls-cert --tls-key])."""
    args = ["--tls"]
    if ca:
        args += ["--tls-ca", str(tls.ca_cert)]
    if client_cert:
        args += ["--tls-cert", str(tls.client_cert), "--tls-key", str(tls.client_key)]
    return args


def aiodicom_serve_tls_args(tls: TlsFiles, *, require_client_cert: bool = True) -> list[str]:
    args = ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
    return args + (["--tls-ca", str(tls.ca_cert)] if require_client_cert else [])


# --- DCMTK -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DcmtkTls:
    """TLS options for a DCMTK tool: key+cert to authenticate (None: +tla, anonymous), ca to verify the peer
    (None: -ic, do not verify)."""

    key: Path | None = None
    cert: Path | None = None
    ca: Path | None = None

    def args(self) -> list[str]:
        args = ["+tls", str(self.key), str(self.cert)] if self.key and self.cert else ["+tla"]
        return args + (["+cf", str(self.ca)] if self.ca else ["-ic"])


@contextlib.contextmanager
def dcmtk_storescp(
    workdir: Path, *extra: str, aet: str = "STORESCP", ignore: bool = False, tls: DcmtkTls | None = None,
) -> Iterator[Running]:
    """DCMTK `storescp --fork +xa +B -od DIR PORT`: accepts every syntax it knows and writes each data set as
    received (bit preserving) to Running.storage as `<modality>.<SOP Instance UID>`; `ignore` receives without
    storing."""
    port = free_port()
    storage = workdir / "received"
    storage.mkdir(parents=True, exist_ok=True)
    argv = [require_dcmtk("storescp"), "--fork", "+xa", "+B", "-aet", aet, "-ta", "10", "-od", str(storage)]
    if ignore:
        argv.append("--ignore")
    if tls is not None:
        argv += tls.args()
    argv += [*extra, str(port)]
    with running(argv, port=port, workdir=workdir, env=peer_env(), name="storescp", storage=storage) as r:
        yield r


def echoscu(port: int, *extra: str, aet: str = "ECHOSCU", aec: str = "ANY-SCP", tls: DcmtkTls | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [require_dcmtk("echoscu"), "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "30"]
    argv += (tls.args() if tls else []) + [*extra, HOST, str(port)]
    return run(argv, env=peer_env(), timeout=timeout)


def storescu(
    port: int, files: Iterable[Path], *extra: str, propose: str | None = None, aet: str = "STORESCU",
    aec: str = "ANY-SCP", tls: DcmtkTls | None = None, timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """DCMTK `storescu`. propose: a transfer syntax UID; with -R only the files' SOP classes are proposed, with
    that syntax plus the uncompressed ones, so a compressed file goes out in its own syntax (PEERS.md)."""
    return run(storescu_argv(port, files, *extra, propose=propose, aet=aet, aec=aec, tls=tls), env=peer_env(),
               timeout=timeout)


def storescu_argv(
    port: int, files: Iterable[Path], *extra: str, propose: str | None = None, aet: str = "STORESCU",
    aec: str = "ANY-SCP", tls: DcmtkTls | None = None,
) -> list[str]:
    """The command line of `storescu` (to start several at once; run them with env=peer_env())."""
    argv = [require_dcmtk("storescu"), "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "60"]
    if propose is not None:
        argv += ["-R", STORESCU_PROPOSE[propose]]
    return argv + (tls.args() if tls else []) + [*extra, HOST, str(port), *map(str, files)]


# --- pynetdicom (always in a subprocess) ----------------------------------------------------------------------------

def _pynetdicom_tls_args(cert: Path | None, key: Path | None, ca: Path | None) -> list[str]:
    args: list[str] = []
    if cert and key:
        args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    if ca:
        args += ["--tls-ca", str(ca)]
    return args


@contextlib.contextmanager
def pynetdicom_scp(
    workdir: Path, *, aet: str = "PYNETDICOM", require_called_aet: bool = False, tls: TlsFiles | None = None,
    require_client_cert: bool = False, store_status: int | None = None,
) -> Iterator[Running]:
    """tests/interop/pynetdicom_scp.py: Verification + every storage SOP class with every transfer syntax; each
    received data set is written exactly as received to Running.storage/<SOP Instance UID>.dcm (or, with
    store_status, every C-STORE gets that status and nothing is written)."""
    port = free_port()
    storage = workdir / "received"
    argv = [sys.executable, str(INTEROP / "pynetdicom_scp.py"), "--port", str(port), "--aet", aet,
            "--out", str(storage)]
    if require_called_aet:
        argv.append("--require-called-aet")
    if store_status is not None:
        argv += ["--store-status", f"{store_status:04X}"]
    if tls is not None:
        argv += _pynetdicom_tls_args(tls.server_cert, tls.server_key, tls.ca_cert if require_client_cert else None)
    with running(argv, port=port, workdir=workdir, name="pynetdicom-scp", storage=storage) as r:
        yield r


def pynetdicom_scu_argv(verb: str, port: int, *files: Path, aet: str = "PYNETDICOM", aec: str = "AIODICOM",
                        status_log: Path | None = None, tls: TlsFiles | None = None,
                        client_cert: bool = True) -> list[str]:
    """argv for tests/interop/pynetdicom_scu.py `echo` or `store` (Popen it for concurrent senders)."""
    argv = [sys.executable, str(INTEROP / "pynetdicom_scu.py"), verb, HOST, str(port), *map(str, files),
            "--aet", aet, "--aec", aec]
    if status_log is not None:
        argv += ["--status-log", str(status_log)]
    if tls is not None:
        argv += _pynetdicom_tls_args(tls.client_cert if client_cert else None,
                                     tls.client_key if client_cert else None, tls.ca_cert)
    return argv


def pynetdicom_scu(verb: str, port: int, *files: Path, timeout: float = 300,
                   **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run(pynetdicom_scu_argv(verb, port, *files, **kwargs), timeout=timeout)


_STATUS_LINE = re.compile(r"^(?P<uid>[0-9.]+) 0x(?P<status>[0-9A-Fa-f]{4})$")


def read_status_log(path: Path) -> dict[str, int]:
    """`<SOP Instance UID> 0x<status>` lines written by pynetdicom_scu.py (a torn last line is ignored)."""
    statuses: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if m := _STATUS_LINE.match(line):
                statuses[m["uid"]] = int(m["status"], 16)
    return statuses


def single_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The CLI contract: a failed `aiodicom` client command explains itself in exactly one line on stderr."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{done.stderr}"
    return lines[0]


# --- a small disk ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SmallDisk:
    """A size-limited tmpfs at `path` for disk-full tests. Mounted for everyone when we are root; otherwise only for
    a server started under `wrapper` (a private mount namespace), whose view the test reads via /proc/PID/root."""

    path: Path
    wrapper: tuple[str, ...] = ()

    def seen_by(self, server: Running) -> Path:
        if not self.wrapper:
            return self.path
        return Path(f"/proc/{server.proc.pid}/root") / self.path.relative_to("/")


def _quiet(argv: Sequence[str]) -> bool:
    return subprocess.run(list(argv), capture_output=True, stdin=subprocess.DEVNULL, timeout=30).returncode == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str = "3m") -> Iterator[SmallDisk]:
    """A tmpfs of `size` at path: `mount -t tmpfs` as root, else in a user + mount namespace (`unshare -rm`), else
    skip (fail under CI)."""
    path.mkdir(parents=True, exist_ok=True)
    mount, umount, unshare = shutil.which("mount"), shutil.which("umount"), shutil.which("unshare")
    if os.geteuid() == 0 and mount and umount and _quiet([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path]):
        try:
            yield SmallDisk(path)
        finally:
            if not _quiet([umount, path]):
                _quiet([umount, "-l", path])   # still busy: detach now, the kernel frees it when the last user goes
        return
    prefix = [unshare, "--mount", "--map-root-user", "--propagation", "private"] if unshare else []
    script = 'mount -t tmpfs -o "size=$0" tmpfs "$1" && shift && exec "$@"'
    if prefix and _quiet([*prefix, "sh", "-c", script, size, str(path), "true"]):
        yield SmallDisk(path, (*prefix, "sh", "-c", script, size, str(path)))
        return
    message = "cannot mount a small tmpfs here (not root, and no unprivileged user namespaces)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def incoming_temp_files(storage: Path) -> list[Path]:
    """Temp files in `aiodicom serve`'s DIR/.incoming/, not counting the `<session>.lock` each live server holds
    there (aiodicom/archive/filestore.py) so that servers sharing a folder never sweep each other's files."""
    incoming = storage / ".incoming"
    if not incoming.exists():
        return []
    return sorted(p for p in incoming.iterdir() if not p.name.endswith(".lock"))
