"""Reassembly of DIMSE messages from PDVs: sans-IO, one assembler per association.

PS3.8 Annex E.2 and PS3.7 §6.3.1: a message is its command set, sent as one or more command
PDVs (the last one flagged), followed — only when Command Data Set Type says so — by its data set
as one or more data PDVs (the last one flagged), all on one presentation context. Messages do
not interleave: the next message starts after the last fragment of the previous one.

Command fragments are joined (a command set is a few hundred bytes) and decoded; data fragments
are passed on as they arrive, never accumulated here, so the I/O layer can stream a data set of
any size to a spool or a file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

from aiodicom.dimse import command as c
from aiodicom.dimse.command import decode_command
from aiodicom.dimse.errors import DimseDecodeError, DimseError
from aiodicom.dimse.messages import Message, message_from_command
from aiodicom.ul.pdv import Pdv

DEFAULT_MAX_COMMAND_SIZE: Final = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandComplete:
    """The last command fragment arrived; `message.has_dataset` tells whether data follows."""

    context_id: int
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFragment:
    """One data set fragment of the current message, as received (a view, not a copy)."""

    context_id: int
    data: memoryview
    is_last: bool


AssemblyEvent: TypeAlias = CommandComplete | DataFragment


class _State(enum.Enum):
    IDLE = "idle"  # between messages
    COMMAND = "command"  # some command fragments received, not the last
    DATA = "data"  # command complete, its data set expected
    DISCARD = "discard"  # data set of a rejected command: dropped
    FAILED = "failed"  # a fatal error was raised: the association must be aborted


class MessageAssembler:
    """Turns the PDVs of one association into CommandComplete and DataFragment events.

    Any violation of the PDV sequence raises DimseError without a status: the association must
    be aborted (PS3.8 §9.1.4). A command that decodes but is not a valid request (unknown Command
    Field, missing mandatory element) raises a DimseDecodeError that carries the status to answer
    with; the assembler then drops that message's data set and carries on with the next one.
    """

    __slots__ = ("_max_command_size", "_state", "_context_id", "_fragments", "_size")

    def __init__(self, *, max_command_size: int = DEFAULT_MAX_COMMAND_SIZE) -> None:
        if max_command_size < 12:
            raise ValueError("max_command_size must allow at least the Command Group Length element")
        self._max_command_size = max_command_size
        self._state = _State.IDLE
        self._context_id = 0
        self._fragments: list[bytes] = []
        self._size = 0

    @property
    def idle(self) -> bool:
        """True between messages: no command fragment or data set is outstanding."""
        return self._state is _State.IDLE

    @property
    def expecting_data(self) -> bool:
        """True while the data set of the last complete command is still arriving."""
        return self._state is _State.DATA

    @property
    def context_id(self) -> int | None:
        """The presentation context of the message in progress, None when idle."""
        return None if self._state in (_State.IDLE, _State.FAILED) else self._context_id

    def feed(self, pdv: Pdv) -> list[AssemblyEvent]:
        """Take one received PDV; return the events it completes (zero or one)."""
        state = self._state
        if state is _State.FAILED:
            raise DimseError("PDV received after a fatal DIMSE error")
        if state is not _State.IDLE and pdv.context_id != self._context_id:
            self._fail(
                f"PDV on presentation context {pdv.context_id} in the middle of a message on "
                f"context {self._context_id} (PS3.8 Annex E.2)"
            )
        if pdv.is_command:
            if state is _State.DATA or state is _State.DISCARD:
                self._fail("command PDV while the data set of the previous message is expected (PS3.7 §6.3.1)")
            return self._command_fragment(pdv)
        if state is _State.DATA:
            if pdv.is_last:
                self._state = _State.IDLE
            data = pdv.data if isinstance(pdv.data, memoryview) else memoryview(pdv.data)
            return [DataFragment(context_id=pdv.context_id, data=data, is_last=pdv.is_last)]
        if state is _State.DISCARD:
            if pdv.is_last:
                self._state = _State.IDLE
            return []
        if state is _State.COMMAND:
            self._fail("data PDV before the last fragment of its command set (PS3.7 §6.3.1)")
        self._fail("data PDV without a command announcing a data set (PS3.7 §6.3.1)")

    def _command_fragment(self, pdv: Pdv) -> list[AssemblyEvent]:
        size = self._size + len(pdv.data)
        if size > self._max_command_size:
            self._fail(f"command set larger than {self._max_command_size} bytes")
        if self._state is _State.IDLE:
            self._context_id = pdv.context_id
            if pdv.is_last:  # the usual case: the whole command in one PDV, decoded in place
                return [self._complete(pdv.data)]
            self._state = _State.COMMAND
        self._fragments.append(bytes(pdv.data))
        self._size = size
        if not pdv.is_last:
            return []
        raw = b"".join(self._fragments)
        self._fragments.clear()
        self._size = 0
        return [self._complete(raw)]

    def _complete(self, raw: bytes | bytearray | memoryview) -> CommandComplete:
        try:
            cmd = decode_command(raw)
        except DimseDecodeError:
            self._state = _State.FAILED
            raise
        try:
            message = message_from_command(cmd)
        except DimseDecodeError as exc:
            if not exc.answerable:
                self._state = _State.FAILED
                raise
            # The command is answered with a failure status; its data set, if announced, is
            # still on its way and must be consumed before the next message can start.
            announced = cmd.get(c.COMMAND_DATA_SET_TYPE, c.NO_DATA_SET) != c.NO_DATA_SET
            self._state = _State.DISCARD if announced else _State.IDLE
            raise
        self._state = _State.DATA if message.has_dataset else _State.IDLE
        return CommandComplete(context_id=self._context_id, message=message)

    def _fail(self, reason: str) -> NoReturn:
        self._state = _State.FAILED
        self._fragments.clear()
        raise DimseError(reason)
