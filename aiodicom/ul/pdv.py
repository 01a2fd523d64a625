"""Presentation Data Value items (PS3.8 §9.3.5.1 and Annex E.2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdv:
    """One PDV of a P-DATA-TF PDU: a fragment of a DIMSE command or data set.

    `data` is a slice of the received PDU (a memoryview, not a copy) when decoded, or any
    bytes-like object when built for sending.
    """

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | bytearray | memoryview

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pdv):
            return NotImplemented
        return (
            self.context_id == other.context_id
            and self.is_command == other.is_command
            and self.is_last == other.is_last
            and bytes(self.data) == bytes(other.data)
        )

    __hash__ = None  # type: ignore[assignment]
