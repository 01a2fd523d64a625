"""SpillWriter: fragments handed over are written at their offsets by one thread; drain() returns once a
file's writes are done and raises a failed write's error; a file is never closed under a queued write."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from aiodicom.archive.spillwriter import SpillFile, SpillWriter


def chunks(total: int, size: int) -> list[tuple[int, bytes]]:
    data = os.urandom(total)
    return [(start, data[start:start + size]) for start in range(0, total, size)]


@pytest.mark.parametrize("max_pending", [64 << 20, 0])  # 0: the thread is always "behind": all written inline
def test_fragments_land_at_their_offsets_whatever_the_order(tmp_path: Path, max_pending: int) -> None:
    writer = SpillWriter(max_pending=max_pending)
    path = tmp_path / "f.part"
    file = SpillFile(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    pieces = chunks(1_000_003, 65_536)
    for offset, data in reversed(pieces):  # order does not matter: each piece carries its offset
        writer.write(file, offset, memoryview(data))

    async def drain() -> None:
        await writer.drain(file)

    anyio.run(drain)
    assert file.idle
    assert path.read_bytes() == b"".join(d for _, d in pieces)
    writer.close(file)
    writer.stop()


def test_a_mutable_buffer_is_copied_before_it_is_handed_over(tmp_path: Path) -> None:
    writer = SpillWriter()
    path = tmp_path / "f.part"
    file = SpillFile(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    buffer = bytearray(b"A" * 100_000)
    writer.write(file, 0, memoryview(buffer))
    buffer[:] = b"B" * 100_000  # the caller reuses its buffer at once
    writer.wait()
    assert path.read_bytes() == b"A" * 100_000
    writer.close(file)
    writer.stop()


def test_a_failed_write_is_raised_by_drain_and_by_the_next_write(tmp_path: Path) -> None:
    writer = SpillWriter()
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    file = SpillFile(os.open(path, os.O_RDONLY))  # every write fails (EBADF)
    writer.write(file, 0, memoryview(b"x" * 10))

    async def drain() -> None:
        await writer.drain(file)

    with pytest.raises(OSError):
        anyio.run(drain)
    with pytest.raises(OSError):
        writer.write(file, 10, memoryview(b"y"))
    writer.close(file)
    writer.stop()


def test_close_waits_for_queued_writes_and_removes_the_file(tmp_path: Path) -> None:
    writer = SpillWriter()
    path = tmp_path / "f.part"
    file = SpillFile(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    for offset, data in chunks(4_000_000, 16_384):
        writer.write(file, offset, memoryview(data))
    writer.close(file, str(path))  # queued behind the writes: their fd stays open until they are done
    writer.wait()
    assert not path.exists() and file.idle
    assert file.error is None  # no write met a closed fd (EBADF)
    writer.stop()
