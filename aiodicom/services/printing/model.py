"""Print Management (PS3.4 Annex H): SOP classes, statuses, the printer's capabilities, and the
film session hierarchy, both as it lives on an association and as a print job freezes it.

A Film Session holds Film Boxes; each Film Box holds the Image Boxes its Image Display Format
makes (PS3.4 H.4.2.2.1). They are mutable while the SCU builds them. Printing (N-ACTION) copies
the hierarchy into a `Job` of frozen values (the "copied" hierarchy of PS3.4 H.4.1.2.1.1), so
later N-SETs and N-DELETEs never touch what is being printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from ...dimse import status as st
from .layout import FILM_SIZES_MM, DisplayFormat

# ---- SOP classes (PS3.4 H.3.2.2, H.4; PS3.6 Annex A) -------------------------------------------
FILM_SESSION: Final = "1.2.840.10008.5.1.1.1"
FILM_BOX: Final = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX: Final = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX: Final = "1.2.840.10008.5.1.1.4.1"
GRAYSCALE_META: Final = "1.2.840.10008.5.1.1.9"
COLOR_META: Final = "1.2.840.10008.5.1.1.18"
PRINT_JOB: Final = "1.2.840.10008.5.1.1.14"
PRINTER: Final = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE: Final = "1.2.840.10008.5.1.1.17"  # the well-known Printer SOP Instance (PS3.4 H.4.6.3)

META_CLASSES: Final = (GRAYSCALE_META, COLOR_META)
# What a context for each Meta SOP class covers (PS3.4 H.3.2.2, H.3.2.3): requests and N-EVENT-REPORTs of these
# classes travel on it
META_MEMBERS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    GRAYSCALE_META: frozenset({FILM_SESSION, FILM_BOX, GRAYSCALE_IMAGE_BOX, PRINTER}),
    COLOR_META: frozenset({FILM_SESSION, FILM_BOX, COLOR_IMAGE_BOX, PRINTER})})
IMAGE_BOX_OF_META: Final[Mapping[str, str]] = MappingProxyType({
    GRAYSCALE_META: GRAYSCALE_IMAGE_BOX, COLOR_META: COLOR_IMAGE_BOX})
SOP_CLASS_NAMES: Final[Mapping[str, str]] = MappingProxyType({
    FILM_SESSION: "Basic Film Session", FILM_BOX: "Basic Film Box", GRAYSCALE_IMAGE_BOX: "Basic Grayscale Image Box",
    COLOR_IMAGE_BOX: "Basic Color Image Box", PRINT_JOB: "Print Job", PRINTER: "Printer",
    GRAYSCALE_META: "Basic Grayscale Print Management Meta", COLOR_META: "Basic Color Print Management Meta"})

ACTION_PRINT: Final = 1  # Action Type ID of the Film Session and Film Box N-ACTION (PS3.4 H.4.1.2.4, H.4.2.2.4)

# Print Job N-EVENT-REPORT Event Type IDs (PS3.4 H.4.5.2.1) and Execution Status values (PS3.3 C.13.8).
JOB_PENDING, JOB_PRINTING, JOB_DONE, JOB_FAILURE = 1, 2, 3, 4
JOB_STATUS_OF_EVENT: Final[Mapping[int, str]] = MappingProxyType({
    JOB_PENDING: "PENDING", JOB_PRINTING: "PRINTING", JOB_DONE: "DONE", JOB_FAILURE: "FAILURE"})
# Printer N-EVENT-REPORT Event Type IDs (PS3.4 H.4.6.2.1) by Printer Status (PS3.3 C.13.9).
PRINTER_EVENT_OF_STATUS: Final[Mapping[str, int]] = MappingProxyType({"NORMAL": 1, "WARNING": 2, "FAILURE": 3})

# ---- service-specific statuses (PS3.4 H.4.1.2.1.2, H.4.1.2.4.2, H.4.2.2.1.2, H.4.2.2.4.2, H.4.3.1.2.1.2) ----
MEMORY_ALLOCATION_NOT_SUPPORTED: Final = 0xB600
COLLATION_NOT_SUPPORTED: Final = 0xB601
SESSION_WITHOUT_IMAGES: Final = 0xB602
FILM_BOX_WITHOUT_IMAGES: Final = 0xB603
IMAGE_DEMAGNIFIED: Final = 0xB604
DENSITY_OUT_OF_RANGE: Final = 0xB605
IMAGE_CROPPED: Final = 0xB609
IMAGE_DECIMATED: Final = 0xB60A
SESSION_WITHOUT_FILM_BOXES: Final = 0xC600
SESSION_QUEUE_FULL: Final = 0xC601
FILM_BOX_QUEUE_FULL: Final = 0xC602
IMAGE_TOO_LARGE: Final = 0xC603
INSUFFICIENT_MEMORY: Final = 0xC605
UNPRINTED_FILM_BOX: Final = 0xC616

PRINT_STATUS_NAMES: Final[Mapping[int, str]] = MappingProxyType({
    MEMORY_ALLOCATION_NOT_SUPPORTED: "Memory allocation not supported",
    COLLATION_NOT_SUPPORTED: "Film session printing (collation) is not supported",
    SESSION_WITHOUT_IMAGES: "Film Session hierarchy has no Image Box with an image (empty page)",
    FILM_BOX_WITHOUT_IMAGES: "Film Box hierarchy has no Image Box with an image (empty page)",
    IMAGE_DEMAGNIFIED: "Image larger than the image box: demagnified",
    DENSITY_OUT_OF_RANGE: "Min or Max Density outside the printer's range: its limit is used",
    IMAGE_CROPPED: "Image larger than the image box: cropped to fit",
    IMAGE_DECIMATED: "Image larger than the image box: decimated to fit",
    SESSION_WITHOUT_FILM_BOXES: "Film Session hierarchy has no Film Box",
    SESSION_QUEUE_FULL: "Unable to create Print Job: print queue is full",
    FILM_BOX_QUEUE_FULL: "Unable to create Print Job: print queue is full",
    IMAGE_TOO_LARGE: "Image size is larger than the image box size",
    INSUFFICIENT_MEMORY: "Insufficient memory in printer to store the image",
    UNPRINTED_FILM_BOX: "An earlier Film Box has not been printed",
})


def describe_status(code: int) -> str:
    """`code` in hex with its name: Print Management's meaning of B6xx/C6xx, PS3.7's for the rest
    (dimse.status would name C6xx with C-STORE's 'Cannot understand')."""
    name = PRINT_STATUS_NAMES.get(code)
    return f"0x{code:04X} {name}" if name else st.describe(code)


class PrintFailure(Exception):
    """A request the SCP refuses (or a value it must report): the status, the Error Comment, and the
    offending elements / unsupported attributes the response carries (PS3.7 C.4)."""

    def __init__(self, status: int, comment: str, *, offending: tuple[int, ...] = (),
                 unsupported: tuple[int, ...] = ()) -> None:
        super().__init__(comment)
        self.status = status
        self.offending = offending
        self.unsupported = unsupported

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.offending:
            out["offending_elements"] = self.offending
        if self.unsupported:
            out["attribute_identifier_list"] = self.unsupported
        return out


# ---- the printer --------------------------------------------------------------------------------


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What a printer supports and its defaults: the values PS3.4 H.2.4 lets an SCP refuse (0106H)
    or replace by its default (0116H), and what it fills in for U/M attributes left out."""

    film_sizes: tuple[str, ...] = tuple(FILM_SIZES_MM)
    default_film_size: str = "14INX17IN"
    default_orientation: str = "PORTRAIT"
    magnification_types: tuple[str, ...] = ("REPLICATE", "BILINEAR", "CUBIC", "NONE")
    default_magnification: str = "BILINEAR"
    medium_types: tuple[str, ...] = ("PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM", "MAMMO BLUE FILM")
    default_medium: str = "BLUE FILM"
    film_destinations: tuple[str, ...] = ("MAGAZINE", "PROCESSOR")
    sorter_bins: int = 0  # BIN_1 .. BIN_n are destinations too (PS3.3 C.13.1)
    default_destination: str = "PROCESSOR"
    max_copies: int = 99
    density_range: tuple[int, int] = (20, 300)  # hundredths of optical density the printer can make
    default_min_density: int = 20
    default_max_density: int = 300
    default_border_density: str = "BLACK"
    default_empty_image_density: str = "BLACK"
    resolutions: Mapping[str, int] = field(default_factory=lambda: _frozen({"STANDARD": 150, "HIGH": 300}))
    default_resolution: str = "STANDARD"
    color: bool = True
    max_image_rows: int = 8192  # and columns: a bound on what one Image Box may hold
    max_session_bytes: int = 512 << 20  # pixel data one film session may keep (beyond: C605)
    max_queued_jobs: int = 16  # print jobs not yet done, all associations together (beyond: C601/C602)

    def dpi(self, resolution_id: str | None) -> int:
        return self.resolutions.get(resolution_id or self.default_resolution) or self.resolutions[
            self.default_resolution]


@dataclass(frozen=True, slots=True)
class PrinterState:
    """Printer Status (2110,0010) and Printer Status Info (2110,0020) (PS3.3 C.13.9)."""

    status: str = "NORMAL"  # NORMAL, WARNING, FAILURE
    info: str = "NORMAL"  # a PS3.3 C.13.9.1 defined term, e.g. PRINTER DOWN, SUPPLY EMPTY


# ---- frozen values: what a print job prints ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImagePixels:
    """The Preformatted Grayscale/Color Image module of an Image Box (PS3.4 H.4.3, PS3.3 C.13.5)."""

    rows: int
    columns: int
    samples: int  # 1 (MONOCHROME1/2) or 3 (RGB)
    bits_allocated: int  # 8 or 16
    bits_stored: int  # 8 or 12
    photometric: str
    planar: int  # Planar Configuration of RGB: 0 pixel-interleaved, 1 colour-by-plane
    aspect: tuple[int, int]  # Pixel Aspect Ratio: vertical, horizontal
    data: bytes
    big_endian: bool = False  # 16-bit values as encoded in Explicit VR Big Endian

    @property
    def nbytes(self) -> int:
        return self.rows * self.columns * self.samples * (self.bits_allocated // 8)


@dataclass(frozen=True, slots=True)
class PrintedImage:
    position: int
    uid: str
    attributes: Mapping[str, Any]
    pixels: ImagePixels | None


@dataclass(frozen=True, slots=True)
class Film:
    """One Film Box as printed."""

    uid: str
    color: bool
    display_format: DisplayFormat
    attributes: Mapping[str, Any]
    images: tuple[PrintedImage, ...]


@dataclass(frozen=True, slots=True)
class Job:
    """A print job: the film session's attributes and the films, copied at N-ACTION time."""

    uid: str
    film_session_uid: str
    session: Mapping[str, Any]
    films: tuple[Film, ...]
    originator: str  # calling AE title (PS3.3 C.13.8 Originator)
    created: datetime

    @property
    def copies(self) -> int:
        return int(self.session.get("NumberOfCopies", 1))

    @property
    def label(self) -> str:
        return str(self.session.get("FilmSessionLabel", ""))


# ---- mutable state: the hierarchy an SCU builds on its association ------------------------------


@dataclass(slots=True, eq=False)
class ImageBox:
    uid: str
    sop_class: str
    position: int
    attributes: dict[str, Any] = field(default_factory=dict)
    pixels: ImagePixels | None = None

    def snapshot(self) -> PrintedImage:
        return PrintedImage(self.position, self.uid, MappingProxyType(dict(self.attributes)), self.pixels)


@dataclass(slots=True, eq=False)
class FilmBox:
    uid: str
    meta_class: str
    display_format: DisplayFormat
    attributes: dict[str, Any]
    image_boxes: tuple[ImageBox, ...]
    current: bool = True  # the last created Film Box: the only one N-SET/N-DELETE may touch (PS3.4 H.4.2.2.3)

    @property
    def color(self) -> bool:
        return self.meta_class == COLOR_META

    @property
    def has_images(self) -> bool:
        return any(box.pixels is not None for box in self.image_boxes)

    def snapshot(self) -> Film:
        return Film(self.uid, self.color, self.display_format, MappingProxyType(dict(self.attributes)),
                    tuple(box.snapshot() for box in self.image_boxes))


@dataclass(slots=True, eq=False)
class FilmSession:
    uid: str
    meta_class: str
    attributes: dict[str, Any]
    film_boxes: list[FilmBox] = field(default_factory=list)

    def pixel_bytes(self) -> int:
        return sum(len(b.pixels.data) for f in self.film_boxes for b in f.image_boxes if b.pixels is not None)

    def job(self, uid: str, films: list[FilmBox], originator: str, created: datetime) -> Job:
        return Job(uid, self.uid, MappingProxyType(dict(self.attributes)), tuple(f.snapshot() for f in films),
                   originator, created)

