"""`aiodicom route` between real peers: DCMTK storescu → router → DCMTK storescp and `aiodicom serve`.

- Instances arrive byte for byte as the router received them (what storescu put on the wire, captured once by a
  bit-preserving storescp), unless a rule morphs them, and then exactly as the rule says.
- A destination down for a while and then up: the queue drains, each instance delivered once.
- `kill -9` of the router while it forwards, then a restart: every instance it acknowledged arrives.
- A destination accepting only Implicit VR Little Endian gets converted copies (explicit, deflated and, with the
  `convert` extra, compressed ones); one accepting only a syntax the router cannot produce gets nothing, and the
  instance becomes a dead letter with the reason, which `route retry` sends once the destination takes it.
- Proxy mode relays the destination's status to the sender.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest

from tests.dicomdata import (
    Corpus,
    Instance,
    assert_same_content,
    check_part10,
    generated_series,
    read_part10,
    received_by_uid,
)
from tests.peers import (
    HOST,
    DcmtkTls,
    Running,
    TlsFiles,
    aiodicom,
    aiodicom_argv,
    aiodicom_serve,
    aiodicom_serve_tls_args,
    dcmtk_storescp,
    free_port,
    peer_env,
    pynetdicom_scp,
    require_dcmtk,
    running,
    storescu,
    wait_until,
)

pytestmark = pytest.mark.interop

# Every syntax family once: uncompressed (three byte layouts), deflated, compressed, and one spanning many PDUs.
THROUGH = ("bundled-explicit-le-ct", "bundled-implicit-le-mr", "bundled-explicit-be-mr", "bundled-deflated",
           "bundled-jpeg-lossless", "bundled-j2k", "bundled-rle-mr", "generated-explicit-le-2mib")
CONVERTED = ("bundled-explicit-le-ct", "generated-explicit-le", "generated-deflated", "bundled-deflated")
DECODED = ("bundled-jpeg-lossless", "bundled-j2k-lossless", "bundled-rle-mr", "bundled-jpeg-ls-lossless")
IMPLICIT_LE = "1.2.840.10008.1.2"


# ---- running the router --------------------------------------------------------------------------------------

def destination_toml(name: str, aet: str, port: int, **extra: object) -> str:
    lines = [f"[destination.{name}]", f'ae_title = "{aet}"', f'host = "{HOST}"', f"port = {port}",
             "connect_timeout = 5"]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # numbers, strings and lists are written alike


def router_toml(port: int, destinations: str, *, default: Iterable[str], rules: str = "",
                mode: str = "store-and-forward", max_attempts: int = 20, workers: int = 1) -> str:
    return f"""
[router]
spool = "spool"
workers = {workers}
default = {json.dumps(list(default))}
[retry]
initial = 0.1
maximum = 0.3
max_attempts = {max_attempts}
[[listener]]
host = "{HOST}"
port = {port}
ae_title = "ROUTER"
mode = "{mode}"
{destinations}
{rules}
"""


@contextlib.contextmanager
def router(workdir: Path, text: str, port: int) -> Iterator[Running]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "route.toml"
    config.write_text(text)
    with running(aiodicom_argv("route", "--config", str(config), "--log-format", "json"), port=port, workdir=workdir,
                 name="route") as r:
        yield r


def delivered_logged(r: Running, count: int) -> None:
    """Wait for the router's log line of each delivery (written once the destination answered)."""
    wait_until(lambda: sum(x["outcome"] == "delivered" for x in routed_lines(r)) >= count, what="delivery log lines")


def routed_lines(r: Running) -> list[dict]:
    out = []
    for line in r.output().splitlines():
        if line.startswith("{") and '"routed"' in line:
            out.append(json.loads(line))
    return out


def status(workdir: Path) -> dict:
    done = aiodicom("route", "status", "--config", str(workdir / "route.toml"), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def send(port: int, instances: Iterable[Instance], *, aet: str = "STORESCU", own_syntax: bool = True) -> None:
    """storescu each instance in its own syntax (one run per syntax), all must get Success."""
    instances = list(instances)
    groups: dict[str, list[Path]] = {}
    for inst in instances:
        groups.setdefault(str(inst.transfer_syntax) if own_syntax else "", []).append(inst.path)
    for ts, paths in groups.items():
        done = storescu(port, paths, propose=ts or None, aet=aet, aec="ROUTER")
        assert done.returncode == 0, done.stderr
        assert "Failed" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def wire(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What storescu puts on the wire for each instance sent through the router (kept by a bit-preserving
    storescp): the bytes the router receives, so the bytes each destination must get."""
    names = sorted(set(THROUGH) | set(CONVERTED) | {"generated-explicit-le"})
    with dcmtk_storescp(tmp_path_factory.mktemp("route-wire")) as reference:
        for name in names:
            inst = corpus[name]
            done = storescu(reference.port, [inst.path], propose=inst.transfer_syntax)
            assert done.returncode == 0, done.stderr
        got = received_by_uid(reference.storage)
    return {name: read_part10(got[corpus[name].sop_instance_uid]).dataset for name in names}


# ---- as received, or as the rule says ----------------------------------------------------------------------------

def test_storescu_through_the_router_reaches_storescp_and_aiodicom_serve_byte_for_byte(
        corpus: Corpus, wire: dict[str, bytes], tmp_path: Path) -> None:
    port = free_port()
    with dcmtk_storescp(tmp_path / "storescp") as scp, aiodicom_serve(tmp_path / "serve") as serve:
        dests = destination_toml("DCMTK", "STORESCP", scp.port) + destination_toml("SERVE", "AIODICOM", serve.port)
        with router(tmp_path / "router", router_toml(port, dests, default=["DCMTK", "SERVE"]), port) as r:
            send(port, (corpus[n] for n in THROUGH))
            wait_until(lambda: len(received_by_uid(scp.storage)) == len(THROUGH)
                       and all(corpus[n].stored_path(serve.storage).exists() for n in THROUGH),
                       timeout=60, what="every instance at both destinations")
            wait_until(lambda: status(tmp_path / "router")["destinations"]["SERVE"]["queued"] == 0, what="queues empty")
            delivered_logged(r, 2 * len(THROUGH))
            lines = routed_lines(r)
        at_scp = received_by_uid(scp.storage)
    failures = []
    for name in THROUGH:
        inst = corpus[name]
        for where, path in (("storescp", at_scp[inst.sop_instance_uid]), ("serve", inst.stored_path(serve.storage))):
            part = check_part10(path)
            if part.transfer_syntax != inst.transfer_syntax:
                failures.append(f"{name} at {where}: {part.transfer_syntax.name}, sent {inst.transfer_syntax.name}")
            elif part.dataset != wire[name]:
                failures.append(f"{name} at {where}: data set differs from what the router received")
    assert not failures, "\n".join(failures)
    delivered = [(x["destination"], x["sop_instance"]) for x in lines if x["outcome"] == "delivered"]
    assert sorted(delivered) == sorted((d, corpus[n].sop_instance_uid) for d in ("DCMTK", "SERVE") for n in THROUGH)
    assert all(x["rule"] == "default" and x["latency_ms"] >= 0 and "converted_from" not in x for x in lines)


def test_a_morphing_rule_changes_exactly_what_it_says(corpus: Corpus, tmp_path: Path) -> None:
    inst = corpus["generated-explicit-le"]
    port = free_port()
    rules = """
[[rule]]
name = "stamp"
calling_ae = "MORPH*"
forward = ["SERVE"]
morph.set = { InstitutionName = "General Hospital" }
morph.delete = ["PatientBirthDate"]
morph.replace = { PatientID = { pattern = "^AIODICOM-", with = "ANON-" }, AccessionNumber = "HIDDEN" }
"""
    with aiodicom_serve(tmp_path / "serve") as serve, \
            router(tmp_path / "router", router_toml(port, destination_toml("SERVE", "AIODICOM", serve.port),
                                                    default=[], rules=rules), port) as r:
        send(port, [inst], aet="MORPH1")
        wait_until(lambda: inst.stored_path(serve.storage).exists(), what="morphed instance stored")
        delivered_logged(r, 1)
        lines = routed_lines(r)
    stored, original = pydicom.dcmread(inst.stored_path(serve.storage)), pydicom.dcmread(inst.path)
    assert stored.file_meta.TransferSyntaxUID == inst.transfer_syntax
    assert stored.InstitutionName == "General Hospital"
    assert "PatientBirthDate" not in stored
    assert stored.PatientID == "ANON-1" and stored.AccessionNumber == "HIDDEN"
    changed = {"InstitutionName", "PatientBirthDate", "PatientID", "AccessionNumber"}
    for elem in original:
        if elem.keyword not in changed and elem.tag.element != 0:
            assert stored[elem.tag].value == elem.value, elem.keyword
    assert {e.keyword for e in stored} - {e.keyword for e in original} == {"InstitutionName"}
    assert [x["rule"] for x in lines if x["outcome"] == "delivered"] == ["stamp"]


# ---- queueing: a destination down, a router killed -------------------------------------------------------------------

def test_a_destination_down_then_up_gets_the_whole_queue_once(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "data", 12, pixel_bytes=64 * 1024, prefix="down")
    port, dest_port = free_port(), free_port()
    dests = destination_toml("PACS", "AIODICOM", dest_port, max_associations=2)
    with router(tmp_path / "router", router_toml(port, dests, default=["PACS"]), port) as r:
        send(port, instances, own_syntax=False)  # Success for all: the destination plays no part in it
        wait_until(lambda: "PACS" in status(tmp_path / "router")["destinations"], what="status")
        row = status(tmp_path / "router")["destinations"]["PACS"]
        assert row["queued"] == 12 and row["oldest_age"] is not None
        wait_until(lambda: (status(tmp_path / "router")["destinations"]["PACS"].get("unreachable") or 0) > 0,
                   what="a failed connection attempt")
        with aiodicom_serve(tmp_path / "pacs", port=dest_port) as pacs:
            wait_until(lambda: all(i.stored_path(pacs.storage).exists() for i in instances), timeout=60,
                       what="queue drained")
            wait_until(lambda: status(tmp_path / "router")["destinations"]["PACS"]["queued"] == 0, what="queue empty")
        delivered_logged(r, len(instances))
        lines = routed_lines(r)
    delivered = [x["sop_instance"] for x in lines if x["outcome"] == "delivered"]
    assert sorted(delivered) == sorted(i.sop_instance_uid for i in instances)  # each once
    for inst in instances:
        assert_same_content(inst.stored_path(pacs.storage), inst)


def test_kill_9_while_forwarding_then_restart_delivers_every_acknowledged_instance(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "data", 60, pixel_bytes=256 * 1024, prefix="kill")
    port, dest_port = free_port(), free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", dest_port, max_associations=1), default=["PACS"])
    storage = tmp_path / "pacs-storage"

    def stored() -> int:
        return sum(i.stored_path(storage).exists() for i in instances)

    with router(tmp_path / "router", text, port) as first:
        send(port, instances, own_syntax=False)  # storescu exit 0: every instance acknowledged
        with aiodicom_serve(tmp_path / "pacs", port=dest_port, storage=storage):
            wait_until(lambda: stored() >= 3, timeout=60, what="forwarding under way")
            first.kill9()
            at_kill = stored()
    assert at_kill < len(instances), "the queue drained before the kill: the test proves nothing"
    with aiodicom_serve(tmp_path / "pacs", port=dest_port, storage=storage), router(tmp_path / "router", text, port):
        wait_until(lambda: stored() == len(instances), timeout=90, what="every acknowledged instance delivered")
        wait_until(lambda: status(tmp_path / "router")["destinations"]["PACS"]["queued"] == 0, what="queue empty")
    for inst in instances:
        assert_same_content(inst.stored_path(storage), inst)


def send_to_both_processes(r: Running, port: int, instances: list[Instance], pacs: Running) -> None:
    """Once both router processes listen, storescu each instance on its own association (the kernel spreads
    them over both) and wait until the destination has them all and the router logged each delivery."""
    wait_until(lambda: r.output().count('"event": "listening"') == 2, what="both processes listening")
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda inst: storescu(port, [inst.path], aec="ROUTER"), instances))
    assert all(d.returncode == 0 for d in done), [d.stderr for d in done if d.returncode]
    wait_until(lambda: all(i.stored_path(pacs.storage).exists() for i in instances), timeout=60, what="delivered")
    delivered_logged(r, len(instances))


def test_two_router_processes_share_the_port_and_each_delivers_what_it_received(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "data", 24, pixel_bytes=16 * 1024, prefix="wk")
    port, dest_port = free_port(), free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", dest_port, max_associations=4), default=["PACS"],
                       workers=2)
    with aiodicom_serve(tmp_path / "pacs", port=dest_port) as pacs, router(tmp_path / "router", text, port) as r:
        send_to_both_processes(r, port, instances, pacs)
        wait_until(lambda: (status(tmp_path / "router")["destinations"]["PACS"].get("delivered") or 0) == 24,
                   what="status adding up both processes")
        row = status(tmp_path / "router")
        lines = routed_lines(r)
    assert row["running"] and len(row["workers"]) == 1
    by_process = {line.get("process", 0) for line in lines if line["outcome"] == "delivered"}
    assert by_process == {0, 1}, "one process received (and delivered) everything"
    assert sorted(x["sop_instance"] for x in lines if x["outcome"] == "delivered") == \
        sorted(i.sop_instance_uid for i in instances)
    for inst in instances:
        assert_same_content(inst.stored_path(pacs.storage), inst)


def _most_at_once(serve_log: str) -> int:
    """The most associations a JSON-logging `aiodicom serve` had open at once, from its log."""
    open_now = most = 0
    for line in serve_log.splitlines():
        if line.startswith("{"):
            event = json.loads(line).get("event")
            open_now += (event == "association accepted") - (event == "association ended")
            most = max(most, open_now)
    return most


def test_a_one_association_destination_gets_one_association_from_two_router_processes(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "data", 24, pixel_bytes=16 * 1024, prefix="one")
    port, dest_port = free_port(), free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", dest_port, max_associations=1), default=["PACS"],
                       workers=2)
    with aiodicom_serve(tmp_path / "pacs", "--log-format", "json", port=dest_port) as pacs, \
            router(tmp_path / "router", text, port) as r:
        send_to_both_processes(r, port, instances, pacs)
        lines = routed_lines(r)
        accepted = [json.loads(x) for x in r.output().splitlines() if '"association accepted"' in x]
        at_pacs = pacs.output()
    assert {a.get("process", 0) for a in accepted} == {0, 1}, "one process received everything: the test proves nothing"
    assert {x.get("process", 0) for x in lines if x["outcome"] == "delivered"} == {0}  # the worker handed its over
    assert sorted(x["sop_instance"] for x in lines if x["outcome"] == "delivered") == \
        sorted(i.sop_instance_uid for i in instances)
    assert _most_at_once(at_pacs) == 1


def test_a_router_worker_ends_with_its_first_process(tmp_path: Path) -> None:
    port = free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", free_port()), default=["PACS"], workers=2)
    with router(tmp_path / "router", text, port) as r:
        wait_until(lambda: status(tmp_path / "router")["workers"], what="the worker's status file")
        worker = status(tmp_path / "router")["workers"][0]
        r.kill9()
        wait_until(lambda: not _alive(worker), timeout=15, what="the worker gone with its parent (PR_SET_PDEATHSIG)")
    with router(tmp_path / "router", text, port):  # the port and the spool are free again
        wait_until(lambda: status(tmp_path / "router")["running"], what="restarted")


def test_a_router_whose_worker_dies_stops_so_that_a_restart_reloads_every_entry(tmp_path: Path) -> None:
    port = free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", free_port()), default=["PACS"], workers=2)
    with router(tmp_path / "router", text, port) as r:
        wait_until(lambda: status(tmp_path / "router")["workers"], what="the worker's status file")
        os.kill(status(tmp_path / "router")["workers"][0], signal.SIGKILL)
        r.proc.wait(30)
        assert r.proc.returncode == 1
        assert '"event": "a worker ended' in r.output()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- transfer syntaxes -----------------------------------------------------------------------------------------------

def _same_meaning(received: Path, sent: Instance, *, pixels_decoded: bool = False) -> None:
    got, want = pydicom.dcmread(received), pydicom.dcmread(sent.path)
    assert got.file_meta.TransferSyntaxUID == IMPLICIT_LE, f"{sent.name}: {got.file_meta.TransferSyntaxUID.name}"
    assert got.SOPInstanceUID == want.SOPInstanceUID
    if pixels_decoded:
        assert (got.pixel_array == want.pixel_array).all(), f"{sent.name}: decoded pixels differ"
        return
    for elem in want:
        if elem.tag.element == 0 or elem.tag == 0xFFFCFFFC:
            continue
        value = got[elem.tag].value
        if got[elem.tag].VR == "UN" and isinstance(elem.value, str):  # Implicit VR: a private VR is unknown
            value = value.decode("latin-1").rstrip(" \0")
        assert value == elem.value, f"{sent.name}: {elem.keyword or elem.tag} differs"


def test_an_implicit_vr_only_destination_receives_converted_copies(corpus: Corpus, tmp_path: Path) -> None:
    sent = [corpus[n] for n in CONVERTED]
    try:
        import pylibjpeg  # noqa: F401 - the `convert` extra: compressed instances are decoded too
        sent += [corpus[n] for n in DECODED]
    except ImportError:
        pass
    port = free_port()
    with dcmtk_storescp(tmp_path / "implicit", "+xi") as scp, \
            router(tmp_path / "router", router_toml(port, destination_toml("OLD", "STORESCP", scp.port),
                                                    default=["OLD"]), port) as r:
        send(port, sent)
        wait_until(lambda: len(received_by_uid(scp.storage)) == len(sent), timeout=60, what="converted copies")
        delivered_logged(r, len(sent))
        lines = routed_lines(r)
    got = received_by_uid(scp.storage)
    for inst in sent:
        _same_meaning(got[inst.sop_instance_uid], inst, pixels_decoded=inst.name in DECODED)
    converted = {x["sop_instance"]: x.get("converted_from") for x in lines if x["outcome"] == "delivered"}
    assert converted == {i.sop_instance_uid: str(i.transfer_syntax) for i in sent}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


JPEG_ONLY_PROFILE = r"""
[[TransferSyntaxes]]
[JpegBaseline]
TransferSyntax1 = JPEGBaseline
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit
[[PresentationContexts]]
[JpegOnly]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = SecondaryCaptureImageStorage\JpegBaseline
[[Profiles]]
[JpegOnly]
PresentationContexts = JpegOnly
"""


def test_a_syntax_the_router_cannot_produce_makes_a_dead_letter_that_retry_sends_later(
        corpus: Corpus, tmp_path: Path) -> None:
    inst = corpus["generated-explicit-le"]  # Secondary Capture, Explicit VR Little Endian
    port, dest_port = free_port(), free_port()
    profile = tmp_path / "jpeg-only.cfg"
    profile.write_text(JPEG_ONLY_PROFILE)
    received = tmp_path / "received"
    received.mkdir()
    jpeg_only = [require_dcmtk("storescp"), "--fork", "+B", "-aet", "STORESCP", "-od", str(received),
                 "-xf", str(profile), "JpegOnly", str(dest_port)]
    text = router_toml(port, destination_toml("JPEG", "STORESCP", dest_port), default=["JPEG"])
    with router(tmp_path / "router", text, port) as r:
        with running(jpeg_only, port=dest_port, workdir=tmp_path / "jpeg-only", env=peer_env(), name="storescp"):
            send(port, [inst])
            wait_until(lambda: status(tmp_path / "router")["destinations"]["JPEG"]["dead_letters"] == 1,
                       what="a dead letter")
        listed = aiodicom("route", "retry", "--config", str(tmp_path / "router" / "route.toml"), "--list")
        assert listed.returncode == 0, listed.stderr
        assert inst.sop_instance_uid in listed.stdout
        assert "JPEG Baseline (Process 1)" in listed.stdout and "does not produce" in listed.stdout
        assert "attempts=0" in listed.stdout  # never retried: it could not succeed
        assert not any(received.iterdir())
        wait_until(lambda: any(x["outcome"] == "dead-letter" for x in routed_lines(r)), what="dead-letter log line")
        [dead] = [x for x in routed_lines(r) if x["outcome"] == "dead-letter"]
        assert dead["sop_instance"] == inst.sop_instance_uid

        # the destination now takes any syntax (once the old one's forked children, which hold the port, are gone)
        wait_until(lambda: _port_free(dest_port), what="the old destination gone")
        with running([require_dcmtk("storescp"), "--fork", "+xa", "+B", "-aet", "STORESCP", "-od", str(received),
                      str(dest_port)], port=dest_port, workdir=tmp_path / "any", env=peer_env(), name="storescp"):
            retry = aiodicom("route", "retry", "--config", str(tmp_path / "router" / "route.toml"),
                             inst.sop_instance_uid)
            assert retry.returncode == 0 and "1 dead letter(s) handed back" in retry.stdout, retry.stderr
            wait_until(lambda: inst.sop_instance_uid in received_by_uid(received), timeout=30,
                       what="delivered after retry")
    assert status(tmp_path / "router")["destinations"]["JPEG"]["dead_letters"] == 0


# ---- pooled associations, preferred syntaxes --------------------------------------------------------------------------

def test_many_instances_share_a_few_pooled_associations_never_more_than_the_limit(tmp_path: Path) -> None:
    instances = generated_series(tmp_path / "data", 30, pixel_bytes=16 * 1024, prefix="pool")
    port = free_port()
    with dcmtk_storescp(tmp_path / "storescp", "-v") as scp:
        text = router_toml(port, destination_toml("PACS", "STORESCP", scp.port, max_associations=2), default=["PACS"])
        with router(tmp_path / "router", text, port) as r:
            with ThreadPoolExecutor(3) as pool:  # concurrent senders: work for more than one association
                chunks = [instances[k::3] for k in range(3)]
                done = list(pool.map(lambda chunk: storescu(port, [i.path for i in chunk], aec="ROUTER"), chunks))
            assert all(d.returncode == 0 for d in done), [d.stderr for d in done if d.returncode]
            wait_until(lambda: len(received_by_uid(scp.storage)) == len(instances), timeout=60, what="delivered")
            delivered_logged(r, len(instances))
            wait_until(lambda: status(tmp_path / "router")["destinations"]["PACS"].get("associations_opened"),
                       what="status with the pool's count")
            row = status(tmp_path / "router")["destinations"]["PACS"]
        # (not "Association Received": the readiness probe's bare TCP connection counts there)
        accepted_by_storescp = scp.output().count("Association Acknowledged")
    assert 1 <= accepted_by_storescp <= 2, scp.output()[-2000:]  # 30 instances over at most max_associations
    assert row["associations_opened"] == accepted_by_storescp and row["associations"] <= 2


def test_a_router_with_a_1m_memory_budget_takes_and_forwards_100_associations_storing_at_once(tmp_path: Path) -> None:
    port, dest_port = free_port(), free_port()
    text = router_toml(port, destination_toml("PACS", "AIODICOM", dest_port, max_associations=4), default=["PACS"])
    # and the spool synced by syncfs, one per group of the many concurrent commits
    text = text.replace("[router]\n", '[router]\nmemory_budget = "1M"\nsync_method = "syncfs"\n', 1)
    with aiodicom_serve(tmp_path / "pacs", "--sync", "off", port=dest_port) as pacs:
        with router(tmp_path / "router", text, port) as r:
            done = aiodicom("load", HOST, str(port), "--aec", "ROUTER", "--op", "store", "--size", "256k", "-c", "100",
                            "--count", "200", "--json", "--no-progress", timeout=300)
            report = json.loads(done.stdout)
            assert report["statuses"] == {"0x0000": 200}, report["errors_by_kind"]
            delivered_logged(r, 200)
            r.stop()
            stopped = [json.loads(x) for x in r.output().splitlines() if '"router stopped"' in x]
            started = [json.loads(x) for x in r.output().splitlines() if '"router started"' in x]
        stored = [p for p in pacs.storage.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(stored) == 200
    assert started and started[0]["sync_method"] == "syncfs"
    assert stopped and stopped[-1]["memory_budget_pauses"] > 0  # the budget was reached, and nothing was lost


def test_a_destination_gets_the_syntax_it_prefers_among_those_it_accepts(corpus: Corpus, tmp_path: Path) -> None:
    inst = corpus["generated-implicit-le"]  # neither preference: the order decides which it is converted to
    port = free_port()
    prefer = {"DEFLATED": ["DeflatedExplicitVRLittleEndian", "ExplicitVRLittleEndian"],
              "EXPLICIT": ["ExplicitVRLittleEndian", "DeflatedExplicitVRLittleEndian"], "ANY": None}
    want = {"DEFLATED": "1.2.840.10008.1.2.1.99", "EXPLICIT": "1.2.840.10008.1.2.1", "ANY": IMPLICIT_LE}
    with contextlib.ExitStack() as stack:  # each storescp accepts every syntax it knows (+xa)
        scps = {name: stack.enter_context(dcmtk_storescp(tmp_path / name.lower())) for name in prefer}
        dests = "".join(destination_toml(name, "STORESCP", scps[name].port,
                                         **({"transfer_syntaxes": ts} if ts else {})) for name, ts in prefer.items())
        with router(tmp_path / "router", router_toml(port, dests, default=list(prefer)), port) as r:
            send(port, [inst])
            wait_until(lambda: all(received_by_uid(scp.storage) for scp in scps.values()), what="all three")
            delivered_logged(r, 3)
            lines = routed_lines(r)
        got = {name: check_part10(received_by_uid(scp.storage)[inst.sop_instance_uid]) for name, scp in scps.items()}
    assert {name: str(part.transfer_syntax) for name, part in got.items()} == want
    converted = {x["destination"]: x.get("converted_from") for x in lines if x["outcome"] == "delivered"}
    assert converted == {"DEFLATED": IMPLICIT_LE, "EXPLICIT": IMPLICIT_LE, "ANY": None}
    original = pydicom.dcmread(inst.path)
    for name, scp in scps.items():
        ds = pydicom.dcmread(received_by_uid(scp.storage)[inst.sop_instance_uid])
        assert ds.PixelData == original.PixelData and ds.PatientName == original.PatientName, name


# ---- TLS both ways ----------------------------------------------------------------------------------------------

def test_tls_from_the_modality_and_to_the_destination(corpus: Corpus, tls_files: TlsFiles, tmp_path: Path) -> None:
    inst = corpus["generated-explicit-le"]
    port = free_port()
    t = tls_files
    listener_tls = f'tls = {{ cert = "{t.server_cert}", key = "{t.server_key}", ca = "{t.ca_cert}" }}'
    dest_tls = {"tls": {"ca": str(t.ca_cert), "cert": str(t.client_cert), "key": str(t.client_key)}}
    with aiodicom_serve(tmp_path / "serve", *aiodicom_serve_tls_args(t)) as serve:
        text = router_toml(port, destination_toml("SECURE", "AIODICOM", serve.port, **dest_tls), default=["SECURE"])
        text = text.replace('mode = "store-and-forward"', 'mode = "store-and-forward"\n' + listener_tls)
        with router(tmp_path / "router", text, port):
            done = storescu(port, [inst.path], aec="ROUTER", tls=DcmtkTls(t.client_key, t.client_cert, t.ca_cert))
            assert done.returncode == 0, done.stderr
            plain = storescu(port, [inst.path], aec="ROUTER")  # no TLS: the listener does not talk to it
            assert plain.returncode != 0
            wait_until(lambda: inst.stored_path(serve.storage).exists(), what="delivered over TLS")
    assert_same_content(inst.stored_path(serve.storage), inst)


# ---- proxy mode ------------------------------------------------------------------------------------------------------

def test_proxy_relays_the_destination_answer_to_the_sender(corpus: Corpus, tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    inst = corpus["generated-explicit-le"]
    port = free_port()
    with pynetdicom_scp(tmp_path / "full", store_status=0xA700) as full, dcmtk_storescp(tmp_path / "ok") as ok:
        dests = destination_toml("FULL", "PYNETDICOM", full.port) + destination_toml("OK", "STORESCP", ok.port)
        rules = '[[rule]]\nname = "to-full"\ncalling_ae = "FULLTEST"\nforward = ["FULL"]\n'
        with router(tmp_path / "router", router_toml(port, dests, default=["OK"], rules=rules, mode="proxy"), port):
            good = storescu(port, [inst.path], "-v", aet="OKTEST", aec="ROUTER")
            bad = storescu(port, [inst.path], "-v", aet="FULLTEST", aec="ROUTER")
        at_ok = received_by_uid(ok.storage)
    assert good.returncode == 0 and "Received Store Response (Success)" in good.stderr, good.stderr
    assert inst.sop_instance_uid in at_ok
    assert "Received Store Response (Refused: OutOfResources)" in bad.stderr, bad.stderr
    assert not (tmp_path / "router" / "spool" / "queue" / "FULL").exists() or \
        not any((tmp_path / "router" / "spool" / "queue" / "FULL").glob("*.dcm"))


def test_route_check_of_a_bad_file_names_each_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[rule]]\nforward = ["NOWHERE"]\nmatch = { PatientNmae = "x" }\n')
    done = subprocess.run(aiodicom_argv("route", "--check", str(config)), capture_output=True, text=True, timeout=60,
                          env=peer_env(), check=False)
    assert done.returncode == 2
    assert "PatientNmae" in done.stderr
