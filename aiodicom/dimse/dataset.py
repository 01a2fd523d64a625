"""How a data set travels: encoded bytes in a transfer syntax, in memory or in a file.

The store path never decodes: received fragments go to a `Spool` (memory, then a temp file past
a limit) and come out as an `EncodedDataset` the archive writes behind a file meta header as is.
Sending a PS3.10 file reads it from the first byte after its File Meta Information. pydicom is
imported only by `EncodedDataset.dataset()` and `from_dataset()`, when a data set must be read.
"""

from __future__ import annotations

import array
import contextlib
import io
import os
import struct
import sys
import tempfile
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiodicom.dimse import status as st
from aiodicom.dimse.errors import DatasetDecodeError, DimseError, InvalidFileError
from aiodicom.dimse.vrs import LONG_VR_CODES

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
JPIP_REFERENCED_DEFLATE: Final = "1.2.840.10008.1.2.4.95"

# PS3.5 Annex A: these two deflate the whole data set (A.5, and A.4 for JPIP Referenced Deflate).
_DEFLATED: Final = frozenset({DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, JPIP_REFERENCED_DEFLATE})

DEFAULT_SPOOL_MEMORY: Final = 4 << 20
DEFAULT_INFLATE_LIMIT: Final = 1 << 31
_READ_CHUNK: Final = 1 << 20


def encoding_of(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of the data set part of a transfer syntax.

    PS3.5 §10 and Annex A: apart from Implicit VR Little Endian, Explicit VR Big Endian and the
    deflated syntaxes, every transfer syntax (all the encapsulated ones, and private ones we do
    not know) encodes the data set as Explicit VR Little Endian.
    """
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True, False
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False, False
    return False, True, transfer_syntax in _DEFLATED


@dataclass(frozen=True, slots=True, kw_only=True)
class FileMetaInfo:
    """The File Meta Information of a PS3.10 file (PS3.10 §7.1), as far as sending needs it."""

    sop_class_uid: str  # (0002,0002) Media Storage SOP Class UID
    sop_instance_uid: str  # (0002,0003) Media Storage SOP Instance UID
    transfer_syntax: str  # (0002,0010)
    implementation_class_uid: str | None  # (0002,0012)
    implementation_version_name: str | None  # (0002,0013)
    source_ae_title: str | None  # (0002,0016)
    dataset_offset: int  # first byte after the file meta group


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class EncodedDataset:
    """A data set encoded in `transfer_syntax`: bytes in memory, or `size` bytes of a file at
    `path` starting at `offset`. A temporary file (a spool) is deleted by close()/discard(), or
    at the latest when the object is garbage collected; other files are never touched."""

    __slots__ = ("transfer_syntax", "path", "offset", "size", "_memory", "_finalizer", "__weakref__")

    def __init__(self, transfer_syntax: str, data: bytes | bytearray | memoryview = b"") -> None:
        self.transfer_syntax = transfer_syntax
        mv = data if isinstance(data, memoryview) else memoryview(data)
        self._memory: memoryview | None = mv.cast("B") if mv.ndim != 1 or mv.itemsize != 1 else mv
        self.path: str | None = None
        self.offset = 0
        self.size = len(self._memory)
        self._finalizer: weakref.finalize[[str], EncodedDataset] | None = None

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        transfer_syntax: str,
        *,
        offset: int = 0,
        size: int | None = None,
        temporary: bool = False,
    ) -> EncodedDataset:
        """The data set stored in a file from `offset` for `size` bytes (default: to the end).
        `temporary` makes close() delete the file."""
        encoded = cls(transfer_syntax)
        encoded._memory = None
        encoded.path = os.fspath(path)
        encoded.offset = offset
        encoded.size = os.path.getsize(encoded.path) - offset if size is None else size
        if encoded.size < 0 or offset < 0:
            raise ValueError(f"offset {offset} lies past the end of {encoded.path}")
        if temporary:
            encoded._finalizer = weakref.finalize(encoded, _unlink, encoded.path)
        return encoded

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> tuple[EncodedDataset, FileMetaInfo]:
        """A PS3.10 file, to be sent as it is: the data set starts after its File Meta
        Information, in the transfer syntax that names. InvalidFileError if it has no preamble,
        no 'DICM' prefix or no usable meta group (PS3.10 §7.1)."""
        meta = read_file_meta(path)
        return cls.from_path(path, meta.transfer_syntax, offset=meta.dataset_offset), meta

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax: str) -> EncodedDataset:
        """Encode a pydicom data set (without File Meta Information) in `transfer_syntax`."""
        return cls(transfer_syntax, _encode_with_pydicom(ds, transfer_syntax))

    @property
    def memory(self) -> memoryview | None:
        """The bytes when held in memory, else None."""
        return self._memory

    def read_bytes(self) -> bytes:
        """All the encoded bytes (reads the file when file-backed)."""
        mv = self._memory
        if mv is not None:
            whole = mv.obj
            return whole if type(whole) is bytes and len(whole) == mv.nbytes else mv.tobytes()
        assert self.path is not None
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise InvalidFileError(f"{self.path} is shorter than the {self.size} bytes expected")
        return data

    def iter_chunks(self, chunk_size: int = _READ_CHUNK) -> Iterator[memoryview | bytes]:
        """The bytes in chunks of `chunk_size` (the last may be shorter): views of memory, or
        reads of the file, so a large data set is never held whole for sending."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if self._memory is not None:
            mv = self._memory
            for start in range(0, len(mv), chunk_size):
                yield mv[start : start + chunk_size]
            return
        assert self.path is not None
        remaining = self.size
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while remaining > 0:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    raise InvalidFileError(f"{self.path} is shorter than the {self.size} bytes expected")
                remaining -= len(chunk)
                yield chunk

    def dataset(self, *, inflate_limit: int = DEFAULT_INFLATE_LIMIT) -> Dataset:
        """Decode with pydicom. Deflated syntaxes are inflated first (at most `inflate_limit`
        bytes: a deflate stream can expand 1000-fold). DatasetDecodeError on failure."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.filereader import read_dataset
        from pydicom.uid import UID

        implicit, little, deflated = encoding_of(self.transfer_syntax)
        try:
            if deflated:
                ds = read_dataset(io.BytesIO(self._inflate(inflate_limit)), implicit, little)
            elif self._memory is not None:
                ds = read_dataset(io.BytesIO(self._memory), implicit, little)
            else:
                assert self.path is not None
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    ds = read_dataset(f, implicit, little, bytelength=self.size)
        except DatasetDecodeError:
            raise
        except Exception as exc:  # pydicom raises many types for bad input; callers need one
            raise DatasetDecodeError(f"cannot decode the data set: {exc}") from exc
        # pydicom needs the transfer syntax to decode Pixel Data.
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(self.transfer_syntax)
        return ds

    def _inflate(self, limit: int) -> bytes:
        # PS3.5 §A.5: raw deflate (RFC 1951) without zlib header, hence wbits=-15.
        inflater = zlib.decompressobj(-15)
        parts: list[bytes] = []
        total = 0
        try:
            for chunk in self.iter_chunks():
                part = inflater.decompress(chunk, limit - total + 1)
                total += len(part)
                parts.append(part)
                if total > limit or inflater.unconsumed_tail:
                    raise DatasetDecodeError(f"deflated data set inflates past {limit} bytes")
                if inflater.eof:
                    break  # bytes after the end of the stream are padding
            parts.append(inflater.flush())
        except zlib.error as exc:
            raise DatasetDecodeError(f"bad deflate stream: {exc}") from exc
        return b"".join(parts)

    def close(self) -> None:
        """Delete the file if it is a temporary spool (a no-op otherwise); idempotent."""
        if self._finalizer is not None:
            self._finalizer()

    discard = close

    def __enter__(self) -> EncodedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self._memory is not None else f"{self.path!r}@{self.offset}"
        return f"EncodedDataset({self.transfer_syntax}, {self.size} bytes in {where})"


class Spool:
    """Collects received data set fragments: in memory up to `memory_limit` bytes, then in a
    temporary file in `directory`. `max_size` (None: unbounded) stops a peer from filling the
    disk: past it write() discards everything and raises DimseError with status 0xA700 (PS3.4
    B.2.3 Refused: Out of Resources)."""

    __slots__ = ("_memory_limit", "_directory", "_max_size", "_buffer", "_file", "_path", "_size",
                 "_finalizer", "_closed", "__weakref__")

    def __init__(
        self, memory_limit: int = DEFAULT_SPOOL_MEMORY, directory: str | None = None, *, max_size: int | None = None
    ) -> None:
        self._memory_limit = memory_limit
        self._directory = directory
        self._max_size = max_size
        self._buffer = bytearray()
        self._file: Any = None
        self._path: str | None = None
        self._size = 0
        self._finalizer: weakref.finalize[[str], Spool] | None = None
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def path(self) -> str | None:
        """The temporary file once spilled to disk, else None."""
        return self._path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append one fragment (copied: the caller's buffer may be reused)."""
        if self._closed:
            raise ValueError("write to a finished or discarded spool")
        size = self._size + len(data)
        if self._max_size is not None and size > self._max_size:
            self.discard()
            raise DimseError(f"data set larger than {self._max_size} bytes", status=st.OUT_OF_RESOURCES)
        if self._file is not None:
            self._write_file(data)
        elif size > self._memory_limit:
            self._spill()
            self._write_file(data)
        else:
            self._buffer += data
        self._size = size

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix="aiodicom-", suffix=".spool", dir=self._directory)
        self._path = path
        self._finalizer = weakref.finalize(self, _unlink, path)
        # Unbuffered: each fragment goes straight to the page cache, no copy into a Python buffer.
        self._file = open(fd, "wb", buffering=0)  # noqa: SIM115 - lives until finish() or discard()
        self._write_file(self._buffer)
        self._buffer = bytearray()

    def _write_file(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:  # a raw write may be partial
            view = view[self._file.write(view) :]

    def finish(self, transfer_syntax: str) -> EncodedDataset:
        """The collected data set; the spool can no longer be written. A spilled file now
        belongs to the returned EncodedDataset, which deletes it on close()."""
        if self._closed:
            raise ValueError("finish of a finished or discarded spool")
        self._closed = True
        if self._file is None:
            buffer, self._buffer = self._buffer, bytearray()
            return EncodedDataset(transfer_syntax, buffer)
        self._file.close()
        self._file = None
        assert self._path is not None and self._finalizer is not None
        self._finalizer.detach()
        return EncodedDataset.from_path(self._path, transfer_syntax, size=self._size, temporary=True)

    def discard(self) -> None:
        """Drop what was collected and delete the temporary file, if any."""
        self._closed = True
        self._buffer = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"Spool({self._size} bytes in {self._path or 'memory'})"


# ---- PS3.10 file meta ------------------------------------------------------------------------

_TAG: Final = struct.Struct("<HH")
_SHORT_LENGTH: Final = struct.Struct("<H")
_LONG_LENGTH: Final = struct.Struct("<I")


def read_file_meta(path: str | os.PathLike[str]) -> FileMetaInfo:
    """Parse the preamble, 'DICM' and group 0002 (always Explicit VR Little Endian, PS3.10
    §7.1) of a PS3.10 file, by hand: no pydicom on the store path."""
    with open(path, "rb") as f:
        buf = bytearray(f.read(132 + 4096))
        if len(buf) < 132 or buf[128:132] != b"DICM":
            raise InvalidFileError(f"{os.fspath(path)}: no 128-byte preamble and 'DICM' prefix (PS3.10 §7.1)")

        def ensure(n: int) -> bool:
            while len(buf) < n:
                more = f.read(max(n - len(buf), 4096))
                if not more:
                    return False
                buf.extend(more)
            return True

        elements: dict[int, bytes] = {}
        pos = 132
        while ensure(pos + 4):
            group, elem = _TAG.unpack_from(buf, pos)
            if group != 0x0002:
                break
            if not ensure(pos + 8):
                raise InvalidFileError(f"{os.fspath(path)}: truncated file meta element")
            vr = bytes(buf[pos + 4 : pos + 6])
            if not (vr.isalpha() and vr.isupper()):
                raise InvalidFileError(f"{os.fspath(path)}: file meta is not Explicit VR Little Endian")
            if vr in LONG_VR_CODES:
                if not ensure(pos + 12):
                    raise InvalidFileError(f"{os.fspath(path)}: truncated file meta element")
                length = _LONG_LENGTH.unpack_from(buf, pos + 8)[0]
                start = pos + 12
            else:
                length = _SHORT_LENGTH.unpack_from(buf, pos + 6)[0]
                start = pos + 8
            if length == 0xFFFFFFFF or not ensure(start + length):
                raise InvalidFileError(f"{os.fspath(path)}: file meta element (0002,{elem:04X}) runs past the end")
            elements[elem] = bytes(buf[start : start + length])
            pos = start + length

    def text(elem: int) -> str | None:
        raw = elements.get(elem)
        return None if raw is None else raw.decode("ascii", "replace").strip("\x00 ")

    sop_class, sop_instance, syntax = text(0x0002), text(0x0003), text(0x0010)
    if not sop_class or not sop_instance or not syntax:
        raise InvalidFileError(
            f"{os.fspath(path)}: file meta lacks Media Storage SOP Class/Instance UID or Transfer Syntax UID"
        )
    return FileMetaInfo(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax=syntax,
        implementation_class_uid=text(0x0012),
        implementation_version_name=text(0x0013),
        source_ae_title=text(0x0016),
        dataset_offset=pos,
    )


# ---- encoding with pydicom -------------------------------------------------------------------

# Binary VRs whose values pydicom keeps as raw bytes in the byte order they were read in, by
# the width of one value: pydicom does not swap them when the byte order changes.
_SWAP_WIDTH: Final = {"OW": "H", "OF": "I", "OL": "I", "OD": "Q", "OV": "Q"}


def _encode_with_pydicom(ds: Dataset, transfer_syntax: str) -> bytes:
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit, little, deflated = encoding_of(transfer_syntax)
    # PS3.10 §7.1: group 0002 belongs to the file, never to the data set on the wire.
    if any(tag.group == 0x0002 for tag in ds.keys()):  # noqa: SIM118 - iterating a Dataset parses elements
        source = ds
        ds = PydicomDataset({tag: source.get_item(tag) for tag in source.keys() if tag.group != 0x0002})  # noqa: SIM118
        source_implicit, source_little = source.original_encoding
        ds.set_original_encoding(source_implicit, source_little, source.original_character_set)
    source_little = ds.original_encoding[1]
    if source_little is None:
        source_little = sys.byteorder == "little"  # built in memory: values are native
    if source_little != little:
        ds = _byte_swapped(ds, little)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    body = fp.getvalue()
    if deflated:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        body = deflater.compress(body) + deflater.flush()
    return body


def _byte_swapped(ds: Dataset, little: bool) -> Dataset:
    """A copy of `ds` whose OW/OF/OL/OD/OV values are in the other byte order (PS3.5 §7.3)."""
    import copy

    from pydicom.filewriter import correct_ambiguous_vr

    ds = copy.deepcopy(ds)
    correct_ambiguous_vr(ds, little)  # "OB or OW" Pixel Data becomes OW when BitsAllocated > 8
    for elem in ds.iterall():
        code = _SWAP_WIDTH.get(elem.VR)
        if code is None or not isinstance(elem.value, (bytes, bytearray)) or not elem.value:
            continue
        values = array.array(code)
        if len(elem.value) % values.itemsize:
            raise ValueError(f"{elem.tag} {elem.VR} value length {len(elem.value)} is not a whole number of values")
        values.frombytes(elem.value)
        values.byteswap()
        elem.value = values.tobytes()
    return ds
