"""Numbers of PS3.8 §9.3: PDU and item types, results, sources and reasons, with their names."""

from __future__ import annotations

from enum import IntEnum

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"  # PS3.7 Annex A.2.1, the only DICOM one
PROTOCOL_VERSION = 0x0001  # PS3.8 §9.3.2: bit 0 set = version 1


class PduType(IntEnum):
    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07


class ItemType(IntEnum):
    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51  # PS3.8 D.1
    IMPLEMENTATION_CLASS_UID = 0x52  # PS3.7 D.3.3.2
    ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53  # PS3.7 D.3.3.3
    ROLE_SELECTION = 0x54  # PS3.7 D.3.3.4
    IMPLEMENTATION_VERSION_NAME = 0x55  # PS3.7 D.3.3.2
    SOP_CLASS_EXTENDED_NEGOTIATION = 0x56  # PS3.7 D.3.3.5
    SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57  # PS3.7 D.3.3.6
    USER_IDENTITY_RQ = 0x58  # PS3.7 D.3.3.7
    USER_IDENTITY_AC = 0x59


class ContextResult(IntEnum):
    """PS3.8 Table 9-18: Result/Reason of a presentation context."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2  # provider rejection
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3  # provider rejection
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4  # provider rejection


class RejectResult(IntEnum):
    """PS3.8 Table 9-21."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason(IntEnum):
    """The reason numbers are scoped by source (PS3.8 Table 9-21); names here are per source."""

    # source 1: DICOM UL service-user
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7
    # source 2 (ACSE related): 1 no-reason-given, 2 protocol-version-not-supported
    # source 3 (presentation related): 1 temporary-congestion, 2 local-limit-exceeded


# source 2 and 3 reuse the numbers 1 and 2 with other meanings
PROTOCOL_VERSION_NOT_SUPPORTED = 2
TEMPORARY_CONGESTION = 1
LOCAL_LIMIT_EXCEEDED = 2

_REJECT_REASON_NAMES: dict[tuple[int, int], str] = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-AE-title-not-recognized",
    (1, 7): "called-AE-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}
_REJECT_SOURCE_NAMES = {1: "service-user", 2: "service-provider (ACSE)", 3: "service-provider (presentation)"}


def describe_reject(result: int, source: int, reason: int) -> str:
    """E.g. 'rejected-permanent by service-user: called-AE-title-not-recognized (1/1/7)'."""
    res = {1: "rejected-permanent", 2: "rejected-transient"}.get(result, f"result {result}")
    src = _REJECT_SOURCE_NAMES.get(source, f"source {source}")
    why = _REJECT_REASON_NAMES.get((source, reason), f"reason {reason}")
    return f"{res} by {src}: {why} ({result}/{source}/{reason})"


class AbortSource(IntEnum):
    """PS3.8 Table 9-26."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """PS3.8 Table 9-26 (significant only when the source is the service-provider)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


def describe_abort(source: int, reason: int) -> str:
    if source == AbortSource.SERVICE_PROVIDER:
        try:
            name = AbortReason(reason).name.lower().replace("_", "-")
        except ValueError:
            name = f"reason {reason}"
        return f"aborted by the service-provider: {name} ({source}/{reason})"
    return f"aborted by the service-user ({source}/{reason})"
