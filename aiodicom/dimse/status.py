"""DIMSE status codes: categories (PS3.7 Annex C) and names (PS3.7 Annex C, PS3.4).

PS3.7 Annex C assigns every code to a class by rule, not by table: 0000 success; 0001, Bxxx,
0107 and 0116 warning; FE00 cancel; FF00 and FF01 pending; everything else (Axxx, Cxxx, 01xx,
02xx) failure. Service classes (PS3.4) give Axxx, Bxxx and Cxxx their meaning, sometimes a
different one per service (B000 is "Coercion of Data Elements" for C-STORE but "Sub-operations
Complete - One or more Failures" for C-MOVE), so names take an optional command field.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final


class Category(enum.Enum):
    """The status classes of PS3.7 Annex C."""

    SUCCESS = "Success"
    WARNING = "Warning"
    FAILURE = "Failure"
    CANCEL = "Cancel"
    PENDING = "Pending"


# PS3.7 Annex C.1-C.5: general statuses, meaning fixed for every service.
SUCCESS: Final = 0x0000
OPTIONAL_ATTRIBUTES_NOT_SUPPORTED: Final = 0x0001  # warning
NO_SUCH_ATTRIBUTE: Final = 0x0105
INVALID_ATTRIBUTE_VALUE: Final = 0x0106
ATTRIBUTE_LIST_ERROR: Final = 0x0107  # warning
PROCESSING_FAILURE: Final = 0x0110
DUPLICATE_SOP_INSTANCE: Final = 0x0111
NO_SUCH_OBJECT_INSTANCE: Final = 0x0112
NO_SUCH_EVENT_TYPE: Final = 0x0113
NO_SUCH_ARGUMENT: Final = 0x0114
INVALID_ARGUMENT_VALUE: Final = 0x0115
ATTRIBUTE_VALUE_OUT_OF_RANGE: Final = 0x0116  # warning
INVALID_OBJECT_INSTANCE: Final = 0x0117
NO_SUCH_SOP_CLASS: Final = 0x0118
CLASS_INSTANCE_CONFLICT: Final = 0x0119
MISSING_ATTRIBUTE: Final = 0x0120
MISSING_ATTRIBUTE_VALUE: Final = 0x0121
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
NO_SUCH_ACTION_TYPE: Final = 0x0123
NOT_AUTHORIZED: Final = 0x0124
DUPLICATE_INVOCATION: Final = 0x0210
UNRECOGNIZED_OPERATION: Final = 0x0211
MISTYPED_ARGUMENT: Final = 0x0212
RESOURCE_LIMITATION: Final = 0x0213
CANCEL: Final = 0xFE00
PENDING: Final = 0xFF00
PENDING_WARNING: Final = 0xFF01  # C-FIND: optional keys not supported

# PS3.4 §B.2.3 Table B.2-1 (Storage).
OUT_OF_RESOURCES: Final = 0xA700  # A7xx
DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900  # A9xx, failure
CANNOT_UNDERSTAND: Final = 0xC000  # Cxxx
COERCION_OF_DATA_ELEMENTS: Final = 0xB000
ELEMENTS_DISCARDED: Final = 0xB006
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: Final = 0xB007

# PS3.4 §C.4 Tables C.4-1 (C-FIND), C.4-2 (C-MOVE), C.4-3 (C-GET).
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
UNABLE_TO_PROCESS: Final = 0xC000  # Cxxx
OUT_OF_RESOURCES_NUMBER_OF_MATCHES: Final = 0xA701
OUT_OF_RESOURCES_SUBOPERATIONS: Final = 0xA702
MOVE_DESTINATION_UNKNOWN: Final = 0xA801
SUBOPERATIONS_COMPLETE_WITH_FAILURES: Final = 0xB000

# PS3.4 Annex Y (Composite Instance Root Retrieve: frame-level retrieve).
NO_FRAMES_FOUND: Final = 0xAA00
UNABLE_TO_CREATE_NEW_OBJECT: Final = 0xAA01
UNABLE_TO_EXTRACT_FRAMES: Final = 0xAA02
TIME_BASED_REQUEST_FOR_NON_TIME_BASED_INSTANCE: Final = 0xAA03
INVALID_REQUEST: Final = 0xAA04

_GENERAL_NAMES: Final[Mapping[int, str]] = {
    SUCCESS: "Success",
    OPTIONAL_ATTRIBUTES_NOT_SUPPORTED: "Requested optional Attributes are not supported",
    NO_SUCH_ATTRIBUTE: "No such Attribute",
    INVALID_ATTRIBUTE_VALUE: "Invalid Attribute Value",
    ATTRIBUTE_LIST_ERROR: "Attribute List Error",
    PROCESSING_FAILURE: "Processing failure",
    DUPLICATE_SOP_INSTANCE: "Duplicate SOP Instance",
    NO_SUCH_OBJECT_INSTANCE: "No such object instance",
    NO_SUCH_EVENT_TYPE: "No such Event Type",
    NO_SUCH_ARGUMENT: "No such Argument",
    INVALID_ARGUMENT_VALUE: "Invalid Argument Value",
    ATTRIBUTE_VALUE_OUT_OF_RANGE: "Attribute Value Out of Range",
    INVALID_OBJECT_INSTANCE: "Invalid object instance",
    NO_SUCH_SOP_CLASS: "No such SOP Class",
    CLASS_INSTANCE_CONFLICT: "Class-Instance conflict",
    MISSING_ATTRIBUTE: "Missing Attribute",
    MISSING_ATTRIBUTE_VALUE: "Missing Attribute Value",
    SOP_CLASS_NOT_SUPPORTED: "Refused: SOP Class not supported",
    NO_SUCH_ACTION_TYPE: "No such Action",
    NOT_AUTHORIZED: "Refused: Not Authorized",
    DUPLICATE_INVOCATION: "Duplicate invocation",
    UNRECOGNIZED_OPERATION: "Unrecognized operation",
    MISTYPED_ARGUMENT: "Mistyped argument",
    RESOURCE_LIMITATION: "Resource limitation",
    CANCEL: "Cancel",
    PENDING: "Pending",
    PENDING_WARNING: "Pending: one or more Optional Keys were not supported",
    # Service-specific codes without a conflicting meaning elsewhere, named once for all.
    COERCION_OF_DATA_ELEMENTS: "Coercion of Data Elements",
    ELEMENTS_DISCARDED: "Elements Discarded",
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Data Set does not match SOP Class",
    OUT_OF_RESOURCES_NUMBER_OF_MATCHES: "Refused: Out of Resources - Unable to calculate number of matches",
    OUT_OF_RESOURCES_SUBOPERATIONS: "Refused: Out of Resources - Unable to perform sub-operations",
    MOVE_DESTINATION_UNKNOWN: "Refused: Move Destination unknown",
    NO_FRAMES_FOUND: "None of the Frames requested were found in the SOP Instance",
    UNABLE_TO_CREATE_NEW_OBJECT: "Unable to create new object for this SOP Class",
    UNABLE_TO_EXTRACT_FRAMES: "Unable to extract Frames",
    TIME_BASED_REQUEST_FOR_NON_TIME_BASED_INSTANCE: (
        "Time-based request received for a non-time-based original SOP Instance"
    ),
    INVALID_REQUEST: "Invalid Request",
}

# Names a service class gives to codes, keyed by the request's command field (PS3.7 §9.3).
_C_GET, _C_FIND, _C_MOVE = 0x0010, 0x0020, 0x0021
_FIND_NAMES: Final[Mapping[int, str]] = {
    SUCCESS: "Matching is complete",
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "Identifier does not match SOP Class",
    CANCEL: "Matching terminated due to Cancel request",
    PENDING: "Matches are continuing",
    PENDING_WARNING: "Matches are continuing - one or more Optional Keys were not supported",
}
_RETRIEVE_NAMES: Final[Mapping[int, str]] = {
    SUCCESS: "Sub-operations Complete - No Failures",
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "Identifier does not match SOP Class",
    SUBOPERATIONS_COMPLETE_WITH_FAILURES: "Sub-operations Complete - One or more Failures or Warnings",
    CANCEL: "Sub-operations terminated due to Cancel Indication",
    PENDING: "Sub-operations are continuing",
}
_SERVICE_NAMES: Final[Mapping[int, Mapping[int, str]]] = {
    _C_FIND: _FIND_NAMES,
    _C_GET: _RETRIEVE_NAMES,
    _C_MOVE: _RETRIEVE_NAMES,
}

_CANNOT_UNDERSTAND = "Error: Cannot understand"
_UNABLE_TO_PROCESS = "Unable to process"


def category(code: int) -> Category:
    """The PS3.7 Annex C status class of any 16-bit status code."""
    if code == SUCCESS:
        return Category.SUCCESS
    if code in (PENDING, PENDING_WARNING):
        return Category.PENDING
    if code == CANCEL:
        return Category.CANCEL
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"status {code!r} is not a 16-bit value")
    if (code & 0xF000) == 0xB000 or code in (0x0001, 0x0107, 0x0116):
        return Category.WARNING
    return Category.FAILURE


def is_final(code: int) -> bool:
    """False only for Pending statuses: more responses to the same request will follow."""
    return category(code) is not Category.PENDING


def status_name(code: int, command_field: int | None = None) -> str:
    """The name PS3.7 Annex C or PS3.4 gives `code`.

    `command_field` (of the request or the response; the response bit is ignored) selects the
    service-specific meaning where services disagree, e.g. B000 or Cxxx.
    """
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"status {code!r} is not a 16-bit value")
    service = None if command_field is None else command_field & 0x7FFF
    names = _SERVICE_NAMES.get(service) if service is not None else None
    if names is not None and (name := names.get(code)) is not None:
        return name
    if (name := _GENERAL_NAMES.get(code)) is not None:
        return name
    high = code >> 8
    # PS3.4 Table B.2-1 and C.4-x define these ranges, the low byte left to the implementation.
    if high == 0xA7:
        return "Refused: Out of Resources"
    if high == 0xA9:
        if service in (_C_FIND, _C_GET, _C_MOVE):
            return "Identifier does not match SOP Class"
        return "Error: Data Set does not match SOP Class"
    if code >> 12 == 0xC:
        return _UNABLE_TO_PROCESS if service in (_C_FIND, _C_GET, _C_MOVE) else _CANNOT_UNDERSTAND
    return f"{category(code).value} (unassigned code)"


def describe(code: int, command_field: int | None = None) -> str:
    """`code` in hex with its name, e.g. "0xA700 Refused: Out of Resources"."""
    return f"0x{code:04X} {status_name(code, command_field)}"
