"""What the load generator sends: an operation mix, instances re-stamped with fresh UIDs, a query.

Every instance is encoded ONCE (pydicom, at start-up) with placeholder UIDs of a fixed width; per
operation only those bytes are overwritten in a buffer the sending worker owns, so the hot path
never touches pydicom, never re-encodes and never copies the payload (PS3.5 §9.1 keeps a UID's
value in place: same width, same even padding).
"""

from __future__ import annotations

import itertools
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..dimse.dataset import EXPLICIT_VR_LITTLE_ENDIAN, EncodedDataset
from ..net.client import MAX_CONTEXTS
from ..uids import QR_MODELS, UNCOMPRESSED_TRANSFER_SYNTAXES, VERIFICATION

if TYPE_CHECKING:
    from pydicom import Dataset

OPERATIONS: Final = ("echo", "store", "find")


class WorkloadError(ValueError):
    """A mix, size, modality, folder or query the generator cannot use."""


# ---- operation mix ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mix:
    """Operations and their weights, e.g. `echo=1,store=3`: three stores for each echo."""

    weights: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, spec: str) -> Mix:
        """`store`, `echo,store` (equal weights) or `echo=1,store=3`."""
        weights: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, weight = part.partition("=")
            name = name.strip().lower()
            if name not in OPERATIONS:
                raise WorkloadError(f"unknown operation {name!r} (choose from {', '.join(OPERATIONS)})")
            try:
                w = int(weight) if weight.strip() else 1
            except ValueError:
                raise WorkloadError(f"weight of {name} is not an integer: {weight!r}") from None
            if w < 0:
                raise WorkloadError(f"weight of {name} is negative")
            weights[name] = weights.get(name, 0) + w
        weights = {k: v for k, v in weights.items() if v}
        if not weights:
            raise WorkloadError(f"no operation in mix {spec!r}")
        return cls(tuple(weights.items()))

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.weights)

    def sequence(self) -> tuple[str, ...]:
        """One period of the mix, interleaved (smooth weighted round robin): operation i of a run is
        sequence[i % len], so any run of `count` operations has the mix's proportions as exactly as
        integers allow, and two runs of the same mix send the same operations."""
        g = math.gcd(*(w for _, w in self.weights))
        weights = [(name, w // g) for name, w in self.weights]
        total = sum(w for _, w in weights)
        current = dict.fromkeys((name for name, _ in weights), 0)
        out = []
        for _ in range(total):
            for name, w in weights:
                current[name] += w
            pick = max(current, key=current.__getitem__)
            current[pick] -= total
            out.append(pick)
        return tuple(out)

    def __str__(self) -> str:
        return ",".join(f"{name}={w}" for name, w in self.weights)


def parse_size(text: str) -> int:
    """`10240`, `10k`, `512KiB`, `0.5M`, `1MB`: bytes (k/M/G are binary multiples, as a file manager shows)."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = 1
    if t and t[-1] in "kmg":
        scale = 1 << (10 * ("kmg".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise WorkloadError(f"not a size: {text!r} (e.g. 10k, 512k, 0.5M)") from None
    if value < 0 or not math.isfinite(value):
        raise WorkloadError(f"not a size: {text!r}")
    return int(value * scale)


# ---- fresh UIDs of a fixed width --------------------------------------------------------------------
INSTANCE, SERIES, STUDY = 0, 1, 2
_KINDS: Final = (INSTANCE, SERIES, STUDY)
_COUNTER_BASE: Final = 10**12  # every counter component has 13 digits and no leading zero (PS3.5 §9.1)
_COUNTER_MAX: Final = 9 * 10**12


class UidSource:
    """UIDs `<root>.<kind>.<13-digit counter>`, all of one width, unique to this run.

    The root is a UUID-derived UID (PS3.5 §B.2, `2.25.<uuid>`) made fresh per run, so that two runs,
    or two generators, never collide; the width stays ≤ 64 characters (PS3.5 §9.1).
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = root or f"2.25.{uuid.uuid4().int}"
        self.width = len(self.root) + 3 + 13
        if self.width > 64:
            raise WorkloadError(f"UID root {self.root!r} leaves no room for a counter within 64 characters")
        self._counters = [itertools.count(), itertools.count(), itertools.count()]

    def placeholder(self, kind: int) -> str:
        """A UID of the run's width that `next` never returns (its counter is all nines)."""
        return f"{self.root}.{kind + 1}.{'9' * 13}"

    def next(self, kind: int) -> bytes:
        n = next(self._counters[kind])
        if n >= _COUNTER_MAX:
            raise WorkloadError("UID counter exhausted")
        return f"{self.root}.{kind + 1}.{_COUNTER_BASE + n}".encode("ascii")


@dataclass(slots=True)
class Stamp:
    """The UIDs one C-STORE carries. Series and study change every `series_size` instances, so an
    archive under load grows studies of a realistic size rather than one study per instance."""

    instance: bytes
    series: bytes
    study: bytes


class Stamper:
    def __init__(self, uids: UidSource, series_size: int) -> None:
        if series_size < 1:
            raise WorkloadError("series size must be at least 1")
        self.uids = uids
        self.series_size = series_size
        self._in_series = 0
        self._series = uids.next(SERIES)
        self._study = uids.next(STUDY)

    def next(self) -> Stamp:
        if self._in_series == self.series_size:
            self._in_series = 0
            self._series = self.uids.next(SERIES)
            self._study = self.uids.next(STUDY)
        self._in_series += 1
        return Stamp(self.uids.next(INSTANCE), self._series, self._study)


# ---- instances encoded once -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Template:
    """One encoded data set whose UID values sit at known offsets (None when absent)."""

    sop_class_uid: str
    transfer_syntax: str
    data: bytes
    offsets: tuple[int | None, int | None, int | None]  # instance, series, study
    width: int
    source: str = "synthetic"

    @property
    def size(self) -> int:
        return len(self.data)

    def buffer(self) -> bytearray:
        """A private copy to stamp: made once per sending worker, reused for every operation."""
        return bytearray(self.data)

    def stamp(self, buffer: bytearray, stamp: Stamp) -> str:
        """Write the stamp's UIDs into `buffer` in place; return the SOP Instance UID."""
        w = self.width
        for offset, value in zip(self.offsets, (stamp.instance, stamp.series, stamp.study)):
            if offset is not None:
                buffer[offset : offset + w] = value
        return stamp.instance.decode("ascii")

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax: str, uids: UidSource, *, source: str = "synthetic"
                     ) -> Template:
        """Encode `ds` with placeholder UIDs (the data set is modified) and find where they landed."""
        keywords = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
        present = []
        for kind, keyword in zip(_KINDS, keywords):
            if kind == INSTANCE or keyword in ds:
                setattr(ds, keyword, uids.placeholder(kind))
                present.append(kind)
        if "SOPClassUID" not in ds:
            raise WorkloadError(f"{source}: no SOP Class UID")
        data = EncodedDataset.from_dataset(ds, transfer_syntax).read_bytes()
        offsets: list[int | None] = [None, None, None]
        for kind in present:
            needle = uids.placeholder(kind).encode("ascii")
            if data.count(needle) != 1:
                raise WorkloadError(f"{source}: the {keywords[kind]} placeholder is not unique once encoded")
            offsets[kind] = data.find(needle)
        return cls(str(ds.SOPClassUID), transfer_syntax, data, (offsets[0], offsets[1], offsets[2]),
                   uids.width, source)


@dataclass(frozen=True, slots=True)
class Modality:
    sop_class_uid: str
    bits: int  # bits allocated per pixel (monochrome)


# Common image storage SOP classes (PS3.4 B.5) by the Modality (0008,0060) value they carry.
MODALITIES: Final[Mapping[str, Modality]] = {
    "CT": Modality("1.2.840.10008.5.1.4.1.1.2", 16),
    "MR": Modality("1.2.840.10008.5.1.4.1.1.4", 16),
    "CR": Modality("1.2.840.10008.5.1.4.1.1.1", 16),
    "DX": Modality("1.2.840.10008.5.1.4.1.1.1.1", 16),
    "MG": Modality("1.2.840.10008.5.1.4.1.1.1.2", 16),
    "US": Modality("1.2.840.10008.5.1.4.1.1.6.1", 8),
    "NM": Modality("1.2.840.10008.5.1.4.1.1.20", 16),
    "PT": Modality("1.2.840.10008.5.1.4.1.1.128", 16),
    "XA": Modality("1.2.840.10008.5.1.4.1.1.12.1", 16),
    "OT": Modality("1.2.840.10008.5.1.4.1.1.7", 8),  # Secondary Capture
}


def _pattern(n: int) -> bytes:
    """Deterministic pixel bytes: a ramp holds no run of digits and dots, so no placeholder hides in it."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def synthetic_dataset(modality: str, size: int) -> Dataset:
    """An image of `modality` whose Explicit VR Little Endian encoding is about `size` bytes."""
    from pydicom import Dataset

    spec = MODALITIES.get(modality.upper())
    if spec is None:
        raise WorkloadError(f"unknown modality {modality!r} (choose from {', '.join(MODALITIES)})")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = spec.sop_class_uid
    ds.SOPInstanceUID = "1.2.3"
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.AccessionNumber = "LOAD0001"
    ds.Modality = modality.upper()
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "aiodicom load"
    ds.SeriesDescription = f"synthetic {modality.upper()}"
    ds.PatientName = "LOAD^TEST"
    ds.PatientID = "AIODICOM-LOAD"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    # Image Pixel module (PS3.3 C.7.6.3): monochrome, sized so the whole data set is about `size`.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = spec.bits
    ds.HighBit = spec.bits - 1
    ds.PixelRepresentation = 0
    header = len(EncodedDataset.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN).read_bytes())
    bpp = spec.bits // 8
    pixels = max((size - header - 24) // bpp, 2)  # 24: Rows, Columns and the Pixel Data header
    columns = next(c for c in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if c * c <= pixels or c == 1)
    rows = max(pixels // columns, 1)
    ds.Rows, ds.Columns = rows, columns
    n = rows * columns * bpp
    ds.add_new(0x7FE00010, "OW" if bpp == 2 else "OB", _pattern(n + (n & 1)))
    return ds


def synthetic_template(modality: str, size: int, uids: UidSource) -> Template:
    ds = synthetic_dataset(modality, size)
    return Template.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN, uids, source=f"synthetic {modality.upper()}")


def folder_templates(folder: Path, uids: UidSource, *, limit: int | None = None) -> list[Template]:
    """Every PS3.10 file under `folder`, decoded once and re-encoded in its own transfer syntax with
    placeholder UIDs (so each send is a new instance). Files pydicom cannot read are skipped."""
    from pydicom import dcmread

    templates = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            try:
                ds = dcmread(path)
                ts = str(ds.file_meta.TransferSyntaxUID)
                ds.file_meta = None  # only the data set is sent
                templates.append(Template.from_dataset(ds, ts, uids, source=str(path)))
            except Exception:
                continue
            if limit is not None and len(templates) >= limit:
                return templates
    if not templates:
        raise WorkloadError(f"no readable DICOM file under {folder}")
    return templates


# ---- the query ----------------------------------------------------------------------------------------
DEFAULT_QUERY: Final = ("QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=*", "PatientID", "StudyDate",
                        "ModalitiesInStudy", "NumberOfStudyRelatedInstances")


@dataclass(slots=True)
class FindQuery:
    """A C-FIND identifier encoded once per transfer syntax; responses are counted, never decoded."""

    sop_class_uid: str
    identifier: Dataset
    _encoded: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def build(cls, keys: Sequence[str], model: str = "study") -> FindQuery:
        from ..cli.keys import build_identifier  # DCMTK-style -k parsing, shared with `aiodicom find`

        if model not in QR_MODELS:
            raise WorkloadError(f"unknown model {model!r} (choose from {', '.join(QR_MODELS)})")
        try:
            identifier = build_identifier(keys or DEFAULT_QUERY)
        except ValueError as exc:
            raise WorkloadError(str(exc)) from None
        if model != "worklist" and "QueryRetrieveLevel" not in identifier:
            identifier.QueryRetrieveLevel = "STUDY"
        return cls(QR_MODELS[model][0], identifier)

    def encoded(self, transfer_syntax: str) -> bytes:
        data = self._encoded.get(transfer_syntax)
        if data is None:
            data = self._encoded[transfer_syntax] = \
                EncodedDataset.from_dataset(self.identifier, transfer_syntax).read_bytes()
        return data


# ---- everything a run sends ---------------------------------------------------------------------------
@dataclass(slots=True)
class Workload:
    mix: Mix
    templates: list[Template] = field(default_factory=list)
    query: FindQuery | None = None
    stamper: Stamper | None = None

    def __post_init__(self) -> None:
        if "store" in self.mix.operations and not (self.templates and self.stamper):
            raise WorkloadError("a mix with store needs instances to send")
        if "find" in self.mix.operations and self.query is None:
            raise WorkloadError("a mix with find needs a query")
        if "find" in self.mix.operations:
            self.query.encoded(EXPLICIT_VR_LITTLE_ENDIAN)  # type: ignore[union-attr]  # fail early

    def contexts(self, operations: Iterable[str] | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """Presentation contexts for `operations` (default: the whole mix): only what they need,
        since every extra context costs negotiation time on each association."""
        ops = set(self.mix.operations if operations is None else operations)
        out: list[tuple[str, tuple[str, ...]]] = []
        if "echo" in ops:
            out.append((VERIFICATION, UNCOMPRESSED_TRANSFER_SYNTAXES))
        if "find" in ops and self.query is not None:
            out.append((self.query.sop_class_uid, (EXPLICIT_VR_LITTLE_ENDIAN,)))
        if "store" in ops:
            # each (SOP class, syntax) in a context of its own: the bytes go as encoded, never converted
            for key in dict.fromkeys((t.sop_class_uid, t.transfer_syntax) for t in self.templates):
                out.append((key[0], (key[1],)))
        if len(out) > MAX_CONTEXTS:  # PS3.8 §9.3.2.2: odd context IDs 1..255
            raise WorkloadError(f"{len(out)} presentation contexts needed, at most {MAX_CONTEXTS} fit in one "
                                "association: use fewer kinds of files")
        return out

    def payload_bytes(self) -> int:
        return sum(t.size for t in self.templates) // max(len(self.templates), 1)
