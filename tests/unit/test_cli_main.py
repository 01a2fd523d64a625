"""The command line imports only the module of the verb given: every verb must still resolve."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from aiodicom.cli.main import VERBS, main


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_parses_with_only_its_module(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    assert f"aiodicom {verb}" in capsys.readouterr().out


def test_help_without_a_verb_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)


def test_an_echo_and_the_client_api_import_no_pydicom() -> None:
    """Importing pydicom takes ~0.2 s: a health check running `aiodicom echo`, or a program that only echoes, must not
    wait for it. The UID tables taken from pydicom are built on first use (aiodicom/uids.py)."""
    probe = ("import sys, aiodicom, aiodicom.cli.echo, aiodicom.cli.main as m; m.parser('echo');"
             "print(sorted(n for n in ('pydicom', 'numpy') if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    from aiodicom import uids   # and the tables are still there when asked for

    assert uids.EXPLICIT_VR_LITTLE_ENDIAN in uids.ALL_TRANSFER_SYNTAXES and "1.2.840.10008.1.2.4.50" in uids.ALL_TRANSFER_SYNTAXES
    assert "1.2.840.10008.5.1.4.1.1.2" in uids.STORAGE_SOP_CLASSES   # CT Image Storage
    assert "1.2.840.10008.5.1.4.1.1.2" in uids.COMMON_STORAGE_SOP_CLASSES
    assert set(uids.COMMON_STORAGE_SOP_CLASSES) < set(uids.STORAGE_SOP_CLASSES)
    assert uids.uid_name("1.2.840.10008.1.2.4.50").startswith("JPEG Baseline")
    with pytest.raises(AttributeError):
        uids.NO_SUCH_TABLE  # noqa: B018


def test_version_names_the_package_and_what_goes_on_the_wire(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"aiodicom \S+ \(implementation version name AIODICOM_\w+\)\n", capsys.readouterr().out)


def test_an_unknown_verb_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["stroe", "x"])
    assert done.value.code == 2 and "invalid choice: 'stroe'" in capsys.readouterr().err


def test_find_table_shows_the_attributes_inside_sequence_items() -> None:
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    from aiodicom.cli.query import _cell

    step = Dataset()
    step.ScheduledStationAETitle = "CT1"
    step.ScheduledProcedureStepID = "SPS-0042"
    item = Dataset()
    item.ScheduledProcedureStepSequence = Sequence([step, Dataset()])
    assert _cell(item["ScheduledProcedureStepSequence"]) == \
        "[ScheduledStationAETitle=CT1, ScheduledProcedureStepID=SPS-0042] []"
