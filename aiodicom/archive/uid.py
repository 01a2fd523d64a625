"""UID and AE title validation: what stands between the network and a path on disk.

A UID from a command set or a data set becomes a directory or file name, so it must be exactly
PS3.5 §9.1 shaped (digits and single dots), never `..`, `/`, a NUL or a Unicode digit.
"""

from __future__ import annotations

import re
from typing import Final

from aiodicom.archive.errors import InvalidUID

# PS3.5 §9.1: components of ASCII digits separated by single dots, at most 64 characters.
# The standard forbids leading zeros inside a component ("1.02"), but real devices send them and
# they are harmless in a path, so they are tolerated; `[0-9]` (not `\d`) keeps Unicode digits out.
_UID_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UID_MAX: Final = 64

# PS3.5 Table 6.2-1, AE: at most 16 characters of the default repertoire (ISO 646, 0x20-0x7E),
# excluding backslash (the value delimiter) and all control characters; not all spaces.
_AE_RE: Final = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")


def is_valid_uid(s: str) -> bool:
    """True if `s` is a PS3.5 §9.1 UID (tolerating leading zeros inside components)."""
    return isinstance(s, str) and 0 < len(s) <= _UID_MAX and _UID_RE.fullmatch(s) is not None


def validate_uid(s: str, what: str = "SOP Instance UID") -> str:
    """Return `s` unchanged if it is a valid UID, else raise InvalidUID naming `what` and the value."""
    if is_valid_uid(s):
        return s
    shown = repr(s) if not isinstance(s, str) or len(s) <= 80 else repr(s[:80]) + "..."
    raise InvalidUID(
        f"invalid {what}: {shown} (PS3.5 §9.1: 1-64 characters, digit components separated by single dots)"
    )


def is_valid_ae_title(s: str) -> bool:
    """True if `s` is a PS3.5 AE value: 1-16 printable ASCII characters, no backslash, not all spaces."""
    return isinstance(s, str) and _AE_RE.fullmatch(s) is not None and not s.isspace()


def validate_ae_title(title: str) -> str:
    """`title` without its surrounding spaces, which peers ignore; ValueError for one PS3.5 does not allow."""
    stripped = title.strip()
    if not is_valid_ae_title(stripped):
        raise ValueError(f"{title!r} is not an AE title (1-16 characters, no backslash or control characters; "
                         "PS3.5 6.2)")
    return stripped
