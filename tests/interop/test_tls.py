"""DICOM over TLS (PS3.15 Annex B.1, secure transport connection profile) between aiodicom and real peers.

The certificates come from a private CA made for the session (conftest.tls_files): the server certificate names
127.0.0.1 and localhost; the client certificate is signed by the same CA; a 'rogue' client certificate by another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dicomdata import Corpus, assert_same_content, assert_same_dataset_bytes, received_by_uid
from tests.peers import (
    DcmtkTls,
    Running,
    TlsFiles,
    aiodicom,
    aiodicom_serve,
    aiodicom_serve_tls_args,
    aiodicom_tls_args,
    dcmtk_storescp,
    echoscu,
    pynetdicom_scp,
    pynetdicom_scu,
    read_status_log,
    single_error_line,
    storescu,
)

pytestmark = pytest.mark.interop

SAMPLE = ("generated-explicit-le", "bundled-jpeg-baseline", "bundled-deflated", "generated-explicit-le-2mib")


@pytest.fixture
def tls_server(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Running]:
    """`aiodicom serve` over TLS, requiring client certificates signed by the test CA."""
    with aiodicom_serve(tmp_path / "aiodicom", *aiodicom_serve_tls_args(tls_files)) as server:
        yield server


@pytest.fixture
def tls_storescp(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Running]:
    """DCMTK storescp over TLS; +cf CA: it verifies client certificates and requires one (its default -rc)."""
    tls = DcmtkTls(tls_files.server_key, tls_files.server_cert, tls_files.ca_cert)
    with dcmtk_storescp(tmp_path / "storescp", "-v", tls=tls) as server:
        yield server


def _client(tls: TlsFiles) -> DcmtkTls:
    return DcmtkTls(tls.client_key, tls.client_cert, tls.ca_cert)


# --- peers call aiodicom serve over TLS ------------------------------------------------------------------------------

def test_dcmtk_echoscu_over_tls_gets_success(tls_server: Running, tls_files: TlsFiles) -> None:
    done = echoscu(tls_server.port, "-v", aec="AIODICOM", tls=_client(tls_files))
    assert done.returncode == 0, done.stderr
    assert "Received Echo Response (Success)" in done.stderr


def test_dcmtk_storescu_over_tls_stores_instances(tls_server: Running, tls_files: TlsFiles, corpus: Corpus) -> None:
    for name in SAMPLE:
        inst = corpus[name]
        done = storescu(tls_server.port, [inst.path], propose=inst.transfer_syntax, aec="AIODICOM",
                        tls=_client(tls_files))
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert_same_content(inst.stored_path(tls_server.storage), inst)


def test_pynetdicom_store_over_tls_keeps_the_bytes(tls_server: Running, tls_files: TlsFiles, corpus: Corpus,
                                                   tmp_path: Path) -> None:
    instances = [corpus[name] for name in SAMPLE]
    log = tmp_path / "statuses.log"
    done = pynetdicom_scu("store", tls_server.port, *(i.path for i in instances), aec="AIODICOM", tls=tls_files,
                          status_log=log)
    assert done.returncode == 0, done.stderr
    assert set(read_status_log(log).values()) == {0}
    for inst in instances:
        assert_same_dataset_bytes(inst.stored_path(tls_server.storage), inst)


def test_client_certificate_from_another_ca_is_refused(tls_server: Running, tls_files: TlsFiles) -> None:
    rogue = DcmtkTls(tls_files.rogue_key, tls_files.rogue_cert, tls_files.ca_cert)
    assert echoscu(tls_server.port, aec="AIODICOM", tls=rogue).returncode != 0
    # The refusal is per connection: the server is still there for a client the CA vouches for.
    assert echoscu(tls_server.port, aec="AIODICOM", tls=_client(tls_files)).returncode == 0


def test_client_without_certificate_is_refused_when_serve_requires_one(tls_server: Running,
                                                                        tls_files: TlsFiles) -> None:
    anonymous = DcmtkTls(ca=tls_files.ca_cert)                     # +tla: TLS without a client certificate
    assert echoscu(tls_server.port, aec="AIODICOM", tls=anonymous).returncode != 0
    done = aiodicom("echo", "127.0.0.1", str(tls_server.port), "--aec", "AIODICOM",
                    *aiodicom_tls_args(tls_files, client_cert=False))
    assert done.returncode == 3, done.stderr
    single_error_line(done)


def test_plain_tcp_client_is_refused_by_a_tls_server(tls_server: Running, tls_files: TlsFiles) -> None:
    assert echoscu(tls_server.port, aec="AIODICOM").returncode != 0
    assert echoscu(tls_server.port, aec="AIODICOM", tls=_client(tls_files)).returncode == 0


def test_serve_without_tls_ca_accepts_clients_without_certificates(tmp_path: Path, tls_files: TlsFiles) -> None:
    with aiodicom_serve(tmp_path, *aiodicom_serve_tls_args(tls_files, require_client_cert=False)) as server:
        done = echoscu(server.port, aec="AIODICOM", tls=DcmtkTls(ca=tls_files.ca_cert))
    assert done.returncode == 0, done.stderr


# --- aiodicom calls peers over TLS -----------------------------------------------------------------------------------

def test_aiodicom_echo_over_tls_to_dcmtk(tls_storescp: Running, tls_files: TlsFiles) -> None:
    done = aiodicom("echo", "127.0.0.1", str(tls_storescp.port), "--aec", "STORESCP", *aiodicom_tls_args(tls_files))
    assert done.returncode == 0, done.stderr


def test_aiodicom_store_over_tls_to_dcmtk_byte_for_byte(tls_storescp: Running, tls_files: TlsFiles,
                                                        corpus: Corpus) -> None:
    instances = [corpus[name] for name in SAMPLE]
    done = aiodicom("store", "127.0.0.1", str(tls_storescp.port), *(str(i.path) for i in instances),
                    "--aec", "STORESCP", *aiodicom_tls_args(tls_files))
    assert done.returncode == 0, done.stderr + done.stdout
    received = received_by_uid(tls_storescp.storage)
    for inst in instances:
        assert_same_dataset_bytes(received[inst.sop_instance_uid], inst)


def test_aiodicom_echo_over_tls_to_pynetdicom_requiring_client_cert(tmp_path: Path, tls_files: TlsFiles) -> None:
    with pynetdicom_scp(tmp_path, tls=tls_files, require_client_cert=True) as server:
        done = aiodicom("echo", "127.0.0.1", str(server.port), "--aec", "PYNETDICOM", *aiodicom_tls_args(tls_files))
    assert done.returncode == 0, done.stderr


def test_aiodicom_without_the_ca_refuses_the_server_certificate(tls_storescp: Running, tls_files: TlsFiles) -> None:
    # No --tls-ca: the system trust store does not know the test CA, so the handshake must fail on our side.
    done = aiodicom("echo", "127.0.0.1", str(tls_storescp.port), "--aec", "STORESCP",
                    *aiodicom_tls_args(tls_files, ca=False))
    assert done.returncode == 3, done.stderr
    assert "certificate" in single_error_line(done).lower()


def test_aiodicom_without_client_certificate_is_refused_by_dcmtk(tls_storescp: Running, tls_files: TlsFiles) -> None:
    done = aiodicom("echo", "127.0.0.1", str(tls_storescp.port), "--aec", "STORESCP",
                    *aiodicom_tls_args(tls_files, client_cert=False))
    assert done.returncode == 3, done.stderr
    single_error_line(done)


def test_dcmtk_storescp_without_peer_verification_accepts_aiodicom_without_client_cert(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    tls = DcmtkTls(tls_files.server_key, tls_files.server_cert, None)      # -ic: no client certificate needed
    with dcmtk_storescp(tmp_path, tls=tls) as server:
        done = aiodicom("echo", "127.0.0.1", str(server.port), "--aec", "STORESCP",
                        *aiodicom_tls_args(tls_files, client_cert=False))
    assert done.returncode == 0, done.stderr


def test_an_unreadable_tls_file_is_one_line_naming_its_option_and_exit_2(tmp_path: Path, tls_files: TlsFiles) -> None:
    missing = tmp_path / "missing-ca.pem"
    not_a_cert = tmp_path / "not-a-cert.pem"
    not_a_cert.write_text("hello\n")
    storage = str(tmp_path / "s")
    cases = (
        (("echo", "127.0.0.1", "1", "--tls", "--tls-ca", str(missing)), f"--tls-ca: cannot load {missing}: "),
        (("echo", "127.0.0.1", "1", "--tls", "--tls-ca", str(not_a_cert)), f"--tls-ca: cannot load {not_a_cert}: "),
        (("serve", "--port", "0", "--storage", storage, "--tls-cert", str(missing), "--tls-key", str(missing)),
         f"--tls-cert: cannot load {missing}: "),
        # a good certificate with another's key: OpenSSL alone says only "[SSL: KEY_VALUES_MISMATCH]"
        (("serve", "--port", "0", "--storage", storage, "--tls-cert", str(tls_files.server_cert),
          "--tls-key", str(tls_files.client_key)),
         f"--tls-key: cannot load {tls_files.client_key} as the private key of {tls_files.server_cert}: "),
    )
    for argv, expected in cases:
        done = aiodicom(*argv)
        assert done.returncode == 2, done.stderr
        line = single_error_line(done)
        assert line.startswith(f"aiodicom: TLS: {expected}"), line
