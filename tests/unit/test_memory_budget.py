"""The process-wide memory budget: who is stopped, who resumes and when, and what goes to disk instead."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from aiodicom.archive.filestore import HEAD_SIZE, FileStore
from aiodicom.archive.spillwriter import SpillFile, SpillWriter
from aiodicom.net.budget import MemoryBudget

KIB = 1024


class Reader:
    """A connection as the budget sees it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.reading = name, log, True

    def stop_for_budget(self) -> None:
        self.reading = False
        self.log.append(f"stop {self.name}")

    def resume_for_budget(self) -> None:
        self.reading = True
        self.log.append(f"resume {self.name}")


def with_readers(n: int) -> tuple[MemoryBudget, list[Reader], list[str]]:
    """A 1 MiB budget and `n` readers, what they were told in `log`."""
    budget, log = MemoryBudget(1024 * KIB), []
    readers = [Reader(str(i), log) for i in range(n)]
    for r in readers:
        budget.add_reader(r)
    return budget, readers, log


def test_spent_budget_stops_every_reader_and_drained_one_resumes_oldest_first() -> None:
    async def scenario() -> None:
        budget, readers, log = with_readers(3)
        budget.take(600 * KIB)
        assert all(r.reading for r in readers)  # within the limit: nobody stops
        budget.take(600 * KIB)  # past it: all stop, not only the one that brought the bytes
        assert log == ["stop 0", "stop 1", "stop 2"]
        budget.give(600 * KIB)  # 600 KiB still in transit: above a quarter of the limit
        assert not any(r.reading for r in readers)
        budget.give(400 * KIB)  # 200 KiB: drained; 824 KiB of room is three reads of 256 KiB
        assert [r.reading for r in readers] == [True, True, True]
        assert log[3:] == ["resume 0", "resume 1", "resume 2"]
        assert budget.pauses == 3

    asyncio.run(scenario())


def test_resuming_lets_in_only_as_many_readers_as_the_room_could_take_one_read_of() -> None:
    async def scenario() -> None:
        budget, readers, _ = with_readers(6)
        budget.take(1100 * KIB)
        budget.give(1100 * KIB)  # empty: 1 MiB of room, four reads of 256 KiB
        assert [r.reading for r in readers] == [True] * 4 + [False] * 2
        for _ in range(1000):  # the budget's timer lets the rest in while there is room
            if all(r.reading for r in readers):
                break
            await asyncio.sleep(0.005)
        assert all(r.reading for r in readers)

    asyncio.run(scenario())


def test_held_bytes_do_not_keep_readers_waiting() -> None:
    # Held bytes (heads of instances) are freed only when their connections read on: waiting for them
    # would stall everyone.
    async def scenario() -> None:
        budget = MemoryBudget(1024 * KIB)
        log: list[str] = []
        reader = Reader("a", log)
        budget.add_reader(reader)
        assert budget.try_hold(500 * KIB)
        budget.take(600 * KIB)
        assert not reader.reading
        budget.give(600 * KIB)  # only held bytes are left
        assert reader.reading

    asyncio.run(scenario())


def test_held_bytes_are_capped_at_half_the_limit_and_counted_as_refusals() -> None:
    budget = MemoryBudget(1024 * KIB)
    assert budget.try_hold(512 * KIB)
    assert not budget.try_hold(1)
    budget.release(512 * KIB)
    assert budget.try_hold(512 * KIB)
    assert budget.refusals == 1
    assert budget.used == budget.held == 512 * KIB


def test_bytes_another_thread_holds_count_against_the_room() -> None:
    budget = MemoryBudget(1024 * KIB)
    outside = [900 * KIB]
    budget.count_outside(lambda: outside[0])
    assert not budget.room_for(200 * KIB)
    assert not budget.try_hold(200 * KIB)
    outside[0] = 0
    assert budget.room_for(200 * KIB)


def test_a_reader_added_while_the_budget_is_spent_starts_stopped() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(1024 * KIB)
        budget.take(2048 * KIB)
        log: list[str] = []
        late = Reader("late", log)
        budget.add_reader(late)
        assert log == ["stop late"]
        budget.give(2048 * KIB)
        assert late.reading
        budget.forget(late)

    asyncio.run(scenario())


def _instance(size: int) -> tuple[str, str, bytes]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Budget^Test"
    ds.BitsAllocated = 8
    ds.PixelData = bytes(range(256)) * (size // 256)
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_dataset(buf, ds)
    return ds.SOPClassUID, ds.SOPInstanceUID, buf.getvalue()


@pytest.mark.parametrize("size", [8 * KIB, 300 * KIB])
def test_an_instance_without_room_goes_to_disk_at_once_and_is_stored_whole(tmp_path: Path, size: int) -> None:
    budget = MemoryBudget(1 << 20)
    budget.try_hold(budget.limit // 2)  # the held half is taken: no head may stay in memory
    sop_class, sop_instance, data = _instance(size)

    async def store() -> Path:
        with FileStore(tmp_path / "store", sync=False, budget=budget) as fs:
            incoming = fs.begin(sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                transfer_syntax=ExplicitVRLittleEndian)
            for i in range(0, len(data), 16 * KIB):
                incoming.write(data[i:i + 16 * KIB])
                assert not incoming.in_memory  # on disk from the first fragment
            stored = await incoming.commit()  # its UIDs are read back from the file
            return stored.path

    path = asyncio.run(store())
    assert path.read_bytes().endswith(data)
    assert budget.refusals >= 1
    assert budget.held == budget.limit // 2  # only this test's own claim is left


def test_heads_are_given_back_after_commit_and_abort(tmp_path: Path) -> None:
    budget = MemoryBudget(64 << 20)

    async def store() -> None:
        with FileStore(tmp_path / "store", sync=False, budget=budget) as fs:
            for keep in (True, False):
                sop_class, sop_instance, data = _instance(2 * HEAD_SIZE)
                incoming = fs.begin(sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                    transfer_syntax=ExplicitVRLittleEndian)
                incoming.write(data)
                assert budget.held == HEAD_SIZE
                if keep:
                    await incoming.commit()
                else:
                    incoming.abort()
                assert budget.held == budget.used == 0

    asyncio.run(store())


def test_spill_writer_writes_inline_when_the_budget_has_no_room(tmp_path: Path) -> None:
    budget = MemoryBudget(1 << 20)
    writer = SpillWriter(budget=budget)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        f = SpillFile(fd)
        budget.try_hold(budget.limit // 2)
        budget.take(budget.limit // 2)  # nothing left
        writer.write(f, 0, memoryview(b"x" * 4096))
        assert path.stat().st_size == 4096  # written before write() returned: no thread was involved
        assert writer._thread is None
    finally:
        writer.stop()
        os.close(fd)
