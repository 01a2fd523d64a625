"""IndexFeeder: records queued without waiting reach the index in batches, none is lost at shutdown, reads
through FedIndex see every record put before them, and the mark saved with each batch never claims a
record that is not indexed."""

from pathlib import Path

import anyio
import pytest

from aiodicom.archive.feeder import IndexFeeder
from aiodicom.archive.index import IndexRecord

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class RecordingIndex:
    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.marks: list[float] = []
        self.fail_first = fail_first

    async def add(self, records, *, indexed_until=None):
        if records and self.fail_first:
            self.fail_first = False
            raise RuntimeError("disk I/O error")
        if records:
            self.batches.append([r.sop_instance_uid for r in records])
        self.marks.append(indexed_until)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading a second later: marks tell which put they follow
        return self.now


def record(n: int) -> IndexRecord:
    return IndexRecord(path=Path(f"{n}.dcm"), size=1, transfer_syntax="1.2.840.10008.1.2.1",
                       sop_class_uid="1.2.3", sop_instance_uid=f"1.2.3.{n}", attributes={})


async def test_records_put_together_are_added_in_one_batch():
    index = RecordingIndex()
    feeder = IndexFeeder(index, gather=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(feeder.run)
        for n in range(10):
            feeder.put(record(n))
        with anyio.fail_after(5):
            while sum(map(len, index.batches)) < 10:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert index.batches == [[f"1.2.3.{n}" for n in range(10)]]


async def test_records_queued_at_shutdown_are_still_added():
    index = RecordingIndex()
    feeder = IndexFeeder(index, gather=10)  # the batch would wait 10 s: shutdown must not lose it
    async with anyio.create_task_group() as tg:
        await tg.start(feeder.run)
        for n in range(3):
            feeder.put(record(n))
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert sorted(uid for batch in index.batches for uid in batch) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]


async def test_a_failing_batch_is_logged_and_the_feeder_goes_on():
    index = RecordingIndex(fail_first=True)
    feeder = IndexFeeder(index, gather=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(feeder.run)
        feeder.put(record(1))
        await anyio.sleep(0.1)
        feeder.put(record(2))
        with anyio.fail_after(5):
            while not index.batches:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert index.batches == [["1.2.3.2"]]


async def test_settle_adds_at_once_what_was_put_and_returns_when_it_is_indexed():
    index = RecordingIndex()
    feeder = IndexFeeder(index, gather=1000)  # only settle() can make this batch go before shutdown
    async with anyio.create_task_group() as tg:
        await tg.start(feeder.run)
        for n in range(3):
            feeder.put(record(n))
        with anyio.fail_after(5):
            await feeder.settle()
        assert index.batches == [["1.2.3.0", "1.2.3.1", "1.2.3.2"]]
        with anyio.fail_after(5):
            await feeder.settle()  # nothing pending: returns at once
        tg.cancel_scope.cancel()


async def test_fed_index_reads_see_every_record_put_before_them(tmp_path: Path):
    from aiodicom.archive.feeder import FedIndex
    from aiodicom.archive.index import Level
    from aiodicom.archive.index_sqlite import SqliteIndex
    from bench.data import index_records

    records = index_records(30, 10, tmp_path)
    async with await SqliteIndex.open(tmp_path) as inner:
        feeder = IndexFeeder(inner, gather=1000)
        fed = FedIndex(inner, feeder)
        async with anyio.create_task_group() as tg:
            await tg.start(feeder.run)
            for r in records:
                feeder.put(r)
            with anyio.fail_after(5):
                assert (await fed.counts()).instances == 30
                found = [i.sop_instance_uid async for i in fed.instances(
                    Level.STUDY, {"StudyInstanceUID": [records[0].attributes[0x0020000D].rstrip(b"\0 ").decode()]})]
            tg.cancel_scope.cancel()
    assert len(found) == 10


async def test_the_mark_follows_the_last_record_indexed_and_stays_behind_a_failed_batch():
    clock = Clock()
    index = RecordingIndex(fail_first=True)
    feeder = IndexFeeder(index, gather=1000, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(feeder.run)
        assert index.marks == [1001.0]  # at start: nothing filed yet
        feeder.put(record(1))  # put at 1002
        await feeder.settle()  # its batch fails (at 1003): the mark must not pass 1002
        feeder.put(record(2))  # 1004
        await feeder.settle()  # indexed at 1005, but record 1 never was
        tg.cancel_scope.cancel()
    assert index.batches == [["1.2.3.2"]]
    # the failed batch saved nothing; the next one, taken at 1005, may only claim what was put before 1002
    assert index.marks == [1001.0, 1002.0]
