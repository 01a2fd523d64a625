"""Storage (C-STORE, PS3.4 Annex B) between aiodicom and real peers, in both directions, for every transfer syntax
of the corpus: uncompressed (implicit LE, explicit LE, explicit BE, deflated) and compressed as pydicom ships them.

What "intact" means depends on the sender: aiodicom and pynetdicom send a file's data set as it is, so the receiver
must hold exactly those bytes; DCMTK storescu re-encodes (drops group lengths, may change undefined lengths), so
there the stored data set must mean the same as the file and be byte for byte what storescu put on the wire (captured
once by DCMTK's own bit-preserving storescp).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from tests.dicomdata import (
    CORPUS_NAMES,
    Corpus,
    Instance,
    assert_same_content,
    assert_same_dataset_bytes,
    generated_series,
    read_part10,
    received_by_uid,
)
from tests.peers import (
    Running,
    aiodicom,
    aiodicom_serve,
    dcmtk_storescp,
    incoming_temp_files,
    peer_env,
    pynetdicom_scp,
    pynetdicom_scu,
    read_status_log,
    single_error_line,
    storescu,
    storescu_argv,
    wait_until,
)

pytestmark = pytest.mark.interop

SUCCESS = 0x0000


def _store(port: int, aec: str, *paths: Path, extra: Iterable[str] = ()):
    return aiodicom("store", "127.0.0.1", str(port), *map(str, paths), "--aec", aec, *extra, timeout=300)


def _check_all(instances: Iterable[Instance], check: Callable[[Instance], None]) -> None:
    """Run check on every instance and report every failure at once, not just the first."""
    failures = []
    for inst in instances:
        try:
            check(inst)
        except (AssertionError, OSError) as e:
            failures.append(f"{inst.name}: {e}")
    assert not failures, f"{len(failures)} instance(s) not intact:\n" + "\n".join(failures)


@pytest.fixture(scope="module")
def storescu_wire(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What DCMTK storescu puts on the wire for each corpus file (proposing the file's own syntax), as kept by
    DCMTK storescp in bit-preserving mode."""
    with dcmtk_storescp(tmp_path_factory.mktemp("storescu-wire")) as reference:
        for inst in corpus:
            done = storescu(reference.port, [inst.path], propose=inst.transfer_syntax)
            assert done.returncode == 0, f"storescu -> storescp {inst.name}: {done.stderr}"
        received = received_by_uid(reference.storage)
    wire = {}
    for inst in corpus:
        part = read_part10(received[inst.sop_instance_uid])
        assert part.transfer_syntax == inst.transfer_syntax, f"storescu converted {inst.name}"
        wire[inst.name] = part.dataset
    return wire


# --- peers store to aiodicom serve -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_dcmtk_storescu_instance_is_stored_as_received(
    name: str, corpus: Corpus, aiodicom_server: Running, storescu_wire: dict[str, bytes]
) -> None:
    inst = corpus[name]
    done = storescu(aiodicom_server.port, [inst.path], "-v", propose=inst.transfer_syntax, aec="AIODICOM")
    assert done.returncode == 0, done.stderr
    assert "Received Store Response (Success)" in done.stderr, done.stderr
    # storescu says "Converting transfer syntax: A -> B" even when it only re-encodes; A != B would be a conversion.
    for source, target in re.findall(r"Converting transfer syntax: (.+?) -> (.+)", done.stderr):
        assert source.strip() == target.strip(), f"storescu converted {source} to {target}"
    stored = inst.stored_path(aiodicom_server.storage)
    assert stored.is_file(), f"nothing at {stored}"
    part = assert_same_content(stored, inst)          # valid PS3.10, meta TS = the file's (= the wire's) syntax
    assert part.dataset == storescu_wire[name], "stored data set is not what storescu sent"
    assert incoming_temp_files(aiodicom_server.storage) == []


def test_pynetdicom_store_of_every_syntax_keeps_the_bytes(corpus: Corpus, aiodicom_server: Running,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "statuses.log"
    done = pynetdicom_scu("store", aiodicom_server.port, *(i.path for i in corpus), aec="AIODICOM", status_log=log)
    assert done.returncode == 0, done.stderr + done.stdout
    assert read_status_log(log) == {i.sop_instance_uid: SUCCESS for i in corpus}
    _check_all(corpus, lambda i: assert_same_dataset_bytes(i.stored_path(aiodicom_server.storage), i))
    assert incoming_temp_files(aiodicom_server.storage) == []


def test_aiodicom_store_round_trips_through_aiodicom_serve(corpus: Corpus, aiodicom_server: Running) -> None:
    done = _store(aiodicom_server.port, "AIODICOM", *(i.path for i in corpus))
    assert done.returncode == 0, done.stderr + done.stdout
    _check_all(corpus, lambda i: assert_same_dataset_bytes(i.stored_path(aiodicom_server.storage), i))


# --- aiodicom store to peers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_aiodicom_store_instance_reaches_dcmtk_byte_for_byte(name: str, corpus: Corpus, storescp: Running) -> None:
    inst = corpus[name]
    done = _store(storescp.port, "STORESCP", inst.path)
    assert done.returncode == 0, done.stderr + done.stdout
    received = received_by_uid(storescp.storage)
    assert list(received) == [inst.sop_instance_uid]
    assert_same_dataset_bytes(received[inst.sop_instance_uid], inst)   # meta TS = the syntax on the wire


def test_aiodicom_store_sends_every_syntax_on_one_association_to_dcmtk(corpus: Corpus, storescp: Running) -> None:
    done = _store(storescp.port, "STORESCP", *(i.path for i in corpus))
    assert done.returncode == 0, done.stderr + done.stdout
    received = received_by_uid(storescp.storage)
    assert set(received) == {i.sop_instance_uid for i in corpus}
    _check_all(corpus, lambda i: assert_same_dataset_bytes(received[i.sop_instance_uid], i))
    wait_until(lambda: "Association Release" in storescp.output(), timeout=10, what="storescp release")
    assert storescp.output().count("Association Acknowledged") == 1


def test_aiodicom_store_sends_every_syntax_to_pynetdicom_byte_for_byte(corpus: Corpus,
                                                                     pynetdicom_server: Running) -> None:
    done = _store(pynetdicom_server.port, "PYNETDICOM", *(i.path for i in corpus))
    assert done.returncode == 0, done.stderr + done.stdout
    storage = pynetdicom_server.storage
    assert {p.stem for p in storage.glob("*.dcm")} == {i.sop_instance_uid for i in corpus}
    _check_all(corpus, lambda i: assert_same_dataset_bytes(storage / f"{i.sop_instance_uid}.dcm", i))


def test_aiodicom_store_recursive_sends_every_file_of_a_tree(corpus: Corpus, storescp: Running,
                                                             tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for n, inst in enumerate(corpus):
        folder = tree / f"level-{n % 3}" / ("deeper" if n % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inst.path, folder / inst.path.name)
    done = _store(storescp.port, "STORESCP", tree, extra=["--recursive"])
    assert done.returncode == 0, done.stderr + done.stdout
    received = received_by_uid(storescp.storage)
    assert set(received) == {i.sop_instance_uid for i in corpus}
    _check_all(corpus, lambda i: assert_same_dataset_bytes(received[i.sop_instance_uid], i))


def test_aiodicom_store_summary_names_every_file(corpus: Corpus, tmp_path: Path) -> None:
    with dcmtk_storescp(tmp_path, ignore=True) as sink:            # receives and answers Success, stores nothing
        done = _store(sink.port, "STORESCP", *(i.path for i in corpus))
    assert done.returncode == 0, done.stderr + done.stdout
    missing = [i.name for i in corpus if i.sop_instance_uid not in done.stdout and str(i.path) not in done.stdout]
    assert not missing, f"summary does not mention {missing}:\n{done.stdout}"


def test_aiodicom_store_decodes_compressed_files_for_an_uncompressed_only_storescp(corpus: Corpus,
                                                                                   tmp_path: Path) -> None:
    pytest.importorskip("pylibjpeg", reason="the convert extra decodes compressed pixel data")
    import pydicom

    names = ("bundled-jpeg-lossless", "bundled-rle-mr", "bundled-j2k-lossless", "bundled-jpeg-ls-lossless")
    with dcmtk_storescp(tmp_path, "+xi") as plain:  # accepts Implicit VR Little Endian only
        done = _store(plain.port, "STORESCP", *(corpus[n].path for n in names))
        assert done.returncode == 0, done.stderr + done.stdout
        got = received_by_uid(plain.storage)
    for name in names:
        sent, ds = pydicom.dcmread(corpus[name].path), pydicom.dcmread(got[corpus[name].sop_instance_uid])
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2", name
        assert (ds.pixel_array == sent.pixel_array).all(), f"{name}: decoded pixels differ"


# --- failures ---------------------------------------------------------------------------------------------------------

def test_aiodicom_store_exits_1_when_the_peer_answers_a_failure(corpus: Corpus, tmp_path: Path) -> None:
    inst = corpus["generated-explicit-le"]
    with pynetdicom_scp(tmp_path, store_status=0xA700) as full:   # PS3.4 B.2.3: out of resources
        done = _store(full.port, "PYNETDICOM", inst.path)
    assert done.returncode == 1, done.stderr + done.stdout
    assert "A700" in done.stdout.upper() + done.stderr.upper(), "the failure status is not reported"


def test_aiodicom_store_exits_3_when_the_peer_aborts(corpus: Corpus, tmp_path: Path) -> None:
    inst = corpus["generated-explicit-le"]
    with dcmtk_storescp(tmp_path, "--abort-after") as aborting:  # A-ABORT after the C-STORE-RQ, before its response
        done = _store(aborting.port, "STORESCP", inst.path)
    assert done.returncode == 3, done.stderr + done.stdout
    assert "abort" in single_error_line(done).lower()


def test_aiodicom_store_rejected_association_exits_3_and_stores_nothing(corpus: Corpus,
                                                                       aiodicom_server: Running) -> None:
    inst = corpus["generated-explicit-le"]
    done = _store(aiodicom_server.port, "NOT-AIODICOM", inst.path)
    assert done.returncode == 3, done.stderr + done.stdout
    assert "reject" in single_error_line(done).lower()
    assert not inst.stored_path(aiodicom_server.storage).exists()


def test_dcmtk_storescu_large_instance_spans_many_pdus(corpus: Corpus, aiodicom_server: Running) -> None:
    """2 MiB sent in 4 KiB PDUs: over 500 P-DATA-TFs reassembled into one data set (PS3.8 §9.3.5)."""
    inst = corpus["generated-explicit-le-2mib"]
    done = storescu(aiodicom_server.port, [inst.path], "--max-send-pdu", "4096", propose=inst.transfer_syntax,
                    aec="AIODICOM")
    assert done.returncode == 0, done.stderr
    assert_same_content(inst.stored_path(aiodicom_server.storage), inst)


@pytest.mark.parametrize("method", ["fdatasync", "fsync", "syncfs"])
def test_four_storescu_at_once_into_serve_with_each_sync_method_store_everything(method: str, tmp_path: Path) -> None:
    """`serve --sync-method`: concurrent commits share their syncs differently (per file, or one syncfs per group);
    with every method each acknowledged instance is stored whole and nothing is left in .incoming."""
    batches = [generated_series(tmp_path / f"data-{n}", 12, pixel_bytes=8192, prefix=f"s{n}") for n in range(4)]
    with aiodicom_serve(tmp_path / "serve", "--sync-method", method) as server:
        senders = [subprocess.Popen(storescu_argv(server.port, [i.path for i in batch], aec="AIODICOM"),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=peer_env())
                   for batch in batches]
        outputs = [s.communicate(timeout=120)[0] for s in senders]
        assert all(s.returncode == 0 for s in senders), outputs
        _check_all([i for batch in batches for i in batch],
                   lambda inst: assert_same_content(inst.stored_path(server.storage), inst))
        assert incoming_temp_files(server.storage) == []
    storage_line = next(e for e in map(json.loads, server.log.read_text().splitlines()) if e["event"] == "storage")
    assert storage_line["sync_method"] == method
