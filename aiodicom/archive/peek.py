"""Read a few top-level attributes from an encoded data set without decoding it (no pydicom).

The archive files an instance under its Study/Series UIDs and indexes a handful of attributes, all
in groups 0008-0020, so the scan walks element headers from the start, skips every value by its
length, and stops at the first top-level tag past the largest one asked for: pixel data is never
touched. Sequences and items of undefined length (PS3.5 §7.5) are skipped with an explicit stack,
never by recursion, so any nesting depth is safe.

`Scanner` is resumable: it consumes windows of the byte stream and says where it needs the next one,
which lets `peek_file` jump over large values with `pread` instead of reading them.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Final

from aiodicom.archive.errors import NeedMoreData, PeekError

# --- Attributes the archive indexes (PS3.6 tags) ------------------------------------------------
SPECIFIC_CHARACTER_SET: Final = 0x00080005
SOP_CLASS_UID: Final = 0x00080016
SOP_INSTANCE_UID: Final = 0x00080018
STUDY_DATE: Final = 0x00080020
STUDY_TIME: Final = 0x00080030
ACCESSION_NUMBER: Final = 0x00080050
MODALITY: Final = 0x00080060
REFERRING_PHYSICIAN_NAME: Final = 0x00080090
STUDY_DESCRIPTION: Final = 0x00081030
SERIES_DESCRIPTION: Final = 0x0008103E
PATIENT_NAME: Final = 0x00100010
PATIENT_ID: Final = 0x00100020
PATIENT_BIRTH_DATE: Final = 0x00100030
PATIENT_SEX: Final = 0x00100040
BODY_PART_EXAMINED: Final = 0x00180015
STUDY_INSTANCE_UID: Final = 0x0020000D
SERIES_INSTANCE_UID: Final = 0x0020000E
STUDY_ID: Final = 0x00200010
SERIES_NUMBER: Final = 0x00200011
INSTANCE_NUMBER: Final = 0x00200013

INDEX_TAGS: Final[frozenset[int]] = frozenset(
    {
        SPECIFIC_CHARACTER_SET, SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_DATE, STUDY_TIME,
        ACCESSION_NUMBER, MODALITY, REFERRING_PHYSICIAN_NAME, STUDY_DESCRIPTION, SERIES_DESCRIPTION,
        PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE, PATIENT_SEX, BODY_PART_EXAMINED,
        STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, STUDY_ID, SERIES_NUMBER, INSTANCE_NUMBER,
    }
)  # fmt: skip

MAX_VALUE: Final = 65_536  # longer values of requested tags are skipped, not returned (peer-controlled size)


# --- Transfer syntaxes (PS3.5 §10, Annex A) -----------------------------------------------------
class Encoding(IntEnum):
    """How a data set's elements are laid out."""

    IMPLICIT_LE = 0  # PS3.5 A.1
    EXPLICIT_LE = 1  # PS3.5 A.2, and every encapsulated syntax (A.4) and the inflated A.5 stream
    EXPLICIT_BE = 2  # PS3.5 A.3 (retired, still met)


_IMPLICIT_SYNTAXES: Final = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.20"})  # + retired Papyrus 3
_BIG_ENDIAN_SYNTAXES: Final = frozenset({"1.2.840.10008.1.2.2"})
# PS3.5 A.5 and §10.8/§10.20: the whole data set is one raw RFC 1951 stream (no zlib header).
DEFLATED_SYNTAXES: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"})


def dataset_encoding(transfer_syntax: str) -> Encoding:
    """Element layout of a data set in `transfer_syntax` (after inflating a deflated one)."""
    if transfer_syntax in _IMPLICIT_SYNTAXES:
        return Encoding.IMPLICIT_LE
    if transfer_syntax in _BIG_ENDIAN_SYNTAXES:
        return Encoding.EXPLICIT_BE
    return Encoding.EXPLICIT_LE  # PS3.5 §10: every other syntax, private ones included


def is_deflated(transfer_syntax: str) -> bool:
    return transfer_syntax in DEFLATED_SYNTAXES


def inflate_head(raw: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Inflate at most `limit` bytes from a prefix of a deflated data set (PS3.5 A.5).

    A prefix is fine: zlib returns whatever the given input decodes to. Corrupt input → PeekError.
    """
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, max(limit, 1))
    except zlib.error as exc:
        raise PeekError(f"deflated data set is corrupt: {exc}") from None


# --- The scanner --------------------------------------------------------------------------------
_ITEM: Final = 0xFFFEE000  # PS3.5 §7.5: Item
_ITEM_DELIM: Final = 0xFFFEE00D  # Item Delimitation Item
_SEQ_DELIM: Final = 0xFFFEE0DD  # Sequence Delimitation Item
_UNDEFINED: Final = 0xFFFFFFFF


def _vr(code: str) -> int:
    return int.from_bytes(code.encode("ascii"), "big")


# PS3.5 §7.1.2 (Table 7.1-1): these VRs have a 16-bit length; all others, including VRs newer than
# this code, have 2 reserved bytes and a 32-bit length.
_SHORT_VRS: Final = frozenset(
    _vr(vr)
    for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
               "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")
)  # fmt: skip
_SHORT_VR_CODES: Final = frozenset(v.to_bytes(2, "big") for v in _SHORT_VRS)
_LE_EXPLICIT_HEADER: Final = struct.Struct("<HH2sH")  # tag, VR, 16-bit length (or the reserved bytes)
_VR_SQ: Final = _vr("SQ")
_VR_UN: Final = _vr("UN")
# PS3.5 §7.5, §A.4, §6.2.2: only these may have an undefined length; UN then holds implicit VR LE.
_UNDEFINED_OK: Final = frozenset({_VR_SQ, _VR_UN, _vr("OB"), _vr("OW")})

_TOP, _SEQ, _ITEM_FRAME = 0, 1, 2  # frame kinds; a stack entry is kind << 2 | Encoding
_IMPLICIT, _BIG = int(Encoding.IMPLICIT_LE), int(Encoding.EXPLICIT_BE)  # plain ints on the hot path
_EXPLICIT_LE = int(Encoding.EXPLICIT_LE)
_LE_TAG: Final = struct.Struct("<HH")
_BE_TAG: Final = struct.Struct(">HH")
_LE_U32: Final = struct.Struct("<I")
_BE_U32: Final = struct.Struct(">I")
_LE_U16: Final = struct.Struct("<H")
_BE_U16: Final = struct.Struct(">H")


class Scanner:
    """Resumable scan of the top level of one data set.

    Feed it windows of the data set: each window must start at absolute offset `offset` (0 for the
    first byte of the data set). `feed` returns True once every requested tag that can occur has been
    passed (results in `found`); otherwise it has moved `offset` to where it must resume (possibly
    past the window, when it skipped a long value) and wants at least `needed` bytes from there.
    """

    __slots__ = ("_encoding", "_max_tag", "_max_value", "_stack", "_tags", "done", "found", "needed", "offset")

    def __init__(self, transfer_syntax: str, tags: frozenset[int], *, max_value: int = MAX_VALUE) -> None:
        self._encoding = int(dataset_encoding(transfer_syntax))
        self._tags = tags
        self._max_tag = max(tags, default=-1)
        self._max_value = max_value
        self._stack: list[int] = []  # open undefined-length sequences and items, innermost last
        self.offset = 0
        self.needed = 8  # the smallest element header
        self.found: dict[int, bytes] = {}
        self.done = not tags

    def feed(self, window: bytes | bytearray | memoryview, *, at_end: bool) -> bool:
        """Scan `window` (which starts at `offset`); `at_end` says the data set ends with it.

        Raises PeekError on malformed data, including a data set that ends inside an element.
        """
        if self.done:
            return True
        with memoryview(window) as raw, raw.cast("B") as mv:
            return self._scan(mv, at_end)

    def _scan(self, mv: memoryview, at_end: bool) -> bool:  # one flat loop: no call per element
        n = len(mv)
        p = 0
        stack = self._stack
        tags, max_tag, max_value, found = self._tags, self._max_tag, self._max_value, self.found
        if not stack and self._encoding == _EXPLICIT_LE:
            # The common case (explicit VR LE, top level) in a tighter loop: one unpack per element.
            # Anything unusual (items, undefined lengths, a bad VR, the window's end) is left to the
            # general loop below, which resumes at the same element.
            header_at, u32_at = _LE_EXPLICIT_HEADER.unpack_from, _LE_U32.unpack_from
            while n - p >= 12:
                grp, elem, vr_code, length = header_at(mv, p)
                tag = grp << 16 | elem
                if tag > max_tag:
                    return self._finish()
                if grp == 0xFFFE:
                    break
                if vr_code in _SHORT_VR_CODES:
                    header = 8
                else:
                    if not (vr_code.isalpha() and vr_code.isupper()):
                        break
                    length = u32_at(mv, p + 8)[0]
                    if length == _UNDEFINED:
                        break
                    header = 12
                end = p + header + length
                if tag in tags and length <= max_value:
                    if end > n:
                        break
                    found[tag] = bytes(mv[p + header : end])
                p = end
        while True:
            frame = stack[-1] if stack else self._encoding  # _TOP << 2 == 0
            kind, enc = frame >> 2, frame & 3
            big = enc == _BIG
            if n - p < 8:
                if kind == _TOP and n - p >= 4 and self._tag_at(mv, p, big) > max_tag:
                    return self._finish()
                if kind == _TOP and p == n and at_end:
                    return self._finish()  # the data set ended before any tag past the largest asked for
                return self._short(p, 8, at_end, "an element header")
            grp, elem = (_BE_TAG if big else _LE_TAG).unpack_from(mv, p)
            tag = grp << 16 | elem
            if kind == _TOP and tag > max_tag:
                return self._finish()
            if grp == 0xFFFE:
                # PS3.5 §7.5: items and delimiters are a tag and a 32-bit length, no VR, in every syntax.
                length = (_BE_U32 if big else _LE_U32).unpack_from(mv, p + 4)[0]
                if kind == _SEQ and tag == _ITEM:
                    if length == _UNDEFINED:
                        stack.append(_ITEM_FRAME << 2 | enc)
                        p += 8
                    else:
                        p += 8 + length
                elif (kind == _SEQ and tag == _SEQ_DELIM) or (kind == _ITEM_FRAME and tag == _ITEM_DELIM):
                    stack.pop()
                    p += 8
                else:
                    raise PeekError(f"unexpected ({grp:04X},{elem:04X}) at offset {self.offset + p} (PS3.5 §7.5)")
                continue
            if kind == _SEQ:
                raise PeekError(
                    f"({grp:04X},{elem:04X}) where a sequence item was expected at offset {self.offset + p}"
                )
            vr = 0
            if enc == _IMPLICIT:
                length = _LE_U32.unpack_from(mv, p + 4)[0]
                header = 8
            else:
                b0, b1 = mv[p + 4], mv[p + 5]
                if not (0x41 <= b0 <= 0x5A and 0x41 <= b1 <= 0x5A):
                    raise PeekError(
                        f"({grp:04X},{elem:04X}) has no explicit VR at offset {self.offset + p} (PS3.5 §7.1.2)"
                    )
                vr = b0 << 8 | b1
                if vr in _SHORT_VRS:
                    length = (_BE_U16 if big else _LE_U16).unpack_from(mv, p + 6)[0]
                    header = 8
                else:
                    if n - p < 12:
                        return self._short(p, 12, at_end, "an element header")
                    length = (_BE_U32 if big else _LE_U32).unpack_from(mv, p + 8)[0]
                    header = 12
            if length == _UNDEFINED:
                if enc != _IMPLICIT and vr not in _UNDEFINED_OK:
                    raise PeekError(f"({grp:04X},{elem:04X}) has an undefined length but is not SQ/UN/OB/OW")
                # Implicit VR: undefined length means SQ (PS3.5 §7.5). UN of undefined length holds
                # implicit VR little endian content whatever the transfer syntax (PS3.5 §6.2.2).
                inner = _IMPLICIT if vr == _VR_UN else enc
                stack.append(_SEQ << 2 | inner)
                p += header
                continue
            end = p + header + length
            if kind == _TOP and tag in tags and length <= max_value:
                if end > n:
                    return self._short(p, end - p, at_end, f"the value of ({grp:04X},{elem:04X})")
                found[tag] = bytes(mv[p + header : end])
            p = end

    @staticmethod
    def _tag_at(mv: memoryview, p: int, big: bool) -> int:
        grp: int
        elem: int
        grp, elem = (_BE_TAG if big else _LE_TAG).unpack_from(mv, p)
        return grp << 16 | elem

    def _finish(self) -> bool:
        self.done = True
        return True

    def _short(self, p: int, need: int, at_end: bool, what: str) -> bool:
        if at_end:
            raise PeekError(f"data set truncated: ends inside {what} at offset {self.offset + p}")
        self.offset += p
        self.needed = need
        return False


def peek(
    head: bytes | bytearray | memoryview,
    transfer_syntax: str,
    tags: frozenset[int],
    *,
    complete: bool = False,
    max_value: int = MAX_VALUE,
) -> dict[int, bytes]:
    """Raw values of the requested top-level `tags` in the encoded data set starting `head`.

    `head` is the start of the data set (inflated already for deflated syntaxes, see `inflate_head`);
    `complete` says it is the whole data set. Values are returned as encoded (byte order of the
    transfer syntax, padding kept; see `text_value`); values of undefined length and values longer
    than `max_value` are skipped, never returned. Raises NeedMoreData when `head` ends before the scan
    is done (its `found` has the partial result, `needed` the head length to retry with) and PeekError
    on malformed data.
    """
    scanner = Scanner(transfer_syntax, tags, max_value=max_value)
    if scanner.feed(head, at_end=complete):
        return scanner.found
    raise NeedMoreData(dict(scanner.found), scanner.offset + scanner.needed)


Reader = Callable[[int, int], bytes]  # (offset in the data set, size) -> at most size bytes; b"" at the end


def peek_file(
    fd: int,
    start: int,
    transfer_syntax: str,
    tags: frozenset[int],
    *,
    chunk: int = 65_536,
    max_value: int = MAX_VALUE,
) -> dict[int, bytes]:
    """`peek` over a data set stored in a file from byte `start` to the end of the file (blocking).

    Reads with `pread` (the file position is untouched), jumping over skipped values; a deflated data
    set is inflated as a stream, holding at most about `chunk` bytes of it at a time.
    """
    return peek_reader(lambda offset, size: os.pread(fd, size, start + offset), transfer_syntax, tags,
                       chunk=chunk, max_value=max_value)  # fmt: skip


def peek_reader(
    read: Reader,
    transfer_syntax: str,
    tags: frozenset[int],
    *,
    chunk: int = 65_536,
    max_value: int = MAX_VALUE,
) -> dict[int, bytes]:
    """`peek` over a data set of any size reachable through `read(offset, size)` (whole, not a head).

    Skipped values are jumped over, never read (except through the inflater of a deflated syntax).
    """
    scanner = Scanner(transfer_syntax, tags, max_value=max_value)
    if scanner.done:
        return scanner.found
    if is_deflated(transfer_syntax):
        return _scan_stream(scanner, _inflated_chunks(read, chunk))
    while True:
        want = max(chunk, scanner.needed)
        window = read(scanner.offset, want)
        if scanner.feed(window, at_end=len(window) < want):
            return scanner.found


def _inflated_chunks(read: Reader, chunk: int) -> Iterator[bytes]:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pos = 0
    try:
        while not inflater.eof:
            data = inflater.unconsumed_tail
            if not data:
                data = read(pos, chunk)
                if not data:
                    tail = inflater.flush()
                    if tail:
                        yield tail
                    return
                pos += len(data)
            out = inflater.decompress(data, chunk)  # bounded output: a zip bomb costs time, not memory
            if out:
                yield out
    except zlib.error as exc:
        raise PeekError(f"deflated data set is corrupt: {exc}") from None


def _scan_stream(scanner: Scanner, chunks: Iterator[bytes]) -> dict[int, bytes]:
    """Feed a scanner from a forward-only stream, dropping bytes it skips."""
    buf = bytearray()
    buf_start = 0  # absolute offset of buf[0]
    exhausted = False
    while True:
        if scanner.offset > buf_start:
            drop = min(len(buf), scanner.offset - buf_start)
            del buf[:drop]
            buf_start += drop
        while not exhausted and (buf_start < scanner.offset or len(buf) < scanner.needed):
            piece = next(chunks, None)
            if piece is None:
                exhausted = True
                break
            if buf_start < scanner.offset:  # buf is empty: still skipping a value
                skip = min(len(piece), scanner.offset - buf_start)
                piece = piece[skip:]
                buf_start += skip
            buf += piece
        if buf_start < scanner.offset:
            raise PeekError(f"data set truncated: ends before offset {scanner.offset}")
        if scanner.feed(buf, at_end=exhausted):
            return scanner.found


# --- Values ---------------------------------------------------------------------------------------
def text_value(raw: bytes, encoding: str = "ascii") -> str:
    """A text value without its trailing NUL/space padding (PS3.5 §6.2), for UI, CS, DA, IS, LO...

    Undecodable bytes become U+FFFD: a UID holding them is then rejected by `validate_uid`. For
    person names and other text in a Specific Character Set use `decode_text`.
    """
    return raw.rstrip(b"\x00 ").decode(encoding, "replace")


# PS3.5 §6.1.2.5.3: ISO 2022 designations reset to the initial character set after these delimiters
# (value "\\", PN group "=" and component "^", and the text VR control characters).
_RESETS: Final = frozenset({0x5C, 0x3D, 0x5E, 0x09, 0x0A, 0x0C, 0x0D})


def decode_text(raw: bytes, specific_character_set: bytes | None = None) -> str:
    """A text value decoded per the data set's Specific Character Set (0008,0005) raw value
    (PS3.5 §6.1), trailing padding stripped. Unknown terms fall back to the default repertoire."""
    from pydicom.charset import convert_encodings, decode_bytes  # only when text really is decoded

    terms = text_value(specific_character_set or b"").split("\\")
    encodings = convert_encodings([t.strip() for t in terms]) if any(terms) else ["iso8859"]
    return decode_bytes(raw.rstrip(b"\x00 "), encodings, set(_RESETS))
