"""Test instances for the interop tests, and checks that a stored PS3.10 file holds what was sent.

The corpus has two halves:
- pydicom's bundled files, one or more per transfer syntax (compressed ones exactly as shipped). Several of them
  share a SOP Instance UID (MR_small_* and SC_rgb_* are the same image in different syntaxes), so each copy gets a
  fresh UID of the *same length*, patched in place: every length field, the encoding and the pixel data stay byte
  for byte as shipped, and many instances can go to one archive without colliding.
- data sets built here with fresh UIDs (sequence, private block, odd-length values, random pixels), written in each
  uncompressed syntax; sizes are parameters so durability tests can ask for large ones.
"""

from __future__ import annotations

import re
import secrets
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PREAMBLE_LEN: Final = 128
MAGIC: Final = b"DICM"

# PS3.5 §7.1.2: in explicit VR these VRs have 2 reserved bytes and a 32-bit length; the others a 16-bit length.
_LONG_VRS: Final = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
                              b"UV"})

# DCMTK storescu proposes only uncompressed syntaxes unless told; with -R each option adds one syntax (PEERS.md).
STORESCU_PROPOSE: Final[Mapping[str, str]] = {
    ImplicitVRLittleEndian: "-xi",
    ExplicitVRLittleEndian: "-xe",
    ExplicitVRBigEndian: "-xb",
    DeflatedExplicitVRLittleEndian: "-xd",
    JPEGBaseline8Bit: "-xy",
    JPEGExtended12Bit: "-xx",
    JPEGLosslessSV1: "-xs",
    JPEGLSLossless: "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS near-lossless
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
    RLELossless: "-xr",
}


@dataclass(frozen=True, slots=True)
class Instance:
    """One PS3.10 file of the corpus and the identifiers a receiver files it under."""

    name: str
    path: Path
    transfer_syntax: UID
    sop_class_uid: UID
    sop_instance_uid: UID
    study_uid: UID
    series_uid: UID

    def stored_path(self, storage: Path) -> Path:
        """Where `aiodicom serve --storage storage` keeps it (the CLI contract's layout)."""
        return storage / self.study_uid / self.series_uid / f"{self.sop_instance_uid}.dcm"

    def dataset_bytes(self) -> bytes:
        return read_part10(self.path).dataset


@dataclass(frozen=True, slots=True)
class BundledSpec:
    name: str
    filename: str
    transfer_syntax: str


@dataclass(frozen=True, slots=True)
class GeneratedSpec:
    name: str
    transfer_syntax: str
    pixel_bytes: int = 4096


BUNDLED: Final = (
    BundledSpec("bundled-implicit-le-mr", "MR_small_implicit.dcm", ImplicitVRLittleEndian),
    BundledSpec("bundled-explicit-le-ct", "CT_small.dcm", ExplicitVRLittleEndian),
    BundledSpec("bundled-explicit-le-sr", "test-SR.dcm", ExplicitVRLittleEndian),
    BundledSpec("bundled-explicit-le-ecg", "waveform_ecg.dcm", ExplicitVRLittleEndian),
    BundledSpec("bundled-explicit-be-mr", "MR_small_bigendian.dcm", ExplicitVRBigEndian),
    BundledSpec("bundled-explicit-be-ge", "ExplVR_BigEnd.dcm", ExplicitVRBigEndian),
    BundledSpec("bundled-deflated", "image_dfl.dcm", DeflatedExplicitVRLittleEndian),
    BundledSpec("bundled-jpeg-baseline", "SC_rgb_jpeg_dcmtk.dcm", JPEGBaseline8Bit),
    BundledSpec("bundled-jpeg-extended", "JPGExtended.dcm", JPEGExtended12Bit),
    BundledSpec("bundled-jpeg-lossless", "SC_rgb_jpeg_gdcm.dcm", JPEGLosslessSV1),
    BundledSpec("bundled-jpeg-ls-lossless", "MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    BundledSpec("bundled-j2k-lossless", "GDCMJ2K_TextGBR.dcm", JPEG2000Lossless),
    BundledSpec("bundled-j2k", "693_J2KI.dcm", JPEG2000),
    BundledSpec("bundled-rle-mr", "MR_small_RLE.dcm", RLELossless),
    BundledSpec("bundled-rle-2frame", "SC_rgb_rle_2frame.dcm", RLELossless),
)

GENERATED: Final = (
    GeneratedSpec("generated-implicit-le", ImplicitVRLittleEndian),
    GeneratedSpec("generated-explicit-le", ExplicitVRLittleEndian),
    GeneratedSpec("generated-explicit-be", ExplicitVRBigEndian),
    GeneratedSpec("generated-deflated", DeflatedExplicitVRLittleEndian),
    # Larger than any max PDU a peer offers (DCMTK 16 KiB, pynetdicom 16 KiB): the data set spans many P-DATA-TFs.
    GeneratedSpec("generated-explicit-le-2mib", ExplicitVRLittleEndian, pixel_bytes=2 * 1024 * 1024 + 1),
)

CORPUS_NAMES: Final = tuple(s.name for s in BUNDLED) + tuple(s.name for s in GENERATED)


# --- reading PS3.10 files -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Part10:
    meta: FileMetaDataset
    meta_bytes: bytes        # the encoded group 0002 elements (PS3.10 §7.1), without preamble and magic
    dataset: bytes           # everything after the file meta: the data set as it was encoded

    @property
    def transfer_syntax(self) -> UID:
        return UID(self.meta.TransferSyntaxUID)


def dataset_offset(buf: bytes | memoryview) -> int:
    """Offset of the data set in a PS3.10 file: after preamble, magic and the group 0002 elements.

    Walks the meta elements (always explicit VR little endian, PS3.10 §7.1) instead of trusting the group length,
    so a file with a wrong or missing (0002,0000) is still split where its meta really ends.
    """
    if len(buf) < PREAMBLE_LEN + 4 or bytes(buf[PREAMBLE_LEN:PREAMBLE_LEN + 4]) != MAGIC:
        raise ValueError("not a PS3.10 file: no DICM prefix after the 128-byte preamble")
    pos = PREAMBLE_LEN + 4
    while pos + 8 <= len(buf):
        group, = struct.unpack_from("<H", buf, pos)
        if group != 0x0002:
            break
        vr = bytes(buf[pos + 4:pos + 6])
        if vr in _LONG_VRS:
            length, = struct.unpack_from("<L", buf, pos + 8)
            pos += 12 + length
        else:
            length, = struct.unpack_from("<H", buf, pos + 6)
            pos += 8 + length
    if pos > len(buf):
        raise ValueError("file meta information runs past the end of the file")
    return pos


def read_part10(path: Path) -> Part10:
    buf = path.read_bytes()
    offset = dataset_offset(buf)
    return Part10(read_file_meta_info(path), buf[PREAMBLE_LEN + 4:offset], buf[offset:])


def check_part10(path: Path) -> Part10:
    """Read `path` and assert it is a well-formed PS3.10 file (PS3.10 §7.1: Type 1 meta elements present, group
    length right)."""
    part = read_part10(path)
    meta = part.meta
    for keyword in ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
                    "TransferSyntaxUID", "ImplementationClassUID"):
        assert keyword in meta and meta[keyword].value, f"{path}: file meta lacks {keyword}"
    assert "FileMetaInformationGroupLength" in meta, f"{path}: file meta lacks (0002,0000)"
    # The group length counts the bytes after the 12-byte (0002,0000) element up to the end of the group.
    assert meta.FileMetaInformationGroupLength == len(part.meta_bytes) - 12, (
        f"{path}: (0002,0000) says {meta.FileMetaInformationGroupLength}, meta is {len(part.meta_bytes) - 12} bytes"
    )
    assert part.dataset, f"{path}: no data set after the file meta"
    return part


def received_by_uid(directory: Path) -> dict[str, Path]:
    """PS3.10 files anywhere under directory, keyed by their MediaStorageSOPInstanceUID (for peers that name files
    their own way, e.g. DCMTK's `<modality>.<uid>`)."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            meta = read_file_meta_info(path)
        except Exception:  # logs, temp files: not instances
            continue
        uid = str(meta.get("MediaStorageSOPInstanceUID", ""))
        if uid:
            assert uid not in found, f"two files for {uid}: {found[uid]} and {path}"
            found[uid] = path
    return found


# --- comparing what was stored with what was sent -------------------------------------------------------------------

def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n                      # bisect on slices: no per-byte Python loop over megabytes
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo + next(i for i in range(hi - lo) if a[lo + i] != b[lo + i])


def assert_same_dataset_bytes(received: Path, sent: Instance) -> Part10:
    """The receiver kept the data set byte for byte as the sender had it in its file, and says which syntax it is in.

    For senders that transmit a file's data set as is (aiodicom, pynetdicom with chunked sending)."""
    part = check_part10(received)
    assert part.transfer_syntax == sent.transfer_syntax, (
        f"{sent.name}: stored as {part.transfer_syntax.name}, sent as {sent.transfer_syntax.name}"
    )
    want = sent.dataset_bytes()
    if part.dataset != want:
        at = _first_difference(part.dataset, want)
        raise AssertionError(
            f"{sent.name}: data set differs from the sent file at byte {at} "
            f"(stored {len(part.dataset)} bytes, sent {len(want)}): "
            f"stored {part.dataset[at:at + 16].hex(' ')} vs sent {want[at:at + 16].hex(' ')}"
        )
    assert part.meta.MediaStorageSOPInstanceUID == sent.sop_instance_uid
    assert part.meta.MediaStorageSOPClassUID == sent.sop_class_uid
    return part


def _significant(ds: Dataset) -> Iterator[DataElement]:
    # Group lengths (gggg,0000) are retired outside group 0002 and DCMTK drops them when it re-encodes (PS3.5 §7.2);
    # (FFFC,FFFC) is trailing padding with no meaning (PS3.10 §7.2).
    for elem in ds:
        if elem.tag.element != 0 and elem.tag != 0xFFFCFFFC:
            yield elem


def _diff_datasets(a: Dataset, b: Dataset, where: str) -> list[str]:
    problems: list[str] = []
    ea = {e.tag: e for e in _significant(a)}
    eb = {e.tag: e for e in _significant(b)}
    for tag in sorted(ea.keys() ^ eb.keys()):
        problems.append(f"{where}{tag} only in {'stored' if tag in ea else 'sent'}")
    for tag in sorted(ea.keys() & eb.keys()):
        x, y = ea[tag], eb[tag]
        if x.VR == "SQ" and y.VR == "SQ":
            if len(x.value) != len(y.value):
                problems.append(f"{where}{tag}: {len(x.value)} items stored, {len(y.value)} sent")
                continue
            for i, (ia, ib) in enumerate(zip(x.value, y.value, strict=True)):
                problems += _diff_datasets(ia, ib, f"{where}{tag}[{i}].")
        elif x.value != y.value:
            problems.append(f"{where}{tag} {x.keyword or 'private'}: stored {x.repval} != sent {y.repval}")
    return problems


def assert_same_content(received: Path, sent: Instance) -> Part10:
    """The stored data set means the same as the sent file: every element equal (pixel data compared as bytes).

    For senders that re-encode what they send (DCMTK storescu), where only the semantics survive the trip."""
    part = check_part10(received)
    assert part.transfer_syntax == sent.transfer_syntax, (
        f"{sent.name}: stored as {part.transfer_syntax.name}, sent as {sent.transfer_syntax.name}"
    )
    stored, original = pydicom.dcmread(received), pydicom.dcmread(sent.path)
    problems = _diff_datasets(stored, original, "")
    assert not problems, f"{sent.name}: stored data set differs from the sent one:\n  " + "\n  ".join(problems)
    return part


# --- building the corpus ----------------------------------------------------------------------------------------------

def uid_of_length(length: int) -> UID:
    """A fresh UID of exactly `length` characters (PS3.5 §9.1: digit components without leading zeros)."""
    root = PYDICOM_ROOT_UID if length > len(PYDICOM_ROOT_UID) + 1 else "2.25."
    digits = length - len(root)
    if digits < 1 or length > 64:
        raise ValueError(f"no UID of length {length}")
    tail = str(secrets.choice("123456789")) + "".join(secrets.choice("0123456789") for _ in range(digits - 1))
    return UID(root + tail)


def _with_fresh_instance_uid(src: Path, dst: Path) -> UID:
    """Copy src to dst with its SOP Instance UID replaced by a new one of the same length, everywhere it occurs."""
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    old = str(ds.SOPInstanceUID)
    new = uid_of_length(len(old))
    # Whole UID values only, not the prefix of a longer UID (the byte before may be a length byte of any value).
    pattern = re.compile(re.escape(old.encode()) + rb"(?![0-9.])")
    patched, count = pattern.subn(new.encode(), src.read_bytes())
    dst.write_bytes(patched)
    check = pydicom.dcmread(dst, stop_before_pixels=True)
    assert count >= 2 and check.SOPInstanceUID == new and check.file_meta.MediaStorageSOPInstanceUID == new, (
        f"could not give {src.name} a fresh SOP Instance UID ({count} occurrences patched)"
    )
    return new


def _instance(name: str, path: Path) -> Instance:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Instance(
        name=name, path=path, transfer_syntax=UID(ds.file_meta.TransferSyntaxUID),
        sop_class_uid=UID(ds.SOPClassUID), sop_instance_uid=UID(ds.SOPInstanceUID),
        study_uid=UID(ds.StudyInstanceUID), series_uid=UID(ds.SeriesInstanceUID),
    )


def bundled_instance(spec: BundledSpec, dest: Path) -> Instance:
    src = Path(get_testdata_file(spec.filename, download=False) or "")
    if not src.is_file():
        raise FileNotFoundError(f"pydicom does not ship {spec.filename}")
    dst = dest / f"{spec.name}.dcm"
    if UID(spec.transfer_syntax).is_deflated:
        # The UID is inside the deflate stream (this file is unique in the corpus). pydicom ships it with an odd
        # length; PS3.5 §A.5 wants a trailing NUL after an odd deflate stream, and DCMTK aborts on odd fragments.
        shutil.copyfile(src, dst)
        if (dst.stat().st_size - dataset_offset(dst.read_bytes())) % 2:
            with open(dst, "ab") as f:
                f.write(b"\0")
    else:
        _with_fresh_instance_uid(src, dst)
    inst = _instance(spec.name, dst)
    assert inst.transfer_syntax == spec.transfer_syntax, f"{spec.filename} is {inst.transfer_syntax.name} now"
    return inst


def generated_dataset(*, pixel_bytes: int = 4096, study_uid: str | None = None,
                      series_uid: str | None = None) -> Dataset:
    """A Secondary Capture instance with the shapes codecs trip on: odd-length text (padded), a nested sequence,
    a private block, a multi-valued element, and `pixel_bytes` of random 8-bit pixels."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = "Interop^Odd"
    ds.PatientID = "AIODICOM-1"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = "20240229"
    ds.StudyTime = "235959.123456"
    ds.AccessionNumber = "A1"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.StudyDescription = "aiodicom interop"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    item = Dataset()
    item.PatientID = "OTHER-7"
    item.IssuerOfPatientID = "SITE"
    ds.OtherPatientIDsSequence = Sequence([item, Dataset()])   # an empty item too
    ds.add_new(0x00090010, "LO", "AIODICOM TEST")                 # private creator (PS3.5 §7.8.1)
    ds.add_new(0x00091001, "LO", "private value")
    columns = 256
    rows = -(-pixel_bytes // columns)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = secrets.token_bytes(rows * columns)
    ds["PixelData"].VR = "OB"
    return ds


def write_part10(ds: Dataset, path: Path, transfer_syntax: str) -> Path:
    """Write ds as a PS3.10 file in the given uncompressed syntax (pydicom deflates when asked)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ts = UID(transfer_syntax)
    pydicom.dcmwrite(path, ds, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian,
                     enforce_file_format=True)
    return path


def generated_instance(spec: GeneratedSpec, dest: Path, **kwargs: str) -> Instance:
    ds = generated_dataset(pixel_bytes=spec.pixel_bytes, **kwargs)
    return _instance(spec.name, write_part10(ds, dest / f"{spec.name}.dcm", spec.transfer_syntax))


def generated_series(dest: Path, count: int, *, pixel_bytes: int, transfer_syntax: str = ExplicitVRLittleEndian,
                     prefix: str = "gen") -> list[Instance]:
    """`count` instances of one new study and series, each with `pixel_bytes` of pixels (durability tests)."""
    dest.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    return [
        generated_instance(GeneratedSpec(f"{prefix}-{i:04d}", transfer_syntax, pixel_bytes), dest,
                           study_uid=study, series_uid=series)
        for i in range(count)
    ]


@dataclass(frozen=True, slots=True)
class Corpus:
    instances: tuple[Instance, ...]

    def __getitem__(self, name: str) -> Instance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def __len__(self) -> int:
        return len(self.instances)

    def by_uid(self) -> dict[str, Instance]:
        return {i.sop_instance_uid: i for i in self.instances}

    def syntaxes(self) -> set[UID]:
        return {i.transfer_syntax for i in self.instances}


def build_corpus(dest: Path, specs: Iterable[BundledSpec | GeneratedSpec] = (*BUNDLED, *GENERATED)) -> Corpus:
    dest.mkdir(parents=True, exist_ok=True)
    instances = tuple(
        bundled_instance(s, dest) if isinstance(s, BundledSpec) else generated_instance(s, dest) for s in specs
    )
    for inst in instances:   # PS3.5 §7.1: every element has an even length, so every data set does too
        assert len(inst.dataset_bytes()) % 2 == 0, f"{inst.name}: odd-length data set"
    uids = [i.sop_instance_uid for i in instances]
    assert len(set(uids)) == len(uids), "corpus SOP Instance UIDs collide"
    return Corpus(instances)
