"""The command line imports only the module of the verb given: every verb must still resolve."""

from __future__ import annotations

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
