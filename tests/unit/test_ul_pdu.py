"""The PDU codec against bytes typed in from PS3.8 §9.3 and PS3.7 D.3.3, and against generated input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodicom.ul.constants import AbortReason, AbortSource, ContextResult
from aiodicom.ul.errors import RemoteProtocolError
from aiodicom.ul.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    decode_pdu,
    encode_pdata_header,
    encode_pdu,
)
from aiodicom.ul.pdv import Pdv
from tests.unit import ul_fixtures as fx

_h = bytes.fromhex


def _rq(data: bytes) -> AssociateRQ:
    pdu = decode_pdu(data)
    assert isinstance(pdu, AssociateRQ)
    return pdu


def _ac(data: bytes) -> AssociateAC:
    pdu = decode_pdu(data)
    assert isinstance(pdu, AssociateAC)
    return pdu


def _reason(data: bytes) -> AbortReason:
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(data)
    return info.value.reason


# ---------------------------------------------------------------------------------- the tables, byte by byte
@pytest.mark.parametrize("data", list(fx.ALL), ids=lambda b: f"type{b[0]:02X}-{len(b)}B")
def test_typed_in_pdu_decodes_to_its_value(data: bytes) -> None:
    assert decode_pdu(data) == fx.ALL[data]


@pytest.mark.parametrize("data", list(fx.ALL), ids=lambda b: f"type{b[0]:02X}-{len(b)}B")
def test_value_encodes_to_the_typed_in_bytes(data: bytes) -> None:
    assert encode_pdu(fx.ALL[data]) == data  # type: ignore[arg-type]


def test_every_user_information_sub_item_of_the_rq_is_decoded() -> None:
    ui = _rq(fx.ASSOC_RQ_FULL).user_info
    assert ui.max_pdu == 32768  # PS3.8 D.1
    assert ui.implementation_class_uid == fx.IMPLEMENTATION_UID  # PS3.7 D.3.3.2
    assert ui.implementation_version_name == fx.IMPLEMENTATION_VERSION
    assert ui.async_ops == AsyncOpsWindow(max_invoked=5, max_performed=0)  # D.3.3.3
    assert ui.roles == (RoleSelection(sop_class_uid=fx.CT_IMAGE_STORAGE, scu_role=True, scp_role=True),)  # D.3.3.4
    assert ui.extended == (ExtendedNegotiation(sop_class_uid=fx.CT_IMAGE_STORAGE, info=_h("020003000100")),)
    assert ui.common_extended == (CommonExtendedNegotiation(  # D.3.3.6
        sop_class_uid=fx.ENHANCED_CT_IMAGE_STORAGE, service_class_uid=fx.STORAGE_SERVICE_CLASS,
        related_general_sop_classes=(fx.CT_IMAGE_STORAGE,)),)
    assert ui.user_identity_rq == UserIdentityRQ(identity_type=2, positive_response_requested=True,
                                                 primary=b"alice", secondary=b"secret")  # D.3.3.7.1
    assert ui.user_identity_ac is None


def test_user_identity_ac_sub_item_is_decoded() -> None:
    ui = _ac(fx.ASSOC_AC_FULL).user_info
    assert ui.user_identity_ac == UserIdentityAC(server_response=b"ticket")  # PS3.7 D.3.3.7.2
    assert ui.roles == (RoleSelection(sop_class_uid=fx.CT_IMAGE_STORAGE, scu_role=True, scp_role=False),)


def test_each_presentation_context_result_is_decoded() -> None:
    results = [c.result for c in _ac(fx.ASSOC_AC_RESULTS).contexts]
    assert results == [ContextResult(n) for n in range(5)]  # PS3.8 Table 9-18


def test_username_only_identity_keeps_an_empty_secondary_field() -> None:
    # PS3.7 Table D.3-14: the secondary-field-length is present (0) even for type 1
    sub = _h("58 00 000B 01 00 0005") + b"alice" + _h("0000")
    data = fx.rq_with_sub_items(fx.MAX_LENGTH_16K + sub)
    rq = _rq(data)
    assert rq.user_info.user_identity_rq == UserIdentityRQ(identity_type=1, positive_response_requested=False,
                                                           primary=b"alice")
    assert encode_pdu(rq) == data


def test_common_extended_negotiation_without_related_classes() -> None:
    sub = _h("57 00 0032 001B") + fx.ENHANCED_CT_IMAGE_STORAGE.encode() + _h("0011") \
        + fx.STORAGE_SERVICE_CLASS.encode() + _h("0000")
    data = fx.rq_with_sub_items(fx.MAX_LENGTH_16K + sub)
    rq = _rq(data)
    assert rq.user_info.common_extended == (CommonExtendedNegotiation(
        sop_class_uid=fx.ENHANCED_CT_IMAGE_STORAGE, service_class_uid=fx.STORAGE_SERVICE_CLASS),)
    assert encode_pdu(rq) == data


def test_several_role_selections_keep_their_order() -> None:
    subs = (_h("54 00 0015 0011") + fx.VERIFICATION.encode() + _h("00 01")
            + _h("54 00 001D 0019") + fx.CT_IMAGE_STORAGE.encode() + _h("01 00"))
    rq = _rq(fx.rq_with_sub_items(fx.MAX_LENGTH_16K + subs))
    assert rq.user_info.roles == (RoleSelection(sop_class_uid=fx.VERIFICATION, scu_role=False, scp_role=True),
                                  RoleSelection(sop_class_uid=fx.CT_IMAGE_STORAGE, scu_role=True, scp_role=False))


def test_unknown_user_information_sub_items_are_ignored() -> None:
    # PS3.7 D.3.3: a sub-item this implementation does not know is skipped, not an error
    unknown = _h("5F 00 0003 AABBCC") + _h("7E 00 0000")
    plain = decode_pdu(fx.rq_with_sub_items(fx.MAX_LENGTH_16K))
    assert decode_pdu(fx.rq_with_sub_items(unknown + fx.MAX_LENGTH_16K + unknown)) == plain


def test_missing_user_information_item_means_defaults() -> None:
    rq = _rq(fx.associate_rq(fx.APPLICATION_CONTEXT_ITEM + fx.CONTEXT_1_VERIFICATION))
    assert rq.user_info == UserInformation()


def test_reserved_fields_are_not_tested_on_receipt() -> None:
    # PS3.8 Table 9-11: reserved bytes "shall be sent with 00H but not tested to this value when received"
    data = bytearray(fx.ASSOC_RQ_VERIFICATION)
    data[1] = 0xFF  # byte 2
    data[8:10] = b"\xAB\xCD"  # bytes 9-10
    data[42:74] = b"\xEE" * 32  # bytes 43-74
    data[6 + 68 + 25 + 5] = 0x77  # reserved byte after the presentation context ID (Table 9-13)
    assert decode_pdu(bytes(data)) == fx.RQ_VERIFICATION


def test_protocol_version_is_decoded_not_judged() -> None:
    # the codec carries the field; the state machine (AE-6) decides what bit 0 clear means
    data = bytearray(fx.ASSOC_RQ_VERIFICATION)
    data[6:8] = b"\x00\x02"
    assert _rq(bytes(data)).protocol_version == 2


def test_ae_titles_lose_their_padding_and_nul() -> None:
    data = bytearray(fx.ASSOC_RQ_VERIFICATION)
    data[10:26] = b"  ANY-SCP\x00\x00     "  # leading and trailing spaces are not significant
    assert _rq(bytes(data)).called_ae == "ANY-SCP"


def test_uid_with_a_trailing_nul_pad_is_tolerated() -> None:
    sub = _h("52 00 0008") + fx.IMPLEMENTATION_UID.encode() + b"\x00"
    rq = _rq(fx.rq_with_sub_items(fx.MAX_LENGTH_16K + sub))
    assert rq.user_info.implementation_class_uid == fx.IMPLEMENTATION_UID


def test_rejected_context_transfer_syntax_is_not_tested() -> None:
    # PS3.8 §9.3.3.2: for a context not accepted the transfer syntax sub-item is not significant; some peers
    # echo a proposed syntax there, and its content must not fail the association
    item = _h("21 00 000D 03 00 03 00 40 00 0005 FF FE 31 2E 32")
    ac = _ac(fx.associate_rq(fx.APPLICATION_CONTEXT_ITEM + item, pdu_type=0x02))
    assert ac.contexts == (PresentationContextAC(context_id=3, result=ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),)


def test_unknown_abort_reason_from_a_user_is_not_tested() -> None:
    # Table 9-26: with source 0 the reason is not significant and not tested
    assert decode_pdu(_h("07 00 00000004 00 00 00 09")) == Abort()


def test_p_data_pdvs_are_slices_of_the_received_buffer() -> None:
    buf = bytearray(fx.P_DATA_TWO_PDVS)
    pdu = decode_pdu(memoryview(buf))
    assert isinstance(pdu, PDataTF)
    assert all(isinstance(p.data, memoryview) and p.data.obj is buf for p in pdu.pdvs)  # no copy
    buf[-1] = 0x99  # a view sees the change: it is the buffer itself
    assert bytes(pdu.pdvs[1].data) == b"\x99"


def test_p_data_encoding_passes_the_data_buffers_through() -> None:
    data = memoryview(bytearray(1000))
    parts = encode_pdata_header([Pdv(context_id=1, is_command=False, is_last=True, data=data)])
    assert parts[-1] is data
    assert b"".join(parts)[:12] == _h("04 00 000003EE 000003EA 01 02")


@pytest.mark.parametrize(("data", "bits"), [(_h("00"), (False, False)), (_h("01"), (True, False)),
                                            (_h("02"), (False, True)), (_h("03"), (True, True))])
def test_message_control_header_bits(data: bytes, bits: tuple[bool, bool]) -> None:
    # PS3.8 E.2: bit 0 = command (1) or data set (0), bit 1 = last fragment
    pdu = decode_pdu(_h("04 00 00000007 00000003 05") + data + b"Z")
    assert isinstance(pdu, PDataTF)
    assert (pdu.pdvs[0].is_command, pdu.pdvs[0].is_last) == bits
    assert encode_pdu(pdu)[11] == data[0]


def test_encoding_refuses_values_the_fields_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_pdu(AssociateRQ(called_ae="A" * 17, calling_ae="B", contexts=fx.RQ_VERIFICATION.contexts))
    with pytest.raises(ValueError):  # an item length is 16 bits (Table 9-16)
        encode_pdu(AssociateRQ(called_ae="A", calling_ae="B", contexts=fx.RQ_VERIFICATION.contexts,
                               user_info=UserInformation(extended=(ExtendedNegotiation(
                                   sop_class_uid="1.2", info=bytes(70_000)),))))
    with pytest.raises(TypeError):
        encode_pdu("not a PDU")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- malformed input
def _items(*items: bytes) -> bytes:
    return fx.associate_rq(b"".join(items))


_CTX_HEAD = "20 00 002E {cid} 00 00 00 30 00 0011"


def _context(cid: int) -> bytes:
    return _h(_CTX_HEAD.format(cid=f"{cid:02X}")) + fx.VERIFICATION.encode() + _h("40 00 0011") \
        + fx.IMPLICIT_VR_LE.encode()


MALFORMED: dict[str, tuple[bytes, AbortReason]] = {
    "unknown PDU type": (_h("08 00 00000004 00000000"), AbortReason.UNRECOGNIZED_PDU),
    "PDU type zero": (_h("00 00 00000000"), AbortReason.UNRECOGNIZED_PDU),
    "truncated header": (_h("01 00 0000"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "PDU-length past the end": (fx.RELEASE_RQ[:-1], AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "PDU-length short of the end": (fx.RELEASE_RQ + b"\x00", AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "release with length 5": (_h("05 00 00000005 0000000000"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "reject with length 3": (_h("03 00 00000003 000101"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "abort source reserved 3": (_h("07 00 00000004 00 00 03 00"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "associate shorter than its fixed fields": (_h("01 00 00000004 0001 0000"),
                                                AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "item length past the end": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 00FF 01 00 00 00")),
                                 AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "truncated item header": (_items(fx.APPLICATION_CONTEXT_ITEM, fx.CONTEXT_1_VERIFICATION, _h("50 00 00")),
                              AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "truncated presentation context": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 0002 01 00")),
                                       AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "sub-item past its item": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 0008 01 00 00 00 30 00 0011 31 2E")),
                               AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "even context ID": (_items(fx.APPLICATION_CONTEXT_ITEM, _context(2)), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "zero context ID": (_items(fx.APPLICATION_CONTEXT_ITEM, _context(0)), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "duplicate context ID": (_items(fx.APPLICATION_CONTEXT_ITEM, _context(5), _context(5)),
                             AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "missing abstract syntax": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 0019 01 00 00 00 40 00 0011")
                                       + fx.IMPLICIT_VR_LE.encode()), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "missing transfer syntax": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 0019 01 00 00 00 30 00 0011")
                                       + fx.VERIFICATION.encode()), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "two abstract syntaxes": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 002E 01 00 00 00 30 00 0011")
                                     + fx.VERIFICATION.encode() + _h("30 00 0011") + fx.VERIFICATION.encode()),
                              AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "no presentation context": (_items(fx.APPLICATION_CONTEXT_ITEM), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "two application contexts": (_items(fx.APPLICATION_CONTEXT_ITEM, fx.APPLICATION_CONTEXT_ITEM,
                                        fx.CONTEXT_1_VERIFICATION), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "no application context": (_items(fx.CONTEXT_1_VERIFICATION), AbortReason.UNEXPECTED_PDU_PARAMETER),
    "unknown item type": (_items(fx.APPLICATION_CONTEXT_ITEM, fx.CONTEXT_1_VERIFICATION, _h("60 00 0000")),
                          AbortReason.UNRECOGNIZED_PDU_PARAMETER),
    "unknown sub-item in a context": (_items(fx.APPLICATION_CONTEXT_ITEM, _h("20 00 0008 01 00 00 00 5A 00 0000")),
                                      AbortReason.UNRECOGNIZED_PDU_PARAMETER),
    "empty UID": (_items(_h("10 00 0000"), fx.CONTEXT_1_VERIFICATION), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "UID of 65 characters": (_items(_h("10 00 0041") + b"1" * 65, fx.CONTEXT_1_VERIFICATION),
                             AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "UID not ASCII": (_items(_h("10 00 0003 31 2E E9"), fx.CONTEXT_1_VERIFICATION),
                      AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "two user information items": (_items(fx.APPLICATION_CONTEXT_ITEM, fx.CONTEXT_1_VERIFICATION,
                                          fx.user_information(b""), fx.user_information(b"")),
                                   AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "maximum length of 3 bytes": (fx.rq_with_sub_items(_h("51 00 0003 004000")),
                                  AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "async window of 2 bytes": (fx.rq_with_sub_items(_h("53 00 0002 0001")), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "role selection UID past the item": (fx.rq_with_sub_items(_h("54 00 0004 0009 3132")),
                                         AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "role selection without role bytes": (fx.rq_with_sub_items(_h("54 00 0005 0003 312E32")),
                                          AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "version name of 17 bytes": (fx.rq_with_sub_items(_h("55 00 0011") + b"A" * 17),
                                 AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "user identity truncated": (fx.rq_with_sub_items(_h("58 00 0001 01")), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "user identity without secondary length": (fx.rq_with_sub_items(_h("58 00 0005 01 00 0001 61")),
                                               AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "related class past its field": (fx.rq_with_sub_items(_h("57 00 000C 0003 312E32 0003 312E33 0002 0009")),
                                     AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "accepted context without transfer syntax": (
        fx.associate_rq(fx.APPLICATION_CONTEXT_ITEM + _h("21 00 0004 01 00 00 00"), pdu_type=0x02),
        AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "context result 5": (fx.associate_rq(fx.APPLICATION_CONTEXT_ITEM + _h("21 00 0008 01 00 05 00 40 00 0000"),
                                         pdu_type=0x02), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "RQ context item in an AC": (fx.associate_rq(fx.APPLICATION_CONTEXT_ITEM + fx.CONTEXT_1_VERIFICATION,
                                                 pdu_type=0x02), AbortReason.UNRECOGNIZED_PDU_PARAMETER),
    "P-DATA without a PDV": (_h("04 00 00000000"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "PDV item length 1": (_h("04 00 00000006 00000001 01 03"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "PDV item length past the PDU": (_h("04 00 00000007 00000009 01 03 41"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "truncated PDV header": (_h("04 00 0000000B 00000003 01 03 41 00000002"),
                             AbortReason.INVALID_PDU_PARAMETER_VALUE),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_pdu_raises_with_its_abort_reason(name: str) -> None:
    data, reason = MALFORMED[name]
    assert _reason(data) is reason


# ---------------------------------------------------------------------------------- generated PDUs
_UID = st.lists(st.integers(0, 10**9), min_size=2, max_size=7).map(lambda arcs: ".".join(map(str, arcs)))
# AE titles: spaces inside are kept, leading and trailing ones are not significant (Table 9-11)
_AE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_- ", min_size=1, max_size=16).filter(lambda t: t == t.strip())
_U16 = st.integers(0, 0xFFFF)
_ODD_IDS = st.lists(st.integers(0, 127).map(lambda n: 2 * n + 1), min_size=1, max_size=4, unique=True)
_SMALL = st.binary(max_size=40)
_VERSION_NAME = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.", max_size=16)


def _user_info() -> st.SearchStrategy[UserInformation]:
    return st.builds(
        UserInformation,
        max_pdu=st.integers(0, 0xFFFFFFFF),
        implementation_class_uid=st.one_of(st.just(""), _UID),
        implementation_version_name=st.one_of(st.none(), _VERSION_NAME),
        async_ops=st.one_of(st.none(), st.builds(AsyncOpsWindow, max_invoked=_U16, max_performed=_U16)),
        roles=st.lists(st.builds(RoleSelection, sop_class_uid=_UID, scu_role=st.booleans(),
                                 scp_role=st.booleans()), max_size=3).map(tuple),
        extended=st.lists(st.builds(ExtendedNegotiation, sop_class_uid=_UID, info=_SMALL), max_size=2).map(tuple),
        common_extended=st.lists(st.builds(
            CommonExtendedNegotiation, sop_class_uid=_UID, service_class_uid=_UID,
            related_general_sop_classes=st.lists(_UID, max_size=3).map(tuple)), max_size=2).map(tuple),
        user_identity_rq=st.one_of(st.none(), st.builds(
            UserIdentityRQ, identity_type=st.integers(0, 255), positive_response_requested=st.booleans(),
            primary=_SMALL, secondary=_SMALL)),
        user_identity_ac=st.one_of(st.none(), st.builds(UserIdentityAC, server_response=_SMALL)),
    )


@st.composite
def _rq_values(draw: st.DrawFn) -> AssociateRQ:
    ids = draw(_ODD_IDS)
    contexts = tuple(PresentationContextRQ(context_id=i, abstract_syntax=draw(_UID),
                                           transfer_syntaxes=tuple(draw(st.lists(_UID, min_size=1, max_size=3))))
                     for i in ids)
    return AssociateRQ(called_ae=draw(_AE), calling_ae=draw(_AE), contexts=contexts, user_info=draw(_user_info()),
                       application_context=draw(_UID), protocol_version=draw(_U16))


@st.composite
def _ac_values(draw: st.DrawFn) -> AssociateAC:
    contexts = []
    for i in draw(_ODD_IDS):
        result = draw(st.sampled_from(ContextResult))
        ts = draw(_UID) if result is ContextResult.ACCEPTANCE else ""
        contexts.append(PresentationContextAC(context_id=i, result=result, transfer_syntax=ts))
    return AssociateAC(called_ae=draw(_AE), calling_ae=draw(_AE), contexts=tuple(contexts),
                       user_info=draw(_user_info()), application_context=draw(_UID), protocol_version=draw(_U16))


_PDV = st.builds(Pdv, context_id=st.integers(0, 255), is_command=st.booleans(), is_last=st.booleans(),
                 data=st.binary(max_size=200))
PDUS = st.one_of(
    _rq_values(),
    _ac_values(),
    st.builds(AssociateRJ, result=st.integers(0, 255), source=st.integers(0, 255), reason=st.integers(0, 255)),
    st.builds(PDataTF, pdvs=st.lists(_PDV, min_size=1, max_size=4).map(tuple)),
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, source=st.sampled_from(AbortSource), reason=st.sampled_from(AbortReason)),
)


@given(PDUS)
@settings(max_examples=300)
def test_decode_inverts_encode(pdu) -> None:
    data = encode_pdu(pdu)
    assert struct.unpack_from(">I", data, 2)[0] == len(data) - 6  # PDU-length covers what follows the header
    assert decode_pdu(data) == pdu


def _decodes_or_raises_remote(data: bytes) -> None:
    try:
        decode_pdu(data)
    except RemoteProtocolError as exc:
        assert isinstance(exc.reason, AbortReason)


@given(st.binary(max_size=300))
@settings(max_examples=1000)
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    _decodes_or_raises_remote(data)


@given(st.integers(1, 7), st.binary(max_size=300))
@settings(max_examples=1000)
def test_arbitrary_bodies_behind_a_valid_header_raise_only_remote_protocol_error(pdu_type: int, body: bytes) -> None:
    _decodes_or_raises_remote(struct.pack(">BxI", pdu_type, len(body)) + body)


_VALID = list(fx.ALL)


@given(st.sampled_from(_VALID), st.data())
@settings(max_examples=800)
def test_mutated_valid_pdus_raise_only_remote_protocol_error(data: bytes, draw: st.DataObject) -> None:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        kind = draw.draw(st.sampled_from(["flip", "length", "truncate", "insert"]))
        if not buf:
            break
        pos = draw.draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw.draw(st.integers(0, 7))
        elif kind == "length" and len(buf) > pos + 1:
            # rewrite a 16-bit field, as an item-length or UID-length would be
            struct.pack_into(">H", buf, pos, draw.draw(_U16))
        elif kind == "truncate":
            del buf[pos:]
        else:
            buf[pos:pos] = draw.draw(st.binary(min_size=1, max_size=8))
    if len(buf) >= 6 and draw.draw(st.booleans()):
        struct.pack_into(">I", buf, 2, len(buf) - 6)  # keep the PDU-length right so the body gets parsed
    _decodes_or_raises_remote(bytes(buf))
