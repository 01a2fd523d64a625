"""What a Success or a failure status promises (PS3.4 B.2.3), checked against a killed server and a full disk.

- C-STORE Success means the instance is on disk: after `kill -9` mid-transfer, every instance a sender saw
  acknowledged is stored intact, no stored file is partial, a restart sweeps the temp files of the dead run,
  and C-FIND finds every acknowledged instance after the restart (the index catches up with the files).
- A full disk answers 0xA700 (Refused: Out of Resources), leaves no partial file, and the server keeps serving.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.dicomdata import Instance, assert_same_dataset_bytes, generated_series
from tests.peers import (
    aiodicom,
    aiodicom_serve,
    base_env,
    incoming_temp_files,
    pynetdicom_scu,
    pynetdicom_scu_argv,
    read_status_log,
    small_disk,
    wait_until,
)

pytestmark = pytest.mark.interop

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700      # PS3.4 Table B.2-1: Refused: Out of Resources

SENDERS = 4
PER_SENDER = 25
ACKED_BEFORE_KILL = 20         # enough acknowledged instances that the kill lands mid-stream for every sender


def _stored_instances(storage: Path) -> list[Path]:
    """Every instance file the server has published (outside its temp folder; an index database is not one)."""
    return sorted(p for p in storage.rglob("*.dcm") if ".incoming" not in p.relative_to(storage).parts)


def _check_published_files_are_whole(storage: Path, sent: dict[str, Instance]) -> None:
    """Atomic publication (temp file, fsync, rename): whatever is visible is a complete instance we sent."""
    for path in _stored_instances(storage):
        inst = sent.get(path.stem)
        assert inst is not None, f"unexpected file {path}"
        assert path == inst.stored_path(storage), f"{path} is not where the contract puts {inst.name}"
        assert_same_dataset_bytes(path, inst)


def test_kill_9_keeps_every_acknowledged_instance_and_restart_sweeps_incoming(tmp_path: Path) -> None:
    batches = [generated_series(tmp_path / f"data-{n}", PER_SENDER, pixel_bytes=256 * 1024, prefix=f"s{n}")
               for n in range(SENDERS)]
    sent = {inst.sop_instance_uid: inst for batch in batches for inst in batch}
    logs = [tmp_path / f"sender-{n}.log" for n in range(SENDERS)]
    storage = tmp_path / "storage"

    with aiodicom_serve(tmp_path / "first-run", storage=storage) as server:
        senders = [
            subprocess.Popen(
                pynetdicom_scu_argv("store", server.port, *(i.path for i in batch), aec="AIODICOM", status_log=log),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=base_env(),
            )
            for batch, log in zip(batches, logs, strict=True)
        ]
        try:
            def acknowledged() -> int:
                return sum(len(read_status_log(log)) for log in logs)
            wait_until(lambda: acknowledged() >= ACKED_BEFORE_KILL or all(s.poll() is not None for s in senders),
                       timeout=300, what=f"{ACKED_BEFORE_KILL} acknowledged C-STOREs")
            server.kill9()
            for sender in senders:
                sender.wait(60)        # the association is gone: each sender stops at its next request
        finally:
            for sender in senders:
                if sender.poll() is None:
                    sender.kill()
                    sender.wait(10)
        assert not all(s.returncode == 0 for s in senders), "every sender finished before the kill: test is moot"

    statuses: dict[str, int] = {}
    for log in logs:
        statuses.update(read_status_log(log))
    acked = sorted(uid for uid, status in statuses.items() if status == SUCCESS)
    assert len(acked) >= ACKED_BEFORE_KILL, statuses
    for uid in acked:
        stored = sent[uid].stored_path(storage)
        assert stored.is_file(), f"{sent[uid].name} was acknowledged with Success but is not on disk"
        assert_same_dataset_bytes(stored, sent[uid])
    _check_published_files_are_whole(storage, sent)

    # Whatever the dead run left in .incoming (its session lock, the temp files of transfers cut short) must go at
    # restart. One more temp file, named as the file store names them (<session>-<n>.part) for a session that holds
    # no lock, makes sure the sweep has work even if the kill caught no transfer in flight.
    incoming = storage / ".incoming"
    leftovers = set(incoming.iterdir())
    planted = incoming / "00000000deadbeef-0.part"
    planted.write_bytes(b"\0" * 4096)
    with aiodicom_serve(tmp_path / "second-run", storage=storage) as restarted:
        wait_until(lambda: not (leftovers | {planted}) & set(incoming.iterdir()), timeout=15, what=".incoming swept")
        assert incoming_temp_files(storage) == []
        assert aiodicom("echo", "127.0.0.1", str(restarted.port), "--aec", "AIODICOM").returncode == 0
        for uid in acked:                              # the sweep touched only temp files
            assert_same_dataset_bytes(sent[uid].stored_path(storage), sent[uid])
        # The index follows the files in batches: what the dead run had not indexed yet was caught up at start.
        for batch in batches:
            first = next(iter(batch))
            found = aiodicom("find", "127.0.0.1", str(restarted.port), "--aec", "AIODICOM", "--json",
                             "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={first.study_uid}",
                             "-k", f"SeriesInstanceUID={first.series_uid}", "-k", "SOPInstanceUID")
            assert found.returncode == 0, found.stderr
            for inst in batch:
                if inst.sop_instance_uid in acked:
                    assert inst.sop_instance_uid in found.stdout, f"{inst.name} is stored but C-FIND does not find it"


def test_full_disk_answers_out_of_resources_without_partial_files(tmp_path: Path) -> None:
    # 700 KiB instances on a 3 MiB tmpfs: about four fit, the rest cannot.
    instances = generated_series(tmp_path / "data", 8, pixel_bytes=700 * 1024, prefix="big")
    sent = {inst.sop_instance_uid: inst for inst in instances}
    log = tmp_path / "statuses.log"
    with small_disk(tmp_path / "small-disk", "3m") as disk, \
            aiodicom_serve(tmp_path / "serve", storage=disk.path, wrapper=disk.wrapper) as server:
        done = pynetdicom_scu("store", server.port, *(i.path for i in instances), aec="AIODICOM", status_log=log)
        storage = disk.seen_by(server)
        statuses = read_status_log(log)

        # Each instance got an answer on the same association: the failures did not abort it.
        assert set(statuses) == set(sent), done.stderr
        assert done.returncode == 1, done.stderr
        assert set(statuses.values()) == {SUCCESS, OUT_OF_RESOURCES}, statuses
        for uid, status in statuses.items():
            stored = sent[uid].stored_path(storage)
            if status == SUCCESS:
                assert_same_dataset_bytes(stored, sent[uid])
            else:
                assert not stored.exists(), f"{sent[uid].name} was refused but a file is there"
        _check_published_files_are_whole(storage, sent)
        assert incoming_temp_files(storage) == [], "temp files left after refusals"

        echo = aiodicom("echo", "127.0.0.1", str(server.port), "--aec", "AIODICOM")
        assert echo.returncode == 0, echo.stderr
        assert server.proc.poll() is None
