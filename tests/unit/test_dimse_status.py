"""Status codes: PS3.7 Annex C categories by rule, names from PS3.7 and PS3.4."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.dimse import status as s
from aiodicom.dimse.status import Category, category, describe, is_final, status_name

C_STORE_RSP, C_FIND_RSP, C_GET_RSP, C_MOVE_RSP = 0x8001, 0x8020, 0x8010, 0x8021


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0x0000, Category.SUCCESS),
        (0xFF00, Category.PENDING),
        (0xFF01, Category.PENDING),
        (0xFE00, Category.CANCEL),
        (0x0001, Category.WARNING),
        (0x0107, Category.WARNING),
        (0x0116, Category.WARNING),
        (0xB000, Category.WARNING),
        (0xB006, Category.WARNING),
        (0xBFFF, Category.WARNING),
        (0x0105, Category.FAILURE),
        (0x0110, Category.FAILURE),
        (0x0122, Category.FAILURE),
        (0x0211, Category.FAILURE),
        (0xA700, Category.FAILURE),
        (0xA801, Category.FAILURE),
        (0xC123, Category.FAILURE),
        (0xFE01, Category.FAILURE),
        (0xFF02, Category.FAILURE),
    ],
)
def test_category_follows_ps3_7_annex_c(code: int, expected: Category) -> None:
    assert category(code) is expected


@given(st.integers(0, 0xFFFF))
def test_every_code_has_a_category_given_by_the_rule(code: int) -> None:
    if code == 0:
        expected = Category.SUCCESS
    elif code in (0xFF00, 0xFF01):
        expected = Category.PENDING
    elif code == 0xFE00:
        expected = Category.CANCEL
    elif code >> 12 == 0xB or code in (0x0001, 0x0107, 0x0116):
        expected = Category.WARNING
    else:
        expected = Category.FAILURE
    assert category(code) is expected
    assert is_final(code) is (expected is not Category.PENDING)


def test_every_code_has_a_name_in_every_service() -> None:
    for code in range(0x10000):
        for command_field in (None, C_STORE_RSP, C_FIND_RSP, C_GET_RSP, C_MOVE_RSP, 0x8130):
            assert status_name(code, command_field)


@pytest.mark.parametrize("code", [-1, 0x10000])
def test_codes_outside_16_bits_are_rejected(code: int) -> None:
    with pytest.raises(ValueError):
        category(code)
    with pytest.raises(ValueError):
        status_name(code)


@pytest.mark.parametrize(
    ("code", "command_field", "text"),
    [
        (0xA700, None, "0xA700 Refused: Out of Resources"),
        (0xA7FE, C_STORE_RSP, "0xA7FE Refused: Out of Resources"),
        (0xA910, C_STORE_RSP, "0xA910 Error: Data Set does not match SOP Class"),
        (0xC005, C_STORE_RSP, "0xC005 Error: Cannot understand"),
        (0xB000, C_STORE_RSP, "0xB000 Coercion of Data Elements"),
        (0xB006, None, "0xB006 Elements Discarded"),
        (0xB007, C_STORE_RSP, "0xB007 Data Set does not match SOP Class"),
        (0xB000, C_MOVE_RSP, "0xB000 Sub-operations Complete - One or more Failures or Warnings"),
        (0xB000, 0x0010, "0xB000 Sub-operations Complete - One or more Failures or Warnings"),  # C-GET-RQ
        (0xA801, C_MOVE_RSP, "0xA801 Refused: Move Destination unknown"),
        (0xA701, C_GET_RSP, "0xA701 Refused: Out of Resources - Unable to calculate number of matches"),
        (0xA702, C_MOVE_RSP, "0xA702 Refused: Out of Resources - Unable to perform sub-operations"),
        (0xA900, C_FIND_RSP, "0xA900 Identifier does not match SOP Class"),
        (0xC001, C_FIND_RSP, "0xC001 Unable to process"),
        (0xFE00, C_FIND_RSP, "0xFE00 Matching terminated due to Cancel request"),
        (0xFE00, C_MOVE_RSP, "0xFE00 Sub-operations terminated due to Cancel Indication"),
        (0xFF00, C_FIND_RSP, "0xFF00 Matches are continuing"),
        (0xFF01, C_FIND_RSP, "0xFF01 Matches are continuing - one or more Optional Keys were not supported"),
        (0xAA02, C_GET_RSP, "0xAA02 Unable to extract Frames"),
        (0x0000, None, "0x0000 Success"),
        (0x0110, None, "0x0110 Processing failure"),
        (0x0112, None, "0x0112 No such object instance"),
        (0x0122, C_STORE_RSP, "0x0122 Refused: SOP Class not supported"),
        (0x0124, None, "0x0124 Refused: Not Authorized"),
        (0x0211, None, "0x0211 Unrecognized operation"),
        (0x0212, None, "0x0212 Mistyped argument"),
        (0x0213, None, "0x0213 Resource limitation"),
        (0x0107, 0x8110, "0x0107 Attribute List Error"),
        (0x0116, None, "0x0116 Attribute Value Out of Range"),
        (0x0001, None, "0x0001 Requested optional Attributes are not supported"),
    ],
)
def test_describe_names_codes_as_the_standard_does(code: int, command_field: int | None, text: str) -> None:
    assert describe(code, command_field) == text


def test_unassigned_codes_are_named_by_their_category() -> None:
    assert status_name(0xB123) == "Warning (unassigned code)"
    assert status_name(0x0300) == "Failure (unassigned code)"


def test_named_constants_have_their_standard_values() -> None:
    assert (s.SUCCESS, s.PENDING, s.CANCEL, s.OUT_OF_RESOURCES) == (0x0000, 0xFF00, 0xFE00, 0xA700)
    assert (s.MOVE_DESTINATION_UNKNOWN, s.DUPLICATE_SOP_INSTANCE, s.NO_SUCH_SOP_CLASS) == (0xA801, 0x0111, 0x0118)
    assert s.category(s.SUBOPERATIONS_COMPLETE_WITH_FAILURES) is Category.WARNING
    assert s.category(s.PENDING_WARNING) is Category.PENDING
