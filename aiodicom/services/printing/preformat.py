"""A DICOM image made ready for an Image Box: the Preformatted Grayscale or Color Image module
(PS3.4 Tables H.4-10 and H.4-11) that a Print SCU puts in Basic Grayscale/Color Image Sequence.

Grayscale: the Modality LUT (rescale or LUT), then the VOI LUT (window, PS3.3 C.11.2.1.2, or the
LUT; min/max of the image when it has neither) turn stored values into presentation values,
MONOCHROME1 is inverted so the result is MONOCHROME2, and the values are quantised to 8 or 12
bits. Colour: RGB (pydicom converts YBR), Palette Color through its LUTs, 8 bits. Pixels are made
square (Pixel Aspect Ratio or Pixel Spacing) and the image shrunk to fit the image box; never
enlarged, the printer's Magnification Type does that better at its own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut


class PreformatError(ValueError):
    """An image that cannot be printed (no pixel data, an unknown photometric interpretation...)."""


@dataclass(frozen=True, slots=True)
class Preformatted:
    rows: int
    columns: int
    color: bool
    bits: int  # bits stored: 8, or 12 in 16 allocated
    data: bytes

    def item(self) -> Dataset:
        """The one item of Basic Grayscale/Color Image Sequence."""
        item = Dataset()
        item.SamplesPerPixel = 3 if self.color else 1
        item.PhotometricInterpretation = "RGB" if self.color else "MONOCHROME2"
        if self.color:
            item.PlanarConfiguration = 0
        item.Rows, item.Columns = self.rows, self.columns
        item.PixelAspectRatio = [1, 1]
        item.BitsAllocated = 16 if self.bits > 8 else 8
        item.BitsStored = self.bits
        item.HighBit = self.bits - 1
        item.PixelRepresentation = 0
        item.add_new(0x7FE00010, "OW" if self.bits > 8 else "OB", self.data)
        return item


def preformat(ds: Dataset, *, color: bool = False, bits: int = 8, max_size: tuple[int, int] | None = None,
              frame: int = 0) -> Preformatted:
    """`ds` (a decoded image, any transfer syntax pydicom can decode) as a preformatted image of at
    most `max_size` (width, height) pixels; `frame` picks one frame of a multi-frame image."""
    if bits not in (8, 12) or (color and bits != 8):
        raise PreformatError("preformatted images have 8 bits (grayscale: 8 or 12)")
    if "PixelData" not in ds:
        raise PreformatError("the data set has no Pixel Data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types: no decoder, truncated data...
        raise PreformatError(f"cannot decode the pixel data: {exc}") from exc
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        if not 0 <= frame < pixels.shape[0]:
            raise PreformatError(f"frame {frame + 1} of {pixels.shape[0]}")
        pixels = pixels[frame]
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = _presentation(pixels, ds)
        if photometric == "MONOCHROME1":  # presentation values: minimum is white
            values = 1.0 - values
        rgb = None
    elif photometric == "PALETTE COLOR":
        rgb = _unit(apply_color_lut(pixels, ds), 16 if int(ds.get("BitsAllocated", 8)) > 8 else 8)
    elif pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB, and YBR which pydicom has converted to RGB
        rgb = _unit(pixels, int(ds.get("BitsStored", 8)))
    else:
        raise PreformatError(f"cannot print Photometric Interpretation {photometric!r}")
    if rgb is not None:
        values = rgb if color else rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
    elif color:
        values = np.repeat(values[..., None], 3, axis=-1)
    return _quantise(_resize(values, _aspect(ds), max_size), color=color, bits=bits)


def _unit(arr: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(arr.astype(np.float64) / float((1 << bits) - 1), 0.0, 1.0)


def _presentation(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values → presentation values in 0..1 (PS3.3 C.11.1 Modality LUT, C.11.2 VOI LUT)."""
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return _unit(apply_voi_lut(np.rint(values).astype(np.int64), ds, prefer_lut=True), out_bits)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        if function == "SIGMOID":  # C.11.2.1.3.1
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        if function == "LINEAR_EXACT":  # C.11.2.1.3.2
            return np.clip((values - center) / width + 0.5, 0.0, 1.0)
        if width > 1:  # C.11.2.1.2.1 LINEAR, with its -0.5 and -1
            return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
        return (values > center - 0.5).astype(np.float64)  # a width of 1: a threshold
    lo, hi = float(values.min()), float(values.max())
    return np.full(values.shape, 0.5) if hi <= lo else (values - lo) / (hi - lo)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value[0] if not isinstance(value, (int, float)) and len(value) else value)
    except (TypeError, ValueError):
        return None


def _aspect(ds: Dataset) -> float:
    """Height of one pixel over its width: Pixel Aspect Ratio (vertical\\horizontal), or the ratio
    of Pixel Spacing / Imager Pixel Spacing (row spacing\\column spacing)."""
    for keyword in ("PixelAspectRatio", "PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            vertical, horizontal = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if vertical > 0 and horizontal > 0:
            return vertical / horizontal
    return 1.0


def _resize(values: np.ndarray, aspect: float, max_size: tuple[int, int] | None) -> np.ndarray:
    """Square pixels, then no larger than max_size (width, height), keeping the proportions."""
    rows, columns = values.shape[:2]
    width, height = float(columns), rows * aspect
    if max_size is not None:
        shrink = min(1.0, max_size[0] / width, max_size[1] / height)
        width, height = width * shrink, height * shrink
    size = (max(1, round(width)), max(1, round(height)))
    if size == (columns, rows):
        return values
    resample = Image.Resampling.LANCZOS if size[0] < columns or size[1] < rows else Image.Resampling.BICUBIC
    channels = [values] if values.ndim == 2 else [values[..., c] for c in range(values.shape[-1])]
    resized = [np.asarray(Image.fromarray(c.astype(np.float32)).resize(size, resample)) for c in channels]
    return np.clip(resized[0] if values.ndim == 2 else np.stack(resized, axis=-1), 0.0, 1.0)


def _quantise(values: np.ndarray, *, color: bool, bits: int) -> Preformatted:
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    quantised = np.ascontiguousarray(np.rint(values * top), dtype=dtype)
    rows, columns = quantised.shape[:2]
    return Preformatted(rows, columns, color, bits, quantised.tobytes())
