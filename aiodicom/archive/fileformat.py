"""PS3.10 file format: the 128-byte preamble, "DICM" and the group 0002 File Meta Information.

Written by hand (no pydicom) because it is on the path of every C-STORE: a stored file is
`encode_file_meta(...)` followed by the data set bytes exactly as received (PS3.10 §7.1, §7.3).
`parse_file_meta` reads it back, so a stored data set can be sent again without decoding it.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Final

from aiodicom.archive.errors import InvalidDataSet, NeedMoreData
from aiodicom.archive.uid import is_valid_ae_title, validate_uid
from aiodicom.dimse.vrs import LONG_VR_CODES
from aiodicom.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PREAMBLE: Final = bytes(128)  # PS3.10 §7.1: all zero when not used by an application profile
MAGIC: Final = b"DICM"
_PREFIX_LEN: Final = len(PREAMBLE) + len(MAGIC)

_SHORT: Final = struct.Struct("<HH2sH")
_LONG: Final = struct.Struct("<HH2sHI")

# PS3.10 Table 7.1-1 element numbers in group 0002.
_GROUP_LENGTH: Final = 0x0000
_VERSION: Final = 0x0001
_MEDIA_SOP_CLASS: Final = 0x0002
_MEDIA_SOP_INSTANCE: Final = 0x0003
_TRANSFER_SYNTAX: Final = 0x0010
_IMPL_CLASS: Final = 0x0012
_IMPL_VERSION: Final = 0x0013
_SOURCE_AE: Final = 0x0016


@dataclass(frozen=True, slots=True, kw_only=True)
class FileMeta:
    """The File Meta Information of a PS3.10 file, and where its data set starts."""

    sop_class_uid: str | None  # type 1 in PS3.10, but absent from some files in the wild
    sop_instance_uid: str | None
    transfer_syntax: str
    implementation_class_uid: str | None
    implementation_version_name: str | None
    source_ae: str | None
    dataset_offset: int  # bytes from the start of the file to the first data set byte


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in LONG_VR_CODES:
        return _LONG.pack(0x0002, elem, vr, 0, len(value)) + value
    return _SHORT.pack(0x0002, elem, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw  # PS3.5 §9.1: UI values are padded with one NUL


def _text(s: str) -> bytes:
    raw = s.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw  # PS3.5 §6.2: SH/AE are padded with one space


def meta_source_ae(calling_ae: str | None) -> str | None:
    """The Source AE Title (0002,0016) to record for a peer's calling AE title: left out (it is optional, PS3.10
    7.1) when the peer sent one the AE value representation cannot carry (a backslash, a control or non-ASCII
    character): DCMTK stores such instances too, and refusing them would fail every C-STORE of that peer."""
    return calling_ae if calling_ae and is_valid_ae_title(calling_ae) else None


def encode_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
    source_ae: str | None = None,
) -> bytes:
    """Preamble + "DICM" + group 0002 in Explicit VR Little Endian (PS3.10 §7.1), ready to be
    followed by the data set bytes. Raises InvalidUID / ValueError on values PS3.10 cannot carry."""
    head, tail = _meta_around_instance(sop_class_uid, transfer_syntax, implementation_class_uid,
                                       implementation_version_name, source_ae)
    instance = _element(_MEDIA_SOP_INSTANCE, b"UI", _ui(validate_uid(sop_instance_uid, "SOP Instance UID")))
    body_length = len(head) + len(instance) + len(tail)
    return b"".join((_START, struct.pack("<I", body_length), head, instance, tail))


_START: Final = PREAMBLE + MAGIC + _SHORT.pack(0x0002, _GROUP_LENGTH, b"UL", 4)


@functools.lru_cache(maxsize=256)
def _meta_around_instance(sop_class_uid: str, transfer_syntax: str, implementation_class_uid: str,
                          implementation_version_name: str, source_ae: str | None) -> tuple[bytes, bytes]:
    """The meta elements before and after Media Storage SOP Instance UID, validated once per combination:
    on the C-STORE path only the instance UID changes from one file to the next."""
    validate_uid(sop_class_uid, "SOP Class UID")
    validate_uid(transfer_syntax, "Transfer Syntax UID")
    validate_uid(implementation_class_uid, "Implementation Class UID")
    if not is_valid_ae_title(implementation_version_name):  # SH: same repertoire and length as AE
        raise ValueError(f"invalid Implementation Version Name {implementation_version_name!r}")
    if source_ae is not None and not is_valid_ae_title(source_ae):
        raise ValueError(f"invalid Source Application Entity Title {source_ae!r}")
    head = _element(_VERSION, b"OB", b"\x00\x01") + _element(_MEDIA_SOP_CLASS, b"UI", _ui(sop_class_uid))
    tail = b"".join((  # PS3.10 §7.1: version 1 (bit 0 of byte 1 set) above; then in tag order
        _element(_TRANSFER_SYNTAX, b"UI", _ui(transfer_syntax)),
        _element(_IMPL_CLASS, b"UI", _ui(implementation_class_uid)),
        _element(_IMPL_VERSION, b"SH", _text(implementation_version_name)),
        _element(_SOURCE_AE, b"AE", _text(source_ae)) if source_ae is not None else b"",
    ))
    return head, tail


def parse_file_meta(head: bytes | memoryview) -> FileMeta:
    """Read the File Meta Information from the first bytes of a PS3.10 file.

    Raises InvalidDataSet when `head` is not a PS3.10 file, NeedMoreData when it stops inside the
    meta group (call again with at least `needed` bytes). A head ending exactly after group 0002 is
    taken as a file with an empty data set.
    """
    mv = memoryview(head).cast("B")
    n = len(mv)
    if n < _PREFIX_LEN:
        raise NeedMoreData({}, _PREFIX_LEN)
    if bytes(mv[128:132]) != MAGIC:
        raise InvalidDataSet("not a PS3.10 file: no 'DICM' after the 128-byte preamble (PS3.10 §7.1)")
    values: dict[int, bytes] = {}
    pos = _PREFIX_LEN
    # Every group 0002 element is read, whatever (0002,0000) says: some writers get it wrong and
    # PS3.10 §7.1 fixes the meta as Explicit VR Little Endian, so the group is self-delimiting.
    while pos + 4 <= n:
        group, elem = struct.unpack_from("<HH", mv, pos)
        if group != 0x0002:
            break
        if pos + 8 > n:
            raise NeedMoreData({}, pos + 12)
        vr = bytes(mv[pos + 4 : pos + 6])
        if vr in LONG_VR_CODES:
            if pos + 12 > n:
                raise NeedMoreData({}, pos + 12)
            length = _LONG.unpack_from(mv, pos)[4]
            start = pos + 12
        elif vr.isalpha() and vr.isupper():
            length = _SHORT.unpack_from(mv, pos)[3]
            start = pos + 8
        else:
            raise InvalidDataSet(f"file meta element (0002,{elem:04X}) has no explicit VR (PS3.10 §7.1)")
        if length == 0xFFFFFFFF:
            raise InvalidDataSet(f"file meta element (0002,{elem:04X}) has an undefined length")
        end = start + length
        if end > n:
            raise NeedMoreData({}, end)
        values[elem] = bytes(mv[start:end])
        pos = end
    if 0 < n - pos < 4:
        raise NeedMoreData({}, pos + 4)

    def text(elem: int) -> str | None:
        raw = values.get(elem)
        return None if raw is None else raw.rstrip(b"\x00 ").decode("ascii", "replace")

    transfer_syntax = text(_TRANSFER_SYNTAX)
    if not transfer_syntax:  # without it the data set cannot be read at all
        raise InvalidDataSet("file meta lacks the Transfer Syntax UID (0002,0010) (PS3.10 Table 7.1-1)")
    return FileMeta(
        sop_class_uid=text(_MEDIA_SOP_CLASS),
        sop_instance_uid=text(_MEDIA_SOP_INSTANCE),
        transfer_syntax=transfer_syntax,
        implementation_class_uid=text(_IMPL_CLASS),
        implementation_version_name=text(_IMPL_VERSION),
        source_ae=text(_SOURCE_AE),
        dataset_offset=pos,
    )
