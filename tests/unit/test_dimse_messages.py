"""Typed DIMSE messages: round trips, PS3.7 command fields, mandatory elements, responses."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.dimse import command as c
from aiodicom.dimse import messages as m
from aiodicom.dimse import status
from aiodicom.dimse.command import decode_command, encode_command
from aiodicom.dimse.errors import DimseDecodeError

_UID = st.lists(st.integers(0, 10**8), min_size=1, max_size=6).map(lambda parts: ".".join(map(str, parts)))
_AE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=16)
_LO = st.text("abcXYZ019 .:_-", max_size=60).map(lambda s: f"<{s}>")
_US = st.integers(0, 0xFFFF)
_TAGS = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=5).map(tuple)

_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "affected_sop_class_uid": _UID,
    "requested_sop_class_uid": _UID,
    "affected_sop_instance_uid": _UID,
    "requested_sop_instance_uid": _UID,
    "move_destination": _AE,
    "move_originator_ae": _AE,
    "error_comment": _LO,
    "offending_elements": _TAGS,
    "attribute_identifier_list": _TAGS,
    "has_dataset": st.booleans(),
}


def _messages(cls: type[m.Message]) -> st.SearchStrategy[m.Message]:
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = _FIELD_VALUES.get(f.name, _US)
        kwargs[f.name] = value if f.default is dataclasses.MISSING or f.default is not None else st.none() | value
    return st.fixed_dictionaries(kwargs).map(lambda kw: cls(**kw))


ALL_TYPES = sorted(m.MESSAGE_TYPES.values(), key=lambda cls: cls.command_field)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_every_message_survives_encode_then_decode(cls: type[m.Message], data: st.DataObject) -> None:
    msg = data.draw(_messages(cls))
    assert m.decode_message(m.encode_message(msg)) == msg


def test_command_fields_are_those_of_ps3_7() -> None:
    assert {cls.__name__: cls.command_field for cls in ALL_TYPES} == {
        "CStoreRQ": 0x0001, "CStoreRSP": 0x8001, "CGetRQ": 0x0010, "CGetRSP": 0x8010,
        "CFindRQ": 0x0020, "CFindRSP": 0x8020, "CMoveRQ": 0x0021, "CMoveRSP": 0x8021,
        "CEchoRQ": 0x0030, "CEchoRSP": 0x8030, "CCancelRQ": 0x0FFF,
        "NEventReportRQ": 0x0100, "NEventReportRSP": 0x8100, "NGetRQ": 0x0110, "NGetRSP": 0x8110,
        "NSetRQ": 0x0120, "NSetRSP": 0x8120, "NActionRQ": 0x0130, "NActionRSP": 0x8130,
        "NCreateRQ": 0x0140, "NCreateRSP": 0x8140, "NDeleteRQ": 0x0150, "NDeleteRSP": 0x8150,
    }  # fmt: skip


def test_every_request_has_its_response_and_back() -> None:
    for cls in ALL_TYPES:
        if issubclass(cls, m.Response):
            assert cls.request_type.command_field | 0x8000 == cls.command_field


def test_c_echo_rq_encodes_to_the_ps3_7_layout() -> None:
    raw = m.encode_message(m.CEchoRQ(message_id=7))
    assert decode_command(raw) == {
        c.COMMAND_GROUP_LENGTH: len(raw) - 12,
        c.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.1.1",
        c.COMMAND_FIELD: 0x0030,
        c.MESSAGE_ID: 7,
        c.COMMAND_DATA_SET_TYPE: 0x0101,
    }


def test_c_store_rq_encodes_every_mandatory_element() -> None:
    rq = m.CStoreRQ(message_id=9, affected_sop_class_uid="1.2.3", affected_sop_instance_uid="4.5.6")
    cmd = decode_command(m.encode_message(rq))
    assert cmd[c.COMMAND_FIELD] == 0x0001
    assert cmd[c.PRIORITY] == m.Priority.MEDIUM
    assert cmd[c.COMMAND_DATA_SET_TYPE] != c.NO_DATA_SET
    assert c.MOVE_ORIGINATOR_AE_TITLE not in cmd  # optional and absent


@pytest.mark.parametrize("data_set_type", [0x0000, 0x0001, 0x0102, 0xFEFE])
def test_any_data_set_type_but_0101_means_a_data_set_follows(data_set_type: int) -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x8030, c.MESSAGE_ID_BEING_RESPONDED_TO: 1, c.STATUS: 0,
                          c.COMMAND_DATA_SET_TYPE: data_set_type})
    assert m.decode_message(raw).has_dataset is True


def test_data_set_type_0101_means_no_data_set() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x0020, c.MESSAGE_ID: 1, c.AFFECTED_SOP_CLASS_UID: "1.2",
                          c.PRIORITY: 0, c.COMMAND_DATA_SET_TYPE: 0x0101})
    assert m.decode_message(raw) == m.CFindRQ(message_id=1, affected_sop_class_uid="1.2", has_dataset=False)


def test_missing_mandatory_element_of_a_request_names_it_and_is_answerable() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x0001, c.MESSAGE_ID: 12, c.AFFECTED_SOP_CLASS_UID: "1.2",
                          c.PRIORITY: 0, c.COMMAND_DATA_SET_TYPE: 0})
    with pytest.raises(DimseDecodeError, match="AffectedSOPInstanceUID") as info:
        m.decode_message(raw)
    assert (info.value.status, info.value.message_id, info.value.command_field) == (0x0212, 12, 0x0001)
    assert info.value.answerable


def test_missing_mandatory_element_of_a_response_is_not_answerable() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x8001, c.MESSAGE_ID_BEING_RESPONDED_TO: 3, c.COMMAND_DATA_SET_TYPE: 0x0101})
    with pytest.raises(DimseDecodeError, match="Status") as info:
        m.decode_message(raw)
    assert info.value.status is None
    assert not info.value.answerable


def test_missing_data_set_type_is_an_error() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x0030, c.MESSAGE_ID: 1, c.AFFECTED_SOP_CLASS_UID: "1.2"})
    with pytest.raises(DimseDecodeError, match="CommandDataSetType"):
        m.decode_message(raw)


def test_missing_command_field_is_an_error() -> None:
    with pytest.raises(DimseDecodeError, match="Command Field"):
        m.decode_message(encode_command({c.MESSAGE_ID: 1, c.COMMAND_DATA_SET_TYPE: 0x0101}))


def test_unknown_command_field_of_a_request_answers_unrecognized_operation() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x0042, c.MESSAGE_ID: 5, c.COMMAND_DATA_SET_TYPE: 0x0101})
    with pytest.raises(DimseDecodeError, match="0x0042") as info:
        m.decode_message(raw)
    assert (info.value.status, info.value.message_id) == (status.UNRECOGNIZED_OPERATION, 5)


def test_unknown_command_field_of_a_response_is_not_answerable() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x8042, c.MESSAGE_ID_BEING_RESPONDED_TO: 5, c.COMMAND_DATA_SET_TYPE: 0x0101})
    with pytest.raises(DimseDecodeError) as info:
        m.decode_message(raw)
    assert not info.value.answerable


def test_c_cancel_errors_are_never_answered() -> None:
    raw = encode_command({c.COMMAND_FIELD: 0x0FFF, c.COMMAND_DATA_SET_TYPE: 0x0101})
    with pytest.raises(DimseDecodeError, match="MessageIDBeingRespondedTo") as info:
        m.decode_message(raw)
    assert info.value.status is None


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_dimse_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DimseDecodeError):
        m.decode_message(raw)


@given(st.dictionaries(st.sampled_from(sorted(c.COMMAND_ELEMENTS)), st.integers(0, 0xFFFF) | _UID, max_size=8))
def test_arbitrary_commands_only_ever_raise_dimse_decode_error(elements: dict[int, Any]) -> None:
    try:
        raw = encode_command(elements)
    except ValueError:
        return  # a value that does not fit the element's VR: not a command set at all
    with contextlib.suppress(DimseDecodeError):
        m.decode_message(raw)


def test_unknown_elements_in_a_message_are_ignored() -> None:
    raw = m.encode_message(m.CEchoRQ(message_id=1))
    extra = struct.pack("<HHI", 0, 0x0B00, 2) + b"XY"
    body = raw[12:] + extra
    framed = struct.pack("<HHII", 0, 0, 4, len(body)) + body
    assert m.decode_message(framed) == m.CEchoRQ(message_id=1)


def test_encode_refuses_a_mandatory_field_set_to_none() -> None:
    with pytest.raises(ValueError, match="affected_sop_class_uid"):
        m.encode_message(m.CEchoRQ(message_id=1, affected_sop_class_uid=None))  # type: ignore[arg-type]


def test_encode_refuses_message_ids_outside_us() -> None:
    with pytest.raises(ValueError):
        m.encode_message(m.CEchoRQ(message_id=65536))


def test_c_store_rsp_for_request_echoes_ids_and_uids() -> None:
    rq = m.CStoreRQ(message_id=41, affected_sop_class_uid="1.2.3", affected_sop_instance_uid="4.5.6")
    rsp = m.CStoreRSP.for_request(rq, status.OUT_OF_RESOURCES, error_comment="disk full")
    assert rsp == m.CStoreRSP(
        message_id_being_responded_to=41,
        status=0xA700,
        affected_sop_class_uid="1.2.3",
        affected_sop_instance_uid="4.5.6",
        error_comment="disk full",
    )
    assert rsp.category is status.Category.FAILURE


def test_n_responses_echo_the_requested_uids_as_affected() -> None:
    rq = m.NActionRQ(message_id=2, requested_sop_class_uid="1.2.840.10008.1.20.1",
                     requested_sop_instance_uid="1.2.840.10008.1.20.1.1", action_type_id=1)
    rsp = m.NActionRSP.for_request(rq, status.SUCCESS)
    assert (rsp.affected_sop_class_uid, rsp.affected_sop_instance_uid, rsp.action_type_id) == (
        "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1", 1)


def test_n_create_rsp_takes_the_instance_uid_the_scp_assigned() -> None:
    rq = m.NCreateRQ(message_id=3, affected_sop_class_uid="1.2.840.10008.3.1.2.3.3")
    rsp = m.NCreateRSP.for_request(rq, status.SUCCESS, affected_sop_instance_uid="9.8.7", has_dataset=True)
    assert (rsp.affected_sop_instance_uid, rsp.has_dataset) == ("9.8.7", True)


def test_retrieve_responses_carry_sub_operation_counts() -> None:
    rq = m.CMoveRQ(message_id=4, affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2", move_destination="DEST")
    rsp = m.CMoveRSP.for_request(rq, status.PENDING, remaining=3, completed=1, failed=0, warning=0)
    cmd = decode_command(m.encode_message(rsp))
    assert [cmd[t] for t in (0x1020, 0x1021, 0x1022, 0x1023)] == [3, 1, 0, 0]
    assert rsp.category is status.Category.PENDING


def test_for_request_refuses_the_wrong_request_type() -> None:
    with pytest.raises(TypeError):
        m.CStoreRSP.for_request(m.CEchoRQ(message_id=1), status.SUCCESS)


def test_messages_are_immutable_values() -> None:
    rq = m.CEchoRQ(message_id=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rq.message_id = 2  # type: ignore[misc]
    assert rq == m.CEchoRQ(message_id=1) and hash(rq) == hash(m.CEchoRQ(message_id=1))
