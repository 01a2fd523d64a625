"""What a command-line user meets when something is wrong: one line on stderr naming the problem and a non-zero exit
code, never a traceback (README: "a failure prints one line naming the reason").

- A bad argument is refused before anything runs, exit 2: a port outside 1-65535 (a larger one used to wrap around
  silently to another port), an AE title PS3.5 does not allow (it used to fail inside the association as an
  "internal error"), a timeout that is not above zero.
- A server that cannot start says why, exit 1: the port is taken, the address is not ours, the storage folder cannot
  be created.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.peers import HOST, aiodicom, single_error_line

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(("argv", "expected"), [
    (("echo", HOST, "99999"), "argument port: '99999' is not a TCP port (1-65535)"),
    (("echo", HOST, "0"), "argument port: '0' is not a TCP port (1-65535)"),
    (("echo", HOST, "104", "--aec", "THISISAVERYLONGAETITLE"), "argument --aec: 'THISISAVERYLONGAETITLE' is not an AE title"),
    (("store", HOST, "104", "x.dcm", "--aet", "A\\B"), "argument --aet: 'A\\\\B' is not an AE title"),
    (("echo", HOST, "104", "--timeout", "-1"), "argument --timeout: '-1' is not a number of seconds above 0"),
    (("move", HOST, "104", "--dest", "SEVENTEEN-CHARS-X", "-k", "QueryRetrieveLevel=STUDY"),
     "argument --dest: 'SEVENTEEN-CHARS-X' is not an AE title"),
    (("serve", "--port", "70000"), "argument --port: '70000' is not a TCP port (0-65535)"),
    (("serve", "--aet", "   "), "argument --aet: '   ' is not an AE title"),
    (("serve", "--max-associations", "0"), "argument --max-associations: '0' is not a positive whole number"),
    (("commit", HOST, "104", "x.dcm", "--listen-port", "65536"), "argument --listen-port: '65536' is not a TCP port"),
])
def test_a_bad_argument_is_one_usage_line_and_exit_2(argv: tuple[str, ...], expected: str) -> None:
    done = aiodicom(*argv)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr.splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = aiodicom("serve", "--host", HOST, "--port", str(port), "--storage", str(tmp_path / "s"),
                        "--log-level", "warning", timeout=60)
    assert done.returncode == 1, done.stderr
    line = single_error_line(done)
    assert line.startswith("aiodicom: ") and "address already in use" in line and str(port) in line, line


def test_serve_with_a_storage_folder_it_cannot_create_is_one_line_and_exit_1(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    done = aiodicom("serve", "--host", HOST, "--port", "0", "--storage", str(a_file / "storage"),
                    "--log-level", "warning", timeout=60)
    assert done.returncode == 1, done.stderr
    line = single_error_line(done)
    assert f"opening the store at {a_file / 'storage'}" in line, line


def test_get_into_a_folder_it_cannot_create_is_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    done = aiodicom("get", HOST, "104", "--out", str(a_file / "out"), "-k", "QueryRetrieveLevel=STUDY",
                    "-k", "StudyInstanceUID=1.2.3")
    assert done.returncode == 1, done.stderr
    assert f"opening the store at {a_file / 'out'}" in single_error_line(done)


def test_index_rebuild_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = aiodicom("index", "rebuild", str(tmp_path / "nowhere"))
    assert done.returncode == 2, done.stderr
    assert "no such folder" in single_error_line(done)
    assert not (tmp_path / "nowhere").exists()


def test_a_mistyped_storage_folder_is_not_an_empty_worklist(tmp_path: Path) -> None:
    done = aiodicom("worklist", "list", "--storage", str(tmp_path / "archiv"))
    assert done.returncode == 2 and "no such storage folder" in single_error_line(done)
    assert not (tmp_path / "archiv").exists()


def test_route_retry_for_a_destination_the_spool_does_not_know_says_so(tmp_path: Path) -> None:
    (tmp_path / "spool" / "dead" / "PACS").mkdir(parents=True)
    done = aiodicom("route", "retry", "--spool", str(tmp_path / "spool"), "--destination", "NOPE")
    assert done.returncode == 2, done.stderr
    assert "no destination 'NOPE'" in single_error_line(done) and "known: PACS" in done.stderr


def test_find_with_a_value_its_vr_does_not_allow_is_the_peers_one_line_answer(tmp_path: Path) -> None:
    from tests.peers import aiodicom_serve

    with aiodicom_serve(tmp_path) as server:
        done = aiodicom("find", HOST, str(server.port), "--aec", "AIODICOM", "-k", "QueryRetrieveLevel=STUDY",
                        "-k", "StudyDate=notadate")
    assert done.returncode != 0 and "Warning" not in done.stderr and "warn" not in done.stderr, done.stderr
    assert "0xA900" in single_error_line(done)
