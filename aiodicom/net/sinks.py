"""Where the fragments of a received data set go while they arrive (PS3.7 §6.3.1: commands first,
then the data set): a spool by default; a service may give its own (storage writes straight to the file),
or refuse the data set before it arrives with a `ReceiveFailed`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..dimse.dataset import Spool


class Sink(Protocol):
    def write(self, data: memoryview) -> None:
        """Append one fragment (a slice of the received PDU: copy it if kept)."""

    def close(self) -> Any:
        """The last fragment arrived: return the payload the handler receives."""

    def abort(self) -> None:
        """The message was cut short: drop everything written (idempotent)."""


class SpoolSink:
    """The default: memory up to a limit, then a temp file. The payload is an EncodedDataset."""

    __slots__ = ("_spool", "_transfer_syntax")

    def __init__(self, transfer_syntax: str, memory_limit: int, directory: str | None) -> None:
        self._spool = Spool(memory_limit=memory_limit, directory=directory)
        self._transfer_syntax = transfer_syntax

    def write(self, data: memoryview) -> None:
        self._spool.write(data)

    def close(self) -> Any:
        return self._spool.finish(self._transfer_syntax)

    def abort(self) -> None:
        self._spool.discard()


@dataclass(frozen=True, slots=True)
class ReceiveFailed:
    """The payload of a request whose data set could not be kept (too large, disk full, ...).

    The rest of its fragments were read and dropped so the association stays in step; the
    dispatcher answers `status` without calling the handler.
    """

    status: int
    comment: str
