"""Print Management (PS3.4 Annex H) with real peers: pynetdicom as print SCU against `aiodicom serve`, `aiodicom
print` against `aiodicom serve`, and `aiodicom print` against DCMTK's print SCP `dcmprscp`. What was printed is
checked in the pixels: the film PNG `aiodicom serve` writes, the Hardcopy Grayscale images `dcmprscp` stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from aiodicom.services.printing.layout import film_geometry, parse_display_format
from tests.peers import (
    HOST,
    INTEROP,
    Running,
    aiodicom,
    aiodicom_serve,
    free_port,
    peer_env,
    require_dcmtk,
    running,
    single_error_line,
)

pytestmark = pytest.mark.interop
N = 64
INVALID_ATTRIBUTE_VALUE, NO_SUCH_OBJECT_INSTANCE = 0x0106, 0x0112


def pattern(level: int) -> np.ndarray:
    """Top-left quadrant white, bottom-right `level`, the rest black (as pynetdicom_print_scu.py draws it)."""
    arr = np.zeros((N, N), np.uint8)
    arr[: N // 2, : N // 2] = 255
    arr[N // 2:, N // 2:] = level
    return arr


def write_image(path: Path, arr: np.ndarray) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "PRINT^TEST", "P1", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256  # PS3.3 C.11.2.1.2: prints each value as it is
    ds.PixelData = arr.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def probe(im: np.ndarray, box, dx: float, dy: float):
    side = min(box.width, box.height)
    return im[round(box.y + box.height / 2 + dy * side), round(box.x + box.width / 2 + dx * side)]


def assert_pattern(im: np.ndarray, box, level: int, white=255, black=0) -> None:
    assert np.all(probe(im, box, -0.25, -0.25) == white)
    assert np.all(probe(im, box, 0.25, -0.25) == black)
    assert np.all(probe(im, box, 0.25, 0.25) == level)


def printed_films(print_dir: Path) -> list[Path]:
    return sorted(print_dir.glob("*/film-*.png"))


def pynetdicom_print(port: int, *extra: str) -> dict:
    pytest.importorskip("pynetdicom")
    done = subprocess.run([sys.executable, str(INTEROP / "pynetdicom_print_scu.py"), HOST, str(port), *extra],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- pynetdicom prints on aiodicom serve ------------------------------------------------------------------------

@pytest.mark.parametrize("color", [False, True], ids=["grayscale", "color"])
def test_pynetdicom_print_scu_gets_annex_h_statuses_and_a_rendered_film(tmp_path: Path, color: bool) -> None:
    with aiodicom_serve(tmp_path / "aiodicom") as server:
        out = pynetdicom_print(server.port, *(["--color"] if color else []))
    assert out["printer"] == {"status": 0, "printer_status": "NORMAL"}
    assert out["film_box_before_session"] == INVALID_ATTRIBUTE_VALUE
    assert out["film_session"]["status"] == 0 and out["film_session"]["copies"] == 1
    assert out["unsupported_format"] == INVALID_ATTRIBUTE_VALUE
    assert out["film_box"]["status"] == 0 and out["film_box"]["image_boxes"] == 2
    assert out["film_box"]["image_box_class"] == ("1.2.840.10008.5.1.1.4.1" if color else "1.2.840.10008.5.1.1.4")
    assert out["wrong_pixel_size"] == INVALID_ATTRIBUTE_VALUE
    assert out["position_out_of_range"] == INVALID_ATTRIBUTE_VALUE
    assert out["no_such_image_box"] == NO_SUCH_OBJECT_INSTANCE
    assert out["image_boxes_set"] == [0, 0]  # the session carried on after every refusal
    assert out["print"]["status"] == 0 and out["print"]["job"]
    assert out["job"] == {"status": 0, "execution_status": "DONE"}
    assert (out["delete_film_box"], out["delete_film_session"]) == (0, 0)
    job_events = [e["event_type"] for e in out["events"] if e["sop_class"] == "1.2.840.10008.5.1.1.14"]
    assert job_events == [2, 3]  # PRINTING, DONE (PS3.4 H.4.5.2.1)
    (png,) = printed_films(server.storage / "print")  # serve's default: STORAGE/print
    im = np.asarray(Image.open(png))
    assert im.shape[:2] == (1200, 1500)  # 8 × 10 inches, landscape, 150 dpi
    assert (im.ndim == 3) is color
    boxes = film_geometry(parse_display_format("STANDARD\\2,1"), "8INX10IN", "LANDSCAPE", 150).boxes
    assert_pattern(im, boxes[0], 100)
    assert_pattern(im, boxes[1], 200)
    sidecar = json.loads((png.parent / "session.json").read_text())
    assert sidecar["film_session"]["FilmSessionLabel"] == "pynetdicom"
    assert sidecar["print_job"]["originator"] == "PYNETDICOM"


# ---- aiodicom print on aiodicom serve ---------------------------------------------------------------------------

def test_aiodicom_print_cli_prints_on_aiodicom_serve_into_its_print_dir(tmp_path: Path) -> None:
    images = [write_image(tmp_path / f"{level}.dcm", pattern(level)) for level in (50, 150, 250)]
    print_dir = tmp_path / "films"
    with aiodicom_serve(tmp_path / "aiodicom", "--print-dir", str(print_dir)) as server:
        done = aiodicom("print", HOST, str(server.port), "--aec", "AIODICOM", "--format", "ROW\\1,2",
                        "--film-size", "14INX14IN", "--copies", "2", *map(str, images))
        refused = aiodicom("print", HOST, str(server.port), "--aec", "AIODICOM", "--film-size", "99INX99IN",
                           str(images[0]))
    assert done.returncode == 0, done.stderr
    assert "Printed 3 image(s) on 1 film(s)" in done.stdout and ": DONE (NORMAL)" in done.stdout
    (png,) = printed_films(print_dir)
    im = np.asarray(Image.open(png))
    assert im.shape == (2100, 2100)
    for box, level in zip(film_geometry(parse_display_format("ROW\\1,2"), "14INX14IN", "PORTRAIT", 150).boxes,
                          (50, 150, 250)):
        assert_pattern(im, box, level)
    assert refused.returncode == 1
    line = single_error_line(refused)
    assert "Film Box N-CREATE refused: 0x0106 Invalid Attribute Value" in line and "Film Size ID" in line


# ---- aiodicom print on DCMTK dcmprscp ---------------------------------------------------------------------------

def write_dcmpstat_cfg(folder: Path, port: int, aet: str = "DCMPRSCP") -> Path:
    """A dcmpstat.cfg with one local printer (DCMTK's printer configuration keys)."""
    (folder / "db").mkdir(parents=True, exist_ok=True)
    (folder / "spool").mkdir(exist_ok=True)
    cfg = folder / "dcmpstat.cfg"
    cfg.write_text(f"""[[GENERAL]]
[DATABASE]
Directory = {folder / "db"}
[PRINT]
Directory = {folder / "spool"}
DetailedLog = false
BinaryLog = false
[[COMMUNICATION]]
[TESTPRINTER]
Aetitle = {aet}
Description = aiodicom interop printer
Hostname = {HOST}
Port = {port}
Type = LOCALPRINTER
DisplayFormat = 1,1\\2,1\\1,2\\2,2\\3,3
FilmSizeID = 8INX10IN\\10INX12IN\\14INX17IN
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
FilmDestination = MAGAZINE\\PROCESSOR
BorderDensity = BLACK\\WHITE\\150
EmptyImageDensity = BLACK\\WHITE\\20
MaxDensity = 320
MinDensity = 20
Supports12Bit = true
SupportsTrim = true
SupportsPresentationLUT = false
ImplicitOnly = false
DisableNewVRs = false
MaxPDU = 32768
""")
    return cfg


@pytest.fixture
def dcmprscp(tmp_path: Path):
    binary = require_dcmtk("dcmprscp")
    port = free_port()
    folder = tmp_path / "dcmprscp"
    folder.mkdir()
    cfg = write_dcmpstat_cfg(folder, port)
    with running([binary, "-c", str(cfg), "-p", "TESTPRINTER", "-v"], port=port, workdir=folder, env=peer_env(),
                 name="dcmprscp") as proc:
        yield proc


def stored(folder: Path, prefix: str) -> list[Path]:
    return sorted((folder / "db").glob(f"{prefix}_*.dcm"))


def test_aiodicom_print_cli_prints_on_dcmtk_dcmprscp(tmp_path: Path, dcmprscp: Running) -> None:
    images = [write_image(tmp_path / f"{level}.dcm", pattern(level)) for level in (64, 192)]
    done = aiodicom("print", HOST, str(dcmprscp.port), "--aec", "DCMPRSCP", "--format", "STANDARD\\2,1",
                    "--film-size", "8INX10IN", "--orientation", "LANDSCAPE", "--copies", "1", *map(str, images))
    assert done.returncode == 0, done.stderr + dcmprscp.output()
    assert "Printed 2 image(s) on 1 film(s)" in done.stdout
    # dcmprscp keeps each film as a Stored Print object and each image as a Hardcopy Grayscale Image.
    (stored_print,) = stored(dcmprscp.workdir, "SP")
    film = dcmread(stored_print)
    box = film.FilmBoxContentSequence[0]
    assert (box.ImageDisplayFormat, box.FilmSizeID, box.FilmOrientation) == ("STANDARD\\2,1", "8INX10IN", "LANDSCAPE")
    hardcopies = [dcmread(p) for p in stored(dcmprscp.workdir, "HG")]
    assert len(hardcopies) == 2
    levels = set()
    for hc in hardcopies:
        arr = hc.pixel_array
        assert arr.shape == (N, N)  # the 64 × 64 pattern fits its box at 150 dpi: sent as it is
        assert arr[N // 4, N // 4] == 255 and arr[N // 4, 3 * N // 4] == 0
        levels.add(int(arr[3 * N // 4, 3 * N // 4]))
    assert levels == {64, 192}


def test_a_value_dcmprscp_refuses_is_one_clear_line(tmp_path: Path, dcmprscp: Running) -> None:
    image = write_image(tmp_path / "a.dcm", pattern(10))
    done = aiodicom("print", HOST, str(dcmprscp.port), "--aec", "DCMPRSCP", "--film-size", "A3", str(image))
    assert done.returncode == 1
    assert "Film Box N-CREATE refused: 0x0106 Invalid Attribute Value" in single_error_line(done)
    assert stored(dcmprscp.workdir, "SP") == []
