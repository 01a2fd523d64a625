"""Verification (C-ECHO, PS3.4 Annex A) between aiodicom and real peers, in both directions, and how a refused
association is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.peers import (
    Running,
    aiodicom,
    echoscu,
    free_port,
    pynetdicom_scp,
    pynetdicom_scu,
    single_error_line,
    wait_until,
)

pytestmark = pytest.mark.interop

# PS3.8 Table 9-21 (A-ASSOCIATE-RJ): result 1 rejected-permanent, source 1 service-user, reason 7.
CALLED_AE_NOT_RECOGNIZED = re.compile(r"called[-_ ]?ae[-_ ]?title[-_ ]?not[-_ ]?recognized", re.IGNORECASE)


def _count_when_settled(server: Running, needle: str, expected: int) -> int:
    """storescp --fork children log after the client has gone: wait for the expected count, then report it."""
    try:
        wait_until(lambda: server.output().count(needle) >= expected, timeout=10, what=needle)
    except TimeoutError:
        pass
    return server.output().count(needle)


# --- peers call aiodicom serve ---------------------------------------------------------------------------------------

def test_dcmtk_echoscu_gets_success_for_each_echo_on_one_association(aiodicom_server: Running) -> None:
    done = echoscu(aiodicom_server.port, "-v", "--repeat", "3", aec="AIODICOM")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Received Echo Response (Success)") == 3, done.stderr
    assert done.stderr.count("Association Accepted") == 1


def test_dcmtk_echoscu_reads_our_rejection_of_a_wrong_called_ae(aiodicom_server: Running) -> None:
    done = echoscu(aiodicom_server.port, aec="NOT-AIODICOM")
    assert done.returncode != 0
    # DCMTK decoded our A-ASSOCIATE-RJ fields as PS3.8 Table 9-21 defines them.
    assert "Rejected Permanent" in done.stderr, done.stderr
    assert "Source: Service User" in done.stderr, done.stderr
    assert "Called AE Title Not Recognized" in done.stderr, done.stderr


def test_pynetdicom_echo_gets_success_from_aiodicom_serve(aiodicom_server: Running) -> None:
    done = pynetdicom_scu("echo", aiodicom_server.port, aec="AIODICOM")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["echo", "0x0000"]


def test_pynetdicom_echo_is_rejected_for_a_wrong_called_ae(aiodicom_server: Running) -> None:
    done = pynetdicom_scu("echo", aiodicom_server.port, aec="SOMEONE-ELSE")
    assert done.returncode == 3
    assert "association rejected" in done.stderr


def test_aiodicom_echo_gets_success_from_aiodicom_serve(aiodicom_server: Running) -> None:
    done = aiodicom("echo", "127.0.0.1", str(aiodicom_server.port), "--aec", "AIODICOM")
    assert done.returncode == 0, done.stderr


# --- aiodicom echo calls peers ---------------------------------------------------------------------------------------

def test_aiodicom_echo_gets_success_from_dcmtk_storescp(storescp: Running) -> None:
    done = aiodicom("echo", "127.0.0.1", str(storescp.port), "--aec", "STORESCP")
    assert done.returncode == 0, done.stderr
    assert _count_when_settled(storescp, "Received Echo Request", 1) == 1


def test_aiodicom_echo_repeat_sends_every_echo_on_one_association(storescp: Running) -> None:
    done = aiodicom("echo", "127.0.0.1", str(storescp.port), "--aec", "STORESCP", "--repeat", "4")
    assert done.returncode == 0, done.stderr
    assert _count_when_settled(storescp, "Received Echo Request", 4) == 4
    assert storescp.output().count("Association Acknowledged") == 1
    assert "Association Release" in storescp.output()          # released, not aborted


def test_aiodicom_echo_gets_success_from_pynetdicom_scp(pynetdicom_server: Running) -> None:
    done = aiodicom("echo", "127.0.0.1", str(pynetdicom_server.port), "--aec", "PYNETDICOM", "--repeat", "2")
    assert done.returncode == 0, done.stderr


# --- failures: exit code 3 and one line that names the reason ---------------------------------------------------------

def test_aiodicom_echo_rejected_by_aiodicom_serve_names_the_reason(aiodicom_server: Running) -> None:
    done = aiodicom("echo", "127.0.0.1", str(aiodicom_server.port), "--aec", "WRONG-AE")
    assert done.returncode == 3, done.stderr
    line = single_error_line(done)
    assert "reject" in line.lower() and CALLED_AE_NOT_RECOGNIZED.search(line), line
    assert re.search(r"\b7\b", line), f"reason code 7 missing: {line}"


def test_aiodicom_echo_rejected_by_pynetdicom_names_the_reason(tmp_path: Path) -> None:
    with pynetdicom_scp(tmp_path, aet="STRICT", require_called_aet=True) as strict:
        accepted = aiodicom("echo", "127.0.0.1", str(strict.port), "--aec", "STRICT")
        rejected = aiodicom("echo", "127.0.0.1", str(strict.port), "--aec", "LAX")
    assert accepted.returncode == 0, accepted.stderr
    assert rejected.returncode == 3, rejected.stderr
    line = single_error_line(rejected)
    assert "reject" in line.lower() and CALLED_AE_NOT_RECOGNIZED.search(line), line


def test_aiodicom_echo_to_a_closed_port_exits_3_with_one_line() -> None:
    done = aiodicom("echo", "127.0.0.1", str(free_port()), "--aec", "NOBODY")
    assert done.returncode == 3, done.stderr
    single_error_line(done)
