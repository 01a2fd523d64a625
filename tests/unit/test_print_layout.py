"""Film geometry (PS3.3 C.13.3 Image Display Format, Film Size ID, Film Orientation; C.13.5.1 Image Box
Position) and how an image lands in its box (C.13.5 Magnification Type, Requested Image Size, Requested
Decimate/Crop Behavior)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiodicom.services.printing.layout import (
    FILM_SIZES_MM,
    MAX_BOXES_PER_FILM,
    DisplayFormat,
    LayoutError,
    Rect,
    box_size_px,
    film_geometry,
    film_size_px,
    fit,
    parse_display_format,
    place,
    split,
)

FORMATS = st.one_of(
    st.tuples(st.just("STANDARD"), st.lists(st.integers(1, 8), min_size=2, max_size=2)),
    st.tuples(st.sampled_from(["ROW", "COL"]), st.lists(st.integers(1, 6), min_size=1, max_size=6)),
).map(lambda t: DisplayFormat(t[0], tuple(t[1])))


# ---- Image Display Format ------------------------------------------------------------------------

def test_standard_format_counts_columns_then_rows():
    fmt = parse_display_format("STANDARD\\3,2")
    assert fmt == DisplayFormat("STANDARD", (3, 2))
    assert fmt.box_count == 6


def test_row_and_col_formats_count_every_line():
    assert parse_display_format("ROW\\1,3,2").box_count == 6
    assert parse_display_format("COL\\2,1").box_count == 3


def test_trailing_padding_of_the_value_is_ignored():
    assert parse_display_format("STANDARD\\1,1 ") == DisplayFormat("STANDARD", (1, 1))


@given(FORMATS)
def test_a_format_reads_back_from_its_own_text(fmt):
    assert parse_display_format(str(fmt)) == fmt


@pytest.mark.parametrize("text", [
    "SLIDE", "SUPERSLIDE", "CUSTOM\\1",  # defined terms without a geometry here
    "STANDARD\\2", "STANDARD\\2,2,2", "STANDARD\\0,2", "STANDARD\\2,-1", "ROW\\", "COL\\a,b", "ROW\\1,,2",
    "STANDARD 2,2", "standard\\2,2", "GRID\\2,2", "STANDARD\\٣,2",
])
def test_unsupported_or_malformed_formats_are_refused(text):
    with pytest.raises(LayoutError):
        parse_display_format(text)


def test_a_peer_cannot_ask_for_an_unbounded_number_of_image_boxes():
    with pytest.raises(LayoutError, match="at most"):
        parse_display_format("STANDARD\\32,32")
    assert parse_display_format("STANDARD\\16,16").box_count == MAX_BOXES_PER_FILM


# ---- film size and orientation ----------------------------------------------------------------------

@pytest.mark.parametrize("film_size", sorted(FILM_SIZES_MM))
def test_portrait_has_the_short_side_across_and_landscape_turns_it(film_size):
    pw, ph = film_size_px(film_size, "PORTRAIT", 100)
    lw, lh = film_size_px(film_size, "LANDSCAPE", 100)
    assert pw <= ph and (lw, lh) == (ph, pw)
    short, long = FILM_SIZES_MM[film_size]
    assert pw / ph == pytest.approx(short / long, abs=0.01)


def test_14x17_inches_at_150_dpi_is_2100_by_2550_pixels():
    assert film_size_px("14INX17IN", "PORTRAIT", 150) == (2100, 2550)


def test_10x14_is_the_metric_size_the_standard_gives():  # PS3.3 C.13.3 note: 25.7 × 36.4 cm
    assert film_size_px("10INX14IN", "PORTRAIT", 254) == (2570, 3640)


@pytest.mark.parametrize(("size", "orientation"), [("99INX99IN", "PORTRAIT"), ("A4", "SIDEWAYS")])
def test_unknown_film_size_or_orientation_is_refused(size, orientation):
    with pytest.raises(LayoutError):
        film_size_px(size, orientation, 150)


# ---- where the image boxes are ----------------------------------------------------------------------

@given(FORMATS, st.sampled_from(sorted(FILM_SIZES_MM)), st.sampled_from(["PORTRAIT", "LANDSCAPE"]),
       st.sampled_from([72, 150, 300]))
def test_boxes_lie_on_the_film_and_never_overlap(fmt, size, orientation, dpi):
    g = film_geometry(fmt, size, orientation, dpi)
    film = Rect(0, 0, g.width, g.height)
    assert len(g.boxes) == fmt.box_count
    for i, a in enumerate(g.boxes):
        assert a.width >= 1 and a.height >= 1 and film.contains(a)
        for b in g.boxes[i + 1:]:
            assert a.right <= b.x or b.right <= a.x or a.bottom <= b.y or b.bottom <= a.y


@given(st.integers(0, 500), st.integers(1, 5000), st.integers(1, 40), st.integers(0, 30))
def test_split_makes_equal_segments_inside_the_span(start, length, parts, gap):
    segments = split(start, length, parts, gap)
    sizes = [size for _, size in segments]
    assert len(segments) == parts and max(sizes) - min(sizes) <= 1
    if length >= parts * (gap + 1):
        assert segments[0][0] == start and segments[-1][0] + segments[-1][1] == start + length
        assert all(segments[i][0] + segments[i][1] + gap == segments[i + 1][0] for i in range(parts - 1))


def test_standard_positions_run_row_by_row_from_the_top_left():  # PS3.3 C.13.5.1
    boxes = film_geometry(parse_display_format("STANDARD\\3,2"), "14INX17IN", "PORTRAIT", 100).boxes
    assert boxes[0].x < boxes[1].x < boxes[2].x and boxes[0].y == boxes[1].y == boxes[2].y
    assert boxes[3].y > boxes[0].y and boxes[3].x == boxes[0].x
    widths, heights = {b.width for b in boxes}, {b.height for b in boxes}
    assert max(widths) - min(widths) <= 1 and max(heights) - min(heights) <= 1


def test_row_format_gives_each_row_its_own_number_of_boxes():
    boxes = film_geometry(parse_display_format("ROW\\1,2"), "14INX14IN", "PORTRAIT", 100).boxes
    assert len({b.y for b in boxes}) == 2
    assert boxes[1].y == boxes[2].y > boxes[0].y
    assert boxes[0].width > boxes[1].width + boxes[2].width - 5  # one box as wide as the row


def test_col_positions_run_column_by_column():  # PS3.3 C.13.5.1: major column order
    boxes = film_geometry(parse_display_format("COL\\2,1"), "14INX14IN", "PORTRAIT", 100).boxes
    assert boxes[0].x == boxes[1].x < boxes[2].x
    assert boxes[0].y < boxes[1].y
    assert boxes[2].height > boxes[0].height  # the second column is one tall box


def test_box_size_names_the_position_out_of_range():
    fmt = parse_display_format("STANDARD\\2,2")
    assert box_size_px(fmt, "14INX17IN", "PORTRAIT", 150, 4)[0] > 0
    with pytest.raises(LayoutError, match="position 5"):
        box_size_px(fmt, "14INX17IN", "PORTRAIT", 150, 5)


# ---- an image in its box ----------------------------------------------------------------------------

BOX = Rect(100, 200, 400, 300)


@given(st.integers(1, 3000), st.integers(1, 3000))
def test_optimal_filling_keeps_the_proportions_and_touches_two_sides(columns, rows):
    r = fit(columns, rows, BOX)
    assert BOX.contains(r)
    assert r.width == BOX.width or r.height == BOX.height
    assert abs(r.width / r.height - columns / rows) <= max(1 / r.height, 1 / r.width) * (columns / rows + 1) + 1e-9


def test_pixel_aspect_ratio_makes_tall_pixels_tall():  # PS3.3 C.7.6.3.1.7: vertical\horizontal
    r = fit(100, 100, Rect(0, 0, 1000, 1000), aspect=(2, 1))
    assert (r.width, r.height) == (500, 1000)


def test_a_small_image_is_magnified_to_fill_its_box():
    p = place(100, 50, BOX)
    assert p.outcome == "fit" and p.target.width == 400 and p.target.height == 200 and p.crop == Rect(0, 0, 100, 50)


def test_magnification_none_prints_one_pixel_per_device_pixel_centred():
    p = place(100, 50, BOX, magnification="NONE")
    assert p.outcome == "fit" and p.target == Rect(250, 325, 100, 50)


def test_requested_image_size_sets_the_printed_width():
    p = place(100, 100, BOX, requested_width=150)
    assert (p.target.width, p.target.height, p.outcome) == (150, 150, "fit")


def test_a_large_image_is_demagnified_by_default():
    p = place(800, 600, BOX)
    assert p.outcome == "demagnified" and (p.target.width, p.target.height) == (400, 300)


def test_a_large_image_is_decimated_when_magnification_is_none():
    assert place(800, 600, BOX, magnification="NONE").outcome == "decimated"


def test_crop_keeps_the_centre_at_one_pixel_per_device_pixel():
    p = place(800, 600, BOX, behavior="CROP")
    assert p.outcome == "cropped"
    assert p.crop == Rect(200, 150, 400, 300) and p.target == BOX


def test_fail_behaviour_reports_the_image_too_large():
    assert place(401, 10, BOX, behavior="FAIL").outcome == "too large"
    assert place(400, 300, BOX, behavior="FAIL").outcome == "fit"  # exactly the box fits
