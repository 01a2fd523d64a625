"""How fast the machine writes into the page cache right now: the context every file-writing figure needs.

The bench's VM (Firecracker; virtio-balloon with free page reporting, /sys/module/page_reporting) hands
free memory back to the host, and its page cache shrank from 21 GB to 1.5 GB within minutes with no
drop_caches. A write into the page cache that lands on such memory faults its pages in from the host:
measured here, writing 0.5 MB without any sync took ~1.2 ms of CPU (83 % of it in
copy_folio_from_iter_atomic) against ~0.15 ms once 20 GB of cache had been filled. So DCMTK storescp
writing files swings between ~600 and ~2,200 instances/s from one run to the next, its CPU per instance
with it. Each receive run records this probe, taken just before it, so a figure can be read against
the state the machine was in (bench/results/latest.json: extra.page_cache_mb_per_s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROBE_FILES = 64
PROBE_SIZE = 512 * 1024


def write_rate(folder: Path, *, files: int = PROBE_FILES, size: int = PROBE_SIZE) -> float:
    """MB/s of plain writes (open, write, close, no sync) of `files` new files of `size` bytes in
    `folder`. The files stay: deleting them would itself change what the next run meets."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    start = time.perf_counter()
    for i in range(files):
        fd = os.open(folder / f"probe-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view, done = memoryview(data), 0
            while done < size:
                done += os.write(fd, view[done:])
        finally:
            os.close(fd)
    return files * size / (time.perf_counter() - start) / 1e6
