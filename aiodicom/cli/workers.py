"""Worker processes for `serve --workers` and `route` with `workers` > 1: the same command started again
with a marker argument, each process one event loop on the same SO_REUSEPORT port.

A worker dies with the process that started it (Linux PR_SET_PDEATHSIG): after a `kill -9` of the first
process no orphan keeps serving the port, and a restart starts from a clean slate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from typing import Any

import anyio

_PR_SET_PDEATHSIG = 1
_PARENT_ENV = "AIODICOM_WORKER_OF"  # the starting process's PID, for the worker to check it is still there


def start_worker(argv: list[str], log: Any) -> subprocess.Popen:
    """`python -m aiodicom ARGV...` as a worker of this process."""
    env = {**os.environ, _PARENT_ENV: str(os.getpid())}
    proc = subprocess.Popen([sys.executable, "-m", "aiodicom", *argv], stdin=subprocess.DEVNULL, env=env)
    log.info("worker started", pid=proc.pid)
    return proc


def die_with_parent() -> bool:
    """In a worker: have the kernel send SIGTERM when the starting process ends. False when it already has."""
    parent = int(os.environ.get(_PARENT_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return parent == 0 or os.getppid() == parent  # it may have ended before the prctl


async def stop_workers(workers: list[subprocess.Popen], log: Any) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc in workers:
        try:
            code = await anyio.to_thread.run_sync(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await anyio.to_thread.run_sync(proc.wait)
        log.info("worker stopped", pid=proc.pid, exit_code=code)


async def watch_workers(workers: list[subprocess.Popen], on_exit: Any, interval: float = 0.5) -> None:
    """Call `on_exit(proc)` once for the first worker that ends by itself, then return."""
    while True:
        for proc in workers:
            if proc.poll() is not None:
                on_exit(proc)
                return
        await anyio.sleep(interval)
