"""SpillWriter: fragments handed over are written at their offsets by one thread; drain() returns once a
file's writes are done and raises a failed write's error; a file is never closed under a queued write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aiodicom.archive.spillwriter import MAX_PENDING, SpillFile, SpillWriter


def chunks(total: int, size: int) -> list[tuple[int, bytes]]:
    data = os.urandom(total)
    return [(start, data[start:start + size]) for start in range(0, total, size)]


@pytest.fixture(params=[MAX_PENDING])
def writer(request: pytest.FixtureRequest) -> Iterator[SpillWriter]:
    w = SpillWriter(max_pending=request.param)
    yield w
    w.stop()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "f.part"


def spill_file(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> SpillFile:
    return SpillFile(os.open(path, flags, 0o644))


def drain(writer: SpillWriter, file: SpillFile) -> None:
    async def run() -> None:
        await writer.drain(file)
    anyio.run(run)


@pytest.mark.parametrize("writer", [MAX_PENDING, 0], indirect=True)  # 0: always "behind": all written inline
def test_fragments_land_at_their_offsets_whatever_the_order(writer: SpillWriter, path: Path) -> None:
    file = spill_file(path)
    pieces = chunks(1_000_003, 65_536)
    for offset, data in reversed(pieces):  # order does not matter: each piece carries its offset
        writer.write(file, offset, memoryview(data))
    drain(writer, file)
    assert file.idle
    assert path.read_bytes() == b"".join(d for _, d in pieces)
    writer.close(file)


def test_a_mutable_buffer_is_copied_before_it_is_handed_over(writer: SpillWriter, path: Path) -> None:
    file = spill_file(path)
    buffer = bytearray(b"A" * 100_000)
    writer.write(file, 0, memoryview(buffer))
    buffer[:] = b"B" * 100_000  # the caller reuses its buffer at once
    writer.wait()
    assert path.read_bytes() == b"A" * 100_000
    writer.close(file)


def test_a_failed_write_is_raised_by_drain_and_by_the_next_write(writer: SpillWriter, path: Path) -> None:
    path.write_bytes(b"")
    file = spill_file(path, os.O_RDONLY)  # every write fails (EBADF)
    writer.write(file, 0, memoryview(b"x" * 10))
    with pytest.raises(OSError):
        drain(writer, file)
    with pytest.raises(OSError):
        writer.write(file, 10, memoryview(b"y"))
    writer.close(file)


def test_close_waits_for_queued_writes_and_removes_the_file(writer: SpillWriter, path: Path) -> None:
    file = spill_file(path)
    for offset, data in chunks(4_000_000, 16_384):
        writer.write(file, offset, memoryview(data))
    writer.close(file, str(path))  # queued behind the writes: their fd stays open until they are done
    writer.wait()
    assert not path.exists() and file.idle
    assert file.error is None  # no write met a closed fd (EBADF)
