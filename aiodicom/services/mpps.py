"""Modality Performed Procedure Step SCP (PS3.4 F.7): N-CREATE and N-SET, state in the workflow database.

A modality creates the step IN PROGRESS (F.7.2.1), updates it while it is IN PROGRESS, and ends it
COMPLETED or DISCONTINUED (F.7.2.2), after which it is final: a later N-SET gets 0x0110 with the
Error Comment and Error ID of Table F.7.2-2. Every request is checked against the requirement types
of Table F.7.2-1 (the attribute rules of the MPPS IOD, PS3.3 A.16) and refused with the status PS3.7
names for the fault, and an Error Comment that says which attribute: 0x0120 a required attribute is
missing, 0x0121 a Type 1 one is empty, 0x0106 a value is wrong (e.g. a status other than IN PROGRESS
at creation), 0x0105 an attribute N-SET may not change, 0x0111 the instance exists, 0x0112 it does
not. The read-check-write of an N-SET is one database transaction, so concurrent N-SETs serialise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.uid import generate_uid

from ..archive.uid import is_valid_uid
from ..archive.workflow_db import NoSuchInstance, WorkflowDb
from ..dimse import status as st
from ..dimse.messages import NCreateRQ, NSetRQ
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..uids import UNCOMPRESSED_TRANSFER_SYNTAXES
from .router import SopClassRouter

MPPS_SOP_CLASS: Final = "1.2.840.10008.3.1.2.3.3"
IN_PROGRESS: Final = "IN PROGRESS"
COMPLETED: Final = "COMPLETED"
DISCONTINUED: Final = "DISCONTINUED"
STATUSES: Final = frozenset({IN_PROGRESS, COMPLETED, DISCONTINUED})  # PS3.3 C.4.14 enumerated values
FINAL_ERROR_ID: Final = 0xA710  # Table F.7.2-2
FINAL_COMMENT: Final = "Performed Procedure Step Object may no longer be updated"

# Table F.7.2-1, N-CREATE column (SCU requirement): Type 1 present with a value, Type 2 present.
CREATE_TYPE1: Final = ("ScheduledStepAttributesSequence", "PerformedProcedureStepID", "PerformedStationAETitle",
                       "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                       "PerformedProcedureStepStatus", "Modality")
CREATE_TYPE2: Final = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferencedPatientSequence",
                       "PerformedStationName", "PerformedLocation", "PerformedProcedureStepDescription",
                       "PerformedProcedureTypeDescription", "ProcedureCodeSequence", "PerformedProcedureStepEndDate",
                       "PerformedProcedureStepEndTime", "StudyID", "PerformedProtocolCodeSequence",
                       "PerformedSeriesSequence")
STEP_TYPE1: Final = ("StudyInstanceUID",)  # items of the Scheduled Step Attributes Sequence
STEP_TYPE2: Final = ("ReferencedStudySequence", "AccessionNumber", "RequestedProcedureID",
                     "RequestedProcedureDescription", "ScheduledProcedureStepID",
                     "ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence")
SERIES_TYPE1: Final = ("ProtocolName", "SeriesInstanceUID")  # items of the Performed Series Sequence
SERIES_TYPE2: Final = ("PerformingPhysicianName", "OperatorsName", "SeriesDescription", "RetrieveAETitle",
                       "ReferencedImageSequence")
REFERENCE_TYPE1: Final = ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID")  # image/non-image references
# Table F.7.2-1, N-SET column "Not allowed": what identifies the patient, the scheduled step and the
# performing device, and when the step started, is fixed at creation.
NOT_SETTABLE: Final = frozenset(int(tag_for_keyword(k) or 0) for k in (
    "SOPClassUID", "SOPInstanceUID", "ScheduledStepAttributesSequence", "PatientName", "PatientID",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence", "PatientBirthDate",
    "PatientSex", "ReferencedPatientSequence", "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID",
    "IssuerOfServiceEpisodeIDSequence", "ServiceEpisodeDescription", "PerformedProcedureStepID",
    "PerformedStationAETitle", "PerformedStationName", "PerformedLocation", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "Modality", "StudyID",
))
_UID_KEYWORDS: Final = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "ReferencedSOPClassUID",
                                  "ReferencedSOPInstanceUID"})


class Refusal(Exception):
    """A request refused with a PS3.7 status; becomes the N-CREATE/N-SET response."""

    def __init__(self, status: int, comment: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(comment)
        self.status, self.comment, self.fields = status, comment, dict(fields or {})

    def result(self) -> Result:
        return Result(status=self.status, error_comment=self.comment, fields=self.fields)


def _tags(keywords: Iterable[str]) -> tuple[int, ...]:
    return tuple(int(tag_for_keyword(k.rpartition(">")[2]) or 0) for k in keywords)


def _empty(ds: Dataset, keyword: str) -> bool:
    value = ds[keyword].value
    return value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0)


def _check_present(ds: Dataset, type1: Iterable[str], type2: Iterable[str], where: str,
                   missing: list[str], empty: list[str], *, strict: bool) -> None:
    for keyword in type1:
        if keyword not in ds:
            missing.append(where + keyword)
        elif _empty(ds, keyword):
            empty.append(where + keyword)
    if strict:
        missing.extend(where + k for k in type2 if k not in ds)


def _check_series(ds: Dataset, missing: list[str], empty: list[str], *, strict: bool) -> None:
    """Performed Series Sequence items: Table F.7.2-1 applies inside each item, in N-CREATE and N-SET."""
    for n, series in enumerate(ds.get("PerformedSeriesSequence") or (), 1):
        where = f"PerformedSeriesSequence[{n}]>"
        _check_present(series, SERIES_TYPE1, SERIES_TYPE2, where, missing, empty, strict=strict)
        for seq in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"):
            for m, ref in enumerate(series.get(seq) or (), 1):
                _check_present(ref, REFERENCE_TYPE1, (), f"{where}{seq}[{m}]>", missing, empty, strict=strict)


def _raise_missing(missing: list[str], empty: list[str]) -> None:
    if missing:
        raise Refusal(st.MISSING_ATTRIBUTE, "missing " + ", ".join(missing),
                      {"attribute_identifier_list": _tags(missing)})
    if empty:
        raise Refusal(st.MISSING_ATTRIBUTE_VALUE, "no value for Type 1 " + ", ".join(empty),
                      {"attribute_identifier_list": _tags(empty)})


def _check_uids(ds: Dataset) -> None:
    """UIDs we keep and hand on (worklist updates, N-GET) must be UIDs (PS3.5 §9.1)."""
    for elem in ds.iterall():
        if elem.keyword in _UID_KEYWORDS and elem.value not in (None, ""):
            values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
            for v in values:
                if not is_valid_uid(str(v)):
                    raise Refusal(st.INVALID_ATTRIBUTE_VALUE, f"{elem.keyword} {str(v)[:40]!r} is not a UID",
                                  {"offending_elements": (int(elem.tag),)})


def _check_status(ds: Dataset, allowed: frozenset[str]) -> str | None:
    if "PerformedProcedureStepStatus" not in ds:
        return None
    value = str(ds.PerformedProcedureStepStatus or "").strip()
    if not value:
        raise Refusal(st.MISSING_ATTRIBUTE_VALUE, "Performed Procedure Step Status (0040,0252) is empty",
                      {"attribute_identifier_list": (0x00400252,)})
    if value not in allowed:
        expected = " or ".join(sorted(allowed))
        raise Refusal(st.INVALID_ATTRIBUTE_VALUE,
                      f"Performed Procedure Step Status {value[:16]!r}: must be {expected}",
                      {"offending_elements": (0x00400252,)})
    return value


def check_create(ds: Dataset, *, strict: bool = True) -> None:
    """Table F.7.2-1 (N-CREATE) and F.7.2.1.3 (the status must be IN PROGRESS, else 0x0106)."""
    missing: list[str] = []
    empty: list[str] = []
    _check_present(ds, CREATE_TYPE1, CREATE_TYPE2, "", missing, empty, strict=strict)
    for n, step in enumerate(ds.get("ScheduledStepAttributesSequence") or (), 1):
        _check_present(step, STEP_TYPE1, STEP_TYPE2, f"ScheduledStepAttributesSequence[{n}]>", missing, empty,
                       strict=strict)
    _check_series(ds, missing, empty, strict=strict)
    _raise_missing(missing, empty)
    _check_status(ds, frozenset({IN_PROGRESS}))
    _check_uids(ds)


def check_set(modifications: Dataset, *, strict: bool = True) -> None:
    """Table F.7.2-1 (N-SET): only the attributes it allows, a valid status, complete series items."""
    refused = [t for t in modifications.keys() if int(t) in NOT_SETTABLE]  # noqa: SIM118 - no element parsed
    if refused:
        names = ", ".join(keyword_for_tag(t) or f"{int(t):08X}" for t in refused)
        raise Refusal(st.NO_SUCH_ATTRIBUTE, f"N-SET may not change {names} (PS3.4 Table F.7.2-1)",
                      {"attribute_identifier_list": tuple(int(t) for t in refused)})
    missing: list[str] = []
    empty: list[str] = []
    _check_series(modifications, missing, empty, strict=strict)
    _raise_missing(missing, empty)
    _check_status(modifications, STATUSES)
    _check_uids(modifications)


def _decoded(ds: Dataset) -> Dataset:
    for _ in ds.iterall():  # every value decoded with its own character set before data sets are mixed
        pass
    return ds


def _with_charset(ds: Dataset) -> Dataset:
    """PS3.4 F.7.2.2.3: values set later may use another character set; everything is kept decoded and
    re-encoded in one that holds them all: UTF-8 when any value needs more than ASCII, else the default."""
    if any(e.VR != "SQ" and e.value is not None and not str(e.value).isascii() for e in ds.iterall()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    return ds


def merge(current: Dataset, modifications: Dataset) -> Dataset:
    """PS3.7 §10.1.3: each attribute of the Modification List replaces the stored one (a sequence as a
    whole; a zero-length value empties it)."""
    merged = Dataset()
    for elem in _decoded(current):
        merged.add(elem)
    for elem in _decoded(modifications):
        if elem.tag != 0x00080005:
            merged.add(elem)
    return _with_charset(merged)


class MppsService:
    """The MPPS SCP over a WorkflowDb. `strict`: refuse a missing Type 2 attribute (0x0120), as
    Table F.7.2-1 requires; off, only Type 1 attributes are enforced (for lax modalities)."""

    def __init__(self, db: WorkflowDb, *, strict: bool = True) -> None:
        self.db = db
        self.strict = strict

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support([MPPS_SOP_CLASS], UNCOMPRESSED_TRANSFER_SYNTAXES)
        router = SopClassRouter.for_dispatcher(dispatcher)
        router.add(NCreateRQ, MPPS_SOP_CLASS, self.create)
        router.add(NSetRQ, MPPS_SOP_CLASS, self.set)

    async def create(self, req: ServiceRequest) -> Result:
        requested = cast(NCreateRQ, req.message).affected_sop_instance_uid
        try:
            if requested and not is_valid_uid(requested):
                raise Refusal(st.INVALID_OBJECT_INSTANCE, f"Affected SOP Instance UID {requested[:40]!r} is not a UID")
            ds = req.dataset()
            if ds is None:
                raise Refusal(st.MISSING_ATTRIBUTE, "N-CREATE-RQ without an attribute list")
            check_create(ds, strict=self.strict)
        except Refusal as refusal:
            req.assoc.log.info("MPPS N-CREATE refused", status=f"0x{refusal.status:04X}", reason=refusal.comment)
            return refusal.result()
        uid = requested or generate_uid(prefix=None)  # PS3.7 §10.1.5.1.2: without one, the SCP assigns it
        ds = _with_charset(_decoded(ds))
        ds.SOPClassUID, ds.SOPInstanceUID = MPPS_SOP_CLASS, uid
        if not await self.db.create_mpps(uid, ds, calling_ae=req.assoc.calling_ae):
            return Result(status=st.DUPLICATE_SOP_INSTANCE, error_comment="an MPPS with this SOP Instance UID exists")
        req.assoc.log.info("MPPS created", sop_instance=uid, step=str(ds.get("PerformedProcedureStepID", "")))
        return Result(fields={} if requested else {"affected_sop_instance_uid": uid})

    async def set(self, req: ServiceRequest) -> Result:
        uid = cast(NSetRQ, req.message).requested_sop_instance_uid
        try:
            if not is_valid_uid(uid):
                raise Refusal(st.NO_SUCH_OBJECT_INSTANCE, f"Requested SOP Instance UID {uid[:40]!r} is not a UID")
            modifications = req.dataset()
            if modifications is None:
                raise Refusal(st.PROCESSING_FAILURE, "N-SET-RQ without a modification list")
            check_set(modifications, strict=self.strict)
            record = await self.db.update_mpps(uid, lambda current: _apply(current.dataset, modifications))
        except NoSuchInstance:
            return Result(status=st.NO_SUCH_OBJECT_INSTANCE, error_comment="no MPPS with this SOP Instance UID")
        except Refusal as refusal:
            req.assoc.log.info("MPPS N-SET refused", sop_instance=uid, status=f"0x{refusal.status:04X}",
                               reason=refusal.comment)
            return refusal.result()
        req.assoc.log.info("MPPS updated", sop_instance=uid, status=record.status)
        return Result()


def _apply(current: Dataset, modifications: Dataset) -> Dataset:
    """Runs inside the database transaction, so the state it checks is the state it replaces."""
    state = str(current.get("PerformedProcedureStepStatus", "")).strip()
    if state != IN_PROGRESS:  # F.7.2.2.3: COMPLETED and DISCONTINUED are final
        raise Refusal(st.PROCESSING_FAILURE, FINAL_COMMENT, {"error_id": FINAL_ERROR_ID})
    return merge(current, modifications)


def install(dispatcher: Dispatcher, db: WorkflowDb, **kwargs: Any) -> MppsService:
    service = MppsService(db, **kwargs)
    service.install(dispatcher)
    return service
