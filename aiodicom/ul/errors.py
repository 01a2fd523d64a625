"""Errors of the Upper Layer, named by the side at fault (h11's Local/Remote split)."""

from __future__ import annotations

from .constants import AbortReason


class ProtocolError(Exception):
    """Base of every PS3.8 protocol error."""


class LocalProtocolError(ProtocolError):
    """Our own caller asked for something PS3.8 forbids in this state: a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer broke PS3.8.

    Raised by the codec; the state machine turns it into Evt19, queues the A-ABORT carrying
    `reason` (PS3.8 Table 9-26, service-provider source) and emits `Aborted`, so it never
    escapes `UpperLayer.receive_data()`.
    """

    def __init__(self, msg: str, *, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE) -> None:
        super().__init__(msg)
        self.reason = reason
