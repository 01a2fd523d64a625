"""The C-FIND response encoder (archive/response.py) against the pydicom path it replaces.

The reference for every row is what FindService sent before: `query.response(row)` plus
Query/Retrieve Level, the extras and Specific Character Set, encoded by pydicom. The encoder's
bytes must be those bytes, and decode to a data set with the same elements and values.
"""

from __future__ import annotations

import asyncio
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue

from aiodicom.archive.index import MODEL_LEVELS, Level, Model
from aiodicom.archive.index_schema import LEVEL_COLUMNS
from aiodicom.archive.matching import clean, compile_query
from aiodicom.archive.response import ResponseEncoder
from aiodicom.dimse import status as dimse_status
from aiodicom.dimse.dataset import EncodedDataset, encoding_of
from aiodicom.dimse.messages import CFindRQ
from aiodicom.net.dispatch import Result
from aiodicom.services.query import FindService, check_identifier, dataset_response
from aiodicom.uids import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)

# Return keys the index does not hold (returned empty unless a row has them), one or more per VR,
# (0008,0001) sorting before Specific Character Set, and two sequences.
NOT_INDEXED = ("LengthToEnd", "InstanceCreationDate", "PatientBirthTime", "AcquisitionDateTime", "PatientAge",
               "IssuerOfPatientID", "OtherPatientNames", "PatientComments", "TimezoneOffsetFromUTC",
               "PatientWeight", "NumberOfFrames", "Rows", "StorageMediaFileSetUID", "RetrieveURL",
               "ReferencedStudySequence", "ProcedureCodeSequence")
EXTRAS = ("RetrieveAETitle", "InstanceAvailability")
FIND_MODELS = {Model.STUDY_ROOT: STUDY_ROOT_FIND, Model.PATIENT_ROOT: PATIENT_ROOT_FIND}


# ---- the reference and the decoder -------------------------------------------------------------

def reference(identifier: Dataset, row: dict[str, Any], level: str, extras: dict[str, str], ts: str
              ) -> tuple[Dataset, bytes]:
    query = compile_query(identifier)
    ds = dataset_response(query, row, level, extras)
    return ds, EncodedDataset.from_dataset(ds, ts).read_bytes()


def decode(data: bytes, ts: str) -> Dataset:
    implicit, little, _ = encoding_of(ts)
    return read_dataset(DicomBytesIO(data), implicit, little)


def values(vr: str, value: Any) -> tuple[str, ...]:
    """An element's value as comparable text, without the padding PS3.5 §6.2 calls insignificant
    (pydicom drops it when decoding): None, "", " " and [] are all empty."""
    if value is None or (isinstance(value, (list, MultiValue)) and not value):
        return ()
    texts = tuple(clean(vr, str(v)) for v in (value if isinstance(value, (list, MultiValue)) else (value,)))
    return () if texts == ("",) else texts


def assert_same(decoded: Dataset, expected: Dataset) -> None:
    assert [int(t) for t in decoded.keys()] == sorted(int(t) for t in expected.keys())  # noqa: SIM118 - tags, not elements
    for elem in expected:
        got = decoded[elem.tag]
        assert got.VR == elem.VR or got.VR in ("UN", "US or SS"), elem.tag
        if elem.VR == "SQ":
            assert len(got.value) == len(elem.value)
        else:
            assert values(elem.VR, got.value) == values(elem.VR, elem.value), elem.tag


# ---- strategies ----------------------------------------------------------------------------------

ASCII = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .-"
WORDS = st.text(ASCII + "äöüéÉßçñ李山田王", max_size=12)  # Latin-1 and beyond: UTF-8 in the response
NAME_PART = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz" + "ÄÖÜéñ山田", max_size=8)
PERSON = st.lists(NAME_PART, min_size=1, max_size=5).map("^".join)
PN = st.lists(PERSON, min_size=1, max_size=3).map("=".join)  # alphabetic=ideographic=phonetic, "A^B=" too


def multi(element: st.SearchStrategy[str], most: int = 3) -> st.SearchStrategy[str]:
    return st.lists(element, min_size=1, max_size=most).map("\\".join)


DIGITS = st.text("0123456789", min_size=1, max_size=8)
TEXT_BY_VR: dict[str, st.SearchStrategy[str]] = {
    "PN": multi(PN),
    "LO": multi(WORDS), "SH": multi(WORDS), "LT": WORDS, "ST": WORDS, "UT": WORDS, "UC": multi(WORDS),
    "CS": multi(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _É", max_size=16)),  # É: Latin-1 as indexed
    "AE": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=16),
    "UI": multi(st.lists(DIGITS, min_size=1, max_size=6).map(".".join)),
    "DA": multi(st.text("0123456789", min_size=8, max_size=8)),
    "TM": st.text("0123456789", min_size=2, max_size=6),
    "DT": st.text("0123456789", min_size=4, max_size=14),
    "AS": st.sampled_from(["045Y", "003M", "010D", "001W"]),
    "DS": multi(st.sampled_from(["1.5", "70", "-0.25", "1e3", "65.125"])),
    "UR": st.sampled_from(["http://example.org/wado", "https://a.b/c?d=e"]),
}


def row_value(vr: str, numeric: bool) -> st.SearchStrategy[Any]:
    """What an index row (or a richer candidate) may hold for an attribute of this VR."""
    empty = st.sampled_from([None, ""])
    if numeric or vr == "IS":
        return st.one_of(st.none(), st.integers(0, 10**6))
    if vr in ("US", "UL"):
        return st.one_of(empty, st.integers(0, 65535), multi(st.integers(0, 65535).map(str)))
    if vr == "SQ":
        return st.sampled_from([None, []])  # the index holds no sequences
    return st.one_of(empty, TEXT_BY_VR[vr], TEXT_BY_VR[vr].map(lambda s: f" {s} ") if vr == "UI" else TEXT_BY_VR[vr])


@st.composite
def cases(draw: st.DrawFn) -> tuple[Dataset, list[dict[str, Any]], str, dict[str, str], str]:
    model = draw(st.sampled_from(list(FIND_MODELS)))
    level = draw(st.sampled_from(MODEL_LEVELS[model]))
    columns = LEVEL_COLUMNS[level]
    held = [c.keyword for c in columns]
    keys = draw(st.lists(st.sampled_from(held + list(NOT_INDEXED)), min_size=1, max_size=12, unique=True))
    extras = draw(st.lists(st.sampled_from(EXTRAS), unique=True))
    identifier = Dataset()
    identifier.QueryRetrieveLevel = str(level)
    if draw(st.booleans()):
        identifier.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192"]))
    for keyword in keys + extras:
        vr = dictionary_VR(keyword)
        if vr == "SQ":  # an empty sequence, or an item of return keys (a sequence key with an item)
            item = Dataset()
            if draw(st.booleans()):
                item.CodeValue = ""
                item.CodeMeaning = ""
            identifier.add_new(tag_for_keyword(keyword), "SQ", [item] if len(item) else [])
        else:
            identifier.add_new(tag_for_keyword(keyword), vr.split(" ")[0], draw(st.sampled_from(["", "*"]))
                               if vr in ("PN", "LO", "SH", "CS") else None)
    check_identifier(identifier, model, relational=True)  # a query the service would run
    numeric = {c.keyword for c in columns if c.match.numeric}
    row_keys = held + [k for k in keys if k not in held]
    by_tag = draw(st.sets(st.sampled_from(NOT_INDEXED)))  # a candidate may be keyed by tag (Key.get)
    rows = draw(st.lists(st.fixed_dictionaries({
        tag_for_keyword(k) if k in by_tag else k: row_value(dictionary_VR(k).split(" ")[0], k in numeric)
        for k in row_keys}), min_size=1, max_size=4))
    ae = draw(st.sampled_from(["AIODICOM", "ARCHIVE_1"]))
    extra_values = {"RetrieveAETitle": ae, "InstanceAvailability": "ONLINE"}
    ts = draw(st.sampled_from(UNCOMPRESSED_TRANSFER_SYNTAXES))
    return identifier, rows, str(level), {k: extra_values[k] for k in extras}, ts


# ---- properties ----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_encoded_rows_are_the_bytes_pydicom_writes_and_decode_to_the_same_elements(case) -> None:
    identifier, rows, level, extras, ts = case
    encoder = ResponseEncoder.for_query(compile_query(identifier), ts, level=level, extras=extras)
    assert encoder is not None
    with warnings.catch_warnings():  # pydicom warns about values breaking their VR's rules: not our subject
        warnings.simplefilter("ignore")
        for row in rows:
            expected, expected_bytes = reference(identifier, row, level, extras, ts)
            data = encoder.encode(row)
            assert data == expected_bytes
            assert_same(decode(data, ts), expected)


# ---- chosen cases ----------------------------------------------------------------------------------

def _identifier(*keywords: str, level: str = "STUDY") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keywords:
        ds.add_new(tag_for_keyword(keyword), dictionary_VR(keyword), [] if dictionary_VR(keyword) == "SQ" else None)
    return ds


@pytest.mark.parametrize("ts", UNCOMPRESSED_TRANSFER_SYNTAXES)
def test_a_non_ascii_value_adds_specific_character_set_in_tag_order_and_utf8(ts: str) -> None:
    identifier = _identifier("LengthToEnd", "PatientName", "OtherPatientIDs", "PatientID")
    encoder = ResponseEncoder.for_query(compile_query(identifier), ts, level="STUDY")
    row = {"PatientName": "Müller^Jörg=山田^太郎", "OtherPatientIDs": "ID1\\ID2", "PatientID": "P1", "LengthToEnd": 7}
    data = encoder.encode(row)
    decoded = decode(data, ts)
    assert list(decoded.keys()) == [0x00080001, 0x00080005, 0x00080052, 0x00100010, 0x00100020, 0x00101000]
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert str(decoded.PatientName) == "Müller^Jörg=山田^太郎"
    assert data == reference(identifier, row, "STUDY", {}, ts)[1]


def test_a_non_ascii_value_among_several_values_also_needs_the_character_set() -> None:
    """A multi-valued LO is a MultiValue in pydicom: the Dataset path used to miss its non-ASCII."""
    identifier = _identifier("OtherPatientIDs")
    ts = UNCOMPRESSED_TRANSFER_SYNTAXES[0]
    row = {"OtherPatientIDs": "Jörg-1\\李-2"}
    data = ResponseEncoder.for_query(compile_query(identifier), ts, level="PATIENT").encode(row)
    decoded = decode(data, ts)
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert list(decoded.OtherPatientIDs) == ["Jörg-1", "李-2"]
    assert data == reference(identifier, row, "PATIENT", {}, ts)[1]


def test_ascii_rows_carry_no_character_set_and_values_are_padded_to_even_length() -> None:
    identifier = _identifier("StudyInstanceUID", "PatientName", "NumberOfStudyRelatedInstances", "StudyDate")
    ts = "1.2.840.10008.1.2.1"
    data = ResponseEncoder.for_query(compile_query(identifier), ts, level="STUDY").encode(
        {"StudyInstanceUID": "1.2.3", "PatientName": "DOE^JO", "NumberOfStudyRelatedInstances": 123,
         "StudyDate": "20240101"})
    assert b"\x08\x00\x05\x00" not in data
    assert b"\x20\x00\x0d\x00UI\x06\x001.2.3\x00" in data  # UI: NUL pad
    assert b"\x10\x00\x10\x00PN\x06\x00DOE^JO" in data
    assert b"\x20\x00\x08\x12IS\x04\x00123 " in data  # text: space pad


def test_requested_keys_the_row_lacks_are_returned_empty_and_extras_are_filled_in() -> None:
    identifier = _identifier("PatientComments", "RetrieveAETitle", "InstanceAvailability", "ReferencedStudySequence")
    ts = "1.2.840.10008.1.2"
    extras = {"RetrieveAETitle": "AIODICOM", "InstanceAvailability": "ONLINE"}
    data = ResponseEncoder.for_query(compile_query(identifier), ts, level="STUDY", extras=extras).encode({})
    decoded = decode(data, ts)
    assert decoded.RetrieveAETitle == "AIODICOM" and decoded.InstanceAvailability == "ONLINE"
    assert decoded.PatientComments == "" and len(decoded.ReferencedStudySequence) == 0
    assert data == reference(identifier, {}, "STUDY", extras, ts)[1]


def test_rows_the_encoder_does_not_handle_go_the_dataset_way() -> None:
    identifier = _identifier("ReferencedStudySequence", "StudyDescription")
    encoder = ResponseEncoder.for_query(compile_query(identifier), "1.2.840.10008.1.2.1", level="STUDY")
    item = {"ReferencedSOPClassUID": "1.2", "ReferencedSOPInstanceUID": "1.2.3"}
    assert encoder.encode({"ReferencedStudySequence": [item]}) is None  # sequence items
    assert encoder.encode({"StudyDescription": "x" * 70_000}) is None  # over 64 KiB: pydicom writes UN
    assert encoder.encode({"StudyDescription": 1.5}) is None  # not a type an index yields
    assert ResponseEncoder.for_query(compile_query(identifier), "1.2.840.10008.1.2.4.50", level="STUDY") is None


class _Index:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def query(self, level: Level, query: Any, *, model: Model):
        for row in self.rows:
            yield row

    def supported_keys(self, level: Level) -> frozenset[str]:
        return frozenset(c.keyword for c in LEVEL_COLUMNS[level])


def _find(rows: list[dict[str, Any]], identifier: Dataset, ts: str) -> list[Result]:
    req = SimpleNamespace(
        message=CFindRQ(message_id=1, affected_sop_class_uid=STUDY_ROOT_FIND), transfer_syntax=ts,
        dataset=lambda: identifier,
        assoc=SimpleNamespace(called_ae="AIODICOM", negotiated=SimpleNamespace(extended={})))

    async def collect() -> list[Result]:
        return [r async for r in FindService(_Index(rows)).find(req)]  # type: ignore[arg-type]

    return asyncio.run(collect())


def test_the_service_sends_encoded_bytes_and_falls_back_to_a_dataset_per_row() -> None:
    identifier = _identifier("StudyInstanceUID", "PatientName", "RetrieveAETitle", "ReferencedStudySequence")
    rows = [{"StudyInstanceUID": "1.2.3", "PatientName": "Åsa^Berg"},
            {"StudyInstanceUID": "1.2.4", "ReferencedStudySequence": [{"ReferencedSOPInstanceUID": "9"}]}]
    for ts in UNCOMPRESSED_TRANSFER_SYNTAXES:
        first, second = _find(rows, identifier, ts)
        assert first.status == second.status == dimse_status.PENDING
        assert isinstance(first.dataset, bytes)
        assert first.dataset == reference(identifier, rows[0], "STUDY", {"RetrieveAETitle": "AIODICOM"}, ts)[1]
        assert isinstance(second.dataset, Dataset)
        assert second.dataset.RetrieveAETitle == "AIODICOM" and second.dataset.QueryRetrieveLevel == "STUDY"
        assert len(second.dataset.ReferencedStudySequence) == 1
