"""How fast can instances be made durable here, and how close does FileStore get?

    python bench/filestore_ceiling.py [--dir DIR] [--seconds 3] [--quick]

1. The "fsync ceiling": one file at a time, write + fsync + rename + fsync(dir): what a store that
   syncs each instance alone can reach on this disk.
2. Data-sync strategies for one batch of N files (fsync / fdatasync, one at a time or concurrently
   from threads, or one syncfs), then renames and one directory fsync.
3. FileStore end to end (begin, write in 16 KiB fragments as PDVs arrive, commit) with 1 and 8
   concurrent committers, for 0.5 MB and 10 KB instances, per DataSync strategy and with sync=False.

Use a directory on the file system the archive will live on (default: a temp dir beside this repo).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiodicom.archive import DataSync, FileStore
from aiodicom.archive.groupcommit import fsync_dir, syncfs

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
FRAGMENT = 16_384


def _el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def header(study: str, series: str, sop: str) -> bytes:
    return b"".join(
        (
            _el(0x0008, 0x0016, b"UI", CT.encode()),
            _el(0x0008, 0x0018, b"UI", sop.encode()),
            _el(0x0008, 0x0060, b"CS", b"CT"),
            _el(0x0010, 0x0010, b"PN", b"BENCH^PATIENT"),
            _el(0x0010, 0x0020, b"LO", b"BENCH1"),
            _el(0x0020, 0x000D, b"UI", study.encode()),
            _el(0x0020, 0x000E, b"UI", series.encode()),
            _el(0x0020, 0x0013, b"IS", b"1"),
        )
    )


def pixel_data(size: int) -> bytes:
    """A Pixel Data element making an instance of about `size` bytes."""
    n = max(0, size - 300) & ~1
    return _el(0x7FE0, 0x0010, b"OW", os.urandom(n))


# --- 1. ceiling -----------------------------------------------------------------------------------
def ceiling(root: Path, size: int, seconds: float, *, keep: bool = False) -> float:
    d = root / "ceiling"
    d.mkdir()
    payload = os.urandom(size)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tmp, final = d / f"{n}.part", d / f"{n}.dcm"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, final)
        fsync_dir(str(d))
        n += 1
    elapsed = time.perf_counter() - t0
    if not keep:  # the bench keeps them (see scn_store._send)
        shutil.rmtree(d)
    return n / elapsed


# --- 2. batch data-sync strategies -----------------------------------------------------------------
def batch_strategy(root: Path, size: int, batch: int, how: str, seconds: float, pool: ThreadPoolExecutor) -> float:
    d = root / f"batch-{how}"
    d.mkdir()
    payload = os.urandom(size)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        files = []
        for i in range(n, n + batch):
            fd = os.open(d / f"{i}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payload)
            files.append((fd, i))
        sync: Callable[[int], None] = os.fdatasync if "fdatasync" in how else os.fsync
        if how == "syncfs":
            syncfs(files[0][0])
        elif how.startswith("threads"):
            list(pool.map(sync, [fd for fd, _ in files]))
        else:
            for fd, _ in files:
                sync(fd)
        for fd, i in files:
            os.close(fd)
            os.rename(d / f"{i}.part", d / f"{i}.dcm")
        fsync_dir(str(d))
        n += batch
    elapsed = time.perf_counter() - t0
    shutil.rmtree(d)
    return n / elapsed


# --- 3. FileStore ------------------------------------------------------------------------------------
async def filestore_run(root: Path, size: int, committers: int, seconds: float, options: dict[str, object]) -> float:
    store = FileStore(root / "store", **options)  # type: ignore[arg-type]
    pixels = memoryview(pixel_data(size))
    counts = [0] * committers
    deadline = anyio.current_time() + seconds

    async def committer(k: int) -> None:
        study, series = f"1.2.826.0.1.3680043.10.1.{k}", f"1.2.826.0.1.3680043.10.2.{k}"
        while anyio.current_time() < deadline:
            sop = f"1.2.826.0.1.3680043.10.3.{k}.{counts[k]}"
            inc = store.begin(sop_class_uid=CT, sop_instance_uid=sop, transfer_syntax=EXPLICIT_LE)
            inc.write(header(study, series, sop))
            for i in range(0, len(pixels), FRAGMENT):  # as P-DATA fragments arrive
                inc.write(pixels[i : i + FRAGMENT])
            await inc.commit()
            counts[k] += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(committers):
            tg.start_soon(committer, k)
    elapsed = time.perf_counter() - t0
    store.close()
    shutil.rmtree(root / "store")
    return sum(counts) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--seconds", type=float, default=2.0, help="per figure and round")
    ap.add_argument("--rounds", type=int, default=3, help="figures are medians over interleaved rounds")
    ap.add_argument("--quick", action="store_true", help="only the ceiling and the default FileStore")
    args = ap.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)  # a folder given that does not exist yet
    root = Path(tempfile.mkdtemp(prefix=".bench-filestore-", dir=args.dir))
    backend = {"use_uvloop": True}
    pool = ThreadPoolExecutor(16)
    try:
        for size in (512 * 1024, 10 * 1024):
            # label -> measure(): files/s. Rounds interleave the configurations so that a disk that
            # slows down for a while (a shared VM) hurts them all alike.
            runs: dict[str, Callable[[], float]] = {
                "ceiling: write+fsync+rename+dir fsync, one file at a time": functools.partial(
                    ceiling, root, size, args.seconds
                )
            }
            if not args.quick:
                for batch in (8, 32):
                    for how in ("fsync", "fdatasync", "threads-fsync", "threads-fdatasync", "syncfs"):
                        runs[f"batch of {batch:2}, {how}"] = functools.partial(
                            batch_strategy, root, size, batch, how, args.seconds, pool
                        )
            options: list[tuple[str, dict[str, object]]] = [
                (ds.value, {"data_sync": ds}) for ds in ([DataSync.FDATASYNC] if args.quick else list(DataSync))
            ]
            options.append(("sync=False", {"sync": False}))
            for committers in (1, 8):
                for name, opts in options:
                    runs[f"FileStore, {committers} committer(s), {name}"] = functools.partial(
                        anyio.run, filestore_run, root, size, committers, args.seconds, opts, backend_options=backend
                    )
            results: dict[str, list[float]] = {label: [] for label in runs}
            for _ in range(args.rounds):
                for label, run in runs.items():
                    results[label].append(run())
            print(f"\n== {size // 1024} KB files: files/s, median [min-max] of {args.rounds} x {args.seconds:g} s")
            for label, rates in results.items():
                med = statistics.median(rates)
                print(f"{label:58} {med:7.0f} [{min(rates):5.0f}-{max(rates):5.0f}]  {med * size / 1e6:6.1f} MB/s")
    finally:
        pool.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
