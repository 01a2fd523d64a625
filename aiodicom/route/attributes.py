"""Attributes as rules and morphs name them (keyword or tag), and one instance as the rules see it: raw
top-level values from the header peek (archive/peek.py), decoded only as far as a rule compares them."""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from ..dimse.vrs import BINARY_NUMBERS, CHARSET_VRS
from ..archive.peek import decode_text, text_value
from ..uids import EXPLICIT_VR_BIG_ENDIAN

SPECIFIC_CHARACTER_SET: Final = 0x00080005
SOP_CLASS_UID: Final = 0x00080016
MODALITY: Final = 0x00080060

NUMERIC_VRS: Final = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
TEXT_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"}) | CHARSET_VRS
_TAG_RE: Final = re.compile(r"\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?")


class RuleError(ValueError):
    """A rule (or morph) that cannot be compiled; the message names what is wrong."""


# ---- attributes by keyword or tag ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Attribute:
    tag: int
    vr: str  # the VR we read it as (first of an ambiguous pair; LO for private and unknown tags)
    name: str  # keyword, or (gggg,eeee)


def attribute(spec: str) -> Attribute:
    """A top-level attribute named by keyword (`PatientID`) or tag (`0010,0020`, `(0010,0020)`)."""
    text = spec.strip()
    m = _TAG_RE.fullmatch(text)
    if m:
        tag = int(m[1] + m[2], 16)
    else:
        found = tag_for_keyword(text)
        if found is None:
            raise RuleError(f"{spec!r} is not a DICOM keyword or a gggg,eeee tag")
        tag = found
    group = tag >> 16
    if group in (0x0000, 0x0002) or tag in (0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD):
        raise RuleError(f"{spec!r} is a command, file meta or item tag, not a data set attribute")
    try:
        vr = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        vr = "LO"  # private or unknown: read as text
    if group % 2 and tag & 0xFFFF < 0x0100:
        vr = "LO"  # a private creator (PS3.5 §7.8.1)
    name = keyword_for_tag(tag) or f"({group:04X},{tag & 0xFFFF:04X})"
    return Attribute(tag, vr, name)


# ---- what a rule sees of one instance ---------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """One received instance as the rules see it: its association and raw top-level values."""

    calling_ae: str
    called_ae: str
    peer: str  # the sender's IP address
    sop_class_uid: str
    transfer_syntax: str
    attributes: Mapping[int, bytes] = field(default_factory=dict)  # raw values (archive/peek.py)

    def value(self, attr: Attribute) -> str | tuple[int | float, ...] | None:
        """The attribute as text (values joined by backslashes) or numbers; None when absent."""
        raw = self.attributes.get(attr.tag)
        if raw is None:
            return None
        code = BINARY_NUMBERS.get(attr.vr)
        if code is not None:
            size = struct.calcsize(code)
            order = ">" if self.transfer_syntax == EXPLICIT_VR_BIG_ENDIAN else "<"
            count = len(raw) // size
            return struct.unpack(f"{order}{count}{code}", raw[: count * size])
        if attr.vr in CHARSET_VRS:
            return decode_text(raw, self.attributes.get(SPECIFIC_CHARACTER_SET))
        return text_value(raw, "latin-1")



def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)


