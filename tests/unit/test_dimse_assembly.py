"""PDV reassembly (PS3.8 Annex E, PS3.7 §6.3.1) and fragmentation (PS3.8 §9.3.5.1, Annex D.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.dimse import command as c
from aiodicom.dimse.assembly import CommandComplete, DataFragment, MessageAssembler
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.errors import DimseDecodeError, DimseError
from aiodicom.dimse.fragment import (
    DEFAULT_FRAGMENT_CAP,
    command_pdvs,
    dataset_pdvs,
    fragment,
    max_fragment_size,
)
from aiodicom.dimse.messages import CEchoRQ, CStoreRQ, CStoreRSP, encode_message
from aiodicom.ul.pdv import Pdv

STORE = CStoreRQ(message_id=3, affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.7", affected_sop_instance_uid="1.2.3")
ECHO = CEchoRQ(message_id=4)


def cmd(msg: object, ctx: int = 1, *, last: bool = True, data: bytes | None = None) -> Pdv:
    raw = encode_message(msg) if data is None else data  # type: ignore[arg-type]
    return Pdv(context_id=ctx, is_command=True, is_last=last, data=raw)


def dat(payload: bytes, ctx: int = 1, *, last: bool = True) -> Pdv:
    return Pdv(context_id=ctx, is_command=False, is_last=last, data=memoryview(payload))


def test_single_pdv_command_without_data_set_completes_at_once() -> None:
    asm = MessageAssembler()
    assert asm.feed(cmd(ECHO, ctx=5)) == [CommandComplete(context_id=5, message=ECHO)]
    assert asm.idle and asm.context_id is None


def test_fragmented_command_then_fragmented_data_set() -> None:
    asm = MessageAssembler()
    raw = encode_message(STORE)
    events = []
    for pdv in fragment(7, True, raw, 10):
        events += asm.feed(pdv)
    assert events == [CommandComplete(context_id=7, message=STORE)]
    assert asm.expecting_data and asm.context_id == 7
    first, second = b"A" * 100, b"B" * 50
    [one] = asm.feed(dat(first, 7, last=False))
    assert isinstance(one, DataFragment) and (bytes(one.data), one.is_last, one.context_id) == (first, False, 7)
    [two] = asm.feed(dat(second, 7))
    assert (bytes(two.data), two.is_last) == (second, True)
    assert asm.idle


def test_data_fragments_are_views_of_the_received_pdv_not_copies() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(STORE))
    payload = bytearray(b"pixels")
    [event] = asm.feed(Pdv(context_id=1, is_command=False, is_last=True, data=memoryview(payload)))
    assert isinstance(event, DataFragment)
    payload[0:1] = b"P"
    assert bytes(event.data) == b"Pixels"


def test_empty_last_data_pdv_ends_the_data_set() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(STORE))
    [event] = asm.feed(dat(b""))
    assert isinstance(event, DataFragment) and event.is_last and len(event.data) == 0
    assert asm.idle


def test_consecutive_messages_may_use_different_contexts() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(STORE, 1))
    asm.feed(dat(b"x", 1))
    assert asm.feed(cmd(ECHO, 3)) == [CommandComplete(context_id=3, message=ECHO)]


def test_data_pdv_without_a_pending_command_is_fatal() -> None:
    asm = MessageAssembler()
    with pytest.raises(DimseError, match="without a command") as info:
        asm.feed(dat(b"x"))
    assert info.value.status is None


def test_data_after_a_command_that_announced_no_data_set_is_fatal() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(ECHO))
    with pytest.raises(DimseError, match="without a command"):
        asm.feed(dat(b"x"))


def test_data_before_the_last_command_fragment_is_fatal() -> None:
    asm = MessageAssembler()
    raw = encode_message(STORE)
    asm.feed(cmd(STORE, data=raw[:20], last=False))
    with pytest.raises(DimseError, match="before the last fragment"):
        asm.feed(dat(b"x"))


def test_command_while_the_data_set_is_expected_is_fatal() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(STORE))
    asm.feed(dat(b"x", last=False))
    with pytest.raises(DimseError, match="data set of the previous message"):
        asm.feed(cmd(ECHO))


def test_context_switch_in_the_middle_of_a_command_is_fatal() -> None:
    asm = MessageAssembler()
    raw = encode_message(STORE)
    asm.feed(cmd(STORE, 1, data=raw[:20], last=False))
    with pytest.raises(DimseError, match="context 3"):
        asm.feed(cmd(STORE, 3, data=raw[20:]))


def test_context_switch_in_the_middle_of_a_data_set_is_fatal() -> None:
    asm = MessageAssembler()
    asm.feed(cmd(STORE, 1))
    with pytest.raises(DimseError, match="presentation context 5"):
        asm.feed(dat(b"x", 5))


def test_command_larger_than_the_limit_is_fatal() -> None:
    asm = MessageAssembler(max_command_size=64)
    asm.feed(cmd(STORE, data=b"\x00" * 40, last=False))
    with pytest.raises(DimseError, match="larger than 64"):
        asm.feed(cmd(STORE, data=b"\x00" * 40, last=False))


def test_after_a_fatal_error_every_pdv_is_refused() -> None:
    asm = MessageAssembler()
    with pytest.raises(DimseError):
        asm.feed(dat(b"x"))
    with pytest.raises(DimseError, match="after a fatal"):
        asm.feed(cmd(ECHO))


def test_undecodable_command_is_fatal() -> None:
    asm = MessageAssembler()
    with pytest.raises(DimseDecodeError):
        asm.feed(cmd(ECHO, data=encode_message(ECHO)[:-1]))
    with pytest.raises(DimseError):
        asm.feed(cmd(ECHO))


def test_unknown_operation_is_answerable_and_its_data_set_is_dropped() -> None:
    asm = MessageAssembler()
    raw = c.encode_command({c.COMMAND_FIELD: 0x0042, c.MESSAGE_ID: 8, c.COMMAND_DATA_SET_TYPE: 0x0000})
    with pytest.raises(DimseDecodeError) as info:
        asm.feed(cmd(None, data=raw))
    assert (info.value.status, info.value.message_id) == (0x0211, 8)
    assert asm.feed(dat(b"ignored", last=False)) == []
    assert asm.feed(dat(b"ignored")) == []
    assert asm.feed(cmd(ECHO)) == [CommandComplete(context_id=1, message=ECHO)]


def test_answerable_error_without_data_set_leaves_the_assembler_idle() -> None:
    asm = MessageAssembler()
    raw = c.encode_command({c.COMMAND_FIELD: 0x0001, c.MESSAGE_ID: 8, c.COMMAND_DATA_SET_TYPE: 0x0101})
    with pytest.raises(DimseDecodeError) as info:
        asm.feed(cmd(None, data=raw))
    assert info.value.answerable
    assert asm.idle


@given(
    command_cut=st.integers(1, 200),
    data=st.binary(max_size=3000),
    data_cut=st.integers(1, 700),
    ctx=st.integers(1, 255).filter(lambda n: n % 2),
)
def test_any_fragmentation_reassembles_to_the_same_message(
    command_cut: int, data: bytes, data_cut: int, ctx: int
) -> None:
    asm = MessageAssembler()
    events = []
    for pdv in [*command_pdvs(ctx, STORE, command_cut), *fragment(ctx, False, data, data_cut)]:
        events += asm.feed(pdv)
    assert events[0] == CommandComplete(context_id=ctx, message=STORE)
    fragments = events[1:]
    assert all(isinstance(e, DataFragment) and e.context_id == ctx for e in fragments)
    assert b"".join(bytes(e.data) for e in fragments) == data  # type: ignore[union-attr]
    assert [e.is_last for e in fragments] == [False] * (len(fragments) - 1) + [True]  # type: ignore[union-attr]
    assert asm.idle


# ---- fragmentation ---------------------------------------------------------------------------


def test_max_fragment_size_leaves_room_for_the_pdv_header() -> None:
    assert max_fragment_size(16384) == 16378  # PS3.8 D.1: max PDU counts the PDV items
    assert max_fragment_size(7) == 1
    assert max_fragment_size(0) == DEFAULT_FRAGMENT_CAP  # 0: no limit from the peer
    assert max_fragment_size(0xFFFFFFFF) == DEFAULT_FRAGMENT_CAP
    assert max_fragment_size(100_000, cap=4096) == 4096


@pytest.mark.parametrize("max_pdu", [1, 6])
def test_max_fragment_size_refuses_a_pdu_without_room_for_data(max_pdu: int) -> None:
    with pytest.raises(ValueError):
        max_fragment_size(max_pdu)


@given(data=st.binary(max_size=5000), max_pdu=st.integers(7, 2000))
def test_fragments_fit_the_peer_and_concatenate_back(data: bytes, max_pdu: int) -> None:
    size = max_fragment_size(max_pdu)
    pdvs = list(fragment(9, False, data, size))
    assert all(len(p.data) <= size and len(p.data) + 6 <= max_pdu for p in pdvs)
    assert all(len(p.data) == size for p in pdvs[:-1])
    assert b"".join(bytes(p.data) for p in pdvs) == data
    assert [p.is_last for p in pdvs] == [False] * (len(pdvs) - 1) + [True]
    assert {(p.context_id, p.is_command) for p in pdvs} == {(9, False)}


def test_fragments_are_slices_of_the_payload_not_copies() -> None:
    payload = bytearray(b"0123456789")
    pdvs = list(fragment(1, False, payload, 4))
    payload[4:6] = b"ab"
    assert [bytes(p.data) for p in pdvs] == [b"0123", b"ab67", b"89"]


def test_empty_payload_is_one_empty_last_pdv() -> None:
    assert list(fragment(1, False, b"", 100)) == [Pdv(context_id=1, is_command=False, is_last=True, data=b"")]


def test_command_pdvs_carry_the_encoded_command() -> None:
    pdvs = command_pdvs(3, ECHO, 16)
    assert all(p.is_command and p.context_id == 3 for p in pdvs)
    assert b"".join(bytes(p.data) for p in pdvs) == encode_message(ECHO)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 10_001])
def test_dataset_pdvs_from_a_file_read_in_fragments(tmp_path, size: int) -> None:  # type: ignore[no-untyped-def]
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "spooled"
    path.write_bytes(b"HEADER" + payload)
    encoded = EncodedDataset.from_path(path, "1.2.840.10008.1.2.1", offset=6)
    pdvs = list(dataset_pdvs(1, encoded, 4096))
    assert b"".join(bytes(p.data) for p in pdvs) == payload
    assert all(len(p.data) <= 4096 for p in pdvs)
    assert [p.is_last for p in pdvs] == [False] * (len(pdvs) - 1) + [True]


def test_dataset_pdvs_from_memory_are_views() -> None:
    encoded = EncodedDataset("1.2.840.10008.1.2", b"x" * 10)
    pdvs = list(dataset_pdvs(1, encoded, 4))
    assert [len(p.data) for p in pdvs] == [4, 4, 2]
    assert all(isinstance(p.data, memoryview) for p in pdvs)


def test_assembler_and_fragmenter_agree_on_a_store_rsp() -> None:
    rsp = CStoreRSP.for_request(STORE, 0)
    asm = MessageAssembler()
    events = [e for p in command_pdvs(1, rsp, max_fragment_size(20)) for e in asm.feed(p)]
    assert events == [CommandComplete(context_id=1, message=rsp)]
