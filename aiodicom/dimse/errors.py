"""Errors of the DIMSE layer: the peer broke PS3.7, or a file cannot be sent as it is."""

from __future__ import annotations


class DimseError(Exception):
    """A peer sent a malformed or unexpected DIMSE message.

    The association layer turns it into a response or an A-ABORT:

    * `status` is the failure status to send (PS3.7 Annex C) when the message can be answered,
      e.g. 0x0211 Unrecognized Operation; None means the message cannot be answered and the
      association must be aborted (PS3.8 §9.1.4, A-P-ABORT).
    * `message_id` and `command_field` are those of the offending request when they were
      readable, so a response can name the request it answers (PS3.7 §9.3, Message ID Being
      Responded To).
    """

    def __init__(
        self,
        msg: str,
        *,
        status: int | None = None,
        message_id: int | None = None,
        command_field: int | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.message_id = message_id
        self.command_field = command_field

    @property
    def answerable(self) -> bool:
        """True when a failure response can be sent instead of aborting the association."""
        return self.status is not None and self.message_id is not None


class DimseDecodeError(DimseError):
    """The bytes of a command set cannot be decoded (PS3.7 §6.3.1, Annex E) or do not form a
    valid message of PS3.7 §9.3 / §10.3."""


class InvalidFileError(ValueError):
    """A file is not a DICOM PS3.10 file (preamble, 'DICM', File Meta Information) that can be
    sent without re-encoding."""


class DatasetDecodeError(ValueError):
    """Encoded bytes cannot be decoded into a data set: a service answers with a failure such as
    0xC000 (PS3.4 B.2.3 Cannot understand) rather than aborting."""
