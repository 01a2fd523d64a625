"""The printer behind the Print SCP: a Protocol anyone can implement, and the default that prints
to files (a PNG per film, a PDF, a JSON sidecar).

A printer says what it supports (`capabilities`, checked before anything is accepted), what state
it is in (the Printer SOP Class, PS3.4 H.4.6) and prints a `Job` of frozen films. `print_job`
returns once the job is done and raises `PrinterError` when it failed; the SCP turns that into the
Print Job's DONE or FAILURE (PS3.4 H.4.5) and reports the printer's state when it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import anyio

from ...implementation import IMPLEMENTATION_VERSION_NAME
from .model import Capabilities, Job, PrinterState
from .render import write_job


class PrinterError(Exception):
    """A job the printer could not print; `info` is the Execution Status Info to report (PS3.3 C.13.9.1
    defined terms, e.g. PRINTER DOWN, SUPPLY EMPTY, INVALID PAGE DES)."""

    def __init__(self, message: str, *, info: str = "PRINTER DOWN") -> None:
        super().__init__(message)
        self.info = info


@runtime_checkable
class Printer(Protocol):
    """What the Print SCP drives. Implementations must not block the event loop in print_job."""

    @property
    def name(self) -> str:
        """Printer Name (2110,0030)."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def state(self) -> PrinterState:
        """Printer Status and Printer Status Info, read for N-GET and after each job."""

    @property
    def description(self) -> Mapping[str, str]:
        """Other Printer attributes by keyword (Manufacturer, ManufacturerModelName, DeviceSerialNumber,
        SoftwareVersions, ...), answered to N-GET (PS3.4 H.4.6.2.2)."""

    async def print_job(self, job: Job) -> None:
        """Print every film of the job (Number of Copies each); PrinterError when it cannot."""


class FilePrinter:
    """Prints each job into `folder`/<date-time>-<calling AE>-<job UID>/: film-NNN.png per film box
    (laid out as asked, at the resolution's dpi), job.pdf (a page per film and copy, the film's
    physical size) and session.json (the film session, film box and image box attributes)."""

    def __init__(self, folder: str | Path, *, name: str = "AIODICOM FILE PRINTER",
                 capabilities: Capabilities | None = None) -> None:
        self.folder = Path(folder)
        self._name = name
        self._capabilities = capabilities or Capabilities()
        self._state = PrinterState()
        self.printed: list[Path] = []  # job folders written, oldest first (the last 1000)

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def state(self) -> PrinterState:
        return self._state

    @property
    def description(self) -> Mapping[str, str]:
        return MappingProxyType({"Manufacturer": "aiodicom", "ManufacturerModelName": "File printer (PNG, PDF)",
                                 "SoftwareVersions": IMPLEMENTATION_VERSION_NAME})

    async def print_job(self, job: Job) -> None:
        try:
            # Rendering is CPU and disk work: a worker thread, so the event loop keeps serving.
            path = await anyio.to_thread.run_sync(write_job, job, self.folder, self._capabilities)
        except OSError as exc:
            # The output folder is the printer's only resource: when it fails, the printer is down
            # (the SCP reports it with a Printer N-EVENT-REPORT, PS3.4 H.4.6.2.1).
            self._state = PrinterState("FAILURE", "PRINTER DOWN")
            raise PrinterError(f"cannot write to {self.folder}: {exc.strerror or exc}") from exc
        self._state = PrinterState()
        self.printed.append(path)
        del self.printed[:-1000]
