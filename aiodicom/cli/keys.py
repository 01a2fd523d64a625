"""DCMTK-style `-k` keys: `PatientName=DOE*`, `0010,0020=`, `Seq[0].Keyword=Value`, `StudyDate` (a return key)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.sequence import Sequence
from pydicom.tag import Tag

_PART = re.compile(r"^\(?(?:(?P<group>[0-9A-Fa-f]{4}),(?P<elem>[0-9A-Fa-f]{4})|(?P<keyword>[A-Za-z][A-Za-z0-9]*))\)?"
                   r"(?:\[(?P<index>\d+)\])?$")
_INTEGER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "AT"}
_FLOAT_VRS = {"FL", "FD"}


class KeySpecError(ValueError):
    """A -k argument that names no attribute or cannot hold its value."""


def _tag(part: str) -> tuple[int, int | None]:
    m = _PART.match(part.strip())
    if not m:
        raise KeySpecError(f"not an attribute: {part!r} (use a keyword or gggg,eeee)")
    if m.group("keyword"):
        tag = tag_for_keyword(m.group("keyword"))
        if tag is None:
            raise KeySpecError(f"unknown keyword: {m.group('keyword')!r}")
    else:
        tag = int(m.group("group") + m.group("elem"), 16)
    index = m.group("index")
    return tag, None if index is None else int(index)


def _vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise KeySpecError(f"unknown tag ({tag >> 16:04X},{tag & 0xFFFF:04X}): give its keyword") from None
    return vr.split(" or ")[0]


def _value(vr: str, text: str):
    if text == "":
        return None
    if vr in _INTEGER_VRS:
        try:
            return [int(v, 0) for v in text.split("\\")] if "\\" in text else int(text, 0)
        except ValueError:
            raise KeySpecError(f"{text!r} is not a number (VR {vr})") from None
    if vr in _FLOAT_VRS:
        try:
            return float(text)
        except ValueError:
            raise KeySpecError(f"{text!r} is not a number (VR {vr})") from None
    return text


def apply_key(ds: Dataset, spec: str) -> None:
    """Set one key in ds (a later key for the same attribute overrides an earlier one, as in findscu)."""
    path, _, value = spec.partition("=")
    parts = path.split(".")
    target = ds
    for part in parts[:-1]:
        tag, index = _tag(part)
        if _vr(tag) != "SQ":
            raise KeySpecError(f"{keyword_for_tag(tag) or part} is not a sequence")
        if tag not in target or target[tag].value is None:
            target.add_new(tag, "SQ", Sequence())
        seq = target[tag].value
        index = index or 0
        while len(seq) <= index:
            seq.append(Dataset())
        target = seq[index]
    tag, index = _tag(parts[-1])
    vr = _vr(tag)
    if vr == "SQ":
        if value:
            raise KeySpecError(f"{keyword_for_tag(tag)} is a sequence: give its items' keys as {parts[-1]}[0].Keyword=...")
        if tag not in target:
            target.add_new(tag, "SQ", Sequence([Dataset()] if index is not None else []))
        return
    if Tag(tag).group == 0x0002 or Tag(tag).group == 0x0000:
        raise KeySpecError(f"{parts[-1]} cannot be part of an identifier")
    target.add_new(tag, vr, _value(vr, value))


def build_identifier(specs: Iterable[str]) -> Dataset:
    ds = Dataset()
    for spec in specs:
        apply_key(ds, spec)
    return ds
