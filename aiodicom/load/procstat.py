"""What a local server process costs: resident memory and CPU time, read from Linux's /proc.

Used by `aiodicom load --server-pid` and the bench to report a server's CPU per operation and its
memory per held association. A server that forks per association (DCMTK `storescp --fork`) is
measured with its children: the whole process tree is summed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process tree: RSS in bytes, user+system CPU seconds, how many processes."""

    rss: int
    cpu: float
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return raw[raw.rfind(")") + 2 :].split()


def _cpu(fields: list[str]) -> float:
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15 (proc(5))
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss(fields: list[str]) -> int:
    return int(fields[21]) * _PAGE  # field 24: resident set size in pages


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            kids.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except OSError:
            continue
    return kids


def sample(pid: int, *, tree: bool = True) -> ProcSample | None:
    """RSS and CPU of `pid` (and, with `tree`, of every descendant alive now); None if it is gone.

    CPU of children that already exited is counted through the parent's cutime/cstime, so a forking
    server's total stays monotonic as its per-association children come and go.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    rss, cpu, n = _rss(fields), _cpu(fields), 1
    if tree:
        cpu += (int(fields[13]) + int(fields[14])) / _TICKS  # cutime, cstime: reaped children
        todo = _children(pid)
        while todo:
            child = todo.pop()
            f = _stat_fields(child)
            if f is None:
                continue
            rss += _rss(f)
            cpu += _cpu(f)
            n += 1
            todo.extend(_children(child))
    return ProcSample(rss, cpu, n)


def peak_rss(pid: int) -> int | None:
    """VmHWM: the process's peak resident set size in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
