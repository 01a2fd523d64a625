"""Fixtures shared by the test suites: the test corpus, TLS material, and running servers (ours and the peers').

Session-scoped data (corpus, certificates) is built once in pytest's temp dir; servers are per test, each in the
test's own temp dir, on a free port, stopped by PID when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dicomdata import Corpus, build_corpus
from tests.peers import Running, TlsFiles, aiodicom_serve, dcmtk_storescp, make_tls_files, pynetdicom_scp


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every test instance (pydicom's bundled files + generated ones) as PS3.10 files with unique SOP Instance
    UIDs, one set per session."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA with a server certificate (127.0.0.1, localhost), a client certificate, and a client
    certificate from an unrelated CA."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def aiodicom_server(tmp_path: Path) -> Iterator[Running]:
    """`aiodicom serve --aet AIODICOM` storing under Running.storage."""
    with aiodicom_serve(tmp_path / "aiodicom") as server:
        yield server


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Running]:
    """DCMTK storescp (fork, accept all syntaxes, bit preserving), verbose so its log shows each request."""
    with dcmtk_storescp(tmp_path / "storescp", "-v") as server:
        yield server


@pytest.fixture
def pynetdicom_server(tmp_path: Path) -> Iterator[Running]:
    pytest.importorskip("pynetdicom")
    with pynetdicom_scp(tmp_path / "pynetdicom") as server:
        yield server
