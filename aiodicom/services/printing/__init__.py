"""Print Management Service Class (PS3.4 Annex H): SCP, film geometry, rendering, pluggable printers.

    printer = FilePrinter("print/")            # PNG + PDF + JSON per print job
    scp = printing.install(dispatcher, printer)  # Basic Grayscale/Color Print Management Meta SOP Classes

A real printer implements the `Printer` Protocol (capabilities, state, description, print_job).
"""

from .layout import DisplayFormat, FilmGeometry, LayoutError, Rect, box_size_px, film_geometry, parse_display_format
from .model import (
    COLOR_IMAGE_BOX,
    COLOR_META,
    FILM_BOX,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    GRAYSCALE_META,
    PRINT_JOB,
    PRINTER,
    PRINTER_INSTANCE,
    Capabilities,
    Film,
    ImagePixels,
    Job,
    PrinterState,
    describe_status,
)
from .printer import FilePrinter, Printer, PrinterError
from .scp import PrintScp, install

__all__ = [
    "COLOR_IMAGE_BOX", "COLOR_META", "FILM_BOX", "FILM_SESSION", "GRAYSCALE_IMAGE_BOX", "GRAYSCALE_META",
    "PRINTER", "PRINTER_INSTANCE", "PRINT_JOB", "Capabilities", "DisplayFormat", "FilePrinter", "Film",
    "FilmGeometry", "ImagePixels", "Job", "LayoutError", "PrintScp", "Printer", "PrinterError", "PrinterState",
    "Rect", "box_size_px", "describe_status", "film_geometry", "install", "parse_display_format",
]
