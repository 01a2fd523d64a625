"""Codec for the DIMSE command set: group 0000, always Implicit VR Little Endian.

PS3.7 §6.3.1: a command set is a sequence of command elements (tag, 32-bit length, value) in
increasing tag order, each at most once, all of group 0000, encoded Implicit VR Little Endian
whatever transfer syntax the presentation context carries. PS3.7 Annex E lists them; the VR of
each comes from that registry because the encoding carries none.

A decoded command is a plain `dict` keyed by the tag as an int (group 0000, so the tag is the
element number): the cheapest mapping Python has, and the message layer only needs `get`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from aiodicom.dimse.errors import DimseDecodeError

CommandValue: TypeAlias = int | str | tuple[int, ...]
Command: TypeAlias = dict[int, CommandValue]


@dataclass(frozen=True, slots=True)
class CommandElement:
    """One row of PS3.7 Annex E."""

    tag: int
    keyword: str
    vr: str
    vm: str
    retired: bool = False


# PS3.7 Table E.1-1 (current) and Table E.2-1 (retired). Retired elements are still decoded
# because old peers send them (e.g. Initiator/Receiver, Message Set ID); we never emit them.
COMMAND_ELEMENTS: Final[Mapping[int, CommandElement]] = {
    e.tag: e
    for e in (
        CommandElement(0x0000, "CommandGroupLength", "UL", "1"),
        CommandElement(0x0001, "CommandLengthToEnd", "UL", "1", retired=True),
        CommandElement(0x0002, "AffectedSOPClassUID", "UI", "1"),
        CommandElement(0x0003, "RequestedSOPClassUID", "UI", "1"),
        CommandElement(0x0010, "CommandRecognitionCode", "SH", "1", retired=True),
        CommandElement(0x0100, "CommandField", "US", "1"),
        CommandElement(0x0110, "MessageID", "US", "1"),
        CommandElement(0x0120, "MessageIDBeingRespondedTo", "US", "1"),
        CommandElement(0x0200, "Initiator", "AE", "1", retired=True),
        CommandElement(0x0300, "Receiver", "AE", "1", retired=True),
        CommandElement(0x0400, "FindLocation", "AE", "1", retired=True),
        CommandElement(0x0600, "MoveDestination", "AE", "1"),
        CommandElement(0x0700, "Priority", "US", "1"),
        CommandElement(0x0800, "CommandDataSetType", "US", "1"),
        CommandElement(0x0850, "NumberOfMatches", "US", "1", retired=True),
        CommandElement(0x0860, "ResponseSequenceNumber", "US", "1", retired=True),
        CommandElement(0x0900, "Status", "US", "1"),
        CommandElement(0x0901, "OffendingElement", "AT", "1-n"),
        CommandElement(0x0902, "ErrorComment", "LO", "1"),
        CommandElement(0x0903, "ErrorID", "US", "1"),
        CommandElement(0x1000, "AffectedSOPInstanceUID", "UI", "1"),
        CommandElement(0x1001, "RequestedSOPInstanceUID", "UI", "1"),
        CommandElement(0x1002, "EventTypeID", "US", "1"),
        CommandElement(0x1005, "AttributeIdentifierList", "AT", "1-n"),
        CommandElement(0x1008, "ActionTypeID", "US", "1"),
        CommandElement(0x1020, "NumberOfRemainingSuboperations", "US", "1"),
        CommandElement(0x1021, "NumberOfCompletedSuboperations", "US", "1"),
        CommandElement(0x1022, "NumberOfFailedSuboperations", "US", "1"),
        CommandElement(0x1023, "NumberOfWarningSuboperations", "US", "1"),
        CommandElement(0x1030, "MoveOriginatorApplicationEntityTitle", "AE", "1"),
        CommandElement(0x1031, "MoveOriginatorMessageID", "US", "1"),
        CommandElement(0x4000, "DialogReceiver", "LT", "1", retired=True),
        CommandElement(0x4010, "TerminalType", "LT", "1", retired=True),
        CommandElement(0x5010, "MessageSetID", "SH", "1", retired=True),
        CommandElement(0x5020, "EndMessageID", "SH", "1", retired=True),
        CommandElement(0x5110, "DisplayFormat", "LT", "1", retired=True),
        CommandElement(0x5120, "PagePositionID", "LT", "1", retired=True),
        CommandElement(0x5130, "TextFormatID", "CS", "1", retired=True),
        CommandElement(0x5140, "NormalReverse", "CS", "1", retired=True),
        CommandElement(0x5150, "AddGrayScale", "CS", "1", retired=True),
        CommandElement(0x5160, "Borders", "CS", "1", retired=True),
        CommandElement(0x5170, "Copies", "IS", "1", retired=True),
        CommandElement(0x5180, "CommandMagnificationType", "CS", "1", retired=True),
        CommandElement(0x5190, "Erase", "CS", "1", retired=True),
        CommandElement(0x51A0, "Print", "CS", "1", retired=True),
        CommandElement(0x51B0, "Overlays", "US", "1-n", retired=True),
    )
}

KEYWORD_TO_TAG: Final[Mapping[str, int]] = {e.keyword: t for t, e in COMMAND_ELEMENTS.items()}

# Tags the message layer uses, named as in PS3.7 Annex E.
COMMAND_GROUP_LENGTH: Final = 0x0000
AFFECTED_SOP_CLASS_UID: Final = 0x0002
REQUESTED_SOP_CLASS_UID: Final = 0x0003
COMMAND_FIELD: Final = 0x0100
MESSAGE_ID: Final = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO: Final = 0x0120
MOVE_DESTINATION: Final = 0x0600
PRIORITY: Final = 0x0700
COMMAND_DATA_SET_TYPE: Final = 0x0800
STATUS: Final = 0x0900
OFFENDING_ELEMENT: Final = 0x0901
ERROR_COMMENT: Final = 0x0902
ERROR_ID: Final = 0x0903
AFFECTED_SOP_INSTANCE_UID: Final = 0x1000
REQUESTED_SOP_INSTANCE_UID: Final = 0x1001
EVENT_TYPE_ID: Final = 0x1002
ATTRIBUTE_IDENTIFIER_LIST: Final = 0x1005
ACTION_TYPE_ID: Final = 0x1008
NUMBER_OF_REMAINING_SUBOPERATIONS: Final = 0x1020
NUMBER_OF_COMPLETED_SUBOPERATIONS: Final = 0x1021
NUMBER_OF_FAILED_SUBOPERATIONS: Final = 0x1022
NUMBER_OF_WARNING_SUBOPERATIONS: Final = 0x1023
MOVE_ORIGINATOR_AE_TITLE: Final = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID: Final = 0x1031

# PS3.7 §9.3 / §10.3: CommandDataSetType 0101H means "no data set"; any other value means one
# follows. 0001H is what we send when one does.
NO_DATA_SET: Final = 0x0101
DATA_SET_PRESENT: Final = 0x0001

# How each VR is decoded, as small ints so the decode loop branches on an int compare.
_UL, _US, _US_MULTI, _AT, _UI, _TEXT, _TEXT_RSTRIP = range(7)


def _kind(e: CommandElement) -> int:
    if e.vr == "UL":
        return _UL
    if e.vr == "US":
        return _US if e.vm == "1" else _US_MULTI
    if e.vr == "AT":
        return _AT
    if e.vr == "UI":
        return _UI
    # PS3.5 §6.2: leading and trailing spaces are insignificant in AE, CS, SH, LO (and the
    # retired IS kept as text); LT and ST keep leading spaces.
    return _TEXT_RSTRIP if e.vr in ("LT", "ST") else _TEXT


_KIND: Final[Mapping[int, int]] = {t: _kind(e) for t, e in COMMAND_ELEMENTS.items()}

# PS3.5 §6.2 maximum lengths we check on encode (a peer truncates or rejects longer values).
_MAX_TEXT: Final[Mapping[str, int]] = {"AE": 16, "UI": 64, "SH": 16, "CS": 16, "LO": 64}

_HEADER: Final = struct.Struct("<HHI")
_US_VALUE: Final = struct.Struct("<H")
_UL_VALUE: Final = struct.Struct("<I")
_GROUP_LENGTH_HEADER: Final = _HEADER.pack(0, 0, 4)


def decode_command(buf: bytes | bytearray | memoryview) -> Command:
    """Decode a complete command set (all its PDV fragments joined).

    Raises DimseDecodeError on anything PS3.7 §6.3.1 forbids: an element that runs past the end,
    an odd length, a length that does not fit the VR, a tag outside group 0000, a repeated tag,
    or a Command Group Length that does not match the bytes that follow it. Unknown group 0000
    tags are skipped; elements out of tag order are accepted since the order carries no meaning.
    """
    # A command set is a few hundred bytes: one copy to bytes makes every slice below cheaper.
    data = buf if type(buf) is bytes else bytes(buf)
    end = len(data)
    out: Command = {}
    unpack_header = _HEADER.unpack_from
    unpack_us = _US_VALUE.unpack_from
    kinds = _KIND
    pos = 0
    group_length_end = -1
    while pos < end:
        if end - pos < 8:
            raise DimseDecodeError(f"command set truncated: {end - pos} bytes left at offset {pos}")
        group, elem, length = unpack_header(data, pos)
        start = pos + 8
        pos = start + length
        if group or pos > end or length & 1 or elem in out:
            raise _element_error(group, elem, length, end - start, elem in out)
        kind = kinds.get(elem)
        if kind == _US:
            if length != 2:
                raise DimseDecodeError(f"(0000,{elem:04X}) US with length {length}, expected 2")
            out[elem] = unpack_us(data, start)[0]
        elif kind == _UI:
            try:
                out[elem] = data[start:pos].decode("ascii").rstrip("\x00 ")
            except UnicodeDecodeError:
                raise DimseDecodeError(f"(0000,{elem:04X}) UI value is not ASCII") from None
        elif kind is None:
            continue  # an unknown group 0000 element: tolerated, skipped
        elif kind == _TEXT:
            out[elem] = data[start:pos].decode("ascii", "replace").strip(" \x00")
        elif kind == _UL:
            if length != 4:
                raise DimseDecodeError(f"(0000,{elem:04X}) UL with length {length}, expected 4")
            out[elem] = _UL_VALUE.unpack_from(data, start)[0]
            if elem == COMMAND_GROUP_LENGTH:
                group_length_end = pos
        elif kind == _AT:
            if length & 3:
                raise DimseDecodeError(f"(0000,{elem:04X}) AT with length {length}, not a multiple of 4")
            # PS3.5 §6.2 AT: each value is the group then the element, each a 16-bit LE word.
            words = struct.unpack_from(f"<{length >> 1}H", data, start)
            out[elem] = tuple((words[i] << 16) | words[i + 1] for i in range(0, len(words), 2))
        elif kind == _US_MULTI:
            out[elem] = struct.unpack_from(f"<{length >> 1}H", data, start)
        else:  # _TEXT_RSTRIP
            out[elem] = data[start:pos].decode("ascii", "replace").rstrip(" \x00")
    if group_length_end >= 0 and out[COMMAND_GROUP_LENGTH] != end - group_length_end:
        raise DimseDecodeError(
            f"Command Group Length is {out[COMMAND_GROUP_LENGTH]} but {end - group_length_end} "
            "bytes follow it (PS3.7 §6.3.1)"
        )
    return out


def _element_error(group: int, elem: int, length: int, left: int, repeated: bool) -> DimseDecodeError:
    """The error for an element header that failed the fast checks of decode_command."""
    tag = f"({group:04X},{elem:04X})"
    if group:
        return DimseDecodeError(f"{tag} in a command set: only group 0000 is allowed (PS3.7 §6.3.1)")
    if length > left:
        return DimseDecodeError(f"{tag} length {length} runs past the end of the command set ({left} bytes left)")
    if length & 1:
        return DimseDecodeError(f"{tag} has odd length {length} (PS3.5 §7.1.1)")
    return DimseDecodeError(f"{tag} occurs twice (PS3.7 §6.3.1)")


def _encode_value(tag: int, kind: int, value: CommandValue) -> bytes:
    if kind == _US:
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueError(f"(0000,{tag:04X}) needs an int in 0..65535, got {value!r}")
        return _US_VALUE.pack(value)
    if kind == _UL:
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"(0000,{tag:04X}) needs an int in 0..2**32-1, got {value!r}")
        return _UL_VALUE.pack(value)
    if kind in (_AT, _US_MULTI):
        if isinstance(value, str):
            raise ValueError(f"(0000,{tag:04X}) needs ints, got {value!r}")
        values = (value,) if isinstance(value, int) else tuple(value)
        if not values:
            raise ValueError(f"(0000,{tag:04X}) needs at least one value")
        try:
            if kind == _US_MULTI:
                return struct.pack(f"<{len(values)}H", *values)
            return struct.pack(f"<{2 * len(values)}H", *(w for t in values for w in (t >> 16, t & 0xFFFF)))
        except (struct.error, TypeError):
            raise ValueError(f"(0000,{tag:04X}) values out of range: {values!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"(0000,{tag:04X}) needs a str, got {value!r}")
    element = COMMAND_ELEMENTS[tag]
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        # PS3.7 §6.3.1: the command set uses the default character repertoire only.
        raise ValueError(f"(0000,{tag:04X}) {element.keyword} must be ASCII: {value!r}") from None
    limit = _MAX_TEXT.get(element.vr)
    if limit is not None and len(raw) > limit:
        raise ValueError(f"(0000,{tag:04X}) {element.keyword} longer than {limit} characters: {value!r}")
    if len(raw) & 1:
        # PS3.5 §6.2: UI is padded with a NUL, every other text VR with a space.
        raw += b"\x00" if kind == _UI else b" "
    return raw


def encode_command(elements: Mapping[int, CommandValue | None]) -> bytes:
    """Encode command elements, sorted by tag, behind a computed Command Group Length.

    `elements` maps tags of PS3.7 Annex E to values (None values are left out; a given
    (0000,0000) is ignored and recomputed). Unknown tags or values that do not fit their VR raise
    ValueError: that is a bug of the caller, not of a peer.
    """
    return encode_sorted_command(sorted(elements.items()))


def encode_sorted_command(items: Iterable[tuple[int, CommandValue | None]]) -> bytes:
    """encode_command() for (tag, value) pairs already in ascending tag order (PS3.7 §6.3.1)."""
    parts: list[bytes] = []
    pack_header = _HEADER.pack
    pack_us = _US_VALUE.pack
    kinds = _KIND
    previous = COMMAND_GROUP_LENGTH
    for tag, value in items:
        if value is None or tag == COMMAND_GROUP_LENGTH:
            continue
        if tag <= previous:
            raise ValueError(f"command elements out of order or repeated at (0000,{tag:04X})")
        previous = tag
        kind = kinds.get(tag)
        if kind is None:
            raise ValueError(f"tag {tag:#010x} is not a command element of PS3.7 Annex E")
        # The common cases inlined; _encode_value validates and explains everything else.
        if kind == _US and type(value) is int and 0 <= value <= 0xFFFF:
            raw = pack_us(value)
        elif kind == _UI and type(value) is str and value.isascii() and len(value) <= 64:
            raw = value.encode() if not len(value) & 1 else value.encode() + b"\x00"
        else:
            raw = _encode_value(tag, kind, value)
        parts.append(pack_header(0, tag, len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _GROUP_LENGTH_HEADER + _UL_VALUE.pack(len(body)) + body


def keyword_of(tag: int) -> str:
    """The PS3.7 Annex E keyword of a command tag, or "(0000,xxxx)" when unknown."""
    element = COMMAND_ELEMENTS.get(tag)
    return element.keyword if element is not None else f"(0000,{tag & 0xFFFF:04X})"


def by_keyword(command: Mapping[int, CommandValue]) -> dict[str, CommandValue]:
    """A decoded command keyed by keyword instead of tag (for logs and debugging)."""
    return {keyword_of(tag): value for tag, value in command.items()}
