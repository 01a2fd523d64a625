"""The attribute lists of N-CREATE and N-SET, checked as PS3.4 H.2.4 prescribes.

Usage M/M: missing → 0120H, unsupported value → 0106H. U/M: the SCP fills in its default when the
SCU leaves it out; an unsupported value → 0106H, or 0116H and the default. U/U: an attribute we do
not support → 0107H (a warning listing it in Attribute Identifier List) and it is ignored. Values
come back normalised (ints as int, code strings stripped) in a plain dict keyed by keyword.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from ...dimse import status as st
from .layout import LayoutError, parse_display_format
from .model import (
    COLOR_IMAGE_BOX,
    DENSITY_OUT_OF_RANGE,
    FILM_SESSION,
    MEMORY_ALLOCATION_NOT_SUPPORTED,
    Capabilities,
    ImagePixels,
    PrintFailure,
)

# When several warnings apply the response carries one status: the most specific one.
_WARNING_RANK: Final = {DENSITY_OUT_OF_RANGE: 0, MEMORY_ALLOCATION_NOT_SUPPORTED: 1,
                        st.ATTRIBUTE_VALUE_OUT_OF_RANGE: 2, st.ATTRIBUTE_LIST_ERROR: 3}


class BadValue(ValueError):
    """A value the printer does not support. `status`/`use` turn it into a warning that replaces the
    value (e.g. a density clamped to the printer's range, B605H); `drop` ignores the attribute."""

    def __init__(self, reason: str, *, status: int | None = None, use: Any = None, drop: bool = False) -> None:
        super().__init__(reason)
        self.status, self.use, self.drop = status, use, drop


Parse = Callable[[Any, Capabilities], Any]


@dataclass(frozen=True, slots=True)
class Rule:
    usage: str  # "M" (M/M), "U" (U/M: the SCP has a default), "O" (U/U)
    parse: Parse
    default: Callable[[Capabilities], Any] | None = None
    fallback: bool = False  # an unsupported value: 0116H and the default, instead of 0106H
    allow_empty: bool = False  # a zero-length value means something (an empty image sequence erases)


@dataclass(slots=True)
class Checked:
    """Normalised values and the warnings to report."""

    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[tuple[int, int, str]] = field(default_factory=list)  # (status, tag, reason)

    @property
    def status(self) -> int:
        if not self.warnings:
            return st.SUCCESS
        return min((w[0] for w in self.warnings), key=lambda s: _WARNING_RANK.get(s, -1))

    @property
    def comment(self) -> str | None:
        return "; ".join(w[2] for w in self.warnings) or None

    def fields(self) -> dict[str, Any]:
        unsupported = tuple(t for s, t, _ in self.warnings if s == st.ATTRIBUTE_LIST_ERROR)
        offending = tuple(t for s, t, _ in self.warnings if s != st.ATTRIBUTE_LIST_ERROR)
        out: dict[str, Any] = {}
        if unsupported:
            out["attribute_identifier_list"] = unsupported
        if offending:
            out["offending_elements"] = offending
        return out


def check(ds: Dataset | None, rules: Mapping[str, Rule], caps: Capabilities, *, require: bool,
          defaults: bool, fixed: frozenset[str] = frozenset()) -> Checked:
    """Check an attribute list against `rules`. `require`: M/M attributes must be present (N-CREATE,
    and the Image Box N-SET); `defaults`: fill U/M attributes left out; `fixed`: attributes N-SET may
    not change (0105H). Raises PrintFailure for a failure status."""
    out = Checked()
    for elem in ds or ():
        tag = int(elem.tag)
        keyword = elem.keyword or ""
        if tag >> 16 in (0x0000, 0x0002) or keyword == "SpecificCharacterSet":
            continue
        if keyword in fixed:
            raise PrintFailure(st.NO_SUCH_ATTRIBUTE, f"{_name(keyword)} is set at N-CREATE and cannot change",
                               offending=(tag,))
        rule = rules.get(keyword)
        if rule is None:
            out.warnings.append((st.ATTRIBUTE_LIST_ERROR, tag, f"{keyword or _hex(tag)} not supported, ignored"))
            continue
        value = elem.value
        if _empty(value) and not rule.allow_empty:
            if rule.usage == "M":
                raise PrintFailure(st.MISSING_ATTRIBUTE_VALUE, f"{_name(keyword)} has no value", offending=(tag,))
            continue  # zero length: the SCP's default applies
        try:
            out.values[keyword] = rule.parse(value, caps)
        except PrintFailure:
            raise
        except BadValue as bad:
            if bad.drop:
                out.warnings.append((bad.status or st.ATTRIBUTE_LIST_ERROR, tag, str(bad)))
            elif bad.status is not None:
                out.values[keyword] = bad.use
                out.warnings.append((bad.status, tag, str(bad)))
            elif rule.fallback and rule.default is not None:
                out.values[keyword] = rule.default(caps)
                out.warnings.append((st.ATTRIBUTE_VALUE_OUT_OF_RANGE, tag, f"{bad}; using {out.values[keyword]}"))
            else:
                raise PrintFailure(st.INVALID_ATTRIBUTE_VALUE, str(bad), offending=(tag,)) from None
    for keyword, rule in rules.items():
        if keyword in out.values:
            continue
        present = ds is not None and keyword in ds and not _empty(ds[keyword].value)
        if rule.usage == "M" and require and not present:
            raise PrintFailure(st.MISSING_ATTRIBUTE, f"{_name(keyword)} is missing", offending=(tag_of(keyword),))
        if defaults and rule.default is not None and not present:
            out.values[keyword] = rule.default(caps)
    return out


def tag_of(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def _empty(value: Any) -> bool:
    if value is None:
        return True
    try:
        return len(value) == 0
    except TypeError:  # numbers
        return False


def _name(keyword: str) -> str:
    """'FilmSizeID' → 'Film Size ID' for Error Comments."""
    out = []
    for i, c in enumerate(keyword):
        if c.isupper() and i and (not keyword[i - 1].isupper() or (i + 1 < len(keyword) and keyword[i + 1].islower())):
            out.append(" ")
        out.append(c)
    return "".join(out)


def _hex(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


# ---- value parsers -------------------------------------------------------------------------------


def _single(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) != 1:
            raise BadValue(f"expected one value, got {len(value)}")
        return value[0]
    return value


def _code(value: Any) -> str:
    return str(_single(value)).strip(" \x00")


def _int(value: Any, what: str) -> int:
    try:
        number = float(str(_single(value)).strip())
    except ValueError:
        raise BadValue(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise BadValue(f"{what} {value!r} is not an integer")
    return int(number)


def enum(what: str, allowed: Callable[[Capabilities], tuple[str, ...]]) -> Parse:
    def parse(value: Any, caps: Capabilities) -> str:
        code = _code(value)
        if code not in allowed(caps):
            reason, choices = f"{what} {code[:16]!r} not supported", "/".join(allowed(caps))
            # an Error Comment holds 64 characters (PS3.7 C.4): the choices only when they fit
            raise BadValue(f"{reason} ({choices})" if len(reason) + len(choices) <= 61 else reason)
        return code

    return parse


def text(value: Any, caps: Capabilities) -> str:
    return str(_single(value)).strip(" \x00")


def copies(value: Any, caps: Capabilities) -> int:
    n = _int(value, "Number of Copies")
    if not 1 <= n <= caps.max_copies:
        raise BadValue(f"Number of Copies {n} outside 1..{caps.max_copies}")
    return n


def destination(value: Any, caps: Capabilities) -> str:
    code = _code(value)
    if code in caps.film_destinations:
        return code
    prefix, _, number = code.partition("_")
    # PS3.3 C.13.1: BIN_i, numbered from 1 without leading zeros
    if prefix == "BIN" and number.isdigit() and not number.startswith("0") and 1 <= int(number) <= caps.sorter_bins:
        return code
    raise BadValue(f"Film Destination {code!r} not supported")


def memory_allocation(value: Any, caps: Capabilities) -> Any:
    raise BadValue("Memory Allocation not supported, ignored", status=MEMORY_ALLOCATION_NOT_SUPPORTED, drop=True)


def display_format(value: Any, caps: Capabilities) -> str:
    try:
        return str(parse_display_format(_code(value)))
    except LayoutError as exc:
        raise BadValue(str(exc)) from None


def film_session_reference(value: Any, caps: Capabilities) -> str:
    """Referenced Film Session Sequence: one item naming a Basic Film Session; its UID."""
    if len(value) != 1:
        raise BadValue(f"Referenced Film Session Sequence needs exactly one item, got {len(value)}")
    item = value[0]
    sop_class = str(item.get("ReferencedSOPClassUID", "")).strip(" \x00")
    uid = str(item.get("ReferencedSOPInstanceUID", "")).strip(" \x00")
    if sop_class != FILM_SESSION or not uid:
        raise BadValue("Referenced Film Session Sequence must reference a Basic Film Session instance")
    return uid


def density(what: str, *, names: bool) -> Parse:
    """Hundredths of optical density (PS3.3 C.13.3); BLACK/WHITE too where `names`. Outside the
    printer's range: clamped, Warning B605H (PS3.4 H.4.2.2.1.2)."""

    def parse(value: Any, caps: Capabilities) -> int | str:
        code = _code(value)
        if names and code in ("BLACK", "WHITE"):
            return code
        n = _int(code, what)
        lo, hi = caps.density_range
        clamped = min(max(n, lo), hi)
        use: int | str = str(clamped) if names else clamped  # Border/Empty Image Density are CS, Min/Max US
        if n != clamped:
            raise BadValue(f"{what} {n} outside {lo}..{hi}, using {clamped}", status=DENSITY_OUT_OF_RANGE, use=use)
        return use

    return parse


def configuration(value: Any, caps: Capabilities) -> str:
    code = text(value, caps)
    if code:
        raise BadValue(f"Configuration Information {code[:24]!r} not supported")
    return code


def requested_size(value: Any, caps: Capabilities) -> float:
    try:
        mm = float(str(_single(value)).strip())
    except ValueError:
        raise BadValue(f"Requested Image Size {value!r} is not a number") from None
    if not math.isfinite(mm) or mm <= 0 or mm > 2000:
        raise BadValue(f"Requested Image Size {mm} mm is not a printable width")
    return mm


def image_box_position(value: Any, caps: Capabilities) -> int:
    return _int(value, "Image Box Position")


# ---- the attribute lists -----------------------------------------------------------------------

FILM_SESSION_RULES: Final[Mapping[str, Rule]] = {  # PS3.4 Table H.4-2 (N-CREATE), H.4-3 (N-SET)
    "NumberOfCopies": Rule("U", copies, lambda c: 1),
    "PrintPriority": Rule("U", enum("Print Priority", lambda c: ("HIGH", "MED", "LOW")), lambda c: "MED", True),
    "MediumType": Rule("U", enum("Medium Type", lambda c: c.medium_types), lambda c: c.default_medium, True),
    "FilmDestination": Rule("U", destination, lambda c: c.default_destination, True),
    "FilmSessionLabel": Rule("O", text),
    "MemoryAllocation": Rule("O", memory_allocation),
    "OwnerID": Rule("O", text),
}

FILM_BOX_RULES: Final[Mapping[str, Rule]] = {  # PS3.4 Table H.4-6 (N-CREATE), H.4-8 (N-SET)
    "ImageDisplayFormat": Rule("M", display_format),
    "ReferencedFilmSessionSequence": Rule("M", film_session_reference),
    "FilmOrientation": Rule("U", enum("Film Orientation", lambda c: ("PORTRAIT", "LANDSCAPE")),
                            lambda c: c.default_orientation),
    "FilmSizeID": Rule("U", enum("Film Size ID", lambda c: c.film_sizes), lambda c: c.default_film_size),
    "MagnificationType": Rule("U", enum("Magnification Type", lambda c: c.magnification_types),
                              lambda c: c.default_magnification, True),
    "MaxDensity": Rule("U", density("Max Density", names=False), lambda c: c.default_max_density),
    "MinDensity": Rule("O", density("Min Density", names=False), lambda c: c.default_min_density),
    "ConfigurationInformation": Rule("U", configuration, lambda c: "", True),
    "BorderDensity": Rule("O", density("Border Density", names=True), lambda c: c.default_border_density, True),
    "EmptyImageDensity": Rule("O", density("Empty Image Density", names=True),
                              lambda c: c.default_empty_image_density, True),
    "Trim": Rule("O", enum("Trim", lambda c: ("YES", "NO")), lambda c: "NO", True),
    "RequestedResolutionID": Rule("O", enum("Requested Resolution ID", lambda c: tuple(c.resolutions)),
                                  lambda c: c.default_resolution, True),
}
FILM_BOX_FIXED: Final = frozenset({"ImageDisplayFormat", "ReferencedFilmSessionSequence", "FilmOrientation",
                                   "FilmSizeID", "RequestedResolutionID"})


def image_box_rules(sop_class: str) -> Mapping[str, Rule]:
    """PS3.4 Table H.4-10 (Grayscale) and H.4-11 (Color) N-SET attributes."""
    color = sop_class == COLOR_IMAGE_BOX
    rules: dict[str, Rule] = {
        "ImageBoxPosition": Rule("M", image_box_position),
        "Polarity": Rule("U", enum("Polarity", lambda c: ("NORMAL", "REVERSE")), lambda c: "NORMAL"),
        "MagnificationType": Rule("O", enum("Magnification Type", lambda c: c.magnification_types)),
        "RequestedImageSize": Rule("O", requested_size),
        "RequestedDecimateCropBehavior": Rule("O", enum("Requested Decimate/Crop Behavior",
                                                        lambda c: ("DECIMATE", "CROP", "FAIL"))),
        "ConfigurationInformation": Rule("O", configuration, lambda c: "", True),
    }
    if color:
        rules["BasicColorImageSequence"] = Rule("M", lambda v, c: preformatted(v, c, color=True), allow_empty=True)
    else:
        rules["BasicGrayscaleImageSequence"] = Rule("M", lambda v, c: preformatted(v, c, color=False),
                                                    allow_empty=True)
        rules["MinDensity"] = Rule("O", density("Min Density", names=False))
        rules["MaxDensity"] = Rule("O", density("Max Density", names=False))
    return rules


# ---- the Preformatted Grayscale/Color Image module (PS3.4 Tables H.4-10, H.4-11) -----------------

_GRAY_KEYS: Final = ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "PixelAspectRatio",
                     "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData")
_COLOR_KEYS: Final = (*_GRAY_KEYS[:5], "PlanarConfiguration", *_GRAY_KEYS[5:])


def preformatted(value: Any, caps: Capabilities, *, color: bool) -> ImagePixels | None:
    """The one item of the Basic Grayscale/Color Image Sequence as ImagePixels; None for a
    zero-length sequence, which erases the image box (PS3.4 H.4.3.1.2.1.3). Every fault is a
    PrintFailure naming the sequence and the element at fault."""
    seq_tag = tag_of("BasicColorImageSequence" if color else "BasicGrayscaleImageSequence")
    if len(value) == 0:
        return None
    if len(value) != 1:
        raise PrintFailure(st.INVALID_ATTRIBUTE_VALUE, f"the image sequence must have one item, not {len(value)}",
                           offending=(seq_tag,))
    item = value[0]
    for keyword in _COLOR_KEYS if color else _GRAY_KEYS:
        if keyword not in item or (keyword != "PixelData" and _empty(item[keyword].value)):
            raise PrintFailure(st.MISSING_ATTRIBUTE, f"{_name(keyword)} missing in the image sequence",
                               offending=(seq_tag, tag_of(keyword)))

    def bad(keyword: str, reason: str) -> PrintFailure:
        return PrintFailure(st.INVALID_ATTRIBUTE_VALUE, reason, offending=(seq_tag, tag_of(keyword)))

    def number(keyword: str) -> int:
        try:
            return _int(item[keyword].value, _name(keyword))
        except BadValue as exc:
            raise bad(keyword, str(exc)) from None

    samples, rows, columns = number("SamplesPerPixel"), number("Rows"), number("Columns")
    bits = (number("BitsAllocated"), number("BitsStored"), number("HighBit"))
    photometric = _code(item.PhotometricInterpretation)
    planar = number("PlanarConfiguration") if color else 0
    if color:
        if samples != 3 or photometric != "RGB":
            raise bad("PhotometricInterpretation", f"color images are RGB, 3 samples (got {photometric}, {samples})")
        if bits != (8, 8, 7):
            raise bad("BitsStored", f"color images have 8 bits (got {bits[0]}/{bits[1]}/{bits[2]})")
        if planar not in (0, 1):
            raise bad("PlanarConfiguration", f"Planar Configuration {planar} is not 0 or 1")
    else:
        if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise bad("PhotometricInterpretation",
                      f"grayscale images are MONOCHROME1/2, 1 sample (got {photometric}, {samples})")
        if bits not in ((8, 8, 7), (16, 12, 11)):
            raise bad("BitsStored", f"8 or 12 bits stored (8/8/7 or 16/12/11), got {bits[0]}/{bits[1]}/{bits[2]}")
    if number("PixelRepresentation") != 0:
        raise bad("PixelRepresentation", "preformatted images are unsigned (Pixel Representation 0)")
    if not (1 <= rows <= caps.max_image_rows and 1 <= columns <= caps.max_image_rows):
        raise bad("Rows", f"{columns}x{rows} pixels: this printer takes 1..{caps.max_image_rows} per side")
    try:
        aspect = tuple(_int(v, "Pixel Aspect Ratio") for v in item.PixelAspectRatio)
    except BadValue as exc:
        raise bad("PixelAspectRatio", str(exc)) from None
    if len(aspect) != 2 or min(aspect) < 1:
        raise bad("PixelAspectRatio", "Pixel Aspect Ratio needs two positive integers")
    data = item.PixelData
    expected = rows * columns * samples * (bits[0] // 8)
    # PS3.5 §8.1.1: an odd-length value is padded to even length with one byte
    if len(data) != expected and not (expected % 2 and len(data) == expected + 1):
        raise bad("PixelData", f"Pixel Data has {len(data)} bytes, {columns}x{rows}x{samples} at "
                               f"{bits[0]} bits needs {expected}")
    return ImagePixels(rows, columns, samples, bits[0], bits[1], photometric, planar,
                       (aspect[0], aspect[1]), data if len(data) == expected else bytes(data[:expected]))
