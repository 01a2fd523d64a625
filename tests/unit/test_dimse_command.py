"""Command-set codec: bytes typed from PS3.7 tables, malformed input, and cross-checks with pydicom."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.dimse import command as c
from aiodicom.dimse.command import decode_command, encode_command, encode_sorted_command
from aiodicom.dimse.errors import DimseDecodeError

# PS3.7 §9.3.5.1 C-ECHO-RQ, Implicit VR Little Endian (tag group, tag element, 32-bit length, value).
ECHO_RQ = (
    b"\x00\x00\x00\x00" b"\x04\x00\x00\x00" b"\x38\x00\x00\x00"  # (0000,0000) UL 56
    b"\x00\x00\x02\x00" b"\x12\x00\x00\x00" b"1.2.840.10008.1.1\x00"  # (0000,0002) UI, NUL-padded
    b"\x00\x00\x00\x01" b"\x02\x00\x00\x00" b"\x30\x00"  # (0000,0100) C-ECHO-RQ
    b"\x00\x00\x10\x01" b"\x02\x00\x00\x00" b"\x07\x00"  # (0000,0110) Message ID 7
    b"\x00\x00\x00\x08" b"\x02\x00\x00\x00" b"\x01\x01"  # (0000,0800) 0101H: no data set
)

# PS3.7 §9.3.1.1 C-STORE-RQ with the optional move originator fields.
STORE_RQ = (
    b"\x00\x00\x00\x00" b"\x04\x00\x00\x00" b"\x76\x00\x00\x00"  # (0000,0000) UL 118
    b"\x00\x00\x02\x00" b"\x1a\x00\x00\x00" b"1.2.840.10008.5.1.4.1.1.2\x00"  # CT Image Storage
    b"\x00\x00\x00\x01" b"\x02\x00\x00\x00" b"\x01\x00"  # (0000,0100) C-STORE-RQ
    b"\x00\x00\x10\x01" b"\x02\x00\x00\x00" b"\x34\x12"  # (0000,0110) Message ID 0x1234
    b"\x00\x00\x00\x07" b"\x02\x00\x00\x00" b"\x02\x00"  # (0000,0700) Priority LOW
    b"\x00\x00\x00\x08" b"\x02\x00\x00\x00" b"\x00\x00"  # (0000,0800) 0000H: data set follows
    b"\x00\x00\x00\x10" b"\x0a\x00\x00\x00" b"1.2.3.4.5\x00"  # (0000,1000) Affected SOP Instance UID
    b"\x00\x00\x30\x10" b"\x08\x00\x00\x00" b"MOVESCU "  # (0000,1030) AE, space-padded
    b"\x00\x00\x31\x10" b"\x02\x00\x00\x00" b"\x99\x00"  # (0000,1031) Move Originator Message ID
)

STORE_RQ_ELEMENTS = {
    c.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.5.1.4.1.1.2",
    c.COMMAND_FIELD: 0x0001,
    c.MESSAGE_ID: 0x1234,
    c.PRIORITY: 2,
    c.COMMAND_DATA_SET_TYPE: 0x0000,
    c.AFFECTED_SOP_INSTANCE_UID: "1.2.3.4.5",
    c.MOVE_ORIGINATOR_AE_TITLE: "MOVESCU",
    c.MOVE_ORIGINATOR_MESSAGE_ID: 0x99,
}


def element(elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, elem, len(value)) + value


def with_group_length(body: bytes) -> bytes:
    return element(0, struct.pack("<I", len(body))) + body


def test_decodes_c_echo_rq_typed_from_ps3_7() -> None:
    assert decode_command(ECHO_RQ) == {
        c.COMMAND_GROUP_LENGTH: 56,
        c.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.1.1",
        c.COMMAND_FIELD: 0x0030,
        c.MESSAGE_ID: 7,
        c.COMMAND_DATA_SET_TYPE: 0x0101,
    }


def test_decodes_c_store_rq_typed_from_ps3_7_stripping_padding() -> None:
    assert decode_command(STORE_RQ) == {c.COMMAND_GROUP_LENGTH: 118, **STORE_RQ_ELEMENTS}


def test_decodes_from_a_memoryview_slice() -> None:
    framed = memoryview(b"\xff" * 3 + STORE_RQ + b"\xff")[3:-1]
    assert decode_command(framed) == decode_command(STORE_RQ)


def test_encodes_c_store_rq_to_the_ps3_7_bytes() -> None:
    shuffled = dict(reversed(list(STORE_RQ_ELEMENTS.items())))
    assert encode_command(shuffled) == STORE_RQ


def test_encode_ignores_a_given_group_length_and_none_values() -> None:
    elements = {c.COMMAND_GROUP_LENGTH: 999, c.ERROR_COMMENT: None, c.COMMAND_FIELD: 0x0030, c.MESSAGE_ID: 7,
                c.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.1.1", c.COMMAND_DATA_SET_TYPE: 0x0101}
    assert encode_command(elements) == ECHO_RQ


def test_encode_pads_text_with_space_and_uids_with_nul() -> None:
    raw = encode_command({c.ERROR_COMMENT: "odd", c.AFFECTED_SOP_INSTANCE_UID: "1.2.3"})
    assert element(c.ERROR_COMMENT, b"odd ") in raw
    assert element(c.AFFECTED_SOP_INSTANCE_UID, b"1.2.3\x00") in raw


def test_at_values_are_group_then_element_words() -> None:
    raw = encode_command({c.OFFENDING_ELEMENT: (0x00100010, 0x7FE00010)})
    assert element(c.OFFENDING_ELEMENT, b"\x10\x00\x10\x00\xe0\x7f\x10\x00") in raw
    assert decode_command(raw)[c.OFFENDING_ELEMENT] == (0x00100010, 0x7FE00010)


def test_retired_elements_are_decoded() -> None:
    raw = with_group_length(
        element(0x0200, b"OLDSCU")  # Initiator, AE
        + element(0x5010, b"SET1")  # Message Set ID, SH
        + element(0x51B0, b"\x01\x00\x02\x00")  # Overlays, US 1-n
    )
    assert decode_command(raw) == {0: 14 + 12 + 12, 0x0200: "OLDSCU", 0x5010: "SET1", 0x51B0: (1, 2)}


def test_unknown_group_0000_elements_are_skipped() -> None:
    raw = with_group_length(element(c.MESSAGE_ID, b"\x05\x00") + element(0x0B00, b"whatever"))
    assert decode_command(raw) == {0: 10 + 16, c.MESSAGE_ID: 5}


def test_group_length_may_be_absent() -> None:
    assert decode_command(element(c.MESSAGE_ID, b"\x05\x00")) == {c.MESSAGE_ID: 5}


def test_empty_text_and_uid_values_decode_to_empty_strings() -> None:
    raw = element(c.ERROR_COMMENT, b"") + element(c.AFFECTED_SOP_CLASS_UID, b"")
    assert decode_command(raw) == {c.ERROR_COMMENT: "", c.AFFECTED_SOP_CLASS_UID: ""}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (ECHO_RQ[:-1], "length"),  # last element cut short
        (ECHO_RQ[:-13], "truncated"),  # element header cut short
        (ECHO_RQ[:8] + b"\x39" + ECHO_RQ[9:], "Group Length"),  # 57 instead of 56
        (ECHO_RQ + element(0x0902, b"XX"), "Group Length"),  # bytes beyond the stated group
        (element(0x0110, b"\x01\x00") + struct.pack("<HHI", 8, 0x10, 2) + b"AB", "group 0000"),
        (element(0x0110, b"\x01\x00") + element(0x0110, b"\x02\x00"), "twice"),
        (element(0x0902, b"ABC"), "odd"),
        (element(0x0110, b"\x01\x00\x00\x00"), "US"),
        (element(0x0000, b"\x01\x00"), "UL"),
        (element(0x0901, b"\x10\x00\x10\x00\x20\x00"), "AT"),
        (element(0x0002, b"1.2.\xc3\xa9"), "ASCII"),
        (struct.pack("<HHI", 0, 0x0110, 0xFFFFFFFF), "length"),  # undefined length
    ],
)
def test_malformed_command_sets_raise_dimse_decode_error(raw: bytes, reason: str) -> None:
    with pytest.raises(DimseDecodeError, match=reason) as info:
        decode_command(raw)
    assert info.value.status is None


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_dimse_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DimseDecodeError):
        decode_command(raw)


@given(st.lists(st.tuples(st.integers(0, 0x1100), st.binary(max_size=12)), max_size=8))
def test_arbitrary_elements_only_ever_raise_dimse_decode_error(parts: list[tuple[int, bytes]]) -> None:
    raw = b"".join(element(elem, value) for elem, value in parts)
    with contextlib.suppress(DimseDecodeError):
        decode_command(raw)


_UID = st.lists(st.integers(0, 10**8), min_size=1, max_size=6).map(lambda parts: ".".join(map(str, parts)))
_AE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=16)
_LO = st.text("abcXYZ019 .:_-", max_size=60).map(lambda s: f"<{s}>")
_US = st.integers(0, 0xFFFF)
_TAGS = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=6).map(tuple)
_ELEMENT_VALUES = {
    c.AFFECTED_SOP_CLASS_UID: _UID,
    c.REQUESTED_SOP_CLASS_UID: _UID,
    c.COMMAND_FIELD: _US,
    c.MESSAGE_ID: _US,
    c.MOVE_DESTINATION: _AE,
    c.STATUS: _US,
    c.OFFENDING_ELEMENT: _TAGS,
    c.ERROR_COMMENT: _LO,
    c.AFFECTED_SOP_INSTANCE_UID: _UID,
    c.ATTRIBUTE_IDENTIFIER_LIST: _TAGS,
    c.NUMBER_OF_FAILED_SUBOPERATIONS: _US,
}


@given(st.fixed_dictionaries({}, optional=_ELEMENT_VALUES))
def test_encode_then_decode_returns_the_elements(elements: dict[int, object]) -> None:
    raw = encode_command(elements)  # type: ignore[arg-type]
    decoded = decode_command(raw)
    assert decoded.pop(c.COMMAND_GROUP_LENGTH) == len(raw) - 12
    assert decoded == elements


@pytest.mark.parametrize(
    "elements",
    [
        {0x0B00: 1},  # not in PS3.7 Annex E
        {0x00080016: "1.2"},  # a data element, not a command element
        {c.MESSAGE_ID: 70000},
        {c.MESSAGE_ID: -1},
        {c.MESSAGE_ID: "7"},
        {c.AFFECTED_SOP_CLASS_UID: "1." * 40},  # UI longer than 64
        {c.MOVE_DESTINATION: "A" * 17},  # AE longer than 16
        {c.ERROR_COMMENT: "café"},  # outside the default repertoire
        {c.OFFENDING_ELEMENT: ()},
        {c.OFFENDING_ELEMENT: (1 << 32,)},
    ],
)
def test_encode_rejects_values_that_do_not_fit(elements: dict[int, object]) -> None:
    with pytest.raises(ValueError):
        encode_command(elements)  # type: ignore[arg-type]


def test_encode_sorted_rejects_out_of_order_items() -> None:
    with pytest.raises(ValueError, match="order"):
        encode_sorted_command([(c.MESSAGE_ID, 1), (c.COMMAND_FIELD, 0x30)])


def test_pydicom_decodes_what_we_encode() -> None:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    ds = read_dataset(DicomBytesIO(STORE_RQ), True, True)
    assert ds.CommandGroupLength == 118
    assert ds.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.MessageID == 0x1234
    assert ds.MoveOriginatorApplicationEntityTitle == "MOVESCU"
    assert ds.AffectedSOPInstanceUID == "1.2.3.4.5"


def test_we_decode_what_pydicom_encodes() -> None:
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    ds.CommandField = 0x8021
    ds.MessageIDBeingRespondedTo = 3
    ds.CommandDataSetType = 0x0101
    ds.Status = 0xB000
    ds.OffendingElement = [0x00100020, 0x0020000D]
    ds.ErrorComment = "two failed"
    ds.NumberOfFailedSuboperations = 2
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    assert decode_command(fp.getvalue()) == {
        c.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.5.1.4.1.2.2.2",
        c.COMMAND_FIELD: 0x8021,
        c.MESSAGE_ID_BEING_RESPONDED_TO: 3,
        c.COMMAND_DATA_SET_TYPE: 0x0101,
        c.STATUS: 0xB000,
        c.OFFENDING_ELEMENT: (0x00100020, 0x0020000D),
        c.ERROR_COMMENT: "two failed",
        c.NUMBER_OF_FAILED_SUBOPERATIONS: 2,
    }


def test_registry_matches_pydicom_dictionary_for_group_0000() -> None:
    from pydicom.datadict import DicomDictionary

    theirs = {tag: (entry[0], entry[1], entry[4]) for tag, entry in DicomDictionary.items() if tag >> 16 == 0}
    ours = {tag: (e.vr, e.vm, e.keyword) for tag, e in c.COMMAND_ELEMENTS.items()}
    assert ours == theirs


def test_by_keyword_names_known_and_unknown_tags() -> None:
    assert c.by_keyword({c.MESSAGE_ID: 1, 0x0B00: 2}) == {"MessageID": 1, "(0000,0B00)": 2}
