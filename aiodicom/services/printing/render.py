"""A printed film as pixels: each Film Box laid out as it asked, rendered with Pillow.

The film is a soft copy of what a printer would expose: the Border Density fills the margins and
the gaps between image boxes, the Empty Image Density what no image covers, and each image is
placed, magnified (REPLICATE, BILINEAR, CUBIC, NONE), cropped or demagnified as PS3.3 C.13.5
says. Grayscale pixels go through density: the film's Max Density prints the image's black, its
Min Density the white, and a density D shows as the grey 255·(Dmax−D)/(Dmax−Dmin) of the printer's
range; BLACK and WHITE are that range's ends. All pixel work is numpy and Pillow, never a Python
loop per pixel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .layout import FilmGeometry, Rect, film_geometry, mm_to_px, place
from .model import Capabilities, Film, ImagePixels, Job, PrintedImage

_FILTERS = {"REPLICATE": Image.Resampling.NEAREST, "BILINEAR": Image.Resampling.BILINEAR,
            "CUBIC": Image.Resampling.BICUBIC}


def geometry_of(film: Film, caps: Capabilities) -> FilmGeometry:
    a = film.attributes
    return film_geometry(film.display_format, a.get("FilmSizeID", caps.default_film_size),
                         a.get("FilmOrientation", caps.default_orientation),
                         caps.dpi(a.get("RequestedResolutionID")))


def density_gray(density: int | str, caps: Capabilities) -> int:
    """The grey level (0 black .. 255 white) of a density in hundredths of OD, or BLACK/WHITE."""
    lo, hi = caps.density_range
    if density == "BLACK":
        return 0
    if density == "WHITE":
        return 255
    d = min(max(int(density), lo), hi)
    return round(255 * (hi - d) / (hi - lo)) if hi > lo else 0


def pixel_array(p: ImagePixels) -> np.ndarray:
    """The image's pixels as rows × columns (× 3 for RGB, pixel-interleaved), no copy for 8 bits."""
    if p.bits_allocated == 16:
        values = np.frombuffer(p.data, dtype=">u2" if p.big_endian else "<u2", count=p.rows * p.columns)
        return (values & ((1 << p.bits_stored) - 1)).reshape(p.rows, p.columns)
    flat = np.frombuffer(p.data, dtype=np.uint8, count=p.nbytes)
    if p.samples == 3:
        if p.planar == 1:  # colour-by-plane: RRR… GGG… BBB…
            return flat.reshape(3, p.rows, p.columns).transpose(1, 2, 0)
        return flat.reshape(p.rows, p.columns, 3)
    return flat.reshape(p.rows, p.columns)


def image_of(printed: PrintedImage, film: Film, caps: Capabilities) -> Image.Image:
    """The image box's pixels ready to place: 8-bit, polarity and density applied (grayscale) or
    polarity applied (RGB)."""
    p = printed.pixels
    assert p is not None
    arr = pixel_array(p)
    reverse = printed.attributes.get("Polarity", "NORMAL") == "REVERSE"
    if p.samples == 3:
        rgb = np.ascontiguousarray(255 - arr if reverse else arr, dtype=np.uint8)
        return Image.fromarray(rgb)
    if p.bits_stored != 8:  # 12 bits stored → 8 bits, rounded
        top = (1 << p.bits_stored) - 1
        arr = ((arr.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)
    # PS3.3 C.13.5 Polarity: NORMAL prints as the Photometric Interpretation says; MONOCHROME1 has 0 white.
    white_is_zero = (p.photometric == "MONOCHROME1") != reverse
    lut = _density_lut(printed, film, caps, invert=white_is_zero)
    return Image.fromarray(np.take(lut, arr))


def _density_lut(printed: PrintedImage, film: Film, caps: Capabilities, *, invert: bool) -> np.ndarray:
    """256 entries: pixel value (0 = black) → the grey of its density between the film's (or the
    image box's, which override it: PS3.4 H.4.3.1.2.1.1) Min and Max Density."""
    dmax = int(printed.attributes.get("MaxDensity", film.attributes.get("MaxDensity", caps.default_max_density)))
    dmin = int(printed.attributes.get("MinDensity", film.attributes.get("MinDensity", caps.default_min_density)))
    lo, hi = caps.density_range
    levels = np.arange(256, dtype=np.float64)
    if invert:
        levels = 255 - levels
    density = dmax - levels / 255 * (dmax - dmin)
    gray = 255 * (hi - np.clip(density, lo, hi)) / (hi - lo) if hi > lo else np.zeros(256)
    return np.rint(gray).astype(np.uint8)


def render_film(film: Film, caps: Capabilities) -> Image.Image:
    """The whole film: 'L' for grayscale films, 'RGB' for color ones."""
    geometry = geometry_of(film, caps)
    mode = "RGB" if film.color else "L"
    a = film.attributes

    def shade(value: int | str) -> Any:
        g = density_gray(value, caps)
        return (g, g, g) if film.color else g

    border = shade(a.get("BorderDensity", caps.default_border_density))
    empty = shade(a.get("EmptyImageDensity", caps.default_empty_image_density))
    canvas = Image.new(mode, (geometry.width, geometry.height), border)
    draw = ImageDraw.Draw(canvas)
    trim = a.get("Trim") == "YES"
    trim_color = shade("WHITE" if density_gray(a.get("EmptyImageDensity", "BLACK"), caps) < 128 else "BLACK")
    for box, printed in zip(geometry.boxes, film.images):
        draw.rectangle(_corners(box), fill=empty)
        if printed.pixels is None:
            continue
        target = _paste(canvas, printed, film, box, geometry.dpi, caps)
        if trim:  # PS3.3 C.13.3 Trim: a box drawn around each image
            width = max(1, geometry.dpi // 100)
            outline = Rect(target.x - width, target.y - width, target.width + 2 * width, target.height + 2 * width)
            draw.rectangle(_corners(outline), outline=trim_color, width=width)
    return canvas


def _corners(r: Rect) -> tuple[int, int, int, int]:
    return r.x, r.y, r.right - 1, r.bottom - 1


def _paste(canvas: Image.Image, printed: PrintedImage, film: Film, box: Rect, dpi: int, caps: Capabilities) -> Rect:
    p = printed.pixels
    assert p is not None
    magnification = printed.attributes.get("MagnificationType") or film.attributes.get(
        "MagnificationType", caps.default_magnification)
    size = printed.attributes.get("RequestedImageSize")
    placement = place(p.columns, p.rows, box, aspect=p.aspect, magnification=magnification,
                      behavior=printed.attributes.get("RequestedDecimateCropBehavior", "DECIMATE"),
                      requested_width=mm_to_px(float(size), dpi) if size else None)
    image = image_of(printed, film, caps)
    c = placement.crop
    if (c.width, c.height) != image.size:
        image = image.crop((c.x, c.y, c.right, c.bottom))
    t = placement.target
    if (t.width, t.height) != image.size:
        shrinking = t.width < image.width or t.height < image.height
        resample = _FILTERS.get(magnification, Image.Resampling.BILINEAR if shrinking else Image.Resampling.NEAREST)
        image = image.resize((t.width, t.height), resample)
    if film.color and image.mode != "RGB":
        image = image.convert("RGB")
    canvas.paste(image, (t.x, t.y))
    return t


# ---- the file printer's output: PNG per film, one PDF, a JSON sidecar ----------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def job_folder_name(job: Job) -> str:
    ae = _UNSAFE.sub("_", job.originator.strip()) or "unknown"
    return f"{job.created:%Y%m%d-%H%M%S}-{ae}-{job.uid}"


def write_job(job: Job, folder: Path, caps: Capabilities) -> Path:
    """Render every film of `job` into a new folder under `folder`: film-NNN.png (one per Film Box),
    job.pdf (a page per film and copy) and session.json. The folder appears whole (written under a
    hidden name, then renamed) or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / job_folder_name(job)
    partial = folder / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        pages: list[tuple[Image.Image, int]] = []
        films: list[dict[str, Any]] = []
        for number, film in enumerate(job.films, 1):
            image = render_film(film, caps)
            dpi = caps.dpi(film.attributes.get("RequestedResolutionID"))
            png = f"film-{number:03d}.png"
            image.save(partial / png, "PNG", dpi=(dpi, dpi))
            pages.append((image, dpi))
            films.append(_film_record(film, png, image.size, dpi))
        _write_pdf(partial / "job.pdf", pages, job.copies)
        sidecar = {"print_job": {"sop_instance_uid": job.uid, "originator": job.originator,
                                 "created": job.created.isoformat(timespec="seconds")},
                   "film_session": {"sop_instance_uid": job.film_session_uid, **_jsonable(job.session)},
                   "films": films, "pdf": "job.pdf"}
        (partial / "session.json").write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _write_pdf(path: Path, pages: list[tuple[Image.Image, int]], copies: int) -> None:
    """One page per film and copy, each the film's physical size (PDF takes one resolution: films
    rendered at a lower one are scaled up to it)."""
    dpi = max(d for _, d in pages)
    images = [im if d == dpi else im.resize((im.width * dpi // d, im.height * dpi // d), Image.Resampling.NEAREST)
              for im, d in pages]
    sequence = [im for im in images for _ in range(max(copies, 1))]
    # Pillow embeds greyscale and RGB pages as JPEG: quality 95 keeps them visually lossless (the PNGs are exact)
    sequence[0].save(path, "PDF", resolution=float(dpi), save_all=True, append_images=sequence[1:], quality=95)


def _film_record(film: Film, png: str, size: tuple[int, int], dpi: int) -> dict[str, Any]:
    images = []
    for printed in film.images:
        entry: dict[str, Any] = {"image_box_position": printed.position, "sop_instance_uid": printed.uid,
                                 **_jsonable(printed.attributes)}
        p = printed.pixels
        if p is not None:
            entry["image"] = {"rows": p.rows, "columns": p.columns, "photometric_interpretation": p.photometric,
                              "bits_stored": p.bits_stored, "pixel_aspect_ratio": list(p.aspect)}
        images.append(entry)
    return {"sop_instance_uid": film.uid, "color": film.color, **_jsonable(film.attributes), "png": png,
            "pixels": list(size), "dpi": dpi, "image_boxes": images}


def _jsonable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in attributes.items()}
