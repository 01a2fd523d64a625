"""UID and AE title validation (PS3.5 §9.1, Table 6.2-1): the guard between the network and a path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.archive.errors import ArchiveError, InvalidUID
from aiodicom.archive.uid import is_valid_ae_title, is_valid_uid, validate_uid
from aiodicom.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.1.2.1",
        "0",
        "1.2.3",
        "2.25.221435411729789653338705508322894957323",
        "1." + "2" * 62,  # exactly 64 characters
        "1.02.003",  # leading zeros: forbidden by PS3.5 but sent by real devices, harmless in a path
    ],
)
def test_valid_uids_are_accepted(uid: str) -> None:
    assert is_valid_uid(uid)
    assert validate_uid(uid) == uid


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "../x",
        "..",
        ".",
        "1.2..3",
        "1.2.",
        ".1.2",
        "1/2",
        "1.2.3\n",  # `$` in a regex would let this through
        "1.2.3\x00",  # padding must be stripped before validation, never written to a path
        " 1.2",
        "1.2 ",
        "1." + "2" * 63,  # 65 characters
        "١",  # ARABIC-INDIC DIGIT ONE: str.isdigit() is True, still not a UID
        "1.２",  # FULLWIDTH DIGIT TWO
        "1.2.a",
    ],
)
def test_invalid_uids_are_rejected(uid: str) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUID):
        validate_uid(uid)


@pytest.mark.parametrize("value", [None, b"1.2.3", 123])
def test_non_strings_are_not_uids(value: object) -> None:
    assert not is_valid_uid(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidUID):
        validate_uid(value)  # type: ignore[arg-type]


def test_invalid_uid_error_names_what_and_value_and_is_a_value_error() -> None:
    with pytest.raises(InvalidUID) as info:
        validate_uid("1..2", "Study Instance UID")
    assert "Study Instance UID" in str(info.value)
    assert "'1..2'" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ArchiveError)
    assert info.value.status == 0x0117  # PS3.7 C.5.12


def test_error_message_for_a_huge_value_is_truncated() -> None:
    with pytest.raises(InvalidUID) as info:
        validate_uid("x" * 100_000)
    assert len(str(info.value)) < 300


_COMPONENT = st.from_regex(r"[0-9]{1,8}", fullmatch=True)


@given(st.lists(_COMPONENT, min_size=1, max_size=8).map(".".join).filter(lambda s: len(s) <= 64))
def test_dotted_digit_components_up_to_64_chars_are_valid(uid: str) -> None:
    assert is_valid_uid(uid)


@given(st.text(max_size=80))
def test_anything_accepted_is_a_safe_path_component(s: str) -> None:
    if is_valid_uid(s):
        assert set(s) <= set("0123456789.")
        assert s not in (".", "..") and not s.startswith(".") and not s.endswith(".")
        assert ".." not in s and 1 <= len(s) <= 64


@pytest.mark.parametrize("ae", ["ANY-SCP", "A", " A ", "STORE_SCP@1", "x" * 16, "a b"])
def test_valid_ae_titles(ae: str) -> None:
    assert is_valid_ae_title(ae)


@pytest.mark.parametrize("ae", ["", "   ", "x" * 17, "A\\B", "A\nB", "A\x00", "A\x1b", "\x7f", "é", None])
def test_invalid_ae_titles(ae: str) -> None:
    assert not is_valid_ae_title(ae)


def test_implementation_identity_is_valid_for_the_wire_and_files() -> None:
    assert is_valid_uid(IMPLEMENTATION_CLASS_UID)
    assert IMPLEMENTATION_CLASS_UID.startswith("2.25.")  # PS3.5 §B.2 UUID-derived root
    assert is_valid_ae_title(IMPLEMENTATION_VERSION_NAME)  # SH: 16 characters of the default repertoire
