"""peek: top-level attributes read from encoded data sets without pydicom, in every transfer syntax."""

from __future__ import annotations

import glob
import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT
from pydicom.filereader import data_element_generator

from aiodicom.archive.errors import InvalidDataSet, NeedMoreData, PeekError
from aiodicom.archive.fileformat import parse_file_meta
from aiodicom.archive.peek import (
    INDEX_TAGS,
    INSTANCE_NUMBER,
    PATIENT_NAME,
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    Encoding,
    Scanner,
    dataset_encoding,
    decode_text,
    inflate_head,
    is_deflated,
    peek,
    peek_file,
    text_value,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG2000 = "1.2.840.10008.1.2.4.91"
ALL_SYNTAXES = [IMPLICIT, EXPLICIT, BIG, JPEG2000]


# --- building data sets by hand (PS3.5 §7.1) --------------------------------------------------------
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def el(tag: int, vr: str, value: bytes, ts: str = EXPLICIT, *, undefined: bool = False) -> bytes:
    big = ts == BIG
    bo = ">" if big else "<"
    head = struct.pack(bo + "HH", tag >> 16, tag & 0xFFFF)
    length = 0xFFFFFFFF if undefined else len(value)
    if ts == IMPLICIT:
        return head + struct.pack("<I", length) + value
    if vr in _LONG:
        return head + vr.encode() + b"\0\0" + struct.pack(bo + "I", length) + value
    return head + vr.encode() + struct.pack(bo + "H", length) + value


def delim(tag: int, ts: str = EXPLICIT, length: int = 0) -> bytes:
    bo = ">" if ts == BIG else "<"
    return struct.pack(bo + "HHI", tag >> 16, tag & 0xFFFF, length)


ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def ui(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\0" * (len(raw) % 2)


def core(ts: str) -> bytes:
    """Study/Series/SOP Instance UIDs, PatientName and InstanceNumber, then pixel data."""
    return b"".join(
        (
            el(SOP_INSTANCE_UID, "UI", ui("1.2.3.4"), ts),
            el(PATIENT_NAME, "PN", b"DOE^JANE", ts),
            el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"), ts),
            el(SERIES_INSTANCE_UID, "UI", ui("1.2.3.1"), ts),
            el(INSTANCE_NUMBER, "IS", b"7 ", ts),
            el(0x7FE00010, "OW", bytes(64), ts),
        )
    )


EXPECTED_CORE = {
    SOP_INSTANCE_UID: b"1.2.3.4\0",
    PATIENT_NAME: b"DOE^JANE",
    STUDY_INSTANCE_UID: b"1.2.3\0",
    SERIES_INSTANCE_UID: b"1.2.3.1\0",
    INSTANCE_NUMBER: b"7 ",
}


# --- against pydicom's bundled files ------------------------------------------------------------------
def dataset_bytes(path: str) -> tuple[bytes, str]:
    data = Path(path).read_bytes()
    meta = parse_file_meta(data)
    return data[meta.dataset_offset :], meta.transfer_syntax


def reference(ds: bytes, ts: str, tags: frozenset[int]) -> dict[int, bytes]:
    """pydicom's raw top-level values for `tags` (defined lengths only), the oracle for peek."""
    enc = dataset_encoding(ts)
    found: dict[int, bytes] = {}
    gen = data_element_generator(
        io.BytesIO(ds),
        enc == Encoding.IMPLICIT_LE,
        enc != Encoding.EXPLICIT_BE,
        stop_when=lambda tag, vr, length: tag > max(tags),
    )
    for raw in gen:
        if raw.tag in tags and raw.length != 0xFFFFFFFF:
            found[raw.tag] = raw.value if raw.value is not None else b""
    return found


NAMED = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm",
         "SC_rgb_rle.dcm", "JPEG-lossy.dcm", "rtplan.dcm", "reportsi.dcm", "UN_sequence.dcm", "nested_priv_SQ.dcm"]  # fmt: skip


@pytest.mark.parametrize("name", NAMED)
def test_peek_matches_pydicom_on_named_test_files(name: str) -> None:
    ds, ts = dataset_bytes(get_testdata_file(name))
    if is_deflated(ts):
        ds = inflate_head(ds, 1 << 30)
    got = peek(ds, ts, INDEX_TAGS, complete=True)
    assert got == reference(ds, ts, INDEX_TAGS)
    if name in ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm"):
        assert STUDY_INSTANCE_UID in got and SERIES_INSTANCE_UID in got


def _all_bundled() -> list[str]:
    paths = sorted(glob.glob(os.path.join(DATA_ROOT, "test_files", "*.dcm")))
    # no PS3.10 meta, or mislabelled on purpose (SC_rgb_jpeg.dcm: implicit VR data under a JPEG syntax)
    return [p for p in paths if Path(p).read_bytes()[128:132] == b"DICM" and "missing_tsyntax" not in p]


@pytest.mark.parametrize("path", _all_bundled(), ids=os.path.basename)
def test_peek_matches_pydicom_byte_for_byte_on_every_bundled_file(path: str) -> None:
    ds, ts = dataset_bytes(path)
    if is_deflated(ts):
        ds = inflate_head(ds, 1 << 30)
    if os.path.basename(path) == "SC_rgb_jpeg.dcm":
        with pytest.raises(PeekError):
            peek(ds, ts, INDEX_TAGS, complete=True)
        return
    assert peek(ds, ts, INDEX_TAGS, complete=True) == reference(ds, ts, INDEX_TAGS)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm"])
@pytest.mark.parametrize("chunk", [7, 64, 65_536])
def test_peek_file_equals_peek_in_memory_whatever_the_window(name: str, chunk: int) -> None:
    path = get_testdata_file(name)
    data = Path(path).read_bytes()
    meta = parse_file_meta(data)
    ds = data[meta.dataset_offset :]
    inflated = inflate_head(ds, 1 << 30) if is_deflated(meta.transfer_syntax) else ds
    expected = peek(inflated, meta.transfer_syntax, INDEX_TAGS, complete=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = peek_file(fd, meta.dataset_offset, meta.transfer_syntax, INDEX_TAGS, chunk=chunk)
    finally:
        os.close(fd)
    assert got == expected


# --- stopping early, and asking for more --------------------------------------------------------------
@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_scan_stops_at_the_first_tag_past_the_largest_requested(ts: str) -> None:
    ds = core(ts)
    pixel_tag_at = ds.index(el(0x7FE00010, "OW", bytes(64), ts)[:4])
    # Only the first 4 bytes of the next element are needed; garbage after them is never read.
    head = ds[: pixel_tag_at + 4] + b"\xff" * 100
    assert peek(head, ts, INDEX_TAGS) == EXPECTED_CORE
    assert peek(ds[: pixel_tag_at + 4], ts, INDEX_TAGS) == EXPECTED_CORE  # the tag alone is enough


@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_truncated_head_raises_need_more_data_with_partial_result(ts: str) -> None:
    ds = core(ts)
    cut = ds.index(el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"), ts)) + 3
    with pytest.raises(NeedMoreData) as info:
        peek(ds[:cut], ts, INDEX_TAGS)
    assert info.value.found == {SOP_INSTANCE_UID: b"1.2.3.4\0", PATIENT_NAME: b"DOE^JANE"}
    assert info.value.needed > cut
    assert isinstance(info.value, Exception) and not isinstance(info.value, PeekError)


@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_truncated_complete_data_set_is_malformed(ts: str) -> None:
    ds = core(ts)
    cut = ds.index(el(SERIES_INSTANCE_UID, "UI", ui("1.2.3.1"), ts)) + 10
    with pytest.raises(PeekError):
        peek(ds[:cut], ts, INDEX_TAGS, complete=True)


def test_a_data_set_ending_before_the_largest_tag_is_complete() -> None:
    ds = el(SOP_INSTANCE_UID, "UI", ui("1.2.3.4")) + el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"))
    assert peek(ds, EXPLICIT, INDEX_TAGS, complete=True) == {
        SOP_INSTANCE_UID: b"1.2.3.4\0",
        STUDY_INSTANCE_UID: b"1.2.3\0",
    }
    assert peek(b"", EXPLICIT, INDEX_TAGS, complete=True) == {}


@given(st.sampled_from(ALL_SYNTAXES), st.data())
def test_growing_the_head_by_needed_converges_to_the_full_result(ts: str, data: st.DataObject) -> None:
    ds = core(ts)
    length = data.draw(st.integers(0, len(ds)))
    while True:
        try:
            got = peek(ds[:length], ts, INDEX_TAGS, complete=length >= len(ds))
            break
        except NeedMoreData as more:
            assert more.needed > length
            length = more.needed
    assert got == EXPECTED_CORE


@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_a_large_skipped_value_does_not_need_its_bytes_in_a_window(ts: str) -> None:
    # A 1 MB private value before the Study UID: the scanner jumps over it and asks for bytes after it.
    big = el(0x00090010, "OB", bytes(1 << 20), ts)
    ds = el(SOP_INSTANCE_UID, "UI", ui("1.2.3.4"), ts) + big + el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"), ts)
    scanner = Scanner(ts, frozenset({STUDY_INSTANCE_UID, SOP_INSTANCE_UID}))
    assert not scanner.feed(ds[:100], at_end=False)
    assert scanner.offset >= len(ds) - len(el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"), ts))
    assert scanner.feed(ds[scanner.offset :], at_end=True)
    assert scanner.found == {SOP_INSTANCE_UID: b"1.2.3.4\0", STUDY_INSTANCE_UID: b"1.2.3\0"}


def test_values_longer_than_max_value_are_skipped_not_returned() -> None:
    ds = el(PATIENT_NAME, "PN", b"X" * 100) + el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"))
    assert peek(ds, EXPLICIT, INDEX_TAGS, complete=True, max_value=50) == {STUDY_INSTANCE_UID: b"1.2.3\0"}


# --- sequences (PS3.5 §7.5) -----------------------------------------------------------------------
REF_SEQ = 0x00081115  # ReferencedSeriesSequence: a sequence before the Study UID


def nested(depth: int, ts: str, vr: str = "SQ", inner_ts: str | None = None) -> bytes:
    """`depth` sequences of undefined length, each holding one item of undefined length."""
    inner_ts = inner_ts or ts
    opening = el(REF_SEQ, vr, b"", ts, undefined=True) + delim(ITEM, inner_ts, 0xFFFFFFFF)
    deeper = el(REF_SEQ, "SQ", b"", inner_ts, undefined=True) + delim(ITEM, inner_ts, 0xFFFFFFFF)
    closing = delim(ITEM_END, inner_ts) + delim(SEQ_END, inner_ts)
    leaf = el(STUDY_INSTANCE_UID, "UI", ui("9.9.9"), inner_ts)  # same tag inside: must not be taken
    return opening + deeper * (depth - 1) + leaf + closing * depth


@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_ten_thousand_nested_sequences_are_skipped_without_recursion(ts: str) -> None:
    ds = nested(10_000, ts) + core(ts)
    assert peek(ds, ts, INDEX_TAGS, complete=True) == EXPECTED_CORE


@pytest.mark.parametrize("ts", [EXPLICIT, BIG])
def test_un_of_undefined_length_holds_implicit_little_endian_content(ts: str) -> None:
    # PS3.5 §6.2.2: whatever the transfer syntax, such a UN is an implicit VR LE sequence.
    ds = nested(3, ts, vr="UN", inner_ts=IMPLICIT) + core(ts)
    assert peek(ds, ts, INDEX_TAGS, complete=True) == EXPECTED_CORE


@pytest.mark.parametrize("ts", ALL_SYNTAXES)
def test_defined_length_items_and_sequences_are_skipped_whole(ts: str) -> None:
    item = delim(ITEM, ts, 8) + b"\xde\xad\xbe\xef" * 2  # contents never parsed
    seq_undef = el(REF_SEQ, "SQ", b"", ts, undefined=True) + item + delim(SEQ_END, ts)
    seq_def = el(0x00081110, "SQ", item, ts)
    ds = el(0x00080008, "CS", b"ORIGINAL", ts) + seq_def + seq_undef + core(ts)
    assert peek(ds, ts, INDEX_TAGS, complete=True) == EXPECTED_CORE


def test_encapsulated_pixel_data_before_the_tags_is_skipped_as_fragments() -> None:
    frags = delim(ITEM, JPEG2000, 4) + b"\0\0\0\0" + delim(ITEM, JPEG2000, 6) + b"\xff" * 6
    ds = el(0x00090011, "OB", b"", JPEG2000, undefined=True) + frags + delim(SEQ_END, JPEG2000) + core(JPEG2000)
    assert peek(ds, JPEG2000, INDEX_TAGS, complete=True) == EXPECTED_CORE


def test_undefined_length_values_are_not_returned() -> None:
    ds = el(REF_SEQ, "SQ", b"", undefined=True) + delim(SEQ_END) + el(STUDY_INSTANCE_UID, "UI", ui("1.2.3"))
    assert peek(ds, EXPLICIT, frozenset({REF_SEQ, STUDY_INSTANCE_UID}), complete=True) == {
        STUDY_INSTANCE_UID: b"1.2.3\0"
    }


@pytest.mark.parametrize(
    "ds",
    [
        el(REF_SEQ, "SQ", b"", undefined=True) + el(STUDY_INSTANCE_UID, "UI", b"1\0"),  # element where an item is due
        el(REF_SEQ, "SQ", b"", undefined=True) + delim(ITEM, EXPLICIT, 0xFFFFFFFF) + delim(SEQ_END),  # wrong delimiter
        el(0x00081030, "UT", b"", undefined=True),  # undefined length on a VR that cannot have one (PS3.5 §7.1.2)
        struct.pack("<HH", 8, 0x20) + b"\x01\x02" + b"\0\0",  # not a VR
        el(REF_SEQ, "SQ", b"", undefined=True) + delim(ITEM, EXPLICIT, 0xFFFFFFFF),  # never closed
    ],
)
def test_malformed_structures_raise_peek_error(ds: bytes) -> None:
    with pytest.raises(PeekError):
        peek(ds, EXPLICIT, INDEX_TAGS, complete=True)


# --- garbage in, PeekError out ----------------------------------------------------------------------
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(ALL_SYNTAXES), st.booleans())
def test_arbitrary_bytes_raise_only_peek_error_or_need_more_data(raw: bytes, ts: str, complete: bool) -> None:
    try:
        result = peek(raw, ts, INDEX_TAGS, complete=complete)
    except NeedMoreData as more:
        assert not complete
        assert more.needed > 0
    except PeekError:
        pass
    else:
        assert set(result) <= INDEX_TAGS


@settings(max_examples=300)
@given(st.sampled_from(ALL_SYNTAXES), st.data())
def test_corrupted_data_sets_raise_only_peek_error(ts: str, data: st.DataObject) -> None:
    ds = bytearray(nested(3, ts) + core(ts))
    for _ in range(data.draw(st.integers(1, 4))):
        ds[data.draw(st.integers(0, len(ds) - 1))] = data.draw(st.integers(0, 255))
    try:
        peek(bytes(ds), ts, INDEX_TAGS, complete=True)
    except PeekError:
        pass


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_peek_file_on_garbage_raises_only_peek_error(raw: bytes) -> None:
    with tempfile.TemporaryFile() as f:
        f.write(raw)
        f.flush()
        for ts in (EXPLICIT, DEFLATED):
            try:
                peek_file(f.fileno(), 0, ts, INDEX_TAGS, chunk=16)
            except PeekError:
                pass


# --- deflate and text values ------------------------------------------------------------------------
def _deflate(raw: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(raw) + c.flush()


def test_inflate_head_of_a_prefix_is_a_prefix_of_the_data_set() -> None:
    ds = nested(50, EXPLICIT) + core(EXPLICIT)
    packed = _deflate(ds)
    assert inflate_head(packed, 1 << 20) == ds
    part = inflate_head(packed[: len(packed) // 2], 1 << 20)
    assert ds.startswith(part)
    assert inflate_head(packed, 100) == ds[:100]


def test_inflate_head_of_corrupt_input_is_peek_error() -> None:
    with pytest.raises(PeekError):
        inflate_head(b"\xff" * 64, 1000)
    assert issubclass(PeekError, InvalidDataSet)


def test_peek_file_inflates_a_deflated_data_set_as_a_stream() -> None:
    ds = nested(200, EXPLICIT) + core(EXPLICIT)
    with tempfile.TemporaryFile() as f:
        f.write(b"HEADER" + _deflate(ds) + b"\0")  # PS3.5 A.5: may be padded with one NUL
        f.flush()
        assert peek_file(f.fileno(), 6, DEFLATED, INDEX_TAGS, chunk=32) == EXPECTED_CORE


def test_text_value_strips_trailing_padding_only() -> None:
    assert text_value(b"1.2.3\0") == "1.2.3"
    assert text_value(b"CT ") == "CT"
    assert text_value(b" LEAD  ") == " LEAD"
    assert text_value(b"1.2\xff") == "1.2\ufffd"  # undecodable: visible, and no longer a valid UID


def test_decode_text_follows_the_specific_character_set() -> None:
    assert decode_text("Buc^Jérôme ".encode("latin-1"), b"ISO_IR 100") == "Buc^Jérôme"
    assert decode_text("Wang^XiaoDong=王^小東".encode(), b"ISO_IR 192") == "Wang^XiaoDong=王^小東"
    jis = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
    assert decode_text(jis, b"\\ISO 2022 IR 87") == "Yamada^Tarou=山田^太郎"
    assert decode_text(b"DOE^JOHN", None) == "DOE^JOHN"


def test_transfer_syntax_table() -> None:
    assert dataset_encoding(IMPLICIT) is Encoding.IMPLICIT_LE
    assert dataset_encoding(BIG) is Encoding.EXPLICIT_BE
    assert dataset_encoding(JPEG2000) is Encoding.EXPLICIT_LE
    assert dataset_encoding("1.2.3.4.5.6.private") is Encoding.EXPLICIT_LE
    assert is_deflated(DEFLATED) and not is_deflated(EXPLICIT)
