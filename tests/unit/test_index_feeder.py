"""IndexFeeder: records queued without waiting reach the index in batches, and none is lost at shutdown."""

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
        self.fail_first = fail_first

    async def add(self, records):
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("disk I/O error")
        self.batches.append([r.sop_instance_uid for r in records])


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
