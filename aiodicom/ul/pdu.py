"""The seven PDUs of PS3.8 §9.3 and the items of PS3.8 §9.3.2-9.3.4, PS3.7 Annex D.3.3 and PS3.8 Annex D.

Values are small frozen dataclasses; `encode_pdu` turns one into bytes and `decode_pdu` turns the
bytes of one whole PDU (header included) back. Decoding is strict: every length is checked
against the data it claims to cover, and anything malformed raises `RemoteProtocolError` carrying
the A-ABORT reason to answer with. What PS3.8 says to ignore (reserved fields, unknown user
information sub-items) is ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .constants import (
    APPLICATION_CONTEXT_NAME,
    PROTOCOL_VERSION,
    AbortReason,
    AbortSource,
    ContextResult,
    ItemType,
    PduType,
)
from .errors import RemoteProtocolError
from .pdv import Pdv

_HEADER = struct.Struct(">BxI")  # PDU-type, reserved, PDU-length (PS3.8 §9.3.1)
_ITEM_HEADER = struct.Struct(">BxH")  # item-type, reserved, item-length
_PDV_HEADER = struct.Struct(">IBB")  # PDV item-length, presentation-context-ID, message control header
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

PDU_HEADER_SIZE = 6
AE_TITLE_SIZE = 16


# ---------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContextRQ:
    """PS3.8 §9.3.2.2: one abstract syntax, one or more transfer syntaxes."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContextAC:
    """PS3.8 §9.3.3.2: the result, and the chosen transfer syntax ('' when not accepted)."""

    context_id: int
    result: ContextResult
    transfer_syntax: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncOpsWindow:
    """PS3.7 D.3.3.3: 0 means unlimited."""

    max_invoked: int = 1
    max_performed: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleSelection:
    """PS3.7 D.3.3.4: in an RQ the roles proposed for the requestor; in an AC the roles accepted."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedNegotiation:
    """PS3.7 D.3.3.5: service-class-application-information, opaque here (PS3.4 defines it per class)."""

    sop_class_uid: str
    info: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonExtendedNegotiation:
    """PS3.7 D.3.3.6 (RQ only)."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentityRQ:
    """PS3.7 D.3.3.7.1: type 1 username, 2 username+passcode, 3 Kerberos, 4 SAML, 5 JWT."""

    identity_type: int
    positive_response_requested: bool
    primary: bytes
    secondary: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentityAC:
    """PS3.7 D.3.3.7.2."""

    server_response: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInformation:
    """PS3.8 §9.3.2.3 with the sub-items of PS3.8 Annex D and PS3.7 Annex D.3.3."""

    max_pdu: int = 0  # PS3.8 D.1: 0 = no limit
    implementation_class_uid: str = ""
    implementation_version_name: str | None = None
    async_ops: AsyncOpsWindow | None = None
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[ExtendedNegotiation, ...] = ()
    common_extended: tuple[CommonExtendedNegotiation, ...] = ()
    user_identity_rq: UserIdentityRQ | None = None
    user_identity_ac: UserIdentityAC | None = None


# ---------------------------------------------------------------------------------------------
# PDUs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRQ:
    called_ae: str
    calling_ae: str
    contexts: tuple[PresentationContextRQ, ...]
    user_info: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateAC:
    called_ae: str  # PS3.8 §9.3.3: echoed from the RQ, not tested on receipt
    calling_ae: str
    contexts: tuple[PresentationContextAC, ...]
    user_info: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRJ:
    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PDataTF:
    pdvs: tuple[Pdv, ...]


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort:
    source: AbortSource = AbortSource.SERVICE_USER
    reason: AbortReason = AbortReason.NOT_SPECIFIED


Pdu = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def _ae(title: str) -> bytes:
    # latin-1: the A-ASSOCIATE-AC echoes the request's AE titles (PS3.8 Table 9-17), decoded as latin-1 whatever
    # bytes a peer put there; what we originate ourselves is checked to be an AE value before it gets here
    raw = title.encode("latin-1", "replace")
    if len(raw) > AE_TITLE_SIZE:
        raise ValueError(f"AE title longer than 16 characters: {title!r}")
    return raw.ljust(AE_TITLE_SIZE, b" ")


def _item(item_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise ValueError(f"item 0x{item_type:02X} longer than 65535 bytes")
    return _ITEM_HEADER.pack(item_type, len(body)) + body


def _uid(uid: str) -> bytes:
    # PS3.8 Annex F: UIDs in items are not padded (a trailing NUL is tolerated on receipt)
    return uid.encode("ascii")


def _lv(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def _encode_user_info(ui: UserInformation) -> bytes:
    parts = [_item(ItemType.MAXIMUM_LENGTH, _U32.pack(ui.max_pdu))]
    if ui.implementation_class_uid:
        parts.append(_item(ItemType.IMPLEMENTATION_CLASS_UID, _uid(ui.implementation_class_uid)))
    if ui.async_ops is not None:
        body = _U16.pack(ui.async_ops.max_invoked) + _U16.pack(ui.async_ops.max_performed)
        parts.append(_item(ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW, body))
    for role in ui.roles:
        body = _lv(_uid(role.sop_class_uid)) + bytes((role.scu_role, role.scp_role))
        parts.append(_item(ItemType.ROLE_SELECTION, body))
    if ui.implementation_version_name is not None:
        parts.append(_item(ItemType.IMPLEMENTATION_VERSION_NAME, ui.implementation_version_name.encode("ascii")))
    for ext in ui.extended:
        parts.append(_item(ItemType.SOP_CLASS_EXTENDED_NEGOTIATION, _lv(_uid(ext.sop_class_uid)) + ext.info))
    for common in ui.common_extended:
        related = b"".join(_lv(_uid(u)) for u in common.related_general_sop_classes)
        body = _lv(_uid(common.sop_class_uid)) + _lv(_uid(common.service_class_uid)) + _lv(related)
        parts.append(_ITEM_HEADER.pack(ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION, len(body)) + body)
    if ui.user_identity_rq is not None:
        rq = ui.user_identity_rq
        body = bytes((rq.identity_type, rq.positive_response_requested)) + _lv(rq.primary) + _lv(rq.secondary)
        parts.append(_item(ItemType.USER_IDENTITY_RQ, body))
    if ui.user_identity_ac is not None:
        parts.append(_item(ItemType.USER_IDENTITY_AC, _lv(ui.user_identity_ac.server_response)))
    return _item(ItemType.USER_INFORMATION, b"".join(parts))


def _encode_associate(pdu_type: int, pdu: AssociateRQ | AssociateAC) -> bytes:
    parts = [
        _U16.pack(pdu.protocol_version),
        b"\x00\x00",
        _ae(pdu.called_ae),
        _ae(pdu.calling_ae),
        bytes(32),
        _item(ItemType.APPLICATION_CONTEXT, _uid(pdu.application_context)),
    ]
    for ctx in pdu.contexts:
        if isinstance(ctx, PresentationContextRQ):
            subs = _item(ItemType.ABSTRACT_SYNTAX, _uid(ctx.abstract_syntax)) + b"".join(
                _item(ItemType.TRANSFER_SYNTAX, _uid(ts)) for ts in ctx.transfer_syntaxes
            )
            parts.append(_item(ItemType.PRESENTATION_CONTEXT_RQ, bytes((ctx.context_id, 0, 0, 0)) + subs))
        else:
            body = bytes((ctx.context_id, 0, int(ctx.result), 0))
            body += _item(ItemType.TRANSFER_SYNTAX, _uid(ctx.transfer_syntax))
            parts.append(_item(ItemType.PRESENTATION_CONTEXT_AC, body))
    parts.append(_encode_user_info(pdu.user_info))
    body = b"".join(parts)
    return _HEADER.pack(pdu_type, len(body)) + body


def encode_pdata_header(pdvs: tuple[Pdv, ...] | list[Pdv]) -> list[bytes | bytearray | memoryview]:
    """P-DATA-TF as a list of buffers (header pieces and the PDV data as given: no copy of the data)."""
    total = sum(PDV_OVERHEAD + len(p.data) for p in pdvs)
    out: list[bytes | bytearray | memoryview] = [_HEADER.pack(PduType.P_DATA_TF, total)]
    for p in pdvs:
        out.append(_PDV_HEADER.pack(len(p.data) + 2, p.context_id, p.is_command | (p.is_last << 1)))
        out.append(p.data)
    return out


PDV_OVERHEAD = 6  # item-length (4) + context ID (1) + message control header (1)


def encode_pdu(pdu: Pdu) -> bytes:
    """The bytes of one PDU, header included."""
    match pdu:
        case PDataTF(pdvs=pdvs):
            return b"".join(encode_pdata_header(pdvs))
        case AssociateRQ():
            return _encode_associate(PduType.ASSOCIATE_RQ, pdu)
        case AssociateAC():
            return _encode_associate(PduType.ASSOCIATE_AC, pdu)
        case AssociateRJ(result=result, source=source, reason=reason):
            return _HEADER.pack(PduType.ASSOCIATE_RJ, 4) + bytes((0, result, source, reason))
        case ReleaseRQ():
            return _HEADER.pack(PduType.RELEASE_RQ, 4) + bytes(4)
        case ReleaseRP():
            return _HEADER.pack(PduType.RELEASE_RP, 4) + bytes(4)
        case Abort(source=source, reason=reason):
            return _HEADER.pack(PduType.ABORT, 4) + bytes((0, 0, int(source), int(reason)))
    raise TypeError(f"not a PDU: {pdu!r}")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def _bad(msg: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE) -> RemoteProtocolError:
    return RemoteProtocolError(msg, reason=reason)


def _text(raw: bytes | memoryview, what: str) -> str:
    try:
        return bytes(raw).decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        raise _bad(f"{what} is not ASCII") from None


def _uid_value(raw: bytes | memoryview, what: str) -> str:
    # PS3.8 Annex F: a UID is at most 64 characters; a trailing NUL pad is tolerated (some peers send it)
    uid = _text(raw, what)
    if not uid or len(uid) > 64:
        raise _bad(f"{what} has length {len(uid)}, not 1..64")
    return uid


def _iter_items(buf: memoryview, what: str):
    """Yield (item_type, body) for the items filling buf; lengths checked against buf."""
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < 4:
            raise _bad(f"truncated item header in {what}")
        item_type, length = _ITEM_HEADER.unpack_from(buf, pos)
        pos += 4
        if pos + length > end:
            raise _bad(f"item 0x{item_type:02X} in {what} claims {length} bytes, {end - pos} left")
        yield item_type, buf[pos : pos + length]
        pos += length


def _take_lv(body: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    if pos + 2 > len(body):
        raise _bad(f"truncated length field in {what}")
    (n,) = _U16.unpack_from(body, pos)
    pos += 2
    if pos + n > len(body):
        raise _bad(f"{what} claims {n} bytes, {len(body) - pos} left")
    return body[pos : pos + n], pos + n


def _decode_user_info(body: memoryview) -> UserInformation:
    max_pdu = 0
    impl_uid = ""
    version: str | None = None
    async_ops: AsyncOpsWindow | None = None
    roles: list[RoleSelection] = []
    extended: list[ExtendedNegotiation] = []
    common: list[CommonExtendedNegotiation] = []
    id_rq: UserIdentityRQ | None = None
    id_ac: UserIdentityAC | None = None
    for item_type, sub in _iter_items(body, "user information"):
        if item_type == ItemType.MAXIMUM_LENGTH:
            if len(sub) != 4:
                raise _bad("maximum length sub-item must be 4 bytes")
            (max_pdu,) = _U32.unpack_from(sub)
        elif item_type == ItemType.IMPLEMENTATION_CLASS_UID:
            impl_uid = _uid_value(sub, "implementation class UID")
        elif item_type == ItemType.IMPLEMENTATION_VERSION_NAME:
            if len(sub) > 16:
                raise _bad("implementation version name longer than 16 bytes")
            version = bytes(sub).decode("ascii", "replace").rstrip("\x00 ")
        elif item_type == ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW:
            if len(sub) != 4:
                raise _bad("asynchronous operations window sub-item must be 4 bytes")
            async_ops = AsyncOpsWindow(max_invoked=_U16.unpack_from(sub)[0], max_performed=_U16.unpack_from(sub, 2)[0])
        elif item_type == ItemType.ROLE_SELECTION:
            uid, pos = _take_lv(sub, 0, "role selection")
            if len(sub) != pos + 2:
                raise _bad("role selection sub-item has the wrong length")
            roles.append(RoleSelection(sop_class_uid=_uid_value(uid, "role selection SOP class"),
                                       scu_role=bool(sub[pos]), scp_role=bool(sub[pos + 1])))
        elif item_type == ItemType.SOP_CLASS_EXTENDED_NEGOTIATION:
            uid, pos = _take_lv(sub, 0, "SOP class extended negotiation")
            extended.append(ExtendedNegotiation(sop_class_uid=_uid_value(uid, "extended negotiation SOP class"),
                                                info=bytes(sub[pos:])))
        elif item_type == ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
            uid, pos = _take_lv(sub, 0, "common extended negotiation")
            service, pos = _take_lv(sub, pos, "common extended negotiation service class")
            related_field, pos = _take_lv(sub, pos, "related general SOP classes")
            related, rpos = [], 0
            while rpos < len(related_field):
                one, rpos = _take_lv(related_field, rpos, "related general SOP class")
                related.append(_uid_value(one, "related general SOP class"))
            common.append(CommonExtendedNegotiation(
                sop_class_uid=_uid_value(uid, "common extended SOP class"),
                service_class_uid=_uid_value(service, "service class UID"),
                related_general_sop_classes=tuple(related)))
        elif item_type == ItemType.USER_IDENTITY_RQ:
            if len(sub) < 2:
                raise _bad("truncated user identity sub-item")
            primary, pos = _take_lv(sub, 2, "user identity primary field")
            secondary, pos = _take_lv(sub, pos, "user identity secondary field")
            id_rq = UserIdentityRQ(identity_type=sub[0], positive_response_requested=bool(sub[1]),
                                   primary=bytes(primary), secondary=bytes(secondary))
        elif item_type == ItemType.USER_IDENTITY_AC:
            response, _ = _take_lv(sub, 0, "user identity server response")
            id_ac = UserIdentityAC(server_response=bytes(response))
        # any other sub-item type: PS3.7 D.3.3 says unrecognised sub-items are ignored
    return UserInformation(max_pdu=max_pdu, implementation_class_uid=impl_uid, implementation_version_name=version,
                           async_ops=async_ops, roles=tuple(roles), extended=tuple(extended),
                           common_extended=tuple(common), user_identity_rq=id_rq, user_identity_ac=id_ac)


def _check_context_id(cid: int) -> None:
    # PS3.8 §9.3.2.2: odd integers between 1 and 255
    if cid % 2 == 0:
        raise _bad(f"presentation context ID {cid} is not an odd number")


def _decode_context_rq(body: memoryview) -> PresentationContextRQ:
    if len(body) < 4:
        raise _bad("truncated presentation context item")
    cid = body[0]
    _check_context_id(cid)
    abstract: str | None = None
    transfers: list[str] = []
    for item_type, sub in _iter_items(body[4:], "presentation context"):
        if item_type == ItemType.ABSTRACT_SYNTAX:
            if abstract is not None:
                raise _bad(f"presentation context {cid} has more than one abstract syntax")
            abstract = _uid_value(sub, "abstract syntax")
        elif item_type == ItemType.TRANSFER_SYNTAX:
            transfers.append(_uid_value(sub, "transfer syntax"))
        else:
            raise _bad(f"unexpected sub-item 0x{item_type:02X} in presentation context {cid}",
                       AbortReason.UNRECOGNIZED_PDU_PARAMETER)
    if abstract is None or not transfers:
        raise _bad(f"presentation context {cid} lacks an abstract syntax or a transfer syntax")
    return PresentationContextRQ(context_id=cid, abstract_syntax=abstract, transfer_syntaxes=tuple(transfers))


def _decode_context_ac(body: memoryview) -> PresentationContextAC:
    if len(body) < 4:
        raise _bad("truncated presentation context item")
    cid, result = body[0], body[2]
    _check_context_id(cid)
    try:
        res = ContextResult(result)
    except ValueError:
        raise _bad(f"presentation context {cid} has result {result}") from None
    ts = ""
    for item_type, sub in _iter_items(body[4:], "presentation context"):
        if item_type == ItemType.TRANSFER_SYNTAX:
            # PS3.8 §9.3.3.2: not significant when the context was rejected, and then not tested
            if res == ContextResult.ACCEPTANCE:
                ts = _uid_value(sub, "transfer syntax")
        else:
            raise _bad(f"unexpected sub-item 0x{item_type:02X} in presentation context {cid}",
                       AbortReason.UNRECOGNIZED_PDU_PARAMETER)
    if res == ContextResult.ACCEPTANCE and not ts:
        raise _bad(f"accepted presentation context {cid} names no transfer syntax")
    return PresentationContextAC(context_id=cid, result=res, transfer_syntax=ts if res == 0 else "")


def _decode_associate(pdu_type: int, body: memoryview) -> AssociateRQ | AssociateAC:
    if len(body) < 68:
        raise _bad("A-ASSOCIATE PDU shorter than its fixed fields")
    (version,) = _U16.unpack_from(body)
    called = bytes(body[4:20]).decode("latin-1").strip(" \x00")
    calling = bytes(body[20:36]).decode("latin-1").strip(" \x00")
    app_context: str | None = None
    contexts: list = []
    user_info: UserInformation | None = None
    rq = pdu_type == PduType.ASSOCIATE_RQ
    seen: set[int] = set()
    for item_type, item in _iter_items(body[68:], "A-ASSOCIATE"):
        if item_type == ItemType.APPLICATION_CONTEXT:
            if app_context is not None:
                raise _bad("more than one application context item")
            app_context = _uid_value(item, "application context name")
        elif item_type == (ItemType.PRESENTATION_CONTEXT_RQ if rq else ItemType.PRESENTATION_CONTEXT_AC):
            ctx = _decode_context_rq(item) if rq else _decode_context_ac(item)
            if ctx.context_id in seen:
                raise _bad(f"presentation context ID {ctx.context_id} used twice")
            seen.add(ctx.context_id)
            contexts.append(ctx)
        elif item_type == ItemType.USER_INFORMATION:
            if user_info is not None:
                raise _bad("more than one user information item")
            user_info = _decode_user_info(item)
        else:
            raise _bad(f"unexpected item 0x{item_type:02X} in A-ASSOCIATE", AbortReason.UNRECOGNIZED_PDU_PARAMETER)
    if app_context is None:
        raise _bad("A-ASSOCIATE without an application context item", AbortReason.UNEXPECTED_PDU_PARAMETER)
    if rq and not contexts:
        raise _bad("A-ASSOCIATE-RQ without a presentation context item")
    cls = AssociateRQ if rq else AssociateAC
    return cls(called_ae=called, calling_ae=calling, contexts=tuple(contexts),
               user_info=user_info or UserInformation(), application_context=app_context, protocol_version=version)


def decode_pdata(body: memoryview) -> PDataTF:
    """The PDVs of a P-DATA-TF body; each PDV's data is a slice of body (no copy)."""
    pdvs: list[Pdv] = []
    pos, end = 0, len(body)
    if end == 0:
        raise _bad("P-DATA-TF without a PDV")
    while pos < end:
        if end - pos < PDV_OVERHEAD:
            raise _bad("truncated PDV item")
        length, cid, header = _PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise _bad(f"PDV item length {length} does not fit the P-DATA-TF PDU")
        pdvs.append(Pdv(context_id=cid, is_command=bool(header & 1), is_last=bool(header & 2),
                        data=body[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    return PDataTF(pdvs=tuple(pdvs))


def _fixed4(body: memoryview, name: str) -> None:
    if len(body) != 4:
        raise _bad(f"{name} PDU length is {len(body)}, not 4")


def decode_pdu_body(pdu_type: int, body: memoryview) -> Pdu:
    """Decode one PDU given its type and the bytes after its 6-byte header."""
    if pdu_type == PduType.P_DATA_TF:
        return decode_pdata(body)
    if pdu_type in (PduType.ASSOCIATE_RQ, PduType.ASSOCIATE_AC):
        return _decode_associate(pdu_type, body)
    if pdu_type == PduType.ASSOCIATE_RJ:
        _fixed4(body, "A-ASSOCIATE-RJ")
        return AssociateRJ(result=body[1], source=body[2], reason=body[3])
    if pdu_type == PduType.RELEASE_RQ:
        _fixed4(body, "A-RELEASE-RQ")
        return ReleaseRQ()
    if pdu_type == PduType.RELEASE_RP:
        _fixed4(body, "A-RELEASE-RP")
        return ReleaseRP()
    if pdu_type == PduType.ABORT:
        _fixed4(body, "A-ABORT")
        try:
            source = AbortSource(body[2])
        except ValueError:
            raise _bad(f"A-ABORT source {body[2]}") from None
        try:
            reason = AbortReason(body[3])
        except ValueError:
            reason = AbortReason.NOT_SPECIFIED  # PS3.8 Table 9-26: not tested for a user abort
        return Abort(source=source, reason=reason)
    raise _bad(f"unknown PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)


def decode_pdu(data: bytes | memoryview) -> Pdu:
    """Decode exactly one whole PDU (header included)."""
    buf = memoryview(data)
    if len(buf) < PDU_HEADER_SIZE:
        raise _bad("truncated PDU header")
    pdu_type, length = _HEADER.unpack_from(buf)
    if length != len(buf) - PDU_HEADER_SIZE:
        raise _bad(f"PDU length {length} does not match the {len(buf) - PDU_HEADER_SIZE} bytes given")
    return decode_pdu_body(pdu_type, buf[PDU_HEADER_SIZE:])


def parse_header(header: bytes | memoryview) -> tuple[int, int]:
    """(PDU type, PDU length) of a 6-byte header."""
    return _HEADER.unpack_from(header)
