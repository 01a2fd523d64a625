"""Film geometry: Image Display Format (PS3.3 C.13.3), film sizes, and where each image box lies.

Pure arithmetic, shared by the SCP (how large is an image box on this printer, PS3.4 H.4.3: image
too large → demagnify, crop or fail) and the SCU (how large should the image it sends be).
Positions are 1-based in the order PS3.3 C.13.5.1 numbers them: STANDARD and ROW row by row
from the top left, COL column by column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

MM_PER_INCH: Final = 25.4

# PS3.3 C.13.3 Film Size ID (2010,0050) defined terms → (short side, long side) in millimetres.
# 10INX14IN is 25.7 × 36.4 cm and A4/A3 are ISO 216 sizes (the notes of Table C.13-3).
FILM_SIZES_MM: Final[Mapping[str, tuple[float, float]]] = {
    "8INX10IN": (203.2, 254.0),
    "8_5INX11IN": (215.9, 279.4),
    "10INX12IN": (254.0, 304.8),
    "10INX14IN": (257.0, 364.0),
    "11INX14IN": (279.4, 355.6),
    "11INX17IN": (279.4, 431.8),
    "14INX14IN": (355.6, 355.6),
    "14INX17IN": (355.6, 431.8),
    "24CMX24CM": (240.0, 240.0),
    "24CMX30CM": (240.0, 300.0),
    "A4": (210.0, 297.0),
    "A3": (297.0, 420.0),
}
ORIENTATIONS: Final = ("PORTRAIT", "LANDSCAPE")  # PS3.3 C.13.3 Film Orientation (2010,0040)

# A peer chooses how many image boxes a film box gets: bound it (each box is an SOP instance we keep).
MAX_BOXES_PER_FILM: Final = 256
MAX_BOXES_PER_LINE: Final = 32

# Margins of the film and the gaps between image boxes are the printer's (the film's Border Density
# fills them); the standard leaves them to the implementation.
DEFAULT_MARGIN_MM: Final = 6.0
DEFAULT_GAP_MM: Final = 2.0


class LayoutError(ValueError):
    """A display format, film size or orientation this printer cannot lay out."""


@dataclass(frozen=True, slots=True)
class DisplayFormat:
    """A parsed Image Display Format (2010,0010).

    STANDARD: counts = (columns, rows). ROW: counts[i] = boxes in row i (top to bottom).
    COL: counts[j] = boxes in column j (left to right).
    """

    kind: str
    counts: tuple[int, ...]

    @property
    def box_count(self) -> int:
        if self.kind == "STANDARD":
            return self.counts[0] * self.counts[1]
        return sum(self.counts)

    def __str__(self) -> str:
        return f"{self.kind}\\{','.join(map(str, self.counts))}"


def parse_display_format(text: str) -> DisplayFormat:
    """STANDARD\\C,R, ROW\\R1,R2,... or COL\\C1,C2,... (PS3.3 C.13.3); LayoutError for anything else,
    including SLIDE, SUPERSLIDE and CUSTOM\\i, which this printer has no geometry for."""
    value = str(text).strip(" \x00")
    kind, sep, rest = value.partition("\\")
    if kind in ("SLIDE", "SUPERSLIDE", "CUSTOM"):
        raise LayoutError(f"display format {kind} is not supported (STANDARD, ROW and COL are)")
    if kind not in ("STANDARD", "ROW", "COL") or not sep:
        raise LayoutError(f"not an Image Display Format: {value!r} (STANDARD\\C,R, ROW\\R1,R2,... or COL\\C1,...)")
    parts = rest.split(",")
    if not all(p.strip().isdigit() and p.strip().isascii() for p in parts):
        raise LayoutError(f"{value!r}: the counts must be positive integers")
    counts = tuple(int(p) for p in parts)
    if kind == "STANDARD" and len(counts) != 2:
        raise LayoutError(f"{value!r}: STANDARD takes exactly two counts, columns and rows")
    if any(n < 1 for n in counts):
        raise LayoutError(f"{value!r}: every count must be at least 1")
    if any(n > MAX_BOXES_PER_LINE for n in counts) or len(counts) > MAX_BOXES_PER_LINE:
        raise LayoutError(f"{value!r}: at most {MAX_BOXES_PER_LINE} image boxes per row or column")
    fmt = DisplayFormat(kind, counts)
    if fmt.box_count > MAX_BOXES_PER_FILM:
        raise LayoutError(f"{value!r}: {fmt.box_count} image boxes, at most {MAX_BOXES_PER_FILM} per film")
    return fmt


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in device pixels, origin at the top left of the film."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def contains(self, other: Rect) -> bool:
        return self.x <= other.x and self.y <= other.y and other.right <= self.right and other.bottom <= self.bottom


@dataclass(frozen=True, slots=True)
class FilmGeometry:
    """A film in device pixels and its image boxes; boxes[i] is Image Box Position i + 1."""

    width: int
    height: int
    dpi: int
    boxes: tuple[Rect, ...]


def mm_to_px(mm: float, dpi: int) -> int:
    return max(1, round(mm / MM_PER_INCH * dpi))


def film_size_px(film_size_id: str, orientation: str, dpi: int) -> tuple[int, int]:
    """(width, height) of the film in device pixels: PORTRAIT has the short side across (PS3.3 C.13.3)."""
    try:
        short, long = FILM_SIZES_MM[film_size_id]
    except KeyError:
        raise LayoutError(f"unknown Film Size ID {film_size_id!r}") from None
    if orientation not in ORIENTATIONS:
        raise LayoutError(f"unknown Film Orientation {orientation!r} (PORTRAIT or LANDSCAPE)")
    if dpi < 1:
        raise LayoutError(f"resolution must be positive, got {dpi} dpi")
    w, h = mm_to_px(short, dpi), mm_to_px(long, dpi)
    return (w, h) if orientation == "PORTRAIT" else (h, w)


def split(start: int, length: int, parts: int, gap: int) -> list[tuple[int, int]]:
    """`parts` equal segments of [start, start + length) with `gap` between them: (offset, size) each.
    Boundaries are rounded once from exact fractions, so sizes differ by at most one pixel and the
    segments never overlap or leave the span."""
    usable = max(length - gap * (parts - 1), parts)
    edges = [start + (usable * i) // parts for i in range(parts + 1)]
    return [(edges[i] + gap * i, max(edges[i + 1] - edges[i], 1)) for i in range(parts)]


def film_geometry(fmt: DisplayFormat, film_size_id: str, orientation: str, dpi: int, *,
                  margin_mm: float = DEFAULT_MARGIN_MM, gap_mm: float = DEFAULT_GAP_MM) -> FilmGeometry:
    """Every image box of `fmt` on the film, in Image Box Position order (PS3.3 C.13.5.1)."""
    width, height = film_size_px(film_size_id, orientation, dpi)
    margin = min(round(margin_mm / MM_PER_INCH * dpi), width // 4, height // 4)
    gap = round(gap_mm / MM_PER_INCH * dpi)
    x0, y0, w, h = margin, margin, width - 2 * margin, height - 2 * margin
    boxes: list[Rect] = []
    if fmt.kind == "STANDARD":
        columns, rows = fmt.counts
        xs, ys = split(x0, w, columns, gap), split(y0, h, rows, gap)
        boxes = [Rect(x, y, bw, bh) for (y, bh) in ys for (x, bw) in xs]  # row-major
    elif fmt.kind == "ROW":
        for (y, bh), n in zip(split(y0, h, len(fmt.counts), gap), fmt.counts):
            boxes.extend(Rect(x, y, bw, bh) for (x, bw) in split(x0, w, n, gap))
    else:  # COL: column-major, top to bottom then left to right
        for (x, bw), n in zip(split(x0, w, len(fmt.counts), gap), fmt.counts):
            boxes.extend(Rect(x, y, bw, bh) for (y, bh) in split(y0, h, n, gap))
    return FilmGeometry(width, height, dpi, tuple(boxes))


def display_size(columns: int, rows: int, aspect: Sequence[int] = (1, 1)) -> tuple[float, float]:
    """The image's proportions with Pixel Aspect Ratio (0028,0034) = vertical\\horizontal pixel size
    (PS3.3 C.7.6.3.1.7): (relative width, relative height)."""
    vertical, horizontal = (aspect[0], aspect[1]) if len(aspect) == 2 and aspect[0] > 0 and aspect[1] > 0 else (1, 1)
    return columns * horizontal, rows * vertical


def fit(columns: int, rows: int, box: Rect, *, aspect: Sequence[int] = (1, 1), scale: float | None = None) -> Rect:
    """Where an image lands in its box, centred: scaled to fill the box keeping its proportions
    (optimal filling, PS3.3 C.13.5), or by `scale` device pixels per image pixel when given."""
    dw, dh = display_size(columns, rows, aspect)
    if scale is None:
        scale = min(box.width / dw, box.height / dh)
    w, h = max(1, round(dw * scale)), max(1, round(dh * scale))
    return Rect(box.x + (box.width - w) // 2, box.y + (box.height - h) // 2, w, h)


def box_size_px(fmt: DisplayFormat, film_size_id: str, orientation: str, dpi: int, position: int = 1
                ) -> tuple[int, int]:
    """(width, height) of one image box in device pixels: what an SCU resizes its image to."""
    geometry = film_geometry(fmt, film_size_id, orientation, dpi)
    if not 1 <= position <= len(geometry.boxes):
        raise LayoutError(f"image box position {position} outside 1..{len(geometry.boxes)}")
    box = geometry.boxes[position - 1]
    return box.width, box.height


@dataclass(frozen=True, slots=True)
class Placement:
    """How an image is printed in its box: the part of it drawn (image pixels) and where (device pixels)."""

    crop: Rect
    target: Rect
    outcome: str  # "fit", or for an image larger than its box: "demagnified", "decimated", "cropped", "too large"


def place(columns: int, rows: int, box: Rect, *, aspect: Sequence[int] = (1, 1), magnification: str = "BILINEAR",
          behavior: str = "DECIMATE", requested_width: int | None = None) -> Placement:
    """PS3.3 C.13.5 and PS3.4 H.4.3.1.2.1.3: an image that fits its box (one image pixel per device pixel,
    or its Requested Image Size) is magnified to fill the box (NONE: printed as is, centred; a requested
    size: that width). One larger than the box is, per Requested Decimate/Crop Behavior, demagnified to fit
    (DECIMATE, the default; 'decimated' when Magnification Type is NONE), cropped around its centre (CROP)
    or refused (FAIL: 'too large', Failure C603H)."""
    whole = Rect(0, 0, columns, rows)
    dw, dh = display_size(columns, rows, aspect)
    natural = requested_width / dw if requested_width else 1.0
    if round(dw * natural) <= box.width and round(dh * natural) <= box.height:
        if requested_width:
            scale = natural
        elif magnification == "NONE":
            scale = 1.0
        else:
            scale = min(box.width / dw, box.height / dh)
        return Placement(whole, fit(columns, rows, box, aspect=aspect, scale=scale), "fit")
    if behavior == "FAIL":
        return Placement(whole, fit(columns, rows, box, aspect=aspect), "too large")
    if behavior == "CROP":
        horizontal, vertical = dw / columns, dh / rows
        keep_c = max(1, min(columns, int(box.width / (horizontal * natural))))
        keep_r = max(1, min(rows, int(box.height / (vertical * natural))))
        crop = Rect((columns - keep_c) // 2, (rows - keep_r) // 2, keep_c, keep_r)
        return Placement(crop, fit(keep_c, keep_r, box, aspect=aspect, scale=natural), "cropped")
    outcome = "decimated" if magnification == "NONE" else "demagnified"
    return Placement(whole, fit(columns, rows, box, aspect=aspect), outcome)
