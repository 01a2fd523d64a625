"""The durable queue: entries on disk survive a restart in arrival order, dead letters keep their reason and come
back with `retry`, backoff grows with jitter, and a router in this process keeps its promises (Success only
once queued; retries; dead letters; proxy relays the destination's answer)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiodicom
from aiodicom.archive.filestore import FileStore
from aiodicom.dimse.messages import CStoreRQ
from aiodicom.net.dispatch import Dispatcher, Result, ServiceRequest
from aiodicom.net.server import Server, ServerConfig
from aiodicom.route.config import RetryPolicy, RouterConfig, parse_config
from aiodicom.route.queue import (
    DirSyncer,
    Entry,
    ReadyQueue,
    Spool,
    SpoolBusy,
    backoff,
    entry_name,
    name_time,
    new_name,
    rule_of,
)
from aiodicom.route.router import Router
from aiodicom.route.status import format_status, read_status, retry_dead_letters
from aiodicom.services import storage, verification
from aiodicom.ul.machine import UlConfig
from tests.dicomdata import (
    Instance,
    assert_same_dataset_bytes,
    generated_series,
    read_part10,
)
from tests.peers import free_port

SC = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- backoff and names ------------------------------------------------------------------------------------

@given(attempts=st.integers(1, 40), r=st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_doubles_up_to_the_maximum_with_equal_jitter(attempts: int, r: float) -> None:
    policy = RetryPolicy(initial=1.0, maximum=300.0)
    full = min(300.0, 2.0 ** (attempts - 1))
    delay = backoff(attempts, policy, rand=lambda: r)
    assert full / 2 <= delay <= full


def test_backoff_grows_until_the_cap() -> None:
    policy = RetryPolicy(initial=0.5, maximum=10.0, multiplier=3.0)
    delays = [backoff(n, policy, rand=lambda: 0.999999) for n in range(1, 7)]
    assert delays == sorted(delays) and delays[-1] == pytest.approx(10.0, rel=1e-5)
    assert delays[0] == pytest.approx(0.5, rel=1e-5)


def test_entry_names_sort_by_arrival_and_carry_the_time_and_rule() -> None:
    names = [entry_name(new_name(now_ns=1_700_000_000_000_000_000 + i), "ct to/pacs") for i in (5, 1, 3)]
    assert sorted(names) == [names[1], names[2], names[0]]
    assert name_time(names[0]) == pytest.approx(1_700_000_000.000000005)
    assert name_time("not-a-name") == 0.0
    assert rule_of(names[0]) == "ct_to_pacs" and "/" not in names[0]
    assert rule_of("1234-abc") == "?"


# ---- the spool on disk ---------------------------------------------------------------------------------------

@pytest.fixture
def instances(tmp_path: Path) -> list[Instance]:
    return generated_series(tmp_path / "data", 3, pixel_bytes=2048)


def _entry(inst: Instance, name: str, dest: str = "PACS", **kw: object) -> Entry:
    return Entry(name=name, destination=dest, sop_instance_uid=inst.sop_instance_uid, sop_class_uid=inst.sop_class_uid,
                 transfer_syntax=str(inst.transfer_syntax), rule="r1", calling_ae="CT1", received=name_time(name), **kw)


def test_one_router_per_spool(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool"), pytest.raises(SpoolBusy):
        Spool(tmp_path / "spool").open()
    with Spool(tmp_path / "spool"):  # released on close
        pass


def test_entries_load_back_in_arrival_order_with_their_state(tmp_path: Path, instances: list[Instance]) -> None:
    spool = Spool(tmp_path / "spool", sync=False)
    spool.open()
    spool.prepare(["PACS"])
    names = [entry_name(new_name(now_ns=1_000 + i), "r1") for i in range(3)]
    for inst, name in zip(reversed(instances), names, strict=True):
        spool.link(inst.path, _entry(inst, name))
    # a failed attempt rewrote the second one's state
    second = _entry(instances[1], names[1], attempts=2, last_error="0xA700 Refused")
    spool.write_state(second)
    # crash leftovers: a torn state file, an orphan state, a half-written morphed file
    (spool.queue_dir("PACS") / f"{names[2]}.json").write_bytes(b'{"name": "tor')
    (spool.queue_dir("PACS") / "0000000000000000001-gone.json").write_bytes(b"{}")
    (spool.queue_dir("PACS") / ".x.tmp").write_bytes(b"partial")
    spool.close()

    loaded = Spool(tmp_path / "spool", sync=False).load("PACS")
    assert [e.name for e in loaded] == names
    assert [e.sop_instance_uid for e in loaded] == [i.sop_instance_uid for i in reversed(instances)]
    assert [e.rule for e in loaded] == ["r1"] * 3
    assert [e.received for e in loaded] == [name_time(n) for n in names]
    assert (loaded[0].attempts, loaded[0].transfer_syntax) == (0, EXPLICIT_LE)  # no state: name and file meta
    assert (loaded[1].attempts, loaded[1].last_error) == (2, "0xA700 Refused")
    torn = loaded[2]  # rebuilt from the file meta
    assert (torn.sop_instance_uid, torn.transfer_syntax, torn.attempts) == (instances[0].sop_instance_uid,
                                                                            EXPLICIT_LE, 0)
    assert sorted(p.name for p in spool.queue_dir("PACS").iterdir()) == sorted(
        [f"{n}.dcm" for n in names] + [f"{names[1]}.json", f"{names[2]}.json"])


def test_dead_letter_keeps_the_reason_and_retry_hands_it_back(tmp_path: Path, instances: list[Instance]) -> None:
    spool = Spool(tmp_path / "spool", sync=False)
    spool.prepare(["PACS"])
    entry = _entry(instances[0], new_name(), attempts=5, last_error="0xC000")
    spool.link(instances[0].path, entry)
    spool.dead_letter(entry, "5 failed attempts; last: 0xC000", now=123.0)
    assert spool.load("PACS") == []
    [dead] = spool.dead_letters("PACS")
    assert dead.reason == "5 failed attempts; last: 0xC000" and dead.attempts == 5
    assert (spool.dead_dir("PACS") / f"{entry.name}.dcm").read_bytes() == instances[0].path.read_bytes()

    assert [e.name for e in retry_dead_letters(spool, ["PACS"], uids=["9.9.9"])] == []
    [handed] = retry_dead_letters(spool, ["PACS"])
    assert spool.dead_letters("PACS") == []
    [back], retried = spool.take_inbox("PACS")
    assert retried == 1
    assert (back.name, back.attempts, back.reason, back.sop_instance_uid) == (handed.name, 0, None,
                                                                             instances[0].sop_instance_uid)
    # queued anew: a new name (its age counts from the retry), the first arrival and the rule kept
    assert back.name > entry.name and rule_of(back.name) == "r1"
    assert back.queued_since() > entry.queued_since() and back.received == entry.received
    assert [e.name for e in spool.load("PACS")] == [back.name]
    assert spool.take_inbox("PACS") == ([], 0)


def test_a_process_without_a_share_files_new_entries_for_the_first_process_to_take(
        tmp_path: Path, instances: list[Instance]) -> None:
    worker = Spool(tmp_path / "spool", sync=False)
    worker.prepare(["ONE"])
    worker.hand_off = frozenset({"ONE"})
    entry = _entry(instances[0], entry_name(new_name(), "r1"), dest="ONE")
    worker.link(instances[0].path, entry)
    assert not any(worker.queue_dir("ONE").iterdir())
    assert [p.name for p in worker.inbox_dir("ONE").iterdir()] == [f"{entry.name}.dcm"]
    first = Spool(tmp_path / "spool", sync=False)
    taken, retried = first.take_inbox("ONE")
    assert [(e.name, e.sop_instance_uid) for e in taken] == [(entry.name, instances[0].sop_instance_uid)]
    assert retried == 0  # a new instance, not a dead letter
    assert [e.name for e in first.load("ONE")] == [entry.name]


def test_sweep_drops_instances_never_queued_and_proxy_leftovers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    (spool.received / "1.2.3.99-0.dcm").write_bytes(b"x")
    (spool.tmp / "aiodicom-x.spool").write_bytes(b"y")
    assert spool.sweep_received() == 1
    assert not any(spool.received.glob("*.dcm")) and not any(spool.tmp.iterdir())
    spool.close()


# ---- the queue in memory -------------------------------------------------------------------------------------

def test_ready_queue_is_fifo_among_ready_entries_and_honours_not_before_and_pauses() -> None:
    q = ReadyQueue(clock=lambda: 100.0)
    a, b, c = (Entry(name=new_name(now_ns=n), destination="D") for n in (1, 2, 3))
    b.not_before = 150.0
    for e in (a, b, c):
        q.push(e)
    assert q.pop_ready(100.0) is a
    assert q.pop_ready(100.0) is c
    assert q.pop_ready(100.0) is None and q.wait_time(100.0) == 50.0
    q.push(c)
    q.push(a)  # put back after a failed connection: before c again
    q.pause(120.0)
    assert q.pop_ready(110.0) is None and q.wait_time(110.0) == 10.0
    assert q.pop_ready(120.0) is a
    assert q.pop_ready(120.0) is c
    q.resume()
    assert q.pop_ready(150.0) is b and len(q) == 0


def test_a_fifo_queue_sends_nothing_past_a_head_waiting_for_its_retry() -> None:
    q = ReadyQueue(clock=lambda: 100.0, fifo=True)
    a, b, c = (Entry(name=new_name(now_ns=n), destination="D") for n in (1, 2, 3))
    for e in (a, b, c):
        q.push(e)
    assert q.pop_ready(100.0) is a
    a.not_before = 150.0  # it failed: retried later, and the others wait behind it (ordering over throughput)
    q.push(a)
    assert q.pop_ready(100.0) is None and q.wait_time(100.0) == 50.0
    assert q.pop_ready(150.0) is a and q.pop_ready(150.0) is b and q.pop_ready(150.0) is c


@pytest.mark.anyio
async def test_ready_queue_get_wakes_when_an_entry_arrives() -> None:
    q = ReadyQueue()
    got: list[Entry] = []

    async def consumer() -> None:
        got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        q.push(Entry(name="x", destination="D"))
    assert [e.name for e in got] == ["x"]


@pytest.mark.anyio
async def test_concurrent_folder_syncs_are_shared(tmp_path: Path) -> None:
    syncer = DirSyncer()
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(syncer.sync, str(tmp_path))
    assert 1 <= syncer.syncs <= 2


# ---- a router in this process ----------------------------------------------------------------------------------

def router_config(tmp_path: Path, dest_port: int, *, mode: str = "store-and-forward", rules: str = "",
                  max_attempts: int = 20, dest_syntaxes: str = "", associations: int = 2,
                  default: str = 'default = ["DEST"]', initial: float = 0.02, max_age: str = "7d") -> RouterConfig:
    import tomllib
    text = f"""
[router]
spool = "spool"
{default}
[retry]
initial = {initial}
maximum = {max(0.1, initial)}
max_attempts = {max_attempts}
max_age = "{max_age}"
[[listener]]
port = 0
mode = "{mode}"
[destination.DEST]
ae_title = "DEST"
host = "127.0.0.1"
port = {dest_port}
connect_timeout = 5
max_associations = {associations}
{dest_syntaxes}
{rules}
"""
    return parse_config(tomllib.loads(text), base=tmp_path)


@contextlib.asynccontextmanager
async def running_router(config: RouterConfig) -> AsyncIterator[tuple[Router, int]]:
    router = Router(config)
    async with anyio.create_task_group() as tg:
        [port] = await tg.start(router.serve)
        yield router, port
        tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def destination(tmp_path: Path, port: int, *, handler: Callable | None = None,
                      syntaxes: dict[str, list[str]] | None = None, **options: object) -> AsyncIterator[FileStore]:
    """Our SCP on `port`, storing under tmp_path/dest (or answering with `handler`)."""
    store = FileStore(tmp_path / "dest")
    dispatcher = Dispatcher()
    verification.install(dispatcher)
    if handler is None:
        storage.install(dispatcher, store, **({"transfer_syntaxes": []} if syntaxes else {}))
    else:
        dispatcher.support([SC], [EXPLICIT_LE, IMPLICIT_LE])
        dispatcher.add(CStoreRQ, handler)
    if syntaxes:
        dispatcher.supported.clear()
        dispatcher.support(syntaxes)
    server = Server(ServerConfig(host="127.0.0.1", port=port, ae_title="DEST", ul=UlConfig(artim=5.0), **options),
                    dispatcher)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            yield store
            tg.cancel_scope.cancel()
    finally:
        store.close()


async def send(port: int, *paths: Path, calling_ae: str = "CT1") -> list[aiodicom.Status]:
    async with aiodicom.connect("127.0.0.1", port, calling_ae=calling_ae, called_ae="ROUTER",
                                contexts=[(SC, [EXPLICIT_LE])]) as assoc:
        return [await assoc.store(p) for p in paths]


async def until(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


def queued(config: RouterConfig, dest: str = "DEST") -> list[str]:
    folder = config.spool / "queue" / dest
    return sorted(p.name for p in folder.glob("*.dcm")) if folder.exists() else []


def dead(config: RouterConfig, dest: str = "DEST") -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((config.spool / "dead" / dest).glob("*.json"))]


@pytest.mark.anyio
async def test_acknowledged_instances_wait_on_disk_through_a_restart_and_are_delivered(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port)
    async with running_router(config) as (first, port):  # the destination is down
        statuses = await send(port, *(i.path for i in instances))
        assert [s.code for s in statuses] == [0, 0, 0]
        assert len(queued(config)) == 3  # Success came after the entries were on disk
        row = first.snapshot()["destinations"]["DEST"]
        assert (row["queued_in"], row["queued_per_minute"], row["delivered"]) == (3, 3.0, 0)  # in, not out
    async with destination(tmp_path, dest_port) as store, running_router(config) as (router, _):
        await until(lambda: all(i.stored_path(store.root).exists() for i in instances) and not queued(config),
                    "delivered after the restart")
        assert router.stats["DEST"].delivered == 3
    for inst in instances:  # as received, never re-encoded
        assert_same_dataset_bytes(inst.stored_path(store.root), inst)
    assert read_status(config.spool, ["DEST"])["destinations"]["DEST"]["queued"] == 0


@pytest.mark.anyio
async def test_failures_are_retried_then_dead_lettered_and_retry_brings_them_back(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, max_attempts=3)
    refuse = True
    seen: list[str] = []

    async def handler(req: ServiceRequest) -> Result:
        seen.append(req.message.affected_sop_instance_uid)
        return Result(status=0xA700, error_comment="disk full") if refuse else Result()

    async with destination(tmp_path, dest_port, handler=handler), running_router(config) as (router, port):
        assert [s.code for s in await send(port, instances[0].path)] == [0]
        await until(lambda: dead(config), "dead letter")
        [letter] = dead(config)
        assert letter["attempts"] == 3 and letter["sop_instance_uid"] == instances[0].sop_instance_uid
        assert letter["reason"] == "3 failed attempts; last: 0xA700 Refused: Out of Resources (disk full)"
        assert len(seen) == 3 and not queued(config)
        assert read_status(config.spool, ["DEST"])["destinations"]["DEST"]["dead_letters"] == 1

        refuse = False
        retry_dead_letters(Spool(config.spool), ["DEST"])
        await until(lambda: len(seen) == 4 and router.stats["DEST"].delivered == 1, "delivered after retry")
        await until(lambda: not dead(config) and not queued(config), "dead letter gone")


@pytest.mark.anyio
async def test_an_entry_older_than_max_age_is_dead_lettered_and_retry_sends_it_with_a_fresh_age(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, max_age="2s")
    async with running_router(config) as (router, port):  # the destination is down for longer than max_age
        assert [s.code for s in await send(port, instances[0].path)] == [0]
        await until(lambda: dead(config), "dead letter by age", timeout=20)
        [letter] = dead(config)
        assert letter["reason"].startswith("not delivered within max_age (2 s); last error: DEST (DEST@127.0.0.1:")
        assert letter["attempts"] == 0  # unreachable: no attempt counted, only the age
        async with destination(tmp_path, dest_port) as store:
            [back] = retry_dead_letters(Spool(config.spool), ["DEST"])  # as `aiodicom route retry` does
            await until(lambda: instances[0].stored_path(store.root).exists(), "delivered after retry", timeout=15)
            await until(lambda: router.stats["DEST"].delivered == 1, "counted")
        assert not dead(config) and not queued(config)
        assert back.received == letter["received"]  # the original arrival is kept (logs, latency)


@pytest.mark.anyio
async def test_one_association_destination_receives_in_arrival_order(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "study", 10, pixel_bytes=1024)  # one study, one series
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, associations=1)
    arrived: list[str] = []

    async def handler(req: ServiceRequest) -> Result:
        arrived.append(req.message.affected_sop_instance_uid)
        return Result()

    async with running_router(config) as (_, port):
        await send(port, *(i.path for i in instances))  # queued while the destination is down
        async with destination(tmp_path, dest_port, handler=handler):
            await until(lambda: len(arrived) == len(instances), "all delivered")
    assert arrived == [i.sop_instance_uid for i in instances]


@pytest.mark.anyio
async def test_one_association_destination_keeps_arrival_order_when_an_instance_must_be_retried(
        tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "study", 5, pixel_bytes=1024)  # one study
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, associations=1, initial=0.5)  # a retry 0.25-0.5 s later
    arrived: list[str] = []
    refused: list[str] = []

    async def handler(req: ServiceRequest) -> Result:
        uid = req.message.affected_sop_instance_uid
        if uid == instances[0].sop_instance_uid and not refused:
            refused.append(uid)  # the first instance is refused once
            return Result(status=0xA700, error_comment="busy")
        arrived.append(uid)
        return Result()

    async with running_router(config) as (router, port):
        await send(port, *(i.path for i in instances))  # queued while the destination is down
        async with destination(tmp_path, dest_port, handler=handler):
            await until(lambda: len(arrived) == len(instances), "all delivered")
        assert router.stats["DEST"].failed_attempts == 1
    assert refused and arrived == [i.sop_instance_uid for i in instances]  # nothing overtook the retried one


@pytest.mark.anyio
async def test_a_destination_refusing_more_associations_is_served_over_those_it_accepts(
        tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "many", 8, pixel_bytes=1024)
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, associations=4)
    async with destination(tmp_path, dest_port, max_associations_per_calling_ae=1) as store, \
            running_router(config) as (router, port):
        assert all(s.code == 0 for s in await send(port, *(i.path for i in instances)))
        await until(lambda: all(i.stored_path(store.root).exists() for i in instances), "all delivered")
        assert router.pools["DEST"].limit == 1  # it made do with the one association the destination allows
        assert router.stats["DEST"].failed_attempts == 0


@pytest.mark.anyio
async def test_an_instance_the_destination_can_never_take_is_dead_lettered_at_once(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port)
    async with destination(tmp_path, dest_port, syntaxes={SC: [JPEG_BASELINE]}), running_router(config) as (_, port):
        assert [s.code for s in await send(port, instances[0].path)] == [0]
        await until(lambda: dead(config), "dead letter")
    [letter] = dead(config)
    assert letter["attempts"] == 0
    assert "JPEG Baseline (Process 1)" in letter["reason"] and "does not produce" in letter["reason"]


@pytest.mark.anyio
async def test_uncompressed_instances_are_converted_to_what_the_destination_accepts(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port)
    async with destination(tmp_path, dest_port, syntaxes={SC: [IMPLICIT_LE]}) as store, \
            running_router(config) as (router, port):
        await send(port, instances[0].path)
        await until(lambda: router.stats["DEST"].delivered == 1, "delivered")
        assert router.stats["DEST"].converted == 1
    received = read_part10(instances[0].stored_path(store.root))
    assert received.transfer_syntax == IMPLICIT_LE
    original = aiodicom.EncodedDataset.from_file(instances[0].path)[0].dataset()
    converted = aiodicom.EncodedDataset(IMPLICIT_LE, received.dataset).dataset()
    assert converted.PixelData == original.PixelData and converted.PatientName == original.PatientName


@pytest.mark.anyio
async def test_reject_and_drop_rules_answer_without_queueing(tmp_path: Path, instances: list[Instance]) -> None:
    rules = """
[[rule]]
name = "blocked"
calling_ae = "BAD*"
action = "reject"
[[rule]]
name = "ignored"
calling_ae = "QUIET"
action = "drop"
"""
    config = router_config(tmp_path, free_port(), rules=rules)
    async with running_router(config) as (_, port):
        [refused] = await send(port, instances[0].path, calling_ae="BAD1")
        [dropped] = await send(port, instances[1].path, calling_ae="QUIET")
    assert refused.code == 0x0124 and "blocked" in (refused.error_comment or "")
    assert dropped.code == 0
    assert queued(config) == [] and not list((config.spool / "received").glob("*.dcm"))


@pytest.mark.parametrize("mode", ["store-and-forward", "proxy"])
@pytest.mark.anyio
async def test_without_a_default_an_unmatched_instance_is_refused_so_the_sender_keeps_it(
        tmp_path: Path, instances: list[Instance], mode: str) -> None:
    rules = '[[rule]]\nname = "ct"\ncalling_ae = "CT*"\nforward = ["DEST"]\n'
    config = router_config(tmp_path, free_port(), rules=rules, default="", mode=mode)
    async with running_router(config) as (_, port):
        [refused] = await send(port, instances[0].path, calling_ae="MR1")
    assert refused.code == 0xA700  # PS3.4 B.2.3 Refused: Out of Resources: not taken, the sender may retry
    assert refused.error_comment == "no rule matches and no default action is configured"
    assert queued(config) == [] and not list((config.spool / "received").glob("*.dcm"))


@pytest.mark.anyio
async def test_proxy_relays_the_destination_status_and_stores_nothing(tmp_path: Path,
                                                                     instances: list[Instance]) -> None:
    dest_port = free_port()
    config = router_config(tmp_path, dest_port, mode="proxy")
    answers = iter([Result(), Result(status=0xA700, error_comment="disk full")])

    async def handler(req: ServiceRequest) -> Result:
        return next(answers)

    async with running_router(config) as (_, port):
        [down] = await send(port, instances[0].path)
        assert down.code == 0xA700 and "unreachable" in (down.error_comment or "")
        async with destination(tmp_path, dest_port, handler=handler):
            ok, full = await send(port, instances[1].path, instances[2].path)
    assert ok.code == 0
    assert full.code == 0xA700 and full.error_comment == "disk full"
    assert queued(config) == [] and not any(os.scandir(config.spool / "queue" / "DEST"))


@pytest.mark.anyio
async def test_proxy_forwards_morphed_copies_and_rule_attributes_come_from_the_received_data_set(
        tmp_path: Path, instances: list[Instance]) -> None:
    dest_port = free_port()
    rules = """
[[rule]]
name = "stamp"
modality = "OT"
match = { PatientID = "re:^AIODICOM-" }
forward = ["DEST"]
morph.set = { InstitutionName = "Proxied" }
"""
    config = router_config(tmp_path, dest_port, mode="proxy", rules=rules)
    async with destination(tmp_path, dest_port) as store, running_router(config) as (_, port):
        [status] = await send(port, instances[0].path)
    assert status.code == 0
    stored = aiodicom.EncodedDataset.from_file(instances[0].stored_path(store.root))[0].dataset()
    assert stored.InstitutionName == "Proxied" and stored.PatientID == "AIODICOM-1"


# ---- router processes ---------------------------------------------------------------------------------

@given(st.integers(1, 64), st.integers(1, 16))
def test_each_process_gets_a_share_of_the_associations_and_together_never_more_than_the_limit(
        total: int, processes: int) -> None:
    from aiodicom.route.router import share
    shares = [share(total, processes, k) for k in range(processes)]
    assert sum(shares) == total  # a process with none hands its entries to the first (which always has one)
    assert shares[0] >= 1 and max(shares) - min(shares) <= 1


def test_status_adds_up_the_workers_counters(tmp_path: Path) -> None:
    (tmp_path / "queue" / "PACS").mkdir(parents=True)
    now = 1_000_000.0
    pid = os.getpid()  # alive: the status files count as the running router's

    def write(name: str, delivered: int, rate: float, error: str | None, error_at: float | None = None) -> None:
        row = {"delivered": delivered, "rate_per_minute": rate, "queued_per_minute": 2 * rate, "in_flight": 1,
               "failed_attempts": 0,
               "unreachable": 0, "associations": 2, "paused_for": 0, "last_error": error, "last_error_at": error_at}
        (tmp_path / name).write_text(json.dumps({"pid": pid, "updated": now, "listeners": ["ROUTER@x:1"],
                                                 "destinations": {"PACS": row}}))

    write("status.json", 10, 60.0, "timed out", now - 600)
    write("status.1.json", 5, 30.0, "refused", now - 90)  # the more recent error is the one shown
    (tmp_path / "status.2.json").write_text(json.dumps({"pid": pid, "updated": now - 3600, "destinations": {
        "PACS": {"delivered": 1000}}}))  # stale: a worker of an earlier run
    status = read_status(tmp_path, ["PACS"], now=now)
    row = status["destinations"]["PACS"]
    assert status["running"] and status["workers"] == [pid]
    assert (row["delivered"], row["rate_per_minute"], row["in_flight"], row["associations"]) == (15, 90.0, 2, 4)
    assert row["queued_per_minute"] == 180.0
    assert "in/min" in format_status(status) and "180.0" in format_status(status)
    assert (row["last_error"], row["last_error_age"]) == ("refused", 90.0)
    assert "refused (1.5m ago)" in format_status(status)
    long = "association to PACS (127.0.0.1:12141) failed: cannot connect to 127.0.0.1:12141: Connection refused"
    status["destinations"]["PACS"]["last_error"] = long
    assert "association to PACS (127.0.0.1:12141) failed: cannot... (1.5m ago)" in format_status(status)


def test_a_queue_on_another_file_system_gets_a_copy_instead_of_a_hard_link(tmp_path: Path) -> None:
    import shutil
    import subprocess
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.prepare(["A", "B"])
    other = spool.queue_dir("B")
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(other)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        first = Entry(name=entry_name(new_name(), "r"), destination="A")
        spool.write_new([b"DICM" * 50_000], first)
        second = Entry(name=first.name, destination="B")
        spool.link(spool.path(first), second)  # link(2) gives EXDEV across file systems
        assert spool.path(second).read_bytes() == spool.path(first).read_bytes()
        assert os.stat(spool.path(first)).st_nlink == 1  # a copy, not a link
        assert [p.name for p in other.iterdir()] == [f"{second.name}.dcm"]  # no temp file left
    finally:
        subprocess.run(["umount", "-l", str(other)], check=False)
        spool.close()
