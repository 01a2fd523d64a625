"""Test data for the bench, made here and fast: PS3.10 files stamped from one encoded template
(aiodicom.load.workload), and index records for a large archive built without any file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aiodicom.archive.fileformat import encode_file_meta
from aiodicom.archive.index import INDEXED_TAGS, IndexRecord
from aiodicom.dimse.dataset import EXPLICIT_VR_LITTLE_ENDIAN
from aiodicom.load.workload import Stamper, Template, UidSource, synthetic_dataset

KB = 1024
HALF_MB = 512 * KB


@dataclass(frozen=True, slots=True)
class FileSet:
    """`count` files of about `size` bytes in `folder` (split into `parts` subfolders when asked)."""

    folder: Path
    count: int
    size: int  # bytes of one file's data set
    parts: tuple[Path, ...]

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    @property
    def label(self) -> str:
        size = f"{self.size / (1 << 20):.1f} MB" if self.size >= 100 * KB else f"{self.size // 1000} KB"
        return f"{self.count} × {size}"


def make_files(folder: Path, count: int, size: int, *, modality: str = "CT", parts: int = 1,
               series_size: int = 100) -> FileSet:
    """Write `count` instances with fresh UIDs, spread round-robin over `parts` subfolders."""
    uids = UidSource()
    ds = synthetic_dataset(modality, size)
    template = Template.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN, uids, source="bench")
    stamper = Stamper(uids, series_size)
    buffer = template.buffer()
    dirs = tuple(folder / f"part{k}" for k in range(parts))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        uid = template.stamp(buffer, stamper.next())
        meta = encode_file_meta(sop_class_uid=template.sop_class_uid, sop_instance_uid=uid,
                                transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN)
        with open(dirs[i % parts] / f"{i:06d}.dcm", "wb") as f:
            f.write(meta)
            f.write(buffer)
    return FileSet(folder, count, template.size, dirs)


def files_in(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        out.extend(Path(root) / n for n in sorted(names) if n.endswith(".dcm"))
    return out


def index_records(count: int, instances_per_study: int, folder: Path) -> list[IndexRecord]:
    """Records of `count` synthetic instances (one series per study), as the storage SCP would hand
    them to the index: the encoded values of the indexed attributes, fresh UIDs, paths under `folder`."""
    uids = UidSource()
    ds = synthetic_dataset("CT", 1024)
    base = IndexRecord.from_dataset(ds, path=folder, size=1024, transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN)
    stamper = Stamper(uids, instances_per_study)
    tag = {name: t for name, t in zip(("instance", "series", "study"), (0x00080018, 0x0020000E, 0x0020000D))}
    assert all(t in INDEXED_TAGS for t in tag.values())
    records = []
    for i in range(count):
        s = stamper.next()
        study_number = i // instances_per_study
        attrs = dict(base.attributes)
        attrs[tag["instance"]] = _pad(s.instance)
        attrs[tag["series"]] = _pad(s.series)
        attrs[tag["study"]] = _pad(s.study)
        attrs[0x00100020] = _pad(f"PID{study_number % 5000:05d}".encode(), b" ")  # PatientID: 5,000 patients
        attrs[0x00100010] = _pad(f"PATIENT^{study_number % 5000:05d}".encode(), b" ")
        attrs[0x00080020] = f"2024{1 + study_number % 12:02d}{1 + study_number % 28:02d}".encode()  # StudyDate
        instance = s.instance.decode()
        records.append(IndexRecord(path=folder / f"{instance}.dcm", size=1024, transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN,
                                   sop_class_uid=base.sop_class_uid, sop_instance_uid=instance, attributes=attrs))
    return records


def _pad(value: bytes, pad: bytes = b"\x00") -> bytes:
    return value + pad if len(value) % 2 else value
