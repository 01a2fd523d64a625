"""Encoded data sets: PS3.10 file meta parsing, every transfer syntax, and the receive spool."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from aiodicom.dimse.dataset import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EncodedDataset,
    Spool,
    encoding_of,
    read_file_meta,
)
from aiodicom.dimse.errors import DatasetDecodeError, DimseError, InvalidFileError

NATIVE_SYNTAXES = [
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
]
TEST_FILES = ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "image_dfl.dcm", "JPEG2000.dcm"]
UNCOMPRESSED_FILES = ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "image_dfl.dcm"]


def sample(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None
    return str(path)


@pytest.mark.parametrize("name", TEST_FILES)
def test_from_file_reads_the_meta_pydicom_reads(name: str) -> None:
    encoded, meta = EncodedDataset.from_file(sample(name))
    reference = pydicom.dcmread(sample(name))
    fm = reference.file_meta
    assert meta.sop_class_uid == fm.MediaStorageSOPClassUID
    assert meta.sop_instance_uid == fm.MediaStorageSOPInstanceUID
    assert meta.transfer_syntax == fm.TransferSyntaxUID == encoded.transfer_syntax
    assert meta.implementation_class_uid == fm.ImplementationClassUID
    # PS3.10 §7.1: preamble (128) + "DICM" (4) + (0002,0000) element (12) + the group length.
    assert meta.dataset_offset == encoded.offset == 144 + fm.FileMetaInformationGroupLength
    assert encoded.size == os.path.getsize(sample(name)) - meta.dataset_offset


@pytest.mark.parametrize("name", TEST_FILES)
def test_a_file_decodes_to_what_pydicom_reads(name: str) -> None:
    encoded, _ = EncodedDataset.from_file(sample(name))
    assert encoded.dataset() == pydicom.dcmread(sample(name))


@pytest.mark.parametrize("name", UNCOMPRESSED_FILES)
@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_every_native_syntax_round_trips_pixels_and_attributes(name: str, syntax: str) -> None:
    reference = pydicom.dcmread(sample(name))
    encoded = EncodedDataset.from_dataset(reference, syntax)
    decoded = encoded.dataset()
    assert decoded.file_meta.TransferSyntaxUID == syntax
    assert decoded.SOPInstanceUID == reference.SOPInstanceUID
    assert decoded.PatientName == reference.PatientName
    assert decoded.Rows == reference.Rows
    np.testing.assert_array_equal(decoded.pixel_array, reference.pixel_array)


def test_encapsulated_syntax_keeps_the_compressed_pixel_data() -> None:
    reference = pydicom.dcmread(sample("JPEG2000.dcm"))
    syntax = reference.file_meta.TransferSyntaxUID
    decoded = EncodedDataset.from_dataset(reference, syntax).dataset()
    assert decoded.PixelData == reference.PixelData
    assert decoded == reference


def test_from_dataset_of_a_file_gives_the_bytes_the_file_holds() -> None:
    # CT_small is Explicit VR Little Endian without group lengths: re-encoding is the identity.
    encoded, _ = EncodedDataset.from_file(sample("CT_small.dcm"))
    reference = pydicom.dcmread(sample("CT_small.dcm"))
    assert EncodedDataset.from_dataset(reference, EXPLICIT_VR_LITTLE_ENDIAN).read_bytes() == encoded.read_bytes()


def test_big_endian_encodes_values_most_significant_byte_first() -> None:
    reference = pydicom.dcmread(sample("CT_small.dcm"))
    raw = EncodedDataset.from_dataset(reference, EXPLICIT_VR_BIG_ENDIAN).read_bytes()
    rows = b"\x00\x28\x00\x10" + b"US" + b"\x00\x02" + struct.pack(">H", reference.Rows)
    assert rows in raw


def test_big_endian_encoding_leaves_the_callers_pixel_data_alone() -> None:
    reference = pydicom.dcmread(sample("CT_small.dcm"))
    before = bytes(reference.PixelData)
    EncodedDataset.from_dataset(reference, EXPLICIT_VR_BIG_ENDIAN)
    assert reference.PixelData == before


def test_deflated_syntax_is_raw_deflate_of_explicit_little_endian() -> None:
    reference = pydicom.dcmread(sample("CT_small.dcm"))
    deflated = EncodedDataset.from_dataset(reference, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN).read_bytes()
    plain = EncodedDataset.from_dataset(reference, EXPLICIT_VR_LITTLE_ENDIAN).read_bytes()
    assert zlib.decompress(deflated, -15) == plain  # PS3.5 A.5: no zlib header
    with pytest.raises(zlib.error):
        zlib.decompress(deflated)


def test_file_meta_elements_never_go_into_the_data_set() -> None:
    ds = pydicom.Dataset()
    ds.add_new(0x00020010, "UI", EXPLICIT_VR_LITTLE_ENDIAN)
    ds.PatientID = "P1"
    raw = EncodedDataset.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN).read_bytes()
    assert raw == b"\x10\x00\x20\x00LO\x02\x00P1"
    assert 0x00020010 in ds  # the caller's data set is left as it was


def test_inflating_past_the_limit_is_refused() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bomb.compress(b"\x00" * 1_000_000) + bomb.flush()
    with pytest.raises(DatasetDecodeError, match="inflates past"):
        EncodedDataset(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, body).dataset(inflate_limit=100_000)


def test_a_broken_deflate_stream_is_a_decode_error() -> None:
    with pytest.raises(DatasetDecodeError, match="deflate"):
        EncodedDataset(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, b"\xff" * 64).dataset()


def test_encoding_of_every_kind_of_syntax() -> None:
    assert encoding_of(IMPLICIT_VR_LITTLE_ENDIAN) == (True, True, False)
    assert encoding_of(EXPLICIT_VR_BIG_ENDIAN) == (False, False, False)
    assert encoding_of(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) == (False, True, True)
    assert encoding_of("1.2.840.10008.1.2.4.50") == (False, True, False)  # JPEG Baseline
    assert encoding_of("1.2.3.4.private") == (False, True, False)


@pytest.mark.parametrize("chunk", [1, 1000, 4096, 1 << 20])
def test_iter_chunks_reads_a_file_in_bounded_chunks(chunk: int) -> None:
    encoded, _ = EncodedDataset.from_file(sample("MR_small_bigendian.dcm"))
    chunks = list(encoded.iter_chunks(chunk))
    assert all(len(part) <= chunk for part in chunks)
    assert b"".join(chunks) == encoded.read_bytes()
    assert len(encoded.read_bytes()) == encoded.size


def test_iter_chunks_of_memory_are_views() -> None:
    encoded = EncodedDataset(EXPLICIT_VR_LITTLE_ENDIAN, bytearray(b"abcdefg"))
    chunks = list(encoded.iter_chunks(3))
    assert [bytes(c) for c in chunks] == [b"abc", b"def", b"g"]
    assert all(isinstance(c, memoryview) for c in chunks)


def test_a_file_that_shrank_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"x" * 10)
    encoded = EncodedDataset.from_path(path, EXPLICIT_VR_LITTLE_ENDIAN, size=20)
    with pytest.raises(InvalidFileError):
        encoded.read_bytes()
    with pytest.raises(InvalidFileError):
        list(encoded.iter_chunks(4))


def test_a_raw_data_set_without_preamble_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "raw.dcm"
    path.write_bytes(EncodedDataset.from_file(sample("CT_small.dcm"))[0].read_bytes())
    with pytest.raises(InvalidFileError, match="DICM"):
        EncodedDataset.from_file(path)


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH", 2, elem) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", 2, elem) + vr + struct.pack("<H", len(value)) + value


def test_file_meta_is_parsed_by_elements_even_with_a_large_private_meta(tmp_path: Path) -> None:
    body = b"\x10\x00\x20\x00LO\x02\x00P1"
    meta = (
        _meta_element(0x0001, b"OB", b"\x00\x01")
        + _meta_element(0x0002, b"UI", b"1.2.3\x00")
        + _meta_element(0x0003, b"UI", b"4.5.6\x00")
        + _meta_element(0x0010, b"UI", b"1.2.840.10008.1.2.1\x00")
        + _meta_element(0x0102, b"OB", b"\xab" * 10000)  # Private Information, past the first read
    )
    path = tmp_path / "meta.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + meta + body)
    info = read_file_meta(path)
    uids = (info.sop_class_uid, info.sop_instance_uid, info.transfer_syntax)
    assert uids == ("1.2.3", "4.5.6", EXPLICIT_VR_LITTLE_ENDIAN)
    assert info.implementation_class_uid is None
    encoded, _ = EncodedDataset.from_file(path)
    assert encoded.read_bytes() == body
    assert encoded.dataset().PatientID == "P1"


def test_file_meta_without_transfer_syntax_is_rejected(tmp_path: Path) -> None:
    meta = _meta_element(0x0002, b"UI", b"1.2.3\x00") + _meta_element(0x0003, b"UI", b"4.5.6\x00")
    path = tmp_path / "nots.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + meta)
    with pytest.raises(InvalidFileError, match="Transfer Syntax"):
        read_file_meta(path)


def test_truncated_file_meta_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + _meta_element(0x0010, b"UI", b"1.2.840.10008.1.2.1\x00")[:-4])
    with pytest.raises(InvalidFileError, match="past the end"):
        read_file_meta(path)


def test_implicit_vr_file_meta_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "implicit.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + struct.pack("<HHI", 2, 0x10, 20) + b"1.2.840.10008.1.2.1\x00")
    with pytest.raises(InvalidFileError, match="Explicit VR"):
        read_file_meta(path)


# ---- Spool -----------------------------------------------------------------------------------


def test_spool_below_the_limit_stays_in_memory() -> None:
    spool = Spool(memory_limit=100)
    spool.write(memoryview(b"a" * 60))
    spool.write(b"b" * 40)
    assert spool.path is None and spool.size == 100
    encoded = spool.finish(EXPLICIT_VR_LITTLE_ENDIAN)
    assert encoded.memory is not None and encoded.path is None
    assert encoded.read_bytes() == b"a" * 60 + b"b" * 40


def test_spool_copies_what_it_is_given() -> None:
    spool = Spool(memory_limit=100)
    buffer = bytearray(b"abc")
    spool.write(memoryview(buffer))
    buffer[0:1] = b"X"
    assert spool.finish(EXPLICIT_VR_LITTLE_ENDIAN).read_bytes() == b"abc"


def test_spool_spills_to_a_file_past_the_limit_and_close_deletes_it(tmp_path: Path) -> None:
    spool = Spool(memory_limit=100, directory=str(tmp_path))
    parts = [bytes([n]) * 40 for n in range(5)]
    for part in parts:
        spool.write(memoryview(part))
    assert spool.path is not None and Path(spool.path).parent == tmp_path
    assert Path(spool.path).read_bytes() == b"".join(parts)  # everything, memory part included
    encoded = spool.finish(IMPLICIT_VR_LITTLE_ENDIAN)
    assert encoded.memory is None and encoded.size == 200 and encoded.path == spool.path
    assert encoded.read_bytes() == b"".join(parts)
    assert b"".join(encoded.iter_chunks(64)) == b"".join(parts)
    encoded.close()
    assert not os.path.exists(spool.path)
    encoded.close()  # idempotent


def test_spool_discard_removes_the_temp_file(tmp_path: Path) -> None:
    spool = Spool(memory_limit=10, directory=str(tmp_path))
    spool.write(b"x" * 20)
    path = spool.path
    assert path is not None and os.path.exists(path)
    spool.discard()
    assert not os.path.exists(path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        spool.write(b"more")


def test_spool_past_max_size_refuses_with_out_of_resources(tmp_path: Path) -> None:
    spool = Spool(memory_limit=10, directory=str(tmp_path), max_size=50)
    spool.write(b"x" * 30)
    with pytest.raises(DimseError) as info:
        spool.write(b"x" * 30)
    assert info.value.status == 0xA700
    assert list(tmp_path.iterdir()) == []


def test_spool_cannot_be_finished_twice() -> None:
    spool = Spool()
    spool.finish(EXPLICIT_VR_LITTLE_ENDIAN)
    with pytest.raises(ValueError):
        spool.finish(EXPLICIT_VR_LITTLE_ENDIAN)


def test_a_spooled_file_decodes_with_pydicom(tmp_path: Path) -> None:
    source, _ = EncodedDataset.from_file(sample("MR_small_bigendian.dcm"))
    spool = Spool(memory_limit=1000, directory=str(tmp_path))
    for chunk in source.iter_chunks(777):
        spool.write(memoryview(chunk))
    with spool.finish(source.transfer_syntax) as encoded:
        assert encoded.path is not None
        assert encoded.dataset() == pydicom.dcmread(sample("MR_small_bigendian.dcm"))
    assert list(tmp_path.iterdir()) == []


def test_an_unreferenced_spool_file_is_deleted_by_the_garbage_collector(tmp_path: Path) -> None:
    spool = Spool(memory_limit=1, directory=str(tmp_path))
    spool.write(b"xyz")
    encoded = spool.finish(EXPLICIT_VR_LITTLE_ENDIAN)
    path = encoded.path
    assert path is not None and os.path.exists(path)
    del encoded, spool
    import gc

    gc.collect()
    assert not os.path.exists(path)


def test_closing_a_file_that_is_not_a_spool_keeps_it() -> None:
    encoded, _ = EncodedDataset.from_file(sample("CT_small.dcm"))
    encoded.close()
    assert os.path.exists(sample("CT_small.dcm"))
