"""Print Management attribute lists checked as PS3.4 H.2.4 says (failures, warnings, defaults), the Preformatted
Image module (PS3.4 Tables H.4-10, H.4-11), preformatting a DICOM image for an image box, and film rendering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hst
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from aiodicom.dimse import status as st
from aiodicom.services.printing import attributes as at
from aiodicom.services.printing.layout import film_geometry, parse_display_format
from aiodicom.services.printing.model import (
    COLOR_IMAGE_BOX,
    DENSITY_OUT_OF_RANGE,
    FILM_BOX,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    MEMORY_ALLOCATION_NOT_SUPPORTED,
    Capabilities,
    Film,
    ImagePixels,
    PrintedImage,
    PrintFailure,
    describe_status,
)
from aiodicom.services.printing.preformat import PreformatError, preformat
from aiodicom.services.printing.render import density_gray, pixel_array, render_film

CAPS = Capabilities()
SEQ, PIXEL_DATA = 0x20200110, 0x7FE00010


def ds(**values) -> Dataset:
    out = Dataset()
    for k, v in values.items():
        setattr(out, k, v)
    return out


def session_ref(uid="1.2.3") -> list[Dataset]:
    return [ds(ReferencedSOPClassUID=FILM_SESSION, ReferencedSOPInstanceUID=uid)]


def film_box(**values) -> Dataset:
    return ds(**{"ImageDisplayFormat": "STANDARD\\2,2", "ReferencedFilmSessionSequence": session_ref(), **values})


def gray_item(rows=4, columns=6, bits=8, data=None, **overrides) -> Dataset:
    item = ds(SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", Rows=rows, Columns=columns,
              PixelAspectRatio=[1, 1], BitsAllocated=8 if bits == 8 else 16, BitsStored=bits, HighBit=bits - 1,
              PixelRepresentation=0)
    item.PixelData = data if data is not None else bytes(rows * columns * (1 if bits == 8 else 2))
    for k, v in overrides.items():
        setattr(item, k, v)
    return item


def failure(fn, *args, **kwargs) -> PrintFailure:
    with pytest.raises(PrintFailure) as info:
        fn(*args, **kwargs)
    return info.value


# ---- Basic Film Session (PS3.4 Table H.4-2) -----------------------------------------------------------

def test_film_session_left_empty_gets_the_printers_defaults():  # H.2.4 U/M: the SCP's default
    checked = at.check(Dataset(), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert checked.status == st.SUCCESS
    assert checked.values == {"NumberOfCopies": 1, "PrintPriority": "MED", "MediumType": "BLUE FILM",
                              "FilmDestination": "PROCESSOR"}


def test_film_session_values_are_normalised():
    checked = at.check(ds(NumberOfCopies="3", PrintPriority="HIGH", MediumType="PAPER", FilmDestination="MAGAZINE",
                          FilmSessionLabel="ward 7 "), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert checked.values["NumberOfCopies"] == 3 and checked.values["FilmSessionLabel"] == "ward 7"


@pytest.mark.parametrize("copies", ["0", "100", "-1"])
def test_impossible_number_of_copies_is_an_invalid_value(copies):
    f = failure(at.check, ds(NumberOfCopies=copies), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert f.status == st.INVALID_ATTRIBUTE_VALUE and f.offending == (0x20000010,)
    assert "Number of Copies" in str(f)


def test_unsupported_medium_is_replaced_by_the_default_with_warning_0116():  # H.2.4 U/M
    checked = at.check(ds(MediumType="GLOSSY"), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert checked.status == st.ATTRIBUTE_VALUE_OUT_OF_RANGE
    assert checked.values["MediumType"] == "BLUE FILM"
    assert checked.fields() == {"offending_elements": (0x20000030,)}


def test_memory_allocation_is_ignored_with_warning_b600():  # H.4.1.2.1.2
    checked = at.check(ds(MemoryAllocation="2048"), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert checked.status == MEMORY_ALLOCATION_NOT_SUPPORTED and "MemoryAllocation" not in checked.values


def test_an_attribute_we_do_not_support_is_listed_with_warning_0107():  # H.2.4 U/U
    checked = at.check(ds(PatientName="DOE^JOHN"), at.FILM_SESSION_RULES, CAPS, require=True, defaults=True)
    assert checked.status == st.ATTRIBUTE_LIST_ERROR
    assert checked.fields() == {"attribute_identifier_list": (0x00100010,)}


@pytest.mark.parametrize("destination,ok", [("BIN_2", True), ("BIN_3", False), ("BIN_02", False), ("BIN_0", False)])
def test_sorter_bins_are_destinations_up_to_the_printers_count(destination, ok):
    caps = Capabilities(sorter_bins=2)
    checked = at.check(ds(FilmDestination=destination), at.FILM_SESSION_RULES, caps, require=True, defaults=True)
    assert (checked.status == st.SUCCESS) is ok
    assert checked.values["FilmDestination"] == (destination if ok else "PROCESSOR")


# ---- Basic Film Box (PS3.4 Table H.4-6) ---------------------------------------------------------------

def test_film_box_defaults_and_session_reference():
    checked = at.check(film_box(), at.FILM_BOX_RULES, CAPS, require=True, defaults=True)
    v = checked.values
    assert v["ReferencedFilmSessionSequence"] == "1.2.3"
    assert (v["FilmOrientation"], v["FilmSizeID"], v["MagnificationType"]) == ("PORTRAIT", "14INX17IN", "BILINEAR")
    assert (v["MinDensity"], v["MaxDensity"], v["BorderDensity"]) == (20, 300, "BLACK")


def test_missing_display_format_is_missing_attribute_0120():  # H.2.4 M/M
    f = failure(at.check, ds(ReferencedFilmSessionSequence=session_ref()), at.FILM_BOX_RULES, CAPS, require=True,
                defaults=True)
    assert f.status == st.MISSING_ATTRIBUTE and f.offending == (0x20100010,)


def test_empty_display_format_is_missing_attribute_value_0121():
    f = failure(at.check, film_box(ImageDisplayFormat=""), at.FILM_BOX_RULES, CAPS, require=True, defaults=True)
    assert f.status == st.MISSING_ATTRIBUTE_VALUE


@pytest.mark.parametrize("keyword,value,tag", [
    ("ImageDisplayFormat", "SLIDE", 0x20100010),
    ("ImageDisplayFormat", "STANDARD\\0,1", 0x20100010),
    ("FilmSizeID", "99INX99IN", 0x20100050),
    ("FilmOrientation", "DIAGONAL", 0x20100040),
])
def test_unsupported_layout_values_fail_with_0106_naming_the_element(keyword, value, tag):  # H.2.4: M/M, U/M
    f = failure(at.check, film_box(**{keyword: value}), at.FILM_BOX_RULES, CAPS, require=True, defaults=True)
    assert f.status == st.INVALID_ATTRIBUTE_VALUE and f.offending == (tag,)
    assert value.split("\\")[0] in str(f)


def test_a_reference_to_something_else_than_a_film_session_is_invalid():
    bad = [ds(ReferencedSOPClassUID=FILM_BOX, ReferencedSOPInstanceUID="1.2.3")]
    f = failure(at.check, film_box(ReferencedFilmSessionSequence=bad), at.FILM_BOX_RULES, CAPS, require=True,
                defaults=True)
    assert f.status == st.INVALID_ATTRIBUTE_VALUE and f.offending == (0x20100500,)


def test_density_outside_the_printers_range_is_clamped_with_b605():  # H.4.2.2.1.2
    checked = at.check(film_box(MaxDensity=450, BorderDensity="5"), at.FILM_BOX_RULES, CAPS, require=True,
                       defaults=True)
    assert checked.status == DENSITY_OUT_OF_RANGE
    assert checked.values["MaxDensity"] == 300 and checked.values["BorderDensity"] == "20"  # US and CS


def test_the_most_specific_warning_is_the_status():
    checked = at.check(film_box(MaxDensity=450, Trim="MAYBE", SmoothingType="SMOOTH"), at.FILM_BOX_RULES, CAPS,
                       require=True, defaults=True)
    assert {w[0] for w in checked.warnings} == {DENSITY_OUT_OF_RANGE, st.ATTRIBUTE_VALUE_OUT_OF_RANGE,
                                               st.ATTRIBUTE_LIST_ERROR}
    assert checked.status == DENSITY_OUT_OF_RANGE
    assert checked.fields()["attribute_identifier_list"] == (0x20100080,)


def test_layout_cannot_change_after_n_create():
    f = failure(at.check, ds(FilmSizeID="8INX10IN"), at.FILM_BOX_RULES, CAPS, require=False, defaults=False,
                fixed=at.FILM_BOX_FIXED)
    assert f.status == st.NO_SUCH_ATTRIBUTE and f.offending == (0x20100050,)


TEXT_RULES = sorted(k for k in {*at.FILM_SESSION_RULES, *at.FILM_BOX_RULES} if not k.endswith("Sequence"))


@given(hst.sampled_from(TEXT_RULES), hst.text(alphabet=hst.characters(min_codepoint=32, max_codepoint=126),
                                              max_size=20))
def test_any_value_gives_a_result_or_a_print_failure_never_a_crash(keyword, text):
    rules = at.FILM_SESSION_RULES if keyword in at.FILM_SESSION_RULES else at.FILM_BOX_RULES
    attrs = Dataset()
    attrs.add_new(at.tag_of(keyword), "LO", text)  # any text, whatever the attribute's VR
    try:
        checked = at.check(attrs, rules, CAPS, require=False, defaults=False)
    except PrintFailure as f:
        assert st.category(f.status) is st.Category.FAILURE and f.offending == (at.tag_of(keyword),)
    else:
        assert st.category(checked.status) in (st.Category.SUCCESS, st.Category.WARNING)


def test_film_box_n_set_fills_no_defaults():
    checked = at.check(ds(Trim="YES"), at.FILM_BOX_RULES, CAPS, require=False, defaults=False, fixed=at.FILM_BOX_FIXED)
    assert checked.values == {"Trim": "YES"}


# ---- Image Boxes and the Preformatted Image module ------------------------------------------------------

def image_box(item: Dataset | None, sop_class=GRAYSCALE_IMAGE_BOX, **values) -> at.Checked:
    seq = "BasicColorImageSequence" if sop_class == COLOR_IMAGE_BOX else "BasicGrayscaleImageSequence"
    return at.check(ds(ImageBoxPosition=1, **{seq: [item] if item is not None else []}, **values),
                    at.image_box_rules(sop_class), CAPS, require=True, defaults=False)


def test_a_grayscale_image_is_read_into_pixels():
    data = bytes(range(24))
    pixels = image_box(gray_item(data=data)).values["BasicGrayscaleImageSequence"]
    assert (pixels.rows, pixels.columns, pixels.bits_stored, pixels.data) == (4, 6, 8, data)


def test_twelve_bit_images_are_accepted():
    pixels = image_box(gray_item(bits=12)).values["BasicGrayscaleImageSequence"]
    assert (pixels.bits_allocated, pixels.bits_stored, len(pixels.data)) == (16, 12, 48)


def test_an_empty_sequence_erases_the_image():  # PS3.4 H.4.3.1.2.1.3
    assert image_box(None).values["BasicGrayscaleImageSequence"] is None


@given(hst.integers(0, 200))
def test_pixel_data_of_the_wrong_size_is_an_invalid_value(size):
    item = gray_item(data=bytes(size))
    if size == 24:
        assert image_box(item).status == st.SUCCESS
        return
    f = failure(image_box, item)
    assert f.status == st.INVALID_ATTRIBUTE_VALUE and f.offending == (SEQ, PIXEL_DATA)
    assert f"{size} bytes" in str(f) and "needs 24" in str(f)


def test_an_odd_length_value_may_carry_its_padding_byte():  # PS3.5 §8.1.1
    pixels = image_box(gray_item(rows=3, columns=3, data=bytes(10))).values["BasicGrayscaleImageSequence"]
    assert len(pixels.data) == 9


@pytest.mark.parametrize("keyword", ["Rows", "PixelAspectRatio", "PixelData", "BitsStored"])
def test_a_missing_module_attribute_is_missing_attribute(keyword):
    item = gray_item()
    del item[keyword]
    f = failure(image_box, item)
    assert f.status == st.MISSING_ATTRIBUTE and f.offending[0] == SEQ


@pytest.mark.parametrize("overrides", [
    {"PhotometricInterpretation": "RGB"}, {"BitsStored": 10}, {"PixelRepresentation": 1}, {"PixelAspectRatio": [0, 1]},
])
def test_values_the_module_does_not_allow_are_invalid(overrides):
    assert failure(image_box, gray_item(**overrides)).status == st.INVALID_ATTRIBUTE_VALUE


def test_a_color_image_box_wants_rgb():
    rgb = gray_item(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=1, data=bytes(72))
    pixels = image_box(rgb, COLOR_IMAGE_BOX).values["BasicColorImageSequence"]
    assert (pixels.samples, pixels.planar) == (3, 1)
    assert failure(image_box, gray_item(PlanarConfiguration=0), COLOR_IMAGE_BOX).status == st.INVALID_ATTRIBUTE_VALUE


def test_a_grayscale_sequence_on_a_color_box_is_missing_the_color_one():
    f = failure(at.check, ds(ImageBoxPosition=1, BasicGrayscaleImageSequence=[gray_item()]),
                at.image_box_rules(COLOR_IMAGE_BOX), CAPS, require=True, defaults=False)
    assert f.status == st.MISSING_ATTRIBUTE and f.offending == (0x20200111,)


def test_image_box_position_is_mandatory():
    f = failure(at.check, ds(BasicGrayscaleImageSequence=[gray_item()]), at.image_box_rules(GRAYSCALE_IMAGE_BOX),
                CAPS, require=True, defaults=False)
    assert f.status == st.MISSING_ATTRIBUTE and f.offending == (0x20200010,)


def test_print_statuses_have_print_names():
    assert describe_status(0xC603) == "0xC603 Image size is larger than the image box size"
    assert describe_status(0x0106) == "0x0106 Invalid Attribute Value"


# ---- preformatting a DICOM image (the SCU side) -----------------------------------------------------------

def image(arr: np.ndarray, photometric="MONOCHROME2", **values) -> Dataset:
    out = ds(Rows=arr.shape[0], Columns=arr.shape[1], SamplesPerPixel=1 if arr.ndim == 2 else 3,
             PhotometricInterpretation=photometric, BitsAllocated=arr.dtype.itemsize * 8,
             BitsStored=arr.dtype.itemsize * 8, HighBit=arr.dtype.itemsize * 8 - 1,
             PixelRepresentation=1 if arr.dtype.kind == "i" else 0, **values)
    if arr.ndim == 3:
        out.PlanarConfiguration = 0
    out.PixelData = arr.tobytes()
    out.file_meta = FileMetaDataset()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return out


def values(p) -> np.ndarray:
    dtype = np.uint8 if p.bits == 8 else "<u2"
    return np.frombuffer(p.data, dtype).reshape(p.rows, p.columns, *((3,) if p.color else ()))


def test_the_window_maps_its_range_onto_black_to_white():  # PS3.3 C.11.2.1.2
    arr = np.array([[0, 99, 200, 300, 400]], dtype=np.uint16)  # below c - 0.5 - (w - 1) / 2 = 99.5: black
    p = preformat(image(arr, WindowCenter=200, WindowWidth=201))
    assert values(p).tolist() == [[0, 0, 128, 255, 255]]


def test_rescale_applies_before_the_window():  # PS3.3 C.11.1
    arr = np.array([[0, 1000, 2000]], dtype=np.uint16)
    p = preformat(image(arr, RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2))
    assert values(p).tolist() == [[0, 255, 255]]


def test_without_a_window_the_image_range_is_used_and_monochrome1_is_inverted():
    arr = np.array([[10, 20, 30]], dtype=np.uint8)
    assert values(preformat(image(arr))).tolist() == [[0, 128, 255]]
    assert values(preformat(image(arr, "MONOCHROME1"))).tolist() == [[255, 128, 0]]


def test_twelve_bits_reach_4095():
    p = preformat(image(np.array([[0, 1]], dtype=np.uint8)), bits=12)
    assert values(p).tolist() == [[0, 4095]] and p.item().BitsAllocated == 16


def test_the_image_shrinks_to_its_box_keeping_its_proportions_and_never_grows():
    ct = dcmread(get_testdata_file("CT_small.dcm"))  # 128 × 128
    p = preformat(ct, max_size=(64, 100))
    assert (p.columns, p.rows) == (64, 64)
    assert (preformat(ct, max_size=(1000, 1000)).columns, preformat(ct).rows) == (128, 128)


def test_non_square_pixels_are_made_square():
    p = preformat(image(np.zeros((10, 10), np.uint8), PixelSpacing=[2.0, 1.0]))
    assert (p.columns, p.rows) == (10, 20)


def test_color_images_stay_rgb_for_color_and_become_luma_for_grayscale():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255  # red
    assert values(preformat(image(rgb, "RGB"), color=True))[0, 0].tolist() == [255, 0, 0]
    assert values(preformat(image(rgb, "RGB")))[0, 0] == round(0.299 * 255)


def test_an_image_without_pixels_cannot_be_printed():
    with pytest.raises(PreformatError):
        preformat(Dataset())


# ---- rendering a film --------------------------------------------------------------------------------------

def pixels(arr: np.ndarray, photometric="MONOCHROME2") -> ImagePixels:
    return ImagePixels(arr.shape[0], arr.shape[1], 1, 8, 8, photometric, 0, (1, 1), arr.astype(np.uint8).tobytes())


def test_planar_rgb_is_read_plane_by_plane():
    planes = np.stack([np.full((2, 2), v, np.uint8) for v in (10, 20, 30)])
    p = ImagePixels(2, 2, 3, 8, 8, "RGB", 1, (1, 1), planes.tobytes())
    assert pixel_array(p)[1, 1].tolist() == [10, 20, 30]


def test_big_endian_twelve_bit_values_are_read_as_such():
    p = ImagePixels(1, 2, 1, 16, 12, "MONOCHROME2", 0, (1, 1), bytes([0x0F, 0xFF, 0x00, 0x01]), big_endian=True)
    assert pixel_array(p).tolist() == [[4095, 1]]


def test_black_and_white_are_the_ends_of_the_density_range():
    assert (density_gray("BLACK", CAPS), density_gray("WHITE", CAPS)) == (0, 255)
    assert density_gray(160, CAPS) == round(255 * 140 / 280)


def test_a_rendered_film_shows_each_image_in_its_box():
    fmt = parse_display_format("STANDARD\\2,1")
    half = np.zeros((10, 10)); half[:, 5:] = 255  # left black, right white
    images = (PrintedImage(1, "1.1", {}, pixels(half)), PrintedImage(2, "1.2", {"Polarity": "REVERSE"}, pixels(half)))
    film = Film("1", False, fmt, {"FilmSizeID": "8INX10IN", "FilmOrientation": "LANDSCAPE",
                                  "BorderDensity": "WHITE", "EmptyImageDensity": "WHITE"}, images)
    im = np.asarray(render_film(film, CAPS))
    g = film_geometry(fmt, "8INX10IN", "LANDSCAPE", 150)
    assert im.shape == (g.height, g.width) and g.width > g.height
    assert im[2, 2] == 255  # border
    for box, left in zip(g.boxes, (0, 255)):  # the second box prints reversed
        cy, cx = box.y + box.height // 2, box.x + box.width // 2
        side = min(box.width, box.height)
        assert im[cy, cx - side // 4] == left and im[cy, cx + side // 4] == 255 - left


def _single_box_film(arr: np.ndarray, **attributes) -> tuple[np.ndarray, object]:
    fmt = parse_display_format("STANDARD\\1,1")
    film = Film("1", False, fmt, {"FilmSizeID": "8INX10IN", "FilmOrientation": "PORTRAIT", **attributes},
                (PrintedImage(1, "1.1", {}, pixels(arr)),))
    (box,) = film_geometry(fmt, "8INX10IN", "PORTRAIT", 150).boxes
    return np.asarray(render_film(film, CAPS)), box


def test_replicate_magnifies_without_new_grey_levels_and_bilinear_blends():  # PS3.3 C.13.3 Magnification Type
    checker = np.array([[0, 255], [255, 0]])
    replicated, _ = _single_box_film(checker, MagnificationType="REPLICATE", EmptyImageDensity="BLACK")
    blended, _ = _single_box_film(checker, MagnificationType="BILINEAR", EmptyImageDensity="BLACK")
    assert set(np.unique(replicated)) == {0, 255}
    assert len(np.unique(blended)) > 10


def test_trim_draws_a_box_around_the_image():  # PS3.3 C.13.3 Trim
    gray = np.full((8, 8), 128)
    plain, box = _single_box_film(gray, EmptyImageDensity="BLACK")
    trimmed, _ = _single_box_film(gray, EmptyImageDensity="BLACK", Trim="YES")
    side = min(box.width, box.height)  # the square image is centred, touching the box's sides
    top = box.y + (box.height - side) // 2 - 1  # the row just above the image
    column = box.x + box.width // 2
    assert plain[top, column] == 0 and trimmed[top, column] == 255  # white trim on the black empty area
    assert trimmed[box.y + box.height // 2, column] == plain[box.y + box.height // 2, column] == 128
