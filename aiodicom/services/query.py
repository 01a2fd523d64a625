"""Query/Retrieve C-FIND SCP (PS3.4 C.4.1) over the archive index, for the Patient Root, Study Root
and Patient/Study Only information models, with the extended negotiation of PS3.4 C.5.1.

Matches stream as Pending responses while the index query runs; a C-CANCEL ends the stream with
Cancel (0xFE00). Identifiers that break the model's rules get 0xA900 with an Error Comment naming
the key, and the association carries on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.multival import MultiValue

from ..archive.index import KEYWORD_LEVEL, MODEL_LEVELS, UNIQUE_KEYS, ArchiveIndex, Level, Model
from ..archive.matching import Query, QueryError, compile_query
from ..archive.response import CHARSET_UTF8, ResponseEncoder
from ..dimse import status as st
from ..dimse.messages import CFindRQ
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..uids import (
    PATIENT_ROOT_FIND,
    PATIENT_STUDY_ONLY_FIND,
    STUDY_ROOT_FIND,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)

FIND_MODELS: dict[str, Model] = {
    PATIENT_ROOT_FIND: Model.PATIENT_ROOT,
    STUDY_ROOT_FIND: Model.STUDY_ROOT,
    PATIENT_STUDY_ONLY_FIND: Model.PATIENT_STUDY_ONLY,
}
# Keys that belong to no level (PS3.4 C.4.1.1.3.1, C.6.1.1.1): accepted at any query level.
ANY_LEVEL_KEYWORDS = frozenset({
    "QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "TimezoneOffsetFromUTC",
    "InstanceAvailability", "QueryRetrieveView", "StorageMediaFileSetID", "StorageMediaFileSetUID",
})
_LEVEL_ORDER = {Level.PATIENT: 0, Level.STUDY: 1, Level.SERIES: 2, Level.IMAGE: 3}


class IdentifierError(Exception):
    """The identifier does not fit the information model (PS3.4 C.4.1.1.4: 0xA900)."""

    def __init__(self, comment: str, offending: tuple[int, ...] = (), status: int = st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS):
        super().__init__(comment)
        self.status, self.offending = status, offending

    def result(self) -> Result:
        fields = {"offending_elements": self.offending} if self.offending else {}
        return Result(status=self.status, error_comment=str(self), fields=fields)


@dataclass(frozen=True, slots=True)
class FindOptions:
    """What SOP class extended negotiation granted (PS3.4 C.5.1.1, Table C.5-1)."""

    relational: bool = False
    combined_datetime: bool = False
    fuzzy_pn: bool = False
    timezone_adjust: bool = False

    @classmethod
    def from_bytes(cls, info: bytes | None) -> FindOptions:
        flags = [bool(b) for b in (info or b"")[:4]] + [False] * 4
        return cls(*flags[:4])


def answer_find_negotiation(info: bytes) -> bytes:
    """We support all four options: accept whatever was proposed, byte for byte (0 or 1 each)."""
    return bytes(1 if b == 1 else 0 for b in info[:4])


def model_level(keyword: str, model: Model) -> Level | None:
    """The level of an attribute in a model: in Study Root the patient's attributes are study keys."""
    level = KEYWORD_LEVEL.get(keyword)
    if level is Level.PATIENT and model is Model.STUDY_ROOT:
        return Level.STUDY
    return level


def check_identifier(identifier: Dataset, model: Model, *, relational: bool) -> Level:
    """The query level, after the checks of PS3.4 C.4.1.2.2 (hierarchical) or C.4.1.2.3 (relational)."""
    raw = identifier.get("QueryRetrieveLevel")
    if not raw:
        raise IdentifierError("Query/Retrieve Level (0008,0052) is missing", (0x00080052,))
    try:
        level = Level(str(raw).strip().upper())
    except ValueError:
        raise IdentifierError(f"unknown Query/Retrieve Level {raw!r}", (0x00080052,)) from None
    levels = MODEL_LEVELS[model]
    if level not in levels:
        raise IdentifierError(f"level {level} does not exist in this information model", (0x00080052,))
    for elem in identifier:
        keyword = keyword_for_tag(elem.tag)
        if not keyword or keyword in ANY_LEVEL_KEYWORDS:
            continue
        key_level = model_level(keyword, model)
        if key_level is not None and _LEVEL_ORDER[key_level] > _LEVEL_ORDER[level]:
            raise IdentifierError(f"{keyword} is a {key_level} key, below the {level} query level", (elem.tag,))
    if not relational:
        # hierarchical search: a single unique key for each level above the query level
        for upper in levels[: levels.index(level)]:
            unique = UNIQUE_KEYS[upper]
            value = identifier.get(unique)
            if not isinstance(value, str):  # None, or a list of UIDs (pydicom's MultiValue)
                value = None
            if value in (None, "") or "*" in value or "?" in value or "\\" in value:
                raise IdentifierError(f"{unique} (unique key of the {upper} level) needs one value", (tag_for_keyword(unique) or 0,))
    return level


class FindService:
    def __init__(self, index: ArchiveIndex, *, case_insensitive_pn: bool = False,
                 timezone: str | None = None) -> None:
        self.index = index
        self.case_insensitive_pn = case_insensitive_pn
        self.timezone = timezone  # our UTC offset ("+0100") for timezone query adjustment

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support(list(FIND_MODELS), UNCOMPRESSED_TRANSFER_SYNTAXES)
        for uid in FIND_MODELS:
            dispatcher.extended[uid] = answer_find_negotiation
        dispatcher.add(CFindRQ, self.find)

    async def find(self, req: ServiceRequest) -> AsyncIterator[Result]:
        model = FIND_MODELS.get(req.message.affected_sop_class_uid)
        if model is None:
            yield Result(status=st.SOP_CLASS_NOT_SUPPORTED, error_comment="not a Q/R FIND SOP class")
            return
        identifier = req.dataset()
        if identifier is None:
            yield Result(status=st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, error_comment="C-FIND-RQ without identifier")
            return
        options = FindOptions.from_bytes(req.assoc.negotiated.extended.get(req.message.affected_sop_class_uid))
        try:
            level = check_identifier(identifier, model, relational=options.relational)
            query = compile_query(identifier, case_insensitive_pn=self.case_insensitive_pn or options.fuzzy_pn,
                                  fuzzy_pn=options.fuzzy_pn, combined_datetime=options.combined_datetime,
                                  timezone_adjust=self.timezone if options.timezone_adjust else None)
        except IdentifierError as exc:
            req.assoc.log.warning("C-FIND refused", status=f"0x{exc.status:04X}", reason=str(exc))
            yield exc.result()
            return
        except QueryError as exc:
            req.assoc.log.warning("C-FIND refused", status="0xA900", reason=str(exc))
            yield Result(status=st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, error_comment=str(exc))
            return
        pending = st.PENDING_WARNING if self._unsupported_matching(identifier, level) else st.PENDING
        extras = _extras(identifier, req.assoc.called_ae)
        # Each row is encoded straight into the context's transfer syntax: no Dataset, no pydicom writer.
        encoder = ResponseEncoder.for_query(query, req.transfer_syntax, level=str(level), extras=extras)
        async for row in self.index.query(level, query, model=model):
            data = None if encoder is None else encoder.encode(row)
            if data is None:  # a row the encoder leaves to pydicom (sequence items, unusual values)
                data = dataset_response(query, row, str(level), extras)
            yield Result(status=pending, dataset=data)

    def _unsupported_matching(self, identifier: Dataset, level: Level) -> bool:
        """FF01: an optional key with a value we cannot match on (PS3.4 C.4.1.1.4)."""
        supported = self.index.supported_keys(level)
        for elem in identifier:
            keyword = keyword_for_tag(elem.tag)
            if keyword in ANY_LEVEL_KEYWORDS or elem.VR == "SQ":
                continue
            if elem.value not in (None, "", b"") and keyword not in supported:
                return True
        return False


def _extras(identifier: Dataset, our_ae: str) -> Mapping[str, str]:
    extras = {}
    if "RetrieveAETitle" in identifier:
        extras["RetrieveAETitle"] = our_ae
    if "InstanceAvailability" in identifier:
        extras["InstanceAvailability"] = "ONLINE"
    return extras


def dataset_response(query: Query, row: Mapping, level: str, extras: Mapping[str, str]) -> Dataset:
    """The response to a row as a Dataset: what ResponseEncoder encodes directly, byte for byte."""
    response = query.response(row)
    response.QueryRetrieveLevel = level
    for keyword, value in extras.items():
        setattr(response, keyword, value)
    _charset(response)
    return response


def _charset(ds: Dataset) -> None:
    """Responses carry Specific Character Set when a value needs more than ASCII (PS3.4 C.4.1.1.3.2),
    one of several values too (pydicom holds those in a MultiValue)."""
    for elem in ds:
        value = elem.value
        if any(isinstance(v, str) and not v.isascii() or elem.VR == "PN" and v and not str(v).isascii()
               for v in (value if isinstance(value, MultiValue) else (value,))):
            ds.SpecificCharacterSet = CHARSET_UTF8
            return


def install(dispatcher: Dispatcher, index: ArchiveIndex, **kwargs) -> FindService:
    service = FindService(index, **kwargs)
    service.install(dispatcher)
    return service
