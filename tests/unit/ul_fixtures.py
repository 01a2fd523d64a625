"""PDUs typed in byte by byte from the PS3.8 §9.3 tables and PS3.7 Annex D.3.3, independent of our encoder.

Each constant is laid out field by field with the table it comes from; lengths are written by hand, so a
codec that disagrees with the standard about a layout or a length field fails the tests that use them.
The expected dataclasses next to them are what the decoder must return for those bytes.
"""

from __future__ import annotations

import struct
from typing import Final

from aiodicom.ul.constants import AbortReason, AbortSource, ContextResult
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
)
from aiodicom.ul.pdv import Pdv

_h = bytes.fromhex  # whitespace between byte pairs is ignored

# UIDs used below (PS3.6 Annex A), with their lengths since the item lengths depend on them
APPLICATION_CONTEXT: Final = "1.2.840.10008.3.1.1.1"  # 21 = 0x15
VERIFICATION: Final = "1.2.840.10008.1.1"  # 17 = 0x11
IMPLICIT_VR_LE: Final = "1.2.840.10008.1.2"  # 17 = 0x11
EXPLICIT_VR_LE: Final = "1.2.840.10008.1.2.1"  # 19 = 0x13
CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"  # 25 = 0x19
ENHANCED_CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2.1"  # 27 = 0x1B
STORAGE_SERVICE_CLASS: Final = "1.2.840.10008.4.2"  # 17 = 0x11
IMPLEMENTATION_UID: Final = "1.2.3.4"  # 7
IMPLEMENTATION_VERSION: Final = "AIODICOM_TEST"  # 13 = 0x0D

# The 68 fixed bytes after the PDU header of an A-ASSOCIATE-RQ (Table 9-11 bytes 7-74)
_RQ_FIXED_VERIFICATION = b"".join([
    _h("0001"),  # protocol-version: bit 0 set = version 1
    _h("0000"),  # reserved
    b"ANY-SCP         ",  # called-AE-title, 16 characters, trailing spaces not significant
    b"ECHOSCU         ",  # calling-AE-title
    bytes(32),  # reserved
])

# ------------------------------------------------------------------------------------------ A-ASSOCIATE-RQ
ASSOC_RQ_VERIFICATION: Final = b"".join([
    _h("01 00 000000B7"),  # Table 9-11: PDU-type 01H, reserved, PDU-length 183
    _RQ_FIXED_VERIFICATION,  # 68
    _h("10 00 0015"), APPLICATION_CONTEXT.encode(),  # Table 9-12: application context item (25)
    _h("20 00 002E"), _h("01 00 00 00"),  # Table 9-13: presentation context 1, 3 reserved bytes (50)
    _h("30 00 0011"), VERIFICATION.encode(),  # Table 9-14: abstract syntax sub-item
    _h("40 00 0011"), IMPLICIT_VR_LE.encode(),  # Table 9-15: transfer syntax sub-item
    _h("50 00 0024"),  # Table 9-16: user information item (40)
    _h("51 00 0004 00004000"),  # PS3.8 Table D.1-1: maximum length 16384
    _h("52 00 0007"), IMPLEMENTATION_UID.encode(),  # PS3.7 Table D.3-1: implementation class UID
    _h("55 00 000D"), IMPLEMENTATION_VERSION.encode(),  # PS3.7 Table D.3-3: implementation version name
])

RQ_VERIFICATION: Final = AssociateRQ(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    contexts=(PresentationContextRQ(context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)),),
    user_info=UserInformation(max_pdu=16384, implementation_class_uid=IMPLEMENTATION_UID,
                              implementation_version_name=IMPLEMENTATION_VERSION),
)

# Every user information sub-item of PS3.7 Annex D.3.3 in one RQ, and two presentation contexts
ASSOC_RQ_FULL: Final = b"".join([
    _h("01 00 000001BC"),  # PDU-length 444 = 68 + 25 + 81 + 50 + 220
    _h("0001 0000"), b"STORESCP        ", b"STORESCU        ", bytes(32),
    _h("10 00 0015"), APPLICATION_CONTEXT.encode(),
    # presentation context 1: CT Image Storage, two transfer syntaxes in order of preference (81)
    _h("20 00 004D 01 00 00 00"),
    _h("30 00 0019"), CT_IMAGE_STORAGE.encode(),
    _h("40 00 0013"), EXPLICIT_VR_LE.encode(),
    _h("40 00 0011"), IMPLICIT_VR_LE.encode(),
    # presentation context 3: Verification (50)
    _h("20 00 002E 03 00 00 00"),
    _h("30 00 0011"), VERIFICATION.encode(),
    _h("40 00 0011"), IMPLICIT_VR_LE.encode(),
    _h("50 00 00D8"),  # user information item: 216 bytes of sub-items
    _h("51 00 0004 00008000"),  # maximum length 32768 (8)
    _h("52 00 0007"), IMPLEMENTATION_UID.encode(),  # (11)
    _h("53 00 0004 0005 0000"),  # PS3.7 Table D.3-7: max ops invoked 5, performed 0 = unlimited (8)
    # PS3.7 Table D.3-9: role selection, UID-length, SOP class, SCU-role 1, SCP-role 1 (33)
    _h("54 00 001D 0019"), CT_IMAGE_STORAGE.encode(), _h("01 01"),
    _h("55 00 000D"), IMPLEMENTATION_VERSION.encode(),  # (17)
    # PS3.7 Table D.3-11: SOP class extended negotiation; PS3.4 B.3.1.1's six bytes (37)
    _h("56 00 0021 0019"), CT_IMAGE_STORAGE.encode(), _h("02 00 03 00 01 00"),
    # PS3.7 Table D.3-12: SOP class common extended negotiation (sub-item-version 0), 77 bytes (81)
    _h("57 00 004D 001B"), ENHANCED_CT_IMAGE_STORAGE.encode(),
    _h("0011"), STORAGE_SERVICE_CLASS.encode(),
    _h("001B 0019"), CT_IMAGE_STORAGE.encode(),  # related-general-SOP-class-identification: one UID
    # PS3.7 Table D.3-14: user identity, type 2 (username and passcode), positive response requested (21)
    _h("58 00 0011 02 01 0005"), b"alice", _h("0006"), b"secret",
])

RQ_FULL: Final = AssociateRQ(
    called_ae="STORESCP",
    calling_ae="STORESCU",
    contexts=(
        PresentationContextRQ(context_id=1, abstract_syntax=CT_IMAGE_STORAGE,
                              transfer_syntaxes=(EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
        PresentationContextRQ(context_id=3, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)),
    ),
    user_info=UserInformation(
        max_pdu=32768,
        implementation_class_uid=IMPLEMENTATION_UID,
        implementation_version_name=IMPLEMENTATION_VERSION,
        async_ops=AsyncOpsWindow(max_invoked=5, max_performed=0),
        roles=(RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=True),),
        extended=(ExtendedNegotiation(sop_class_uid=CT_IMAGE_STORAGE, info=_h("02 00 03 00 01 00")),),
        common_extended=(CommonExtendedNegotiation(sop_class_uid=ENHANCED_CT_IMAGE_STORAGE,
                                                   service_class_uid=STORAGE_SERVICE_CLASS,
                                                   related_general_sop_classes=(CT_IMAGE_STORAGE,)),),
        user_identity_rq=UserIdentityRQ(identity_type=2, positive_response_requested=True,
                                        primary=b"alice", secondary=b"secret"),
    ),
)

# ------------------------------------------------------------------------------------------ A-ASSOCIATE-AC
ASSOC_AC_VERIFICATION: Final = b"".join([
    _h("02 00 000000A2"),  # Table 9-17: PDU-type 02H, PDU-length 162 = 68 + 25 + 29 + 40
    _RQ_FIXED_VERIFICATION,  # AE titles and reserved bytes echoed from the RQ
    _h("10 00 0015"), APPLICATION_CONTEXT.encode(),
    _h("21 00 0019 01 00 00 00"),  # Table 9-18: context 1, reserved, result 0 (acceptance), reserved (29)
    _h("40 00 0011"), IMPLICIT_VR_LE.encode(),  # Table 9-19: the transfer syntax chosen
    _h("50 00 0024"),
    _h("51 00 0004 00010000"),  # maximum length 65536
    _h("52 00 0007"), IMPLEMENTATION_UID.encode(),
    _h("55 00 000D"), IMPLEMENTATION_VERSION.encode(),
])

AC_VERIFICATION: Final = AssociateAC(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    contexts=(PresentationContextAC(context_id=1, result=ContextResult.ACCEPTANCE, transfer_syntax=IMPLICIT_VR_LE),),
    user_info=UserInformation(max_pdu=65536, implementation_class_uid=IMPLEMENTATION_UID,
                              implementation_version_name=IMPLEMENTATION_VERSION),
)

# One presentation context per result of Table 9-18; rejected ones carry an empty transfer syntax sub-item
ASSOC_AC_RESULTS: Final = b"".join([
    _h("02 00 000000B6"),  # PDU-length 182 = 68 + 25 + 29 + 4 * 12 + 12
    _RQ_FIXED_VERIFICATION,
    _h("10 00 0015"), APPLICATION_CONTEXT.encode(),
    _h("21 00 0019 01 00 00 00 40 00 0011"), IMPLICIT_VR_LE.encode(),  # 0: acceptance
    _h("21 00 0008 03 00 01 00 40 00 0000"),  # 1: user-rejection
    _h("21 00 0008 05 00 02 00 40 00 0000"),  # 2: no-reason (provider rejection)
    _h("21 00 0008 07 00 03 00 40 00 0000"),  # 3: abstract-syntax-not-supported
    _h("21 00 0008 09 00 04 00 40 00 0000"),  # 4: transfer-syntaxes-not-supported
    _h("50 00 0008 51 00 0004 00004000"),
])

AC_RESULTS: Final = AssociateAC(
    called_ae="ANY-SCP",
    calling_ae="ECHOSCU",
    contexts=(
        PresentationContextAC(context_id=1, result=ContextResult.ACCEPTANCE, transfer_syntax=IMPLICIT_VR_LE),
        PresentationContextAC(context_id=3, result=ContextResult.USER_REJECTION),
        PresentationContextAC(context_id=5, result=ContextResult.NO_REASON),
        PresentationContextAC(context_id=7, result=ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        PresentationContextAC(context_id=9, result=ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
    ),
    user_info=UserInformation(max_pdu=16384),
)

# The answer to ASSOC_RQ_FULL: the user information sub-items an acceptor returns
ASSOC_AC_FULL: Final = b"".join([
    _h("02 00 0000011B"),  # PDU-length 283 = 68 + 25 + 31 + 29 + 130
    _h("0001 0000"), b"STORESCP        ", b"STORESCU        ", bytes(32),
    _h("10 00 0015"), APPLICATION_CONTEXT.encode(),
    _h("21 00 001B 01 00 00 00 40 00 0013"), EXPLICIT_VR_LE.encode(),  # (31)
    _h("21 00 0019 03 00 00 00 40 00 0011"), IMPLICIT_VR_LE.encode(),  # (29)
    _h("50 00 007E"),  # 126 bytes of sub-items
    _h("51 00 0004 00010000"),  # (8)
    _h("52 00 0007"), IMPLEMENTATION_UID.encode(),  # (11)
    _h("53 00 0004 0003 0001"),  # (8)
    _h("54 00 001D 0019"), CT_IMAGE_STORAGE.encode(), _h("01 00"),  # SCU role accepted, SCP role refused (33)
    _h("55 00 000D"), IMPLEMENTATION_VERSION.encode(),  # (17)
    _h("56 00 0021 0019"), CT_IMAGE_STORAGE.encode(), _h("01 00 00 00 00 00"),  # (37)
    _h("59 00 0008 0006"), b"ticket",  # PS3.7 Table D.3-15: user identity server response (12)
])

AC_FULL: Final = AssociateAC(
    called_ae="STORESCP",
    calling_ae="STORESCU",
    contexts=(
        PresentationContextAC(context_id=1, result=ContextResult.ACCEPTANCE, transfer_syntax=EXPLICIT_VR_LE),
        PresentationContextAC(context_id=3, result=ContextResult.ACCEPTANCE, transfer_syntax=IMPLICIT_VR_LE),
    ),
    user_info=UserInformation(
        max_pdu=65536,
        implementation_class_uid=IMPLEMENTATION_UID,
        implementation_version_name=IMPLEMENTATION_VERSION,
        async_ops=AsyncOpsWindow(max_invoked=3, max_performed=1),
        roles=(RoleSelection(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=False),),
        extended=(ExtendedNegotiation(sop_class_uid=CT_IMAGE_STORAGE, info=_h("01 00 00 00 00 00")),),
        user_identity_ac=UserIdentityAC(server_response=b"ticket"),
    ),
)

# ------------------------------------------------------------------------------------------ the short PDUs
ASSOC_RJ_CALLED_AE: Final = _h("03 00 00000004 00 01 01 07")  # Table 9-21: permanent, service-user, 7
RJ_CALLED_AE: Final = AssociateRJ(result=1, source=1, reason=7)
ASSOC_RJ_PROTOCOL_VERSION: Final = _h("03 00 00000004 00 01 02 02")  # permanent, ACSE, protocol-version
RELEASE_RQ: Final = _h("05 00 00000004 00000000")  # Table 9-24
RELEASE_RP: Final = _h("06 00 00000004 00000000")  # Table 9-25
ABORT_USER: Final = _h("07 00 00000004 00 00 00 00")  # Table 9-26: source 0, reason not significant
ABORT_PROVIDER_UNRECOGNIZED: Final = _h("07 00 00000004 00 00 02 01")  # unrecognized-PDU
ABORT_PROVIDER_UNEXPECTED: Final = _h("07 00 00000004 00 00 02 02")  # unexpected-PDU
ABORT_PROVIDER_INVALID: Final = _h("07 00 00000004 00 00 02 06")  # invalid-PDU-parameter value

SHORT_PDUS: Final = {
    ASSOC_RJ_CALLED_AE: RJ_CALLED_AE,
    ASSOC_RJ_PROTOCOL_VERSION: AssociateRJ(result=1, source=2, reason=2),
    RELEASE_RQ: ReleaseRQ(),
    RELEASE_RP: ReleaseRP(),
    ABORT_USER: Abort(source=AbortSource.SERVICE_USER, reason=AbortReason.NOT_SPECIFIED),
    ABORT_PROVIDER_UNRECOGNIZED: Abort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNRECOGNIZED_PDU),
    ABORT_PROVIDER_UNEXPECTED: Abort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNEXPECTED_PDU),
    ABORT_PROVIDER_INVALID: Abort(source=AbortSource.SERVICE_PROVIDER,
                                  reason=AbortReason.INVALID_PDU_PARAMETER_VALUE),
}

# ------------------------------------------------------------------------------------------ P-DATA-TF
# A C-ECHO-RQ command set (PS3.7 Table 9.3-12), implicit VR little endian: tag, 4-byte length, value
ECHO_RQ_COMMAND: Final = b"".join([
    _h("0000 0000 04000000 38000000"),  # (0000,0000) CommandGroupLength UL = 56
    _h("0000 0200 12000000"), VERIFICATION.encode(), b"\x00",  # (0000,0002) AffectedSOPClassUID, padded
    _h("0000 0001 02000000 3000"),  # (0000,0100) CommandField C-ECHO-RQ
    _h("0000 1001 02000000 0100"),  # (0000,0110) MessageID 1
    _h("0000 0008 02000000 0101"),  # (0000,0800) CommandDataSetType: no data set
])
P_DATA_ECHO_RQ: Final = b"".join([
    _h("04 00 0000004A"),  # Table 9-22: PDU-type 04H, PDU-length 74
    _h("00000046 01 03"),  # Table 9-23: item-length 70, context 1; PS3.8 E.2: command, last fragment
    ECHO_RQ_COMMAND,
])
PDATA_ECHO_RQ: Final = PDataTF(pdvs=(Pdv(context_id=1, is_command=True, is_last=True, data=ECHO_RQ_COMMAND),))

P_DATA_TWO_PDVS: Final = _h(
    "04 00 00000010"  # PDU-length 16
    "00000005 01 00 010203"  # data set fragment, not the last
    "00000003 01 02 04"  # data set fragment, the last
)
PDATA_TWO_PDVS: Final = PDataTF(pdvs=(
    Pdv(context_id=1, is_command=False, is_last=False, data=b"\x01\x02\x03"),
    Pdv(context_id=1, is_command=False, is_last=True, data=b"\x04"),
))

# Every PDU above with the value it decodes to
ALL: Final = {
    ASSOC_RQ_VERIFICATION: RQ_VERIFICATION,
    ASSOC_RQ_FULL: RQ_FULL,
    ASSOC_AC_VERIFICATION: AC_VERIFICATION,
    ASSOC_AC_RESULTS: AC_RESULTS,
    ASSOC_AC_FULL: AC_FULL,
    P_DATA_ECHO_RQ: PDATA_ECHO_RQ,
    P_DATA_TWO_PDVS: PDATA_TWO_PDVS,
    **SHORT_PDUS,
}


# ------------------------------------------------------------------------------------------ envelopes
def associate_rq(variable_items: bytes, *, fixed: bytes = _RQ_FIXED_VERIFICATION, pdu_type: int = 0x01) -> bytes:
    """An A-ASSOCIATE-RQ (or -AC) PDU around the given variable items, its PDU-length computed."""
    body = fixed + variable_items
    return struct.pack(">BxI", pdu_type, len(body)) + body


APPLICATION_CONTEXT_ITEM: Final = _h("10 00 0015") + APPLICATION_CONTEXT.encode()
CONTEXT_1_VERIFICATION: Final = (_h("20 00 002E 01 00 00 00 30 00 0011") + VERIFICATION.encode()
                                 + _h("40 00 0011") + IMPLICIT_VR_LE.encode())
MAX_LENGTH_16K: Final = _h("51 00 0004 00004000")


def user_information(sub_items: bytes) -> bytes:
    """A user information item (Table 9-16) holding the given sub-items, its item-length computed."""
    return struct.pack(">BxH", 0x50, len(sub_items)) + sub_items


def rq_with_sub_items(sub_items: bytes) -> bytes:
    """The Verification RQ with these user information sub-items."""
    return associate_rq(APPLICATION_CONTEXT_ITEM + CONTEXT_1_VERIFICATION + user_information(sub_items))
