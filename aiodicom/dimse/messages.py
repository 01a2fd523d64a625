"""Typed DIMSE messages: every DIMSE-C (PS3.7 §9.3) and DIMSE-N (PS3.7 §10.3) command.

Each message is a frozen dataclass whose fields are the PS3.7 parameters in snake_case; the
class knows its Command Field and which elements PS3.7 marks mandatory (M) in its table, so one
generic encoder and decoder serve all of them. `has_dataset` mirrors Command Data Set Type
(0000,0800): PS3.7 §9.3 says 0101H means "no data set" and any other value means one follows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, TypeVar

from aiodicom.dimse import command as c
from aiodicom.dimse import status as st
from aiodicom.dimse.command import Command, decode_command, encode_sorted_command
from aiodicom.dimse.errors import DimseDecodeError

VERIFICATION_SOP_CLASS: Final = "1.2.840.10008.1.1"


class Priority(enum.IntEnum):
    """Priority (0000,0700), PS3.7 Annex E."""

    MEDIUM = 0
    HIGH = 1
    LOW = 2


# Field name → command tag. Names are the PS3.7 parameter names in snake_case.
_TAG_OF_FIELD: Final[Mapping[str, int]] = {
    "message_id": c.MESSAGE_ID,
    "message_id_being_responded_to": c.MESSAGE_ID_BEING_RESPONDED_TO,
    "affected_sop_class_uid": c.AFFECTED_SOP_CLASS_UID,
    "requested_sop_class_uid": c.REQUESTED_SOP_CLASS_UID,
    "affected_sop_instance_uid": c.AFFECTED_SOP_INSTANCE_UID,
    "requested_sop_instance_uid": c.REQUESTED_SOP_INSTANCE_UID,
    "priority": c.PRIORITY,
    "move_destination": c.MOVE_DESTINATION,
    "move_originator_ae": c.MOVE_ORIGINATOR_AE_TITLE,
    "move_originator_message_id": c.MOVE_ORIGINATOR_MESSAGE_ID,
    "status": c.STATUS,
    "offending_elements": c.OFFENDING_ELEMENT,
    "error_comment": c.ERROR_COMMENT,
    "error_id": c.ERROR_ID,
    "remaining": c.NUMBER_OF_REMAINING_SUBOPERATIONS,
    "completed": c.NUMBER_OF_COMPLETED_SUBOPERATIONS,
    "failed": c.NUMBER_OF_FAILED_SUBOPERATIONS,
    "warning": c.NUMBER_OF_WARNING_SUBOPERATIONS,
    "event_type_id": c.EVENT_TYPE_ID,
    "action_type_id": c.ACTION_TYPE_ID,
    "attribute_identifier_list": c.ATTRIBUTE_IDENTIFIER_LIST,
}

# Response field ← request fields it echoes (PS3.7 "U(=)": equal to the request's value).
_ECHOED: Final[Mapping[str, tuple[str, ...]]] = {
    "affected_sop_class_uid": ("affected_sop_class_uid", "requested_sop_class_uid"),
    "affected_sop_instance_uid": ("affected_sop_instance_uid", "requested_sop_instance_uid"),
    "event_type_id": ("event_type_id",),
    "action_type_id": ("action_type_id",),
}


class Message:
    """Base of every DIMSE message."""

    __slots__ = ()
    command_field: ClassVar[int]
    # (field name, tag, mandatory) for every field but has_dataset, in tag order; set by _register.
    _spec: ClassVar[tuple[tuple[str, int, bool], ...]]
    # _spec plus Command Field (name None) and Command Data Set Type ("has_dataset"): what
    # encode_message walks, already in the tag order PS3.7 §6.3.1 requires.
    _plan: ClassVar[tuple[tuple[str | None, int, bool], ...]]
    has_dataset: bool


class Request(Message):
    """A -RQ message: an operation or notification asked of the peer."""

    __slots__ = ()


_R = TypeVar("_R", bound="Response")


class Response(Message):
    """A -RSP message: answers the request whose Message ID it carries."""

    __slots__ = ()
    request_type: ClassVar[type[Request]]
    status: int
    message_id_being_responded_to: int

    @classmethod
    def for_request(cls: type[_R], request: Request, status: int, **extra: Any) -> _R:
        """The response to `request`: Message ID Being Responded To and the UIDs/IDs PS3.7
        echoes from the request are filled in; `extra` sets (or overrides) any other field."""
        if not isinstance(request, cls.request_type):
            raise TypeError(f"{cls.__name__} answers {cls.request_type.__name__}, not {type(request).__name__}")
        kwargs: dict[str, Any] = {
            "message_id_being_responded_to": request.message_id,  # type: ignore[attr-defined]
            "status": status,
        }
        names = {name for name, _, _ in cls._spec}
        for name, sources in _ECHOED.items():
            if name in names:
                for source in sources:
                    value = getattr(request, source, None)
                    if value is not None:
                        kwargs[name] = value
                        break
        kwargs.update(extra)
        return cls(**kwargs)

    @property
    def category(self) -> st.Category:
        return st.category(self.status)


_MESSAGE_TYPES: dict[int, type[Message]] = {}
MESSAGE_TYPES: Final[Mapping[int, type[Message]]] = _MESSAGE_TYPES
"""Command Field → message class, for every command of PS3.7 §9.3 and §10.3."""

_M = TypeVar("_M", bound=type[Message])


def _register(*mandatory: str, answers: type[Request] | None = None) -> Callable[[_M], _M]:
    def wrap(cls: _M) -> _M:
        names = [f.name for f in fields(cls) if f.name != "has_dataset"]  # type: ignore[arg-type]
        if unknown := set(mandatory) - set(names):
            raise TypeError(f"{cls.__name__} has no field {unknown}")
        cls._spec = tuple(sorted(((n, _TAG_OF_FIELD[n], n in mandatory) for n in names), key=lambda s: s[1]))
        plan: list[tuple[str | None, int, bool]] = [
            *cls._spec,
            (None, c.COMMAND_FIELD, True),
            ("has_dataset", c.COMMAND_DATA_SET_TYPE, True),
        ]
        cls._plan = tuple(sorted(plan, key=lambda s: s[1]))
        if answers is not None:
            cls.request_type = answers  # type: ignore[attr-defined]
        _MESSAGE_TYPES[cls.command_field] = cls
        return cls

    return wrap



# ---- DIMSE-C, PS3.7 §9.3 ------------------------------------------------------------------


@_register("message_id", "affected_sop_class_uid")
@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRQ(Request):  # §9.3.5.1
    command_field: ClassVar[int] = 0x0030
    message_id: int
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS
    has_dataset: bool = False


@_register("message_id_being_responded_to", "status", answers=CEchoRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRSP(Response):  # §9.3.5.2
    command_field: ClassVar[int] = 0x8030
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "affected_sop_class_uid", "affected_sop_instance_uid", "priority")
@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRQ(Request):  # §9.3.1.1
    command_field: ClassVar[int] = 0x0001
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=CStoreRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRSP(Response):  # §9.3.1.2
    command_field: ClassVar[int] = 0x8001
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "affected_sop_class_uid", "priority")
@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRQ(Request):  # §9.3.2.1
    command_field: ClassVar[int] = 0x0020
    message_id: int
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=CFindRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRSP(Response):  # §9.3.2.2; Pending responses carry an identifier
    command_field: ClassVar[int] = 0x8020
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "affected_sop_class_uid", "priority")
@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRQ(Request):  # §9.3.3.1
    command_field: ClassVar[int] = 0x0010
    message_id: int
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=CGetRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRSP(Response):  # §9.3.3.2
    command_field: ClassVar[int] = 0x8010
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "affected_sop_class_uid", "priority", "move_destination")
@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRQ(Request):  # §9.3.4.1
    command_field: ClassVar[int] = 0x0021
    message_id: int
    affected_sop_class_uid: str
    move_destination: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=CMoveRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRSP(Response):  # §9.3.4.2
    command_field: ClassVar[int] = 0x8021
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id_being_responded_to")
@dataclass(frozen=True, slots=True, kw_only=True)
class CCancelRQ(Request):  # §9.3.2.3, §9.3.3.3, §9.3.4.3: cancels a C-FIND, C-GET or C-MOVE; never answered
    command_field: ClassVar[int] = 0x0FFF
    message_id_being_responded_to: int
    has_dataset: bool = False


# ---- DIMSE-N, PS3.7 §10.3 -----------------------------------------------------------------


@_register("message_id", "affected_sop_class_uid", "affected_sop_instance_uid", "event_type_id")
@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRQ(Request):  # §10.3.1.1; Event Information is optional
    command_field: ClassVar[int] = 0x0100
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int
    has_dataset: bool = False


@_register("message_id_being_responded_to", "status", answers=NEventReportRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRSP(Response):  # §10.3.1.2
    command_field: ClassVar[int] = 0x8100
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    event_type_id: int | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRQ(Request):  # §10.3.2.1
    command_field: ClassVar[int] = 0x0110
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    attribute_identifier_list: tuple[int, ...] | None = None
    has_dataset: bool = False


@_register("message_id_being_responded_to", "status", answers=NGetRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRSP(Response):  # §10.3.2.2; Attribute Identifier List for 0107H (Annex C.4.2)
    command_field: ClassVar[int] = 0x8110
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRQ(Request):  # §10.3.3.1; the Modification List follows
    command_field: ClassVar[int] = 0x0120
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=NSetRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRSP(Response):  # §10.3.3.2
    command_field: ClassVar[int] = 0x8120
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "requested_sop_class_uid", "requested_sop_instance_uid", "action_type_id")
@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRQ(Request):  # §10.3.4.1; Action Information is optional
    command_field: ClassVar[int] = 0x0130
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    action_type_id: int
    has_dataset: bool = False


@_register("message_id_being_responded_to", "status", answers=NActionRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRSP(Response):  # §10.3.4.2
    command_field: ClassVar[int] = 0x8130
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    action_type_id: int | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "affected_sop_class_uid")
@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRQ(Request):  # §10.3.5.1; the SCP assigns the instance UID when absent
    command_field: ClassVar[int] = 0x0140
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None = None
    has_dataset: bool = True


@_register("message_id_being_responded_to", "status", answers=NCreateRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRSP(Response):  # §10.3.5.2
    command_field: ClassVar[int] = 0x8140
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


@_register("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRQ(Request):  # §10.3.6.1
    command_field: ClassVar[int] = 0x0150
    message_id: int
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    has_dataset: bool = False


@_register("message_id_being_responded_to", "status", answers=NDeleteRQ)
@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRSP(Response):  # §10.3.6.2
    command_field: ClassVar[int] = 0x8150
    message_id_being_responded_to: int
    status: int
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    offending_elements: tuple[int, ...] | None = None
    error_comment: str | None = None
    error_id: int | None = None
    has_dataset: bool = False


# ---- codec ---------------------------------------------------------------------------------


def encode_message(msg: Message) -> bytes:
    """The command set of `msg` (Implicit VR Little Endian, group length first)."""
    items: list[tuple[int, Any]] = []
    for name, tag, mandatory in msg._plan:
        if name is None:
            value: Any = msg.command_field
        elif name == "has_dataset":
            value = c.DATA_SET_PRESENT if msg.has_dataset else c.NO_DATA_SET
        else:
            value = getattr(msg, name)
            if value is None:
                if mandatory:
                    raise ValueError(f"{type(msg).__name__}.{name} is mandatory (PS3.7)")
                continue
        items.append((tag, value))
    return encode_sorted_command(items)


def message_from_command(cmd: Command) -> Message:
    """Build the typed message from a decoded command set.

    Errors in a request whose Message ID is readable carry a status, so the caller can answer
    instead of aborting: 0211H for an unknown Command Field (PS3.7 Annex C.5), 0212H (mistyped
    argument: a parameter the operation needs is missing or has the wrong type) otherwise.
    Errors in responses and in C-CANCEL carry none: those are never answered.
    """
    command_field = cmd.get(c.COMMAND_FIELD)
    message_id = cmd.get(c.MESSAGE_ID)
    if not isinstance(message_id, int):
        message_id = None
    if not isinstance(command_field, int):
        raise DimseDecodeError("command set without Command Field (0000,0100)", message_id=message_id)
    cls = MESSAGE_TYPES.get(command_field)
    if cls is None:
        is_request = not command_field & 0x8000
        raise DimseDecodeError(
            f"unknown Command Field 0x{command_field:04X}",
            status=st.UNRECOGNIZED_OPERATION if is_request else None,
            message_id=message_id if is_request else None,
            command_field=command_field,
        )
    answerable = issubclass(cls, Request) and cls is not CCancelRQ
    data_set_type = cmd.get(c.COMMAND_DATA_SET_TYPE)
    if data_set_type is None:
        raise _missing(cls, c.COMMAND_DATA_SET_TYPE, answerable, message_id)
    kwargs: dict[str, Any] = {"has_dataset": data_set_type != c.NO_DATA_SET}
    for name, tag, mandatory in cls._spec:
        value = cmd.get(tag)
        if value is not None:
            kwargs[name] = value
        elif mandatory:
            raise _missing(cls, tag, answerable, message_id)
    return cls(**kwargs)


def _missing(cls: type[Message], tag: int, answerable: bool, message_id: int | None) -> DimseDecodeError:
    return DimseDecodeError(
        f"{cls.__name__} without {c.keyword_of(tag)} (0000,{tag:04X}), mandatory in PS3.7",
        status=st.MISTYPED_ARGUMENT if answerable else None,
        message_id=message_id if answerable else None,
        command_field=cls.command_field,
    )


def decode_message(buf: bytes | bytearray | memoryview) -> Message:
    """Decode a complete command set into its typed message; DimseDecodeError on any fault."""
    return message_from_command(decode_command(buf))
