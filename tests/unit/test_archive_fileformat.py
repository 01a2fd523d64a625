"""PS3.10 file meta written by hand: read back by pydicom, dcmdump and parse_file_meta."""

from __future__ import annotations

import glob
import io
import os
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data.data_manager import DATA_ROOT

from aiodicom.archive.errors import InvalidDataSet, InvalidUID, NeedMoreData
from aiodicom.archive.fileformat import encode_file_meta, parse_file_meta
from aiodicom.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SOP = "1.2.826.0.1.3680043.2.1125.1.1234"  # odd length: padded with a NUL


def _dataset() -> bytes:
    """A tiny Explicit VR LE data set: SOP Class/Instance UID and PatientName."""

    def el(g: int, e: int, vr: bytes, v: bytes) -> bytes:
        v += (b"\0" if vr == b"UI" else b" ") * (len(v) % 2)
        return struct.pack("<HH2sH", g, e, vr, len(v)) + v

    return el(8, 0x16, b"UI", CT.encode()) + el(8, 0x18, b"UI", SOP.encode()) + el(0x10, 0x10, b"PN", b"DOE^JOHN")


def _meta(**kw: object) -> bytes:
    args: dict[str, object] = {"sop_class_uid": CT, "sop_instance_uid": SOP, "transfer_syntax": EXPLICIT_LE}
    args.update(kw)
    return encode_file_meta(**args)  # type: ignore[arg-type]


def test_layout_is_preamble_dicm_then_group_2_with_correct_group_length() -> None:
    meta = _meta(source_ae="MODALITY1")
    assert meta[:128] == bytes(128)
    assert meta[128:132] == b"DICM"
    assert meta[132:140] == struct.pack("<HH2sH", 2, 0, b"UL", 4)
    (group_length,) = struct.unpack_from("<I", meta, 140)
    assert 144 + group_length == len(meta)
    assert len(meta) % 2 == 0


def test_pydicom_reads_every_meta_element() -> None:
    ds = pydicom.dcmread(io.BytesIO(_meta(source_ae="MODALITY1") + _dataset()))
    fm = ds.file_meta
    assert fm.FileMetaInformationVersion == b"\x00\x01"
    assert fm.MediaStorageSOPClassUID == CT
    assert fm.MediaStorageSOPInstanceUID == SOP
    assert fm.TransferSyntaxUID == EXPLICIT_LE
    assert fm.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert fm.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert fm.SourceApplicationEntityTitle == "MODALITY1"
    assert ds.SOPInstanceUID == SOP
    assert str(ds.PatientName) == "DOE^JOHN"


def test_source_ae_is_omitted_when_not_given() -> None:
    ds = pydicom.dcmread(io.BytesIO(_meta() + _dataset()))
    assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_uids_are_nul_padded_and_texts_space_padded() -> None:
    meta = _meta(source_ae="ODD", implementation_version_name="ODD_NAME1")
    assert SOP.encode() + b"\x00" in meta
    assert b"ODD " in meta and b"ODD_NAME1 " in meta


def test_dcmdump_reads_the_file_without_complaint(tmp_path: Path) -> None:
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        pytest.skip("dcmdump (DCMTK) is not installed")
    path = tmp_path / "x.dcm"
    path.write_bytes(_meta(source_ae="MODALITY1") + _dataset())
    out = subprocess.run([dcmdump, "-M", str(path)], capture_output=True, text=True, check=True)
    assert "E:" not in out.stderr and "W:" not in out.stderr, out.stderr
    assert "Little Endian Explicit" in out.stdout
    assert f"[{SOP}]" in out.stdout
    assert f"[{IMPLEMENTATION_CLASS_UID}]" in out.stdout
    assert f"[{IMPLEMENTATION_VERSION_NAME}]" in out.stdout
    assert "[MODALITY1]" in out.stdout
    assert "[DOE^JOHN]" in out.stdout


@pytest.mark.parametrize(
    "kw",
    [
        {"sop_class_uid": "1..2"},
        {"sop_instance_uid": "../etc/passwd"},
        {"transfer_syntax": ""},
        {"implementation_class_uid": "1.2.x"},
    ],
)
def test_invalid_uids_are_refused(kw: dict[str, str]) -> None:
    with pytest.raises(InvalidUID):
        _meta(**kw)


@pytest.mark.parametrize("kw", [{"implementation_version_name": "X" * 17}, {"source_ae": "A\\B"}, {"source_ae": ""}])
def test_values_the_meta_cannot_carry_are_refused(kw: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _meta(**kw)


@given(
    st.from_regex(r"[1-9][0-9]{0,5}(\.[0-9]{1,6}){0,8}", fullmatch=True),
    st.one_of(st.none(), st.from_regex(r"[A-Z0-9_]{1,16}", fullmatch=True)),
)
def test_parse_reads_back_what_encode_wrote(uid: str, ae: str | None) -> None:
    meta = _meta(sop_instance_uid=uid, source_ae=ae)
    fm = parse_file_meta(meta + _dataset())
    assert fm.sop_instance_uid == uid
    assert fm.sop_class_uid == CT
    assert fm.transfer_syntax == EXPLICIT_LE
    assert fm.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert fm.implementation_version_name == IMPLEMENTATION_VERSION_NAME
    assert fm.source_ae == ae
    assert fm.dataset_offset == len(meta)


def test_parse_of_a_truncated_meta_asks_for_more() -> None:
    meta = _meta()
    for cut in (10, 140, len(meta) - 3):
        with pytest.raises(NeedMoreData) as info:
            parse_file_meta(meta[:cut])
        assert info.value.needed > cut
    assert parse_file_meta(meta).dataset_offset == len(meta)  # a file with an empty data set


def test_parse_refuses_what_is_not_a_ps310_file() -> None:
    with pytest.raises(InvalidDataSet):
        parse_file_meta(bytes(128) + b"DICX" + bytes(100))
    bad_vr = bytes(128) + b"DICM" + struct.pack("<HH", 2, 0x10) + b"\x01\x02" + bytes(8)
    with pytest.raises(InvalidDataSet):
        parse_file_meta(bad_vr)


def _bundled_files() -> list[str]:
    return sorted(glob.glob(os.path.join(DATA_ROOT, "test_files", "*.dcm")))


@pytest.mark.parametrize("path", _bundled_files(), ids=os.path.basename)
def test_parse_agrees_with_pydicom_on_bundled_files(path: str) -> None:
    data = Path(path).read_bytes()
    if data[128:132] != b"DICM":
        with pytest.raises(InvalidDataSet):
            parse_file_meta(data)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm_ref = pydicom.dcmread(path, stop_before_pixels=True, force=True).file_meta
    if "TransferSyntaxUID" not in fm_ref:
        with pytest.raises(InvalidDataSet):
            parse_file_meta(data)
        return
    fm = parse_file_meta(data)
    assert fm.transfer_syntax == fm_ref.TransferSyntaxUID
    assert fm.sop_instance_uid == fm_ref.get("MediaStorageSOPInstanceUID")
    assert fm.sop_class_uid == fm_ref.get("MediaStorageSOPClassUID")
    # The data set starts right after group 0002: where pydicom's (0002,0000) says, when present.
    if "FileMetaInformationGroupLength" in fm_ref:
        assert fm.dataset_offset == 144 + fm_ref.FileMetaInformationGroupLength
    assert struct.unpack_from("<H", data, fm.dataset_offset)[0] != 0x0002
