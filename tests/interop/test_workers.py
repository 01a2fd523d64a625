"""`aiodicom serve --workers 2`: two processes on one port sharing one storage folder and its index."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.dicomdata import generated_series
from tests.peers import HOST, aiodicom, aiodicom_serve, storescu

pytestmark = pytest.mark.interop


def test_two_workers_store_and_index_everything_four_senders_send(tmp_path: Path) -> None:
    batches = [generated_series(tmp_path / f"data{n}", 15, pixel_bytes=8 * 1024, prefix=f"w{n}") for n in range(4)]
    with aiodicom_serve(tmp_path / "serve", "--workers", "2") as server:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda batch: storescu(server.port, [i.path for i in batch], aec="AIODICOM"),
                                    batches))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
        for batch in batches:  # every instance on disk, and in the index shared by both workers
            assert all(inst.stored_path(server.storage).exists() for inst in batch)
            study, series = batch[0].study_uid, batch[0].series_uid
            found = aiodicom("find", HOST, str(server.port), "--aec", "AIODICOM", "--json",
                             "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study}",
                             "-k", f"SeriesInstanceUID={series}", "-k", "SOPInstanceUID")
            assert found.returncode == 0, found.stderr
            assert found.stdout.count('"00080018"') == len(batch)
        server.stop(signal.SIGTERM)
        log = server.output()
    assert log.count('"event": "listening"') == 2
    assert '"event": "worker stopped"' in log and '"exit_code": 0' in log
    assert server.proc.returncode == 0


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    done = aiodicom("serve", "--port", "0", "--workers", "2", "--storage", str(tmp_path / "s"))
    assert done.returncode == 2 and "fixed --port" in done.stderr
