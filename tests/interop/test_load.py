"""`aiodicom load` against `aiodicom serve`, DCMTK storescp and a pynetdicom SCP that fails every store: counts,
statuses, error kinds, report fields, `--json`; and the pieces it is built from (mix, UID stamping, histogram).
The timeout and aborted kinds come from a real server that hangs (SIGSTOP) or dies (SIGKILL) under the load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread

from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.load.stats import ErrorKind, Histogram
from aiodicom.load.workload import Mix, Stamper, Template, UidSource, WorkloadError, parse_size, synthetic_dataset
from tests.dicomdata import BUNDLED, bundled_instance, read_part10
from tests.peers import (
    HOST,
    aiodicom,
    aiodicom_argv,
    aiodicom_serve,
    base_env,
    dcmtk_storescp,
    free_port,
    pynetdicom_scp,
    wait_until,
)

KINDS = {k.value for k in ErrorKind}
REPORT_KEYS = {"operations", "ok", "errors", "ops_per_s", "mb_per_s", "bytes", "latency_ms", "errors_by_kind",
               "statuses", "by_operation", "associations", "elapsed_s", "plan", "target", "mix"}


def load(port: int, *args: str, aec: str = "AIODICOM") -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = aiodicom("load", HOST, str(port), "--aec", aec, "--json", "--no-progress", *args, timeout=300)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"--json output does not parse (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done, report


def stored_instances(storage: Path) -> list[Path]:
    return [p for p in storage.rglob("*.dcm") if ".incoming" not in p.parts]


# ---- against aiodicom serve --------------------------------------------------------------------------------------
@pytest.mark.interop
def test_mixed_load_against_aiodicom_serve_counts_every_operation(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        done, r = load(server.port, "--mix", "echo=1,store=3", "--size", "10k", "--count", "40", "-c", "4",
                       "--server-pid", str(server.proc.pid))
        files = stored_instances(server.storage)
    assert done.returncode == 0, done.stderr
    assert REPORT_KEYS <= r.keys()
    assert (r["operations"], r["ok"], r["errors"]) == (40, 40, 0)
    assert r["by_operation"]["store"]["ok"] == 30 and r["by_operation"]["echo"]["ok"] == 10
    assert r["statuses"] == {"0x0000": 40}
    assert set(r["errors_by_kind"]) == KINDS and not any(r["errors_by_kind"].values())
    assert set(r["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    assert r["bytes"] == 30 * r["payload_bytes"] and r["payload_bytes"] > 10_000
    assert r["associations"]["opened"] == 4
    assert r["server"]["alive"] and r["server"]["cpu_s"] >= 0
    # every store was a new instance: 30 files, 30 distinct SOP Instance UIDs, readable, of the UID run's root
    assert len(files) == 30
    uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    assert len(uids) == 30 and all(u.startswith("2.25.") and len(u) <= 64 for u in uids)


@pytest.mark.interop
def test_per_operation_association_opens_one_association_per_echo(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        done, lean = load(server.port, "--op", "echo", "--per-operation-association", "--count", "25", "-c", "3")
        done_full, full = load(server.port, "--op", "echo", "--per-operation-association", "--full-client",
                               "--count", "10")
    assert done.returncode == 0 and done_full.returncode == 0, done.stderr + done_full.stderr
    assert (lean["ok"], lean["associations"]["opened"]) == (25, 25)
    assert lean["plan"]["association"] == "per operation" and lean["plan"]["lean_echo"]
    assert (full["ok"], full["associations"]["opened"]) == (10, 10)


@pytest.mark.interop
def test_find_counts_the_matches(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path, "--promiscuous") as server:
        stored, _ = load(server.port, "--op", "store", "--size", "4k", "--count", "6", "--series-size", "2")
        assert stored.returncode == 0, stored.stderr
        done, r = load(server.port, "--op", "find", "--count", "3", "-k", "QueryRetrieveLevel=STUDY",
                       "-k", "StudyInstanceUID", "-k", "PatientID=AIODICOM-LOAD")
    assert done.returncode == 0, done.stderr
    assert r["ok"] == 3 and r["statuses"] == {"0x0000": 3}
    assert r["matches"] == 3 * 3  # six instances, two per study: three studies per query


@pytest.mark.interop
def test_rejected_association_is_counted_as_rejected_and_exits_3(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:  # not promiscuous: a wrong called AE is rejected (PS3.8 RJ 1/1/7)
        done, r = load(server.port, "--op", "echo", "--count", "5", "--per-operation-association", aec="WRONG")
    assert done.returncode == 3
    assert r["errors_by_kind"]["rejected"] == 5 and r["ok"] == 0
    assert any("rejected" in text for text in r["error_examples"])


@pytest.mark.interop
def test_refused_connection_is_counted_as_refused() -> None:
    done, r = load(free_port(), "--op", "echo", "--count", "3")
    assert done.returncode == 3
    assert r["errors_by_kind"]["refused"] == 3 and r["operations"] == 3


@pytest.mark.interop
def test_human_report_names_the_percentiles(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        done = aiodicom("load", HOST, str(server.port), "--aec", "AIODICOM", "--op", "echo", "--count", "20",
                        "--no-progress", timeout=120)
    assert done.returncode == 0, done.stderr
    for word in ("ops/s", "MB/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "0x0000 ×20"):
        assert word in done.stdout


@pytest.mark.interop
def test_hold_reports_every_association_and_the_server_memory(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        done = aiodicom("load", HOST, str(server.port), "--aec", "AIODICOM", "--hold", "60", "--echo-interval",
                        "0.5", "--idle", "0.2", "--echo-duration", "1", "--server-pid", str(server.proc.pid),
                        "--json", "--no-progress", timeout=120)
    r = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert r["established"] == 60 and r["failed"] == 0 and not r["release_errors"]
    assert r["echo"]["ok"] >= 60 and r["echo"]["errors"] == 0
    assert r["server"]["rss_kb_held"] >= r["server"]["rss_kb_before"] > 0


@pytest.mark.interop
def test_store_from_a_folder_sends_each_file_again_as_a_new_instance(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    names = ("bundled-explicit-le-ct", "bundled-implicit-le-mr", "bundled-j2k-lossless")
    sources = [bundled_instance(spec, folder) for spec in BUNDLED if spec.name in names]
    (folder / "notes.txt").write_text("not DICOM: skipped")
    by_class = {src.sop_class_uid: src for src in sources}
    assert len(by_class) == len(names)
    with aiodicom_serve(tmp_path / "serve") as server:
        done, r = load(server.port, "--op", "store", "--files", str(folder), "--count", "6", "-c", "2")
        files = stored_instances(server.storage)
    assert done.returncode == 0, done.stderr
    assert (r["operations"], r["ok"], r["statuses"]) == (6, 6, {"0x0000": 6})
    assert len(files) == 6
    stored = [dcmread(p) for p in files]
    # each file twice (the files are sent in turn), in its own transfer syntax, with its own pixels, but as a
    # new instance every time
    assert Counter((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in stored) == \
        {(src.sop_class_uid, src.transfer_syntax): 2 for src in sources}
    for ds in stored:
        assert ds.PixelData == dcmread(by_class[ds.SOPClassUID].path).PixelData
    uids = {str(ds.SOPInstanceUID) for ds in stored}
    assert len(uids) == 6 and not uids & {src.sop_instance_uid for src in sources}
    assert r["bytes"] == sum(len(read_part10(p).dataset) for p in files)  # what was sent is what was stored


@pytest.mark.interop
def test_per_operation_association_opens_one_association_per_store(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        done, r = load(server.port, "--op", "store", "--size", "4k", "--per-operation-association", "--count", "6",
                       "-c", "2")
        files = stored_instances(server.storage)
    assert done.returncode == 0, done.stderr
    assert r["plan"]["association"] == "per operation"
    assert (r["ok"], r["statuses"], r["associations"]["opened"]) == (6, {"0x0000": 6}, 6)
    assert len(files) == 6


@pytest.mark.interop
def test_open_loop_issues_the_operations_due_in_the_duration_or_the_count(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        # open loop: operation i is due at i / rate, and one is issued while its due time is inside the
        # duration, however fast the server answers: 40/s over 0.5 s is operations 0..19
        human = aiodicom("load", HOST, str(server.port), "--aec", "AIODICOM", "--op", "echo", "--rate", "40",
                         "--duration", "0.5", "--no-progress", timeout=120)
        done, r = load(server.port, "--op", "store", "--size", "4k", "--rate", "50", "--count", "15", "-c", "2")
        files = stored_instances(server.storage)
    assert human.returncode == 0, human.stderr
    text = " ".join(human.stdout.split())  # the table's title may wrap
    assert "open loop at 40/s" in text and "20 operations in" in text and "0x0000 ×20" in text
    assert done.returncode == 0, done.stderr
    assert (r["plan"]["loop"], r["plan"]["rate"]) == ("open", 50)
    assert (r["operations"], r["ok"], r["statuses"]) == (15, 15, {"0x0000": 15})
    assert len(files) == 15


@pytest.mark.interop
def test_a_server_killed_under_load_gives_aborted_then_refused(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        argv = aiodicom_argv("load", HOST, str(server.port), "--aec", "AIODICOM", "--op", "store", "--size", "4k",
                             "--rate", "100", "--count", "150", "-c", "2", "--json", "--no-progress")
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env(),
                                  stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: len(stored_instances(server.storage)) >= 10 or client.poll() is not None,
                       what="ten instances stored")
            assert client.poll() is None, "the load ended before the server was killed: the test proves nothing"
            server.kill9()
            out, err = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        stored = len(stored_instances(server.storage))
    r = json.loads(out)
    kinds = r["errors_by_kind"]
    assert client.returncode == 3, err
    # each worker's association breaks under it once (the store on it fails: aborted); every association it
    # tries to open after that finds nobody listening (refused)
    assert r["associations"]["opened"] == 2 and kinds["aborted"] == 2
    assert kinds["refused"] > 0 and r["ok"] >= 10
    assert r["ok"] + kinds["aborted"] + kinds["refused"] == r["operations"] == 150
    assert stored >= r["ok"]  # Success only after fsync: every acknowledged instance survived the kill


@pytest.mark.interop
def test_a_server_that_hangs_gives_timeout(tmp_path: Path) -> None:
    with aiodicom_serve(tmp_path) as server:
        os.kill(server.proc.pid, signal.SIGSTOP)  # the kernel still accepts connections; nobody answers them
        try:
            done, r = load(server.port, "--op", "echo", "--per-operation-association", "--count", "2", "-c", "2",
                           "--timeout", "1")
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    assert done.returncode == 3
    assert r["errors_by_kind"]["timeout"] == 2 and r["ok"] == 0
    assert any("timeout" in text for text in r["error_examples"])


# ---- against DCMTK storescp ---------------------------------------------------------------------------------------
@pytest.mark.interop
def test_store_load_against_dcmtk_storescp(tmp_path: Path) -> None:
    with dcmtk_storescp(tmp_path / "storescp") as scp:
        done, r = load(scp.port, "--op", "store", "--modality", "MR", "--size", "20k", "--count", "12", "-c", "3",
                       aec="STORESCP")
        echo_done, echo = load(scp.port, "--op", "echo", "--per-operation-association", "--count", "8", "-c", "2",
                               aec="STORESCP")
        received = sorted(p for p in scp.storage.iterdir() if p.is_file())
    assert done.returncode == 0 and echo_done.returncode == 0, done.stderr + echo_done.stderr
    assert (r["ok"], r["statuses"]) == (12, {"0x0000": 12})
    assert (echo["ok"], echo["associations"]["opened"]) == (8, 8)
    assert len(received) == 12
    ds = dcmread(received[0])
    assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert len({p.name for p in received}) == 12


# ---- against a server that refuses every instance -----------------------------------------------------------------
@pytest.mark.interop
def test_failure_statuses_are_counted_by_code_and_exit_1(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    with pynetdicom_scp(tmp_path / "pyn", store_status=0xA700) as scp:
        done, r = load(scp.port, "--op", "store", "--size", "4k", "--count", "5", aec="PYNETDICOM")
    assert done.returncode == 1
    assert r["statuses"] == {"0xA700": 5}
    assert r["errors_by_kind"]["failure status"] == 5 and r["ok"] == 0 and r["bytes"] == 0


# ---- the pieces, without a peer -----------------------------------------------------------------------------------
@given(st.lists(st.tuples(st.sampled_from(["echo", "store", "find"]), st.integers(1, 9)), min_size=1, max_size=3,
                unique_by=lambda t: t[0]),
       st.integers(1, 300))
def test_mix_sequence_keeps_the_proportions_in_any_prefix(weights: list[tuple[str, int]], n: int) -> None:
    mix = Mix.parse(",".join(f"{op}={w}" for op, w in weights))
    seq = mix.sequence()
    ops = [seq[i % len(seq)] for i in range(n)]
    total = sum(w for _, w in weights)
    for op, w in weights:
        assert abs(ops.count(op) - n * w / total) < len(weights)  # smooth round robin: never far from exact


def test_mix_rejects_unknown_operations_and_empty_mixes() -> None:
    for bad in ("move", "echo=x", "", "echo=0"):
        with pytest.raises(WorkloadError):
            Mix.parse(bad)
    assert Mix.parse("store").sequence() == ("store",)


def test_sizes_parse_like_a_file_manager_shows_them() -> None:
    assert [parse_size(s) for s in ("10240", "10k", "512KiB", "0.5M", "1MB")] == [10240, 10240, 524288, 524288,
                                                                                   1048576]


def test_stamping_changes_only_the_uids_and_series_roll_over() -> None:
    uids = UidSource()
    template = Template.from_dataset(synthetic_dataset("CT", 20_000), "1.2.840.10008.1.2.1", uids)
    assert abs(template.size - 20_000) < 1100
    stamper = Stamper(uids, series_size=2)
    buffer = template.buffer()
    seen = []
    for _ in range(3):
        stamp = stamper.next()
        uid = template.stamp(buffer, stamp)
        ds = EncodedDataset("1.2.840.10008.1.2.1", bytes(buffer)).dataset()
        assert ds.SOPInstanceUID == uid and len(uid) == uids.width
        seen.append((str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)))
        assert ds.PixelData == template.data[-len(ds.PixelData):]
    assert seen[0] == seen[1] != seen[2]  # a new series (and study) every two instances
    assert len(buffer) == template.size and bytes(buffer) != template.data


@settings(max_examples=50)
@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=1, max_size=400))
def test_histogram_percentiles_are_within_two_percent_of_exact(values: list[float]) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    ordered = sorted(values)
    for q in (50, 95, 99, 100):
        exact = ordered[max(0, -(-q * len(ordered) // 100) - 1)]
        assert abs(h.percentile(q) - exact) <= 0.02 * exact + 2e-6
    assert h.max == max(values) and h.count == len(values)


def test_error_kinds_are_the_ones_the_report_promises() -> None:
    assert KINDS == {"refused", "rejected", "aborted", "timeout", "failure status", "other"}

