"""Print Management: the aiodicom SCU against the aiodicom SCP in one process. The rendered films are checked
pixel by pixel (film proportions for its size and orientation, the display format's grid, each test pattern in
its box), bad requests get their PS3.4 Annex H / PS3.7 statuses and the session carries on, and the printer
is pluggable (one that fails, one that takes its time)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import aiodicom
from aiodicom.dimse import status as st
from aiodicom.dimse.messages import NActionRQ, NCreateRQ, NSetRQ
from aiodicom.net.dispatch import Dispatcher
from aiodicom.scu.printing import (
    FilmOptions,
    PrinterDown,
    PrintJobFailed,
    PrintRefused,
    PrintScu,
    SessionOptions,
    print_association,
    print_images,
)
from aiodicom.services import printing, verification
from aiodicom.services.printing.layout import film_geometry, parse_display_format
from aiodicom.services.printing.model import (
    COLOR_META,
    FILM_BOX_QUEUE_FULL,
    GRAYSCALE_META,
    IMAGE_CROPPED,
    IMAGE_TOO_LARGE,
    SESSION_WITHOUT_FILM_BOXES,
    Capabilities,
    Job,
    PrinterState,
)
from aiodicom.services.printing.preformat import preformat
from aiodicom.services.printing.printer import PrinterError

from .conftest import running_server

pytestmark = pytest.mark.anyio
N = 64  # test pattern side


# ---- test patterns --------------------------------------------------------------------------------------------

def image(arr: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 1 if arr.ndim == 2 else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if arr.ndim == 2 else "RGB"
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256  # PS3.3 C.11.2.1.2: y = x exactly, pixel values print as they are
    ds.PixelData = arr.astype(np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def quadrants(level: int) -> np.ndarray:
    """Top-left quadrant white, bottom-right `level`, the rest black: orientation and identity in one."""
    arr = np.zeros((N, N), np.uint8)
    arr[: N // 2, : N // 2] = 255
    arr[N // 2:, N // 2:] = level
    return arr


def png_of(job_dir: Path, number: int = 1) -> np.ndarray:
    return np.asarray(Image.open(job_dir / f"film-{number:03d}.png"))


def square_probe(im: np.ndarray, box, dx: float, dy: float):
    """The pixel at (dx, dy) of the centred square a square image fills in `box` (-0.5..0.5 each)."""
    side = min(box.width, box.height)
    return im[round(box.y + box.height / 2 + dy * side), round(box.x + box.width / 2 + dx * side)]


def assert_pattern(im: np.ndarray, box, level: int) -> None:
    assert square_probe(im, box, -0.25, -0.25) == 255  # top left: white
    assert square_probe(im, box, 0.25, -0.25) == 0  # top right: black
    assert square_probe(im, box, 0.25, 0.25) == level  # bottom right: the image's own level


# ---- servers and printers --------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def print_server(tmp_path: Path, printer=None, **scp_options) -> AsyncIterator[tuple[int, printing.PrintScp]]:
    dispatcher = Dispatcher()
    verification.install(dispatcher)
    scp = printing.install(dispatcher, printer or printing.FilePrinter(tmp_path / "print"), **scp_options)
    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        yield server.port, scp


class FailingPrinter(printing.FilePrinter):
    """Out of film: every job fails, and the printer says so."""

    async def print_job(self, job: Job) -> None:
        self._state = PrinterState("FAILURE", "SUPPLY EMPTY")
        raise PrinterError("no film left", info="SUPPLY EMPTY")


class GatedPrinter(printing.FilePrinter):
    """Prints when the test opens the gate."""

    def __init__(self, folder: Path, **kwargs) -> None:
        super().__init__(folder, **kwargs)
        self.gate = anyio.Event()
        self.started = anyio.Event()

    async def print_job(self, job: Job) -> None:
        self.started.set()
        await self.gate.wait()
        await super().print_job(job)


def connect(port: int, color: bool = False):
    return print_association("127.0.0.1", port, color=color, called_ae="AIODICOM", calling_ae="PRINTSCU")


async def film_box(scu: PrintScu, fmt: str = "STANDARD\\1,1", **options):
    return await scu.create_film_box(FilmOptions(display_format=fmt, **options))


def item(arr: np.ndarray, **kwargs) -> Dataset:
    return preformat(image(arr), **kwargs).item()


# ---- the whole flow, and what the film looks like --------------------------------------------------------------

async def test_standard_format_prints_each_image_in_its_box_on_a_portrait_film(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        report = await print_images(scu, [image(quadrants(level)) for level in (60, 120, 180)],
                                    film=FilmOptions(display_format="STANDARD\\2,2", film_size="14INX17IN",
                                                     orientation="PORTRAIT", empty_image_density="WHITE"),
                                    session=SessionOptions(copies=2, label="ward 7"))
    assert report.films == 1 and [j.status for j in report.jobs] == ["DONE"] and report.warnings == []
    (job_dir,) = scp.printer.printed
    im = png_of(job_dir)
    assert im.ndim == 2 and im.shape == (2550, 2100)  # 14 × 17 inches at 150 dpi, portrait
    assert im.shape[1] / im.shape[0] == pytest.approx(14 / 17, abs=0.002)
    g = film_geometry(parse_display_format("STANDARD\\2,2"), "14INX17IN", "PORTRAIT", 150)
    for box, level in zip(g.boxes, (60, 120, 180)):  # positions 1, 2, 3 row by row
        assert_pattern(im, box, level)
    empty = g.boxes[3]
    assert im[empty.y + empty.height // 2, empty.x + empty.width // 2] == 255  # Empty Image Density WHITE
    assert im[3, 3] == 0  # the border: BLACK by default
    sidecar = json.loads((job_dir / "session.json").read_text())
    assert sidecar["film_session"]["NumberOfCopies"] == 2 and sidecar["film_session"]["FilmSessionLabel"] == "ward 7"
    (film,) = sidecar["films"]
    assert film["ImageDisplayFormat"] == "STANDARD\\2,2" and film["FilmSizeID"] == "14INX17IN"
    assert [b["image_box_position"] for b in film["image_boxes"]] == [1, 2, 3, 4]
    assert "image" not in film["image_boxes"][3]
    pdf = (job_dir / "job.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and re.search(rb"/Count 2\b", pdf)  # one page per copy
    assert re.findall(rb"/MediaBox \[ 0 0 ([0-9.]+) ([0-9.]+) \]", pdf) == [(b"1008.0", b"1224.0")] * 2  # 14 × 17 in


async def test_landscape_turns_the_film(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        await print_images(scu, [image(quadrants(90))], film=FilmOptions(
            display_format="STANDARD\\1,1", film_size="8INX10IN", orientation="LANDSCAPE"))
    im = png_of(scp.printer.printed[0])
    assert im.shape == (1200, 1500)  # 10 × 8 inches
    (box,) = film_geometry(parse_display_format("STANDARD\\1,1"), "8INX10IN", "LANDSCAPE", 150).boxes
    assert_pattern(im, box, 90)


async def test_row_and_col_formats_fill_boxes_in_their_order(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        for fmt in ("ROW\\1,2", "COL\\2,1"):
            await print_images(scu, [image(quadrants(level)) for level in (40, 140, 220)],
                               film=FilmOptions(display_format=fmt, film_size="14INX14IN"))
    for job_dir, fmt in zip(scp.printer.printed, ("ROW\\1,2", "COL\\2,1")):
        im = png_of(job_dir)
        boxes = film_geometry(parse_display_format(fmt), "14INX14IN", "PORTRAIT", 150).boxes
        for box, level in zip(boxes, (40, 140, 220)):
            assert_pattern(im, box, level)
    row_boxes = film_geometry(parse_display_format("ROW\\1,2"), "14INX14IN", "PORTRAIT", 150).boxes
    assert row_boxes[0].width > 2 * row_boxes[1].width - 20  # the single box spans the first row


async def test_more_images_than_boxes_make_more_films(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        report = await print_images(scu, [image(quadrants(i * 50)) for i in range(5)],
                                    film=FilmOptions(display_format="STANDARD\\2,1", film_size="A4"))
    assert report.films == 3 and len(scp.printer.printed) == 3
    last = png_of(scp.printer.printed[-1])
    assert_pattern(last, film_geometry(parse_display_format("STANDARD\\2,1"), "A4", "PORTRAIT", 150).boxes[0], 200)


async def test_color_film_keeps_colours_and_polarity_reverse_inverts(tmp_path):
    rgb = np.zeros((N, N, 3), np.uint8)
    rgb[:, : N // 2, 0] = 255  # left half red
    rgb[:, N // 2:, 2] = 255  # right half blue
    async with print_server(tmp_path) as (port, scp), connect(port, color=True) as scu:
        assert scu.meta == COLOR_META
        await print_images(scu, [image(rgb), image(rgb)], film=FilmOptions(
            display_format="STANDARD\\2,1", film_size="A4", polarity=None))
        await print_images(scu, [image(quadrants(100))], film=FilmOptions(film_size="A4", polarity="REVERSE"))
    im = png_of(scp.printer.printed[0])
    assert im.shape[2] == 3
    box = film_geometry(parse_display_format("STANDARD\\2,1"), "A4", "PORTRAIT", 150).boxes[0]
    assert square_probe(im, box, -0.25, 0).tolist() == [255, 0, 0]
    assert square_probe(im, box, 0.25, 0).tolist() == [0, 0, 255]
    reversed_im = np.asarray(png_of(scp.printer.printed[1]))
    box = film_geometry(parse_display_format("STANDARD\\1,1"), "A4", "PORTRAIT", 150).boxes[0]
    assert square_probe(reversed_im, box, -0.25, -0.25).tolist() == [0, 0, 0]  # white printed black
    assert square_probe(reversed_im, box, 0.25, 0.25).tolist() == [155, 155, 155]


async def test_numeric_densities_shade_the_border_and_empty_boxes(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        await print_images(scu, [image(quadrants(9))], film=FilmOptions(
            display_format="STANDARD\\2,1", film_size="A4", border_density="160", empty_image_density="90"))
    im = png_of(scp.printer.printed[0])
    empty = film_geometry(parse_display_format("STANDARD\\2,1"), "A4", "PORTRAIT", 150).boxes[1]
    assert im[3, 3] == round(255 * (300 - 160) / 280)  # PS3.3 C.13.3: hundredths of optical density
    assert im[empty.y + empty.height // 2, empty.x + empty.width // 2] == round(255 * (300 - 90) / 280)
    film = json.loads((scp.printer.printed[0] / "session.json").read_text())["films"][0]
    assert (film["BorderDensity"], film["EmptyImageDensity"]) == ("160", "90")


async def test_twelve_bit_images_print_like_eight_bit_ones(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        await print_images(scu, [image(quadrants(136))], film=FilmOptions(film_size="A4", bits=12))
    box = film_geometry(parse_display_format("STANDARD\\1,1"), "A4", "PORTRAIT", 150).boxes[0]
    assert_pattern(png_of(scp.printer.printed[0]), box, 136)


async def test_printer_and_job_report_with_events_and_n_get(tmp_path):
    async with print_server(tmp_path) as (port, _), connect(port) as scu:
        printer = await scu.printer_status()
        assert (printer.PrinterStatus, printer.PrinterStatusInfo) == ("NORMAL", "NORMAL")
        assert printer.PrinterName == "AIODICOM FILE PRINTER" and printer.Manufacturer == "aiodicom"
        await scu.create_session()
        box = await film_box(scu)
        await scu.set_image_box(box, 1, item(quadrants(10)))
        job = await scu.print_film_box(box)
        assert job is not None
        with anyio.fail_after(20):  # the DONE N-EVENT-REPORT arrives on its own (PS3.4 H.4.5.2.1)
            while scu.events.jobs.get(job, ("",))[0] != "DONE":
                await scu.events.wait(1)
        outcome = await scu.job_status(job)
        assert (outcome.status, outcome.info) == ("DONE", "NORMAL")
        await scu.delete_film_box(box)
        await scu.delete_session()


# ---- bad requests: the right status, and the session carries on ------------------------------------------------

async def test_film_box_before_a_session_is_refused_and_the_association_carries_on(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        scu.session_uid = "1.2.3.4"  # a film session that was never created
        with pytest.raises(PrintRefused) as refused:
            await film_box(scu)
        assert refused.value.code == st.INVALID_ATTRIBUTE_VALUE
        assert "N-CREATE one first" in refused.value.comment
        await scu.create_session()
        box = await film_box(scu)
        await scu.set_image_box(box, 1, item(quadrants(70)))
        assert (await scu.wait_for_job(await scu.print_film_box(box))).status == "DONE"
    assert len(scp.printer.printed) == 1


async def test_unsupported_display_format_and_film_size_are_refused_naming_the_value(tmp_path):
    async with print_server(tmp_path) as (port, _), connect(port) as scu:
        await scu.create_session()
        for options, words in (({"fmt": "SLIDE"}, "SLIDE"), ({"fmt": "STANDARD\\0,2"}, "at least 1"),
                               ({"fmt": "STANDARD\\40,40"}, "at most"),
                               ({"film_size": "99INX99IN"}, "Film Size ID '99INX99IN'")):
            with pytest.raises(PrintRefused) as refused:
                await film_box(scu, **options)
            assert refused.value.code == st.INVALID_ATTRIBUTE_VALUE and words in str(refused.value)
        assert len((await film_box(scu, "STANDARD\\3,3")).image_boxes) == 9


async def test_image_box_out_of_range_and_wrong_pixel_size_fail_then_a_good_image_prints(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        await scu.create_session()
        box = await film_box(scu, "STANDARD\\2,1")
        with pytest.raises(PrintRefused) as refused:  # position 3 on a two-box film, via box 2's UID
            await scu._request("Image Box N-SET", *_image_box_set(scu, box.image_boxes[1], 3, item(quadrants(5))))
        assert refused.value.code == st.INVALID_ATTRIBUTE_VALUE
        assert "3 is not this box's (2 of 2)" in str(refused.value)
        bad = box.__class__(box.uid, (*box.image_boxes, "1.2.3.999"), box.image_box_class, box.attributes)
        with pytest.raises(PrintRefused) as refused:  # an image box that does not exist
            await scu.set_image_box(bad, 3, item(quadrants(5)))
        assert refused.value.code == st.NO_SUCH_OBJECT_INSTANCE
        short = item(quadrants(5))
        short.PixelData = short.PixelData[:-64]
        with pytest.raises(PrintRefused) as refused:
            await scu.set_image_box(box, 1, short)
        assert refused.value.code == st.INVALID_ATTRIBUTE_VALUE and "Pixel Data has" in str(refused.value)
        await scu.set_image_box(box, 1, item(quadrants(77)))
        await scu.wait_for_job(await scu.print_film_box(box))
    im = png_of(scp.printer.printed[0])
    assert_pattern(im, film_geometry(parse_display_format("STANDARD\\2,1"), "14INX17IN", "PORTRAIT", 150).boxes[0], 77)


async def test_requests_the_service_does_not_define_get_their_statuses(tmp_path):
    async with print_server(tmp_path) as (port, _), connect(port) as scu:
        await scu.create_session()
        with pytest.raises(PrintRefused) as refused:
            await scu.print_session()  # nothing to print yet
        assert refused.value.code == SESSION_WITHOUT_FILM_BOXES
        box = await film_box(scu)
        with pytest.raises(PrintRefused) as refused:
            await scu._request("N-ACTION 7", NActionRQ(message_id=scu._id(), requested_sop_class_uid=
                                                       printing.FILM_BOX, requested_sop_instance_uid=box.uid,
                                                       action_type_id=7))
        assert refused.value.code == st.NO_SUCH_ACTION_TYPE
        assert await scu.job_status("1.2.3") is None  # no such print job: 0112H, reported as unknown


async def test_an_earlier_film_box_is_closed_but_still_printed_with_the_session(tmp_path):
    async with print_server(tmp_path) as (port, scp), connect(port) as scu:
        await scu.create_session()
        first = await film_box(scu)
        await scu.set_image_box(first, 1, item(quadrants(30)))
        second = await film_box(scu)  # PS3.4 H.4.2.2.3: the first one can no longer change
        with pytest.raises(PrintRefused) as refused:
            await scu.set_image_box(first, 1, item(quadrants(31)))
        assert refused.value.code == st.PROCESSING_FAILURE
        with pytest.raises(PrintRefused):
            await scu.delete_film_box(first)
        await scu.set_image_box(second, 1, item(quadrants(60)))
        outcome = await scu.wait_for_job(await scu.print_session())
        assert outcome.status == "DONE"
    (job_dir,) = scp.printer.printed
    box = film_geometry(parse_display_format("STANDARD\\1,1"), "14INX17IN", "PORTRAIT", 150).boxes[0]
    assert_pattern(png_of(job_dir, 1), box, 30)
    assert_pattern(png_of(job_dir, 2), box, 60)


async def test_large_images_crop_with_warning_or_fail_with_c603(tmp_path):
    big = np.zeros((3000, 200), np.uint8)
    async with print_server(tmp_path) as (port, _), connect(port) as scu:
        await scu.create_session()
        box = await film_box(scu, "STANDARD\\4,4", film_size="8INX10IN")
        image_item = item(big)
        await scu._request("Image Box N-SET", *_image_box_set(scu, box.image_boxes[0], 1, image_item, "CROP"))
        assert any(f"0x{IMAGE_CROPPED:04X}" in w for w in scu.warnings)
        with pytest.raises(PrintRefused) as refused:
            await scu._request("Image Box N-SET", *_image_box_set(scu, box.image_boxes[1], 2, image_item, "FAIL"))
        assert refused.value.code == IMAGE_TOO_LARGE


async def test_the_scu_may_propose_uids_but_not_one_in_use(tmp_path):  # PS3.7 §10.1.5.1.2
    async with print_server(tmp_path) as (port, _), connect(port) as scu:
        proposed = "1.2.826.0.1.3680043.2.1143.77"
        rsp, _ = await scu._request("Film Session N-CREATE", NCreateRQ(
            message_id=scu._id(), affected_sop_class_uid=printing.FILM_SESSION, affected_sop_instance_uid=proposed),
            Dataset())
        assert rsp.affected_sop_instance_uid == proposed
        scu.session_uid = proposed
        with pytest.raises(PrintRefused) as refused:
            await scu._request("Film Box N-CREATE", NCreateRQ(
                message_id=scu._id(), affected_sop_class_uid=printing.FILM_BOX, affected_sop_instance_uid=proposed),
                FilmOptions().dataset(proposed))
        assert refused.value.code == st.DUPLICATE_SOP_INSTANCE
        assert len((await film_box(scu)).image_boxes) == 1  # an SCP-made UID then


async def test_a_session_ends_with_its_association(tmp_path):
    async with print_server(tmp_path) as (port, _):
        async with connect(port) as scu:
            uid = await scu.create_session()
        async with connect(port) as scu:
            scu.session_uid = uid
            with pytest.raises(PrintRefused) as refused:
                await scu.delete_session()
            assert refused.value.code == st.NO_SUCH_OBJECT_INSTANCE


def _image_box_set(scu: PrintScu, uid: str, position: int, image_item: Dataset, behavior: str | None = None):
    """An Image Box N-SET with any Image Box Position and Requested Decimate/Crop Behavior."""
    ds = Dataset()
    ds.ImageBoxPosition = position
    if behavior:
        ds.RequestedDecimateCropBehavior = behavior
    ds.BasicGrayscaleImageSequence = [image_item]
    return NSetRQ(message_id=scu._id(), requested_sop_class_uid=printing.GRAYSCALE_IMAGE_BOX,
                  requested_sop_instance_uid=uid), ds


# ---- pluggable printers -----------------------------------------------------------------------------------------

async def test_a_failing_printer_fails_the_job_and_reports_its_state(tmp_path):
    async with print_server(tmp_path, FailingPrinter(tmp_path / "print")) as (port, _), connect(port) as scu:
        with pytest.raises(PrintJobFailed) as failed:
            await print_images(scu, [image(quadrants(1))])
        assert (failed.value.outcome.status, failed.value.outcome.info) == ("FAILURE", "SUPPLY EMPTY")
        with anyio.fail_after(20):  # Printer N-EVENT-REPORT: FAILURE (PS3.4 H.4.6.2.1)
            while ("FAILURE", "SUPPLY EMPTY") not in scu.events.printer:
                await scu.events.wait(1)
        with pytest.raises(PrinterDown, match=r"printer is down \(SUPPLY EMPTY\)"):
            await print_images(scu, [image(quadrants(1))])


async def test_a_job_accepted_before_release_is_still_printed(tmp_path):
    printer = GatedPrinter(tmp_path / "print")
    async with print_server(tmp_path, printer) as (port, _):
        async with connect(port) as scu:
            await scu.create_session()
            box = await film_box(scu)
            await scu.set_image_box(box, 1, item(quadrants(200)))
            await scu.print_film_box(box)
            with anyio.fail_after(20):
                await printer.started.wait()
        printer.gate.set()  # the association is released: the job goes on
        with anyio.fail_after(20):
            while not printer.printed:
                await anyio.sleep(0.05)
    assert_pattern(png_of(printer.printed[0]),
                   film_geometry(parse_display_format("STANDARD\\1,1"), "14INX17IN", "PORTRAIT", 150).boxes[0], 200)


async def test_a_full_print_queue_refuses_with_c602(tmp_path):
    printer = GatedPrinter(tmp_path / "print", capabilities=Capabilities(max_queued_jobs=1))
    async with print_server(tmp_path, printer) as (port, _), connect(port) as scu:
        await scu.create_session()
        box = await film_box(scu)
        await scu.print_film_box(box)
        with pytest.raises(PrintRefused) as refused:
            await scu.print_film_box(box)
        assert refused.value.code == FILM_BOX_QUEUE_FULL
        printer.gate.set()


async def test_grayscale_only_printer_does_not_accept_the_color_meta_class(tmp_path):
    printer = printing.FilePrinter(tmp_path / "print", capabilities=Capabilities(color=False))
    async with print_server(tmp_path, printer) as (port, _):
        with pytest.raises(aiodicom.NoPresentationContext):
            async with connect(port, color=True):
                pass
        async with connect(port) as scu:
            assert scu.meta == GRAYSCALE_META
