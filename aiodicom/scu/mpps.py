"""Modality Performed Procedure Step as an SCU (PS3.4 F.7.2): create IN PROGRESS, update, end it.

    async with aiodicom.connect(host, port, contexts=[MPPS_SOP_CLASS]) as assoc:
        mpps = MppsScu(assoc)
        uid = await mpps.create(in_progress(scheduled=worklist_item, station_aet="CT1", modality="CT"))
        await mpps.complete(uid, performed_series=series_from_files(paths, retrieve_ae="PACS"))

`in_progress()` builds an N-CREATE attribute list that holds every Type 1 and Type 2 attribute of
Table F.7.2-1, taking the patient and the scheduled step from a worklist item when there is one (an
unscheduled step otherwise, with a new Study Instance UID). A refused request raises MppsFailed with
the SCP's status and Error Comment.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import pydicom
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from ..net.client import Client, Status
from ..services.commitment import InstanceRef
from ..services.mpps import COMPLETED, DISCONTINUED, IN_PROGRESS, MPPS_SOP_CLASS

_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_REQUESTED = ("AccessionNumber", "RequestedProcedureID", "RequestedProcedureDescription")
_STEP = ("ScheduledProcedureStepID", "ScheduledProcedureStepDescription")


class MppsFailed(Exception):
    def __init__(self, operation: str, status: Status) -> None:
        super().__init__(f"MPPS {operation} failed: {status}")
        self.status = status


def _copy(target: Dataset, source: Dataset | None, keywords: Iterable[str]) -> None:
    for keyword in keywords:
        value = source.get(keyword) if source is not None else None
        setattr(target, keyword, value if value is not None else "")


def _sequence(source: Dataset | None, keyword: str) -> DicomSequence:
    items = source.get(keyword) if source is not None else None
    return DicomSequence([Dataset(item) for item in items or ()])


def _date_time(moment: datetime) -> tuple[str, str]:
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")


def in_progress(*, station_aet: str, modality: str, scheduled: Dataset | None = None,
                patient: Dataset | None = None, pps_id: str | None = None, start: datetime | None = None,
                description: str = "", station_name: str = "", location: str = "",
                study_uid: str | None = None) -> Dataset:
    """The N-CREATE attribute list (Table F.7.2-1) of a step starting now (or at `start`).

    scheduled: the worklist item performed (its patient and Scheduled Procedure Step are referenced);
    without it the step is unscheduled and `patient` (if any) names the patient."""
    ds = Dataset()
    if scheduled is not None and "SpecificCharacterSet" in scheduled:
        ds.SpecificCharacterSet = scheduled.SpecificCharacterSet
    ref = Dataset()  # Scheduled Step Attributes Sequence item (PS3.3 C.4.13)
    ref.StudyInstanceUID = study_uid or (scheduled.get("StudyInstanceUID") if scheduled is not None else None) \
        or generate_uid(prefix=None)
    ref.ReferencedStudySequence = _sequence(scheduled, "ReferencedStudySequence")
    _copy(ref, scheduled, _REQUESTED)
    step = (scheduled.get("ScheduledProcedureStepSequence") or [None])[0] if scheduled is not None else None
    _copy(ref, step, _STEP)
    ref.ScheduledProtocolCodeSequence = _sequence(step, "ScheduledProtocolCodeSequence")
    ds.ScheduledStepAttributesSequence = DicomSequence([ref])
    _copy(ds, scheduled if scheduled is not None else patient, _PATIENT)
    ds.ReferencedPatientSequence = DicomSequence()
    ds.PerformedProcedureStepID = pps_id or datetime.now().strftime("PPS%y%m%d%H%M%S")[:16]
    ds.PerformedStationAETitle = station_aet
    ds.PerformedStationName = station_name
    ds.PerformedLocation = location
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = _date_time(start or datetime.now())
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    ds.PerformedProcedureStepDescription = description or (step.get("ScheduledProcedureStepDescription", "")
                                                           if step is not None else "")
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = _sequence(scheduled, "RequestedProcedureCodeSequence")
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = modality
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = DicomSequence()
    ds.PerformedSeriesSequence = DicomSequence()
    return ds


def performed_series(series_uid: str, instances: Iterable[InstanceRef], *, protocol_name: str,
                     retrieve_ae: str = "", description: str = "", operators: str = "",
                     performing_physician: str = "") -> Dataset:
    """One Performed Series Sequence item (Table F.7.2-1) referencing the instances made."""
    item = Dataset()
    item.PerformingPhysicianName = performing_physician
    item.ProtocolName = protocol_name
    item.OperatorsName = operators
    item.SeriesInstanceUID = series_uid
    item.SeriesDescription = description
    item.RetrieveAETitle = retrieve_ae
    refs = []
    for inst in instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = inst.sop_class_uid
        ref.ReferencedSOPInstanceUID = inst.sop_instance_uid
        refs.append(ref)
    item.ReferencedImageSequence = DicomSequence(refs)
    item.ReferencedNonImageCompositeSOPInstanceSequence = DicomSequence()
    return item


def series_from_files(paths: Iterable[str | os.PathLike[str]], *, retrieve_ae: str = "") -> list[Dataset]:
    """Performed Series Sequence items for PS3.10 files, grouped by series (headers read, no pixels)."""
    series: dict[str, list[InstanceRef]] = defaultdict(list)
    names: dict[str, tuple[str, str]] = {}
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
        series[uid].append(InstanceRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
        names.setdefault(uid, (str(ds.get("ProtocolName") or ds.get("SeriesDescription") or "UNKNOWN"),
                               str(ds.get("SeriesDescription") or "")))
    return [performed_series(uid, refs, protocol_name=names[uid][0], description=names[uid][1],
                             retrieve_ae=retrieve_ae) for uid, refs in series.items()]


class MppsScu:
    """The MPPS operations of an SCU on an association that negotiated MPPS_SOP_CLASS."""

    def __init__(self, assoc: Client) -> None:
        self.assoc = assoc

    async def create(self, attributes: Dataset, *, instance_uid: str | None = None) -> str:
        """N-CREATE the step IN PROGRESS; return its SOP Instance UID (ours, or the one the SCP assigned)."""
        instance_uid = instance_uid or generate_uid(prefix=None)
        result = await self.assoc.n_create(MPPS_SOP_CLASS, attributes, instance_uid=instance_uid)
        if not result.ok:
            raise MppsFailed("N-CREATE", result.status)
        return result.sop_instance_uid or instance_uid

    async def update(self, instance_uid: str, modifications: Dataset) -> None:
        """N-SET attributes of a step still IN PROGRESS."""
        result = await self.assoc.n_set(MPPS_SOP_CLASS, instance_uid, modifications)
        if not result.ok:
            raise MppsFailed("N-SET", result.status)

    async def complete(self, instance_uid: str, *, performed_series: Iterable[Dataset] = (),
                       end: datetime | None = None, extra: Dataset | None = None) -> None:
        """End the step COMPLETED, with what it produced: it is final afterwards (F.7.2.2.3)."""
        await self.update(instance_uid, _final(COMPLETED, end, performed_series, extra))

    async def discontinue(self, instance_uid: str, *, reason: Dataset | None = None,
                          performed_series: Iterable[Dataset] = (), end: datetime | None = None,
                          extra: Dataset | None = None) -> None:
        """End the step DISCONTINUED; `reason` is a code item (CID 9300) for the Discontinuation Reason."""
        ds = _final(DISCONTINUED, end, performed_series, extra)
        if reason is not None:
            ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = DicomSequence([reason])
        await self.update(instance_uid, ds)


def _final(status: str, end: datetime | None, series: Iterable[Dataset], extra: Dataset | None) -> Dataset:
    ds = Dataset()
    if extra is not None:
        ds.update(extra)
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = _date_time(end or datetime.now())
    items = list(series)
    if items:  # none given: what an earlier N-SET sent stays (an N-SET replaces a sequence whole)
        ds.PerformedSeriesSequence = DicomSequence(items)
    return ds
