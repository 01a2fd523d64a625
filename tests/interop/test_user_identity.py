"""User identity negotiation (PS3.7 D.3.3.7) against `aiodicom serve --users`, from our CLI and pynetdicom."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import HOST, aiodicom, aiodicom_serve

pytestmark = pytest.mark.interop

PYNETDICOM_ECHO = """
import sys
from pynetdicom import AE
ae = AE(ae_title="PYNET")
ae.add_requested_context("1.2.840.10008.1.1")
from pynetdicom.pdu_primitives import UserIdentityNegotiation
user, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
item = UserIdentityNegotiation()
item.user_identity_type = 2
item.primary_field = user.encode()
item.secondary_field = password.encode()
assoc = ae.associate("127.0.0.1", port, ae_title="AIODICOM", ext_neg=[item])
if not assoc.is_established:
    print("rejected" if assoc.is_rejected else "aborted")
    sys.exit(3)
status = assoc.send_c_echo()
assoc.release()
print(f"status {status.Status:04X}")
"""


@pytest.fixture
def server(tmp_path: Path):
    users = tmp_path / "users.toml"
    users.write_text('[users]\nalice = "s3cret"\n')
    with aiodicom_serve(tmp_path / "serve", "--users", str(users)) as running:
        yield running


def test_aiodicom_echo_with_the_right_password_is_accepted(server) -> None:
    done = aiodicom("echo", HOST, str(server.port), "--aec", "AIODICOM", "--user", "alice", "--password", "s3cret")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("credentials", [["--user", "alice", "--password", "wrong"], ["--user", "mallory"], []])
def test_wrong_or_missing_credentials_are_rejected_with_one_line(server, credentials: list[str]) -> None:
    done = aiodicom("echo", HOST, str(server.port), "--aec", "AIODICOM", *credentials)
    assert done.returncode == 3
    assert "rejected" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(("password", "expected"), [("s3cret", "status 0000"), ("nope", "rejected")])
def test_pynetdicom_user_identity(server, tmp_path: Path, password: str, expected: str) -> None:
    script = tmp_path / "echo.py"
    script.write_text(PYNETDICOM_ECHO)
    done = subprocess.run([sys.executable, str(script), "alice", password, str(server.port)],
                          capture_output=True, text=True, timeout=60)
    assert expected in done.stdout, done.stdout + done.stderr
