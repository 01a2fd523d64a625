"""`aiodicom print HOST PORT IMAGE...`: Print Management SCU (PS3.4 Annex H), like DCMTK's dcmprscu.

Each image is converted to a preformatted image (Modality and VOI LUT applied, 8 or 12 bits, sized
to its image box), the images fill the film boxes of the display format in order, and each film
is printed and waited for. One line per film on stdout; a refused value is one line on stderr
naming the operation, the status and the printer's comment (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio
from pydicom import dcmread

from ..scu.printing import (
    FilmOptions,
    PrinterDown,
    PrintJobFailed,
    PrintRefused,
    SessionOptions,
    print_association,
    print_images,
)
from ..services.printing.layout import LayoutError, parse_display_format
from .common import EXIT_FAILURE_STATUS, EXIT_OK, EXIT_USAGE, add_client_options, fail, setup_logging, ssl_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("print", help="print DICOM images on a DICOM printer",
                       description="Print images with the Basic Grayscale (or, with --color, Color) Print Management "
                                   "Meta SOP Class: one film per display format's worth of images.")
    add_client_options(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="DICOM image files")
    g = p.add_argument_group("film box")
    g.add_argument("--format", default="STANDARD\\1,1", metavar="FORMAT",
                   help="Image Display Format: STANDARD\\C,R, ROW\\R1,R2,... or COL\\C1,C2,... (default STANDARD\\1,1)")
    g.add_argument("--film-size", metavar="ID", help="Film Size ID, e.g. 14INX17IN, 8INX10IN, A4 (printer default)")
    g.add_argument("--orientation", choices=("PORTRAIT", "LANDSCAPE"), help="Film Orientation (printer default)")
    g.add_argument("--magnification", choices=("REPLICATE", "BILINEAR", "CUBIC", "NONE"), help="Magnification Type")
    g.add_argument("--border-density", metavar="D", help="BLACK, WHITE or hundredths of optical density")
    g.add_argument("--empty-image-density", metavar="D", help="BLACK, WHITE or hundredths of optical density")
    g.add_argument("--min-density", type=int, metavar="D", help="Min Density (hundredths of OD)")
    g.add_argument("--max-density", type=int, metavar="D", help="Max Density (hundredths of OD)")
    g.add_argument("--trim", choices=("YES", "NO"), help="print a box around each image")
    g.add_argument("--resolution", choices=("STANDARD", "HIGH"), help="Requested Resolution ID")
    g.add_argument("--polarity", choices=("NORMAL", "REVERSE"), help="Polarity of every image box")
    g.add_argument("--bits", type=int, choices=(8, 12), default=8, help="grayscale bits per pixel (default 8)")
    g.add_argument("--dpi", type=int, default=150, help="printer resolution images are sized for (default 150)")
    g = p.add_argument_group("film session")
    g.add_argument("--copies", type=int, metavar="N", help="Number of Copies")
    g.add_argument("--priority", choices=("HIGH", "MED", "LOW"), help="Print Priority")
    g.add_argument("--medium", metavar="TYPE", help="Medium Type, e.g. PAPER, CLEAR FILM, BLUE FILM")
    g.add_argument("--destination", metavar="DEST", help="Film Destination, e.g. MAGAZINE, PROCESSOR, BIN_1")
    g.add_argument("--label", metavar="TEXT", help="Film Session Label")
    p.add_argument("--color", action="store_true", help="Basic Color Print Management (RGB images)")
    p.add_argument("--job-timeout", type=float, default=300.0, help="seconds to wait for each print job")
    p.set_defaults(func=main)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    try:
        parse_display_format(args.format)
    except LayoutError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.color and args.bits != 8:
        return fail("color images have 8 bits", EXIT_USAGE)
    images = []
    for name in args.images:
        try:
            images.append(await anyio.to_thread.run_sync(dcmread, Path(name)))
        except Exception as exc:  # not a file, not DICOM: pydicom raises many types
            return fail(f"{name}: not a readable DICOM file ({exc})", EXIT_USAGE)
    film = FilmOptions(display_format=args.format, film_size=args.film_size, orientation=args.orientation,
                       magnification=args.magnification, border_density=args.border_density,
                       empty_image_density=args.empty_image_density, min_density=args.min_density,
                       max_density=args.max_density, trim=args.trim, resolution=args.resolution,
                       polarity=args.polarity, bits=args.bits, dpi=args.dpi)
    session = SessionOptions(copies=args.copies, priority=args.priority, medium=args.medium,
                             destination=args.destination, label=args.label)
    where = f"{args.aec}@{args.host}:{args.port}"
    async with print_association(args.host, args.port, color=args.color, calling_ae=args.aet, called_ae=args.aec,
                                 ssl_context=ssl_from_args(args), max_pdu=args.max_pdu, connect_timeout=args.timeout,
                                 acse_timeout=args.timeout, dimse_timeout=args.dimse_timeout) as scu:
        try:
            report = await print_images(scu, images, film=film, session=session, job_timeout=args.job_timeout)
        except (PrinterDown, PrintRefused, PrintJobFailed) as exc:
            return fail(f"{where}: {exc}", EXIT_FAILURE_STATUS)
        except ValueError as exc:  # an image that cannot be preformatted
            return fail(f"{where}: {exc}", EXIT_FAILURE_STATUS)
    for warning in report.warnings:
        print(f"aiodicom: warning: {warning}", file=sys.stderr)
    for outcome in report.jobs:
        print(f"print job {outcome.uid}: {outcome.status}" + (f" ({outcome.info})" if outcome.info else ""))
    unfinished = [o for o in report.jobs if o.status != "DONE"]
    print(f"Printed {len(images)} image(s) on {report.films} film(s) at {where}"
          + (f"; {len(unfinished)} job(s) not done within {args.job_timeout:g} s" if unfinished else ""))
    return EXIT_OK if not unfinished else EXIT_FAILURE_STATUS
