"""The archive's exceptions: one base, each naming who is at fault and the DIMSE status to answer.

`status` is the C-STORE response status a storage SCP sends when this error ends an operation
(PS3.4 Table B.2-1 for the storage-specific codes, PS3.7 Annex C for the general ones).
"""

from __future__ import annotations

import errno
from typing import ClassVar, Final


class ArchiveError(Exception):
    """Base of every error the archive raises."""

    status: ClassVar[int] = 0x0110  # PS3.7 C.4: Processing failure


class InvalidUID(ArchiveError, ValueError):
    """A UID that breaks PS3.5 §9.1; it never reaches a file name."""

    status: ClassVar[int] = 0x0117  # PS3.7 C.5.12: Invalid object instance (UID construction rules)


class InvalidDataSet(ArchiveError, ValueError):
    """The peer sent a data set we cannot file: malformed, or lacking/contradicting the UIDs we need."""

    status: ClassVar[int] = 0xC000  # PS3.4 Table B.2-1: Error, Cannot understand


class DataSetMismatch(InvalidDataSet):
    """The data set's SOP Class/Instance UID contradicts the C-STORE-RQ command set."""

    status: ClassVar[int] = 0xA900  # PS3.4 Table B.2-1: Error, Data Set does not match SOP Class


class DuplicateInstance(ArchiveError):
    """The instance is already stored and the duplicate policy is REJECT."""

    status: ClassVar[int] = 0x0111  # PS3.7 Annex C: Duplicate SOP Instance


class PeekError(InvalidDataSet):
    """The encoded data set is malformed where the scan had to read it (PS3.5 §7)."""


class NeedMoreData(ArchiveError):
    """The head given to `peek` ended before the scan was complete: call again with more bytes.

    `found` holds what was read so far; `needed` is the head length (from the start of the data set)
    that lets the scan make progress, a lower bound, not a promise that it then completes.
    """

    def __init__(self, found: dict[int, bytes], needed: int) -> None:
        super().__init__(f"data set head too short: need at least {needed} bytes")
        self.found = found
        self.needed = needed


class StorageError(ArchiveError, OSError):
    """The file system failed us (not the peer's fault); the temp file is gone, nothing partial remains."""

    status: ClassVar[int] = 0x0110  # PS3.7 C.4: Processing failure


class StorageFull(StorageError):
    """ENOSPC/EDQUOT: no room for this instance; nothing partial remains."""

    status: ClassVar[int] = 0xA700  # PS3.4 Table B.2-1: Refused, Out of Resources


_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(exc: OSError, doing: str) -> StorageError:
    """The archive's view of an OSError met while `doing` something: StorageFull for ENOSPC/EDQUOT."""
    cls = StorageFull if exc.errno in _FULL else StorageError
    err = cls(exc.errno, f"{doing}: {exc.strerror or exc}", exc.filename)
    err.__cause__ = exc
    return err
