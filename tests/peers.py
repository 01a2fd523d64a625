"""Start and stop real processes for interop tests: our own server and the peers (DCMTK, pynetdicom, Orthanc).

Every process is started on 127.0.0.1 with a free port, in a temp dir, and ended by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


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


def peer_env() -> dict[str, str]:
    """Environment for DCMTK/Orthanc processes: TCP_NODELAY=1 or they stall ~40 ms per message."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    workdir: Path
    log: Path

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
) -> Iterator[Running]:
    """Run argv in workdir, wait until it listens on port, stop it (by PID) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv), cwd=workdir, env=env or dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    r = Running(proc, port, workdir, log)
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
    workdir: Path, *extra: str, port: int | None = None, aet: str = "AIODICOM", storage: Path | None = None
) -> Iterator[Running]:
    """`aiodicom serve` on 127.0.0.1 with its own storage folder (workdir/storage unless given)."""
    port = port or free_port()
    storage = storage or workdir / "storage"
    argv = aiodicom_argv(
        "serve", "--host", HOST, "--port", str(port), "--aet", aet, "--storage", str(storage), *extra
    )
    with running(argv, port=port, workdir=workdir, name="aiodicom-serve") as r:
        yield r


def run(argv: Sequence[str], *, timeout: float = 60, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client command to completion, capturing text output."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )
