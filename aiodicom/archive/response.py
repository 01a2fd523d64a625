"""C-FIND response identifiers (PS3.4 C.4.1.1.3.2): exactly the requested keys, with their values.

Two builders of the same answer:
- `response_dataset(query, candidate)`: a pydicom Dataset, for any candidate (worklist items with
  sequences, rows of any index). `Query.response` is this.
- `ResponseEncoder`: the encoded bytes of the response to one index row, built directly. Everything
  that does not change from row to row (the elements in tag order, their headers, which row
  column feeds which element) is prepared once per query, so a row costs a few small joins
  instead of a Dataset and pydicom's writer. A row it cannot encode (sequence items, a value type
  the index never produces) makes `encode` return None: the caller then takes the Dataset path.

Both give byte-identical output (tests/unit/test_find_encoder.py). Pure functions: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from .matching import Candidate, Query, _number
from ..dimse.dataset import EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from ..dimse.vrs import BINARY_NUMBERS, CHARSET_VRS, LONG_VRS

CHARSET_UTF8: Final = "ISO_IR 192"  # what responses declare when a value needs more than ASCII
_CHARSET_TAG: Final = 0x00080005
_QR_LEVEL_TAG: Final = 0x00080052
_EXTRA_VRS: Final = {"RetrieveAETitle": "AE", "InstanceAvailability": "CS"}  # the keys the SCP fills in

_TEXT: Final = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                          "UC", "UI", "UR", "UT"})

_SYNTAXES: Final = {IMPLICIT_VR_LITTLE_ENDIAN: (True, "little"), EXPLICIT_VR_LITTLE_ENDIAN: (False, "little"),
                    EXPLICIT_VR_BIG_ENDIAN: (False, "big")}


# ---- the Dataset builder -----------------------------------------------------------------------

def response_dataset(query: Query, candidate: Candidate) -> Dataset:
    """A response identifier holding exactly the requested keys, sequences reduced to their
    matching items with only the requested item keys (C.2.2.2.6)."""
    ds = Dataset()
    for rk in query.return_keys:
        value = rk.key.get(candidate)
        if rk.key.vr == "SQ":
            items = value or ()
            if rk.item is None:
                value = [_dataset(it) for it in items]
            else:
                value = [response_dataset(rk.item, it) for it in items if rk.item.matches(it)]
        ds.add_new(rk.key.tag, rk.key.vr, _response_value(rk.key.vr, value))
    return ds


def _dataset(item: Candidate) -> Dataset:
    if isinstance(item, Dataset):
        return item
    ds = Dataset()
    for name, value in item.items():
        tag = name if isinstance(name, int) else tag_for_keyword(name)
        if tag is not None:
            vr = dictionary_VR(tag)
            ds.add_new(tag, vr, [_dataset(i) for i in value or ()] if vr == "SQ" else _response_value(vr, value))
    return ds


def _response_value(vr: str, value: Any) -> Any:
    if value is None or value == "" or vr not in BINARY_NUMBERS:
        return None if value == "" else value
    if isinstance(value, str):
        parts = [_number(vr, v) for v in value.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    return value


# ---- the direct encoder ------------------------------------------------------------------------

class _NeedsDataset(Exception):
    """A value this encoder does not handle: the row goes the Dataset way."""


class ResponseEncoder:
    """Encodes the response to one index row (a keyword → value mapping, as `ArchiveIndex.query`
    yields) in one of the uncompressed transfer syntaxes. Build it with `for_query`."""

    __slots__ = ("_always_charset", "_charset", "_charset_at", "_columns", "_little")

    def __init__(self, columns: list[tuple], charset_at: int, charset: bytes, always_charset: bool,
                 little: bool) -> None:
        self._columns = columns  # per element in tag order: (keyword, tag, vr, text, header, long, pad, const)
        self._charset_at = charset_at  # where Specific Character Set goes among them, when needed
        self._charset = charset  # that whole element, encoded
        self._always_charset = always_charset  # a constant value already needs it
        self._little = little

    @classmethod
    def for_query(cls, query: Query, transfer_syntax: str, *, level: str,
                  extras: Mapping[str, str] | None = None) -> ResponseEncoder | None:
        """The encoder of `query`'s responses, which also carry Query/Retrieve Level and the
        `extras` (RetrieveAETitle, InstanceAvailability: constants the SCP fills in).
        None for a transfer syntax other than the three uncompressed ones."""
        syntax = _SYNTAXES.get(transfer_syntax)
        if syntax is None:
            return None
        implicit, order = syntax
        little = order == "little"
        # the request's key for the same tag is overridden by these constants, as setattr did
        consts: dict[int, tuple[str, str]] = {_QR_LEVEL_TAG: ("CS", level)}
        for keyword, value in (extras or {}).items():
            consts[int(tag_for_keyword(keyword))] = (_EXTRA_VRS[keyword], value)  # type: ignore[arg-type]
        elements: dict[int, tuple] = {}
        for rk in query.return_keys:
            tag, vr = rk.key.tag, rk.key.vr
            header, long = _header(tag, vr, implicit, little)
            elements[tag] = (rk.key.keyword, tag, vr, vr in _TEXT, header, long, b"\0" if vr == "UI" else b" ", None)
        always = False
        for tag, (vr, value) in consts.items():
            header, long = _header(tag, vr, implicit, little)
            always |= not value.isascii()
            elements[tag] = ("", tag, vr, True, header, long, b" ", _element(header, long, little, _text(vr, value, b" ")))
        columns = [elements[tag] for tag in sorted(elements)]
        charset_header, charset_long = _header(_CHARSET_TAG, "CS", implicit, little)
        charset = _element(charset_header, charset_long, little, CHARSET_UTF8.encode("ascii"))
        charset_at = sum(1 for tag in elements if tag < _CHARSET_TAG)
        return cls(columns, charset_at, charset, always, little)

    def encode(self, row: Mapping[Any, Any]) -> bytes | None:
        """The response identifier's bytes, or None when the row needs the Dataset path."""
        little = self._little
        order = "little" if little else "big"
        non_ascii = self._always_charset
        parts = []
        append = parts.append
        for keyword, tag, vr, text, header, long, pad, const in self._columns:
            if const is not None:
                append(const)
                continue
            value = row.get(keyword)
            if value is None:
                value = row.get(tag)  # as Key.get: a candidate may be keyed by tag
            if text and value.__class__ is str:  # the usual case: text from the index
                if not value:
                    data = b""
                elif value.isascii():
                    if vr == "PN" and "=" in value:
                        value = _pn(value)
                    elif vr == "UI" and (" " in value or not value.isprintable()):
                        value = _ui(value)
                    data = value.encode("ascii")
                    if len(data) & 1:
                        data += pad
                else:
                    non_ascii = True
                    try:
                        data = _text(vr, value, pad)
                    except UnicodeEncodeError:  # not Latin-1 in a VR pydicom writes as such: its error
                        return None
            else:
                try:
                    data = _value(vr, value, pad, little)
                except (_NeedsDataset, UnicodeEncodeError):
                    return None
                if text and not data.isascii():  # a list of values, one of them not ASCII
                    non_ascii = True
            size = len(data)
            if long:
                append(header + size.to_bytes(4, order) + data)
            elif size > 0xFFFF:
                return None  # pydicom re-labels such a value UN (PS3.5 §6.2.2): leave it that way
            else:
                append(header + size.to_bytes(2, order) + data)
        if non_ascii:
            parts.insert(self._charset_at, self._charset)
        return b"".join(parts)


def _header(tag: int, vr: str, implicit: bool, little: bool) -> tuple[bytes, bool]:
    """An element's tag (and VR) as encoded, and whether its length takes 32 bits (PS3.5 §7.1)."""
    order = "<" if little else ">"
    head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head, True
    if vr in LONG_VRS:
        return head + vr.encode("ascii") + b"\0\0", True
    return head + vr.encode("ascii"), False


def _element(header: bytes, long: bool, little: bool, data: bytes) -> bytes:
    return header + len(data).to_bytes(4 if long else 2, "little" if little else "big") + data


def _pn(value: str) -> str:
    """pydicom drops the empty trailing groups of each name ("A^B=" is "A^B")."""
    return "\\".join(name.rstrip("=") for name in value.split("\\"))


def _ui(value: str) -> str:
    """pydicom strips the white space around each UID (NUL, the UI pad, is kept as it is)."""
    return "\\".join(uid.strip() for uid in value.split("\\"))


def _text(vr: str, value: str, pad: bytes) -> bytes:
    """Text as a response carries it. A non-ASCII value means Specific Character Set ISO_IR 192,
    which covers the VRs of PS3.5 §6.1.2.3; the others stay Latin-1, as pydicom writes them
    (the index decoded their bytes as Latin-1, so this gives back what was stored)."""
    if vr == "PN":
        value = _pn(value)
    elif vr == "UI":
        value = _ui(value)
    data = value.encode("utf-8" if vr in CHARSET_VRS else "latin-1")
    return data + pad if len(data) & 1 else data


def _value(vr: str, value: Any, pad: bytes, little: bool) -> bytes:
    """Any value other than a non-empty string of a text VR."""
    if value is None or value == "":
        return b""
    if vr in _TEXT:
        if value.__class__ is int and vr == "IS":  # the index's INTEGER columns
            return _text(vr, str(value), pad)
        if isinstance(value, (list, tuple)) and all(v.__class__ is str for v in value):
            return _text(vr, "\\".join(value), pad) if value else b""
        raise _NeedsDataset
    code = BINARY_NUMBERS.get(vr)
    if code is not None:
        if isinstance(value, str):
            numbers = [_number(vr, v) for v in value.split("\\")]
        elif isinstance(value, (list, tuple)):
            numbers = list(value)
        else:
            numbers = [value]
        if any(n is None or n.__class__ not in (int, float) for n in numbers):
            raise _NeedsDataset
        try:
            return struct.pack(("<" if little else ">") + code * len(numbers), *numbers)
        except struct.error:
            raise _NeedsDataset from None
    if vr == "SQ" and isinstance(value, (list, tuple)) and not value:
        return b""  # no items: what the index gives for a sequence key (it holds none)
    raise _NeedsDataset  # sequence items, binary values: not from an index
