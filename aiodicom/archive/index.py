"""The archive index: which instances the archive holds, queryable for C-FIND and walkable for
C-MOVE/C-GET (PS3.4 C.6 information models).

One interface, several back ends (`SqliteIndex` embedded by default). The storage SCP hands the
index an `IndexRecord` per stored file: the few top-level attributes it peeked, still encoded.
Decoding, matching and SQL all happen off the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from pydicom import Dataset
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import dictionary_VR, tag_for_keyword

from aiodicom.archive.matching import Query
from aiodicom.archive.values import candidate_values

INDEX_FILENAME: Final = "index.sqlite"


class Level(StrEnum):
    """Query/Retrieve Level (0008,0052) values (PS3.4 C.6.1.1, C.6.2.1)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class Model(Enum):
    """Query/Retrieve information models (PS3.4 C.6.1 patient root, C.6.2 study root, C.6.3 retired)."""

    PATIENT_ROOT = "patient-root"
    STUDY_ROOT = "study-root"
    PATIENT_STUDY_ONLY = "patient-study-only"


MODEL_LEVELS: Final[Mapping[Model, tuple[Level, ...]]] = {
    Model.PATIENT_ROOT: (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
    Model.STUDY_ROOT: (Level.STUDY, Level.SERIES, Level.IMAGE),
    Model.PATIENT_STUDY_ONLY: (Level.PATIENT, Level.STUDY),
}

UNIQUE_KEYS: Final[Mapping[Level, str]] = {  # one per level (PS3.4 C.2.2.1.1)
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

# The level each indexed or derived attribute belongs to (PS3.4 Tables C.6-1..C.6-4 and C.3-1), so
# that a C-FIND service can refuse keys below the query level.
KEYWORD_LEVEL: Final[Mapping[str, Level]] = {
    **dict.fromkeys(("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "OtherPatientIDs",
                     "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                     "NumberOfPatientRelatedInstances"), Level.PATIENT),
    **dict.fromkeys(("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                     "StudyDescription", "ReferringPhysicianName", "NumberOfStudyRelatedSeries",
                     "NumberOfStudyRelatedInstances", "ModalitiesInStudy", "SOPClassesInStudy"), Level.STUDY),
    **dict.fromkeys(("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
                     "NumberOfSeriesRelatedInstances"), Level.SERIES),
    **dict.fromkeys(("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "AvailableTransferSyntaxUID"), Level.IMAGE),
}

# What the storage SCP peeks from each received data set's top level, before the pixel data.
INDEXED_KEYWORDS: Final = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
    "Modality", "ReferringPhysicianName", "StudyDescription", "SeriesDescription", "PatientName", "PatientID",
    "PatientBirthDate", "PatientSex", "OtherPatientIDs", "BodyPartExamined", "StudyInstanceUID",
    "SeriesInstanceUID", "StudyID", "SeriesNumber", "InstanceNumber",
)
INDEXED_TAGS: Final[tuple[int, ...]] = tuple(sorted(int(tag_for_keyword(k) or 0) for k in INDEXED_KEYWORDS))


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexRecord:
    """One stored instance as the storage SCP hands it to the index.

    `attributes` maps tags of INDEXED_TAGS to their encoded values as received (text VRs still
    padded, in the data set's Specific Character Set); absent attributes are simply missing.
    """

    path: Path
    size: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    attributes: Mapping[int, bytes]

    @classmethod
    def from_dataset(cls, ds: Dataset, *, path: Path, size: int, transfer_syntax: str) -> IndexRecord:
        """Build a record from a pydicom data set: raw values when read from a file (no decoding),
        re-encoded in the data set's character set otherwise."""
        charset = ds.get("SpecificCharacterSet")
        encodings = convert_encodings(charset or None)
        attrs: dict[int, bytes] = {}
        for tag in INDEXED_TAGS:
            elem = ds.get_item(tag)
            if elem is None or elem.value is None:
                continue
            if isinstance(elem.value, (bytes, bytearray)):
                attrs[tag] = bytes(elem.value)
                continue
            attrs[tag] = encode_string("\\".join(candidate_values(dictionary_VR(tag), elem.value)), encodings)
        def uid(tag: int) -> str:
            return attrs.get(tag, b"").decode("ascii", "replace").strip(" \0")

        return cls(path=Path(path), size=size, transfer_syntax=transfer_syntax,
                   sop_class_uid=uid(0x00080016), sop_instance_uid=uid(0x00080018), attributes=attrs)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInstance:
    """Where an instance lives, for C-MOVE/C-GET sub-operations and duplicate checks."""

    path: Path
    size: int
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str


@dataclass(frozen=True, slots=True)
class IndexCounts:
    patients: int
    studies: int
    series: int
    instances: int
    bytes: int


Row = dict[str, Any]  # DICOM keyword → decoded value (str, int, None; backslash-joined when multi-valued)


class ArchiveIndex(ABC):
    """What services need from an index. Every method is safe to call concurrently."""

    @abstractmethod
    async def add(self, records: Sequence[IndexRecord], *, indexed_until: float | None = None) -> None:
        """Index (or re-index: an instance stored again replaces its row) and return once committed.

        indexed_until: a wall-clock time before which every instance this process filed is in `records`
        or already indexed; saved with them (this process's mark) for the start-up catch-up."""

    @abstractmethod
    async def remove(self, sop_instance_uid: str) -> bool:
        """Forget an instance (and series/studies/patients left empty). False when unknown."""

    @abstractmethod
    async def get(self, sop_instance_uid: str) -> StoredInstance | None:
        """The stored instance with this SOP Instance UID, if any."""

    @abstractmethod
    def query(self, level: Level, query: Query, *, model: Model = Model.STUDY_ROOT) -> AsyncIterator[Row]:
        """Stream the entities of `level` matching `query`, with the attributes of that level and the
        levels above. Keys the index does not hold are not matched (universal; PS3.4 C.2.2.1.3).
        Close the iterator (`aclosing`) when stopping early, e.g. on C-CANCEL."""

    @abstractmethod
    def instances(self, level: Level, uids: Mapping[str, Sequence[str]]) -> AsyncIterator[StoredInstance]:
        """Stream the instances under the entities selected by unique keys, e.g.
        `{"StudyInstanceUID": [...]}` (C-MOVE/C-GET, PS3.4 C.4.2.2.1); the key of `level` is required."""

    @abstractmethod
    async def instance_count(self, level: Level, uids: Mapping[str, Sequence[str]]) -> int:
        """How many instances `instances()` would yield (Number of Remaining Sub-operations)."""

    @abstractmethod
    async def counts(self) -> IndexCounts: ...

    @abstractmethod
    def supported_keys(self, level: Level) -> frozenset[str]:
        """Keywords matched and returned at `level` (its own and the levels above)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def check_level(level: Level, model: Model) -> None:
    if level not in MODEL_LEVELS[model]:
        raise ValueError(f"level {level} does not exist in the {model.value} model")


def check_uids(level: Level, uids: Mapping[str, Sequence[str]]) -> None:
    unknown = set(uids) - set(UNIQUE_KEYS.values())
    if unknown:
        raise ValueError(f"not unique keys: {sorted(unknown)}")
    if not uids.get(UNIQUE_KEYS[level]):
        raise ValueError(f"{level} level retrieval needs {UNIQUE_KEYS[level]}")
