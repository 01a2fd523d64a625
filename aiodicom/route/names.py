"""UIDs by the names a config file may use: pydicom's keywords (CTImageStorage, JPEG2000Lossless) or the
UIDs themselves."""

from __future__ import annotations

import functools

from pydicom._uid_dict import UID_dictionary

from ..archive.uid import is_valid_uid


@functools.cache
def _by_keyword(kind: str) -> dict[str, str]:
    return {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[1] == kind and entry[4]}


def transfer_syntax_uid(name: str) -> str | None:
    """A transfer syntax UID from its keyword or UID (None: not one)."""
    name = name.strip()
    if name in UID_dictionary:
        return name if UID_dictionary[name][1] == "Transfer Syntax" else None
    if is_valid_uid(name):
        return name  # a private syntax we do not know: the destination may
    return _by_keyword("Transfer Syntax").get(name)


def sop_class_uid(name: str) -> str | None:
    """A SOP class UID from its keyword or UID (None: not one)."""
    name = name.strip()
    if is_valid_uid(name):
        return name
    return _by_keyword("SOP Class").get(name)

