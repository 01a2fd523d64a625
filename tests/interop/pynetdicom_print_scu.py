"""pynetdicom as a Print Management SCU (PS3.4 Annex H) for interop tests, run as its own process.

    python pynetdicom_print_scu.py HOST PORT [--aet A] [--aec B] [--color]

One association proposing the Basic Grayscale (or Color) Print Management Meta SOP Class and the Print Job
SOP Class runs a fixed script, bad requests included, and prints one JSON object on stdout: every step's
status (and UIDs), the print job's final Execution Status and the N-EVENT-REPORTs received. The test patterns
are 64 × 64: pattern(level) has its top-left quadrant white, bottom-right `level`, the rest black.

Exit codes: 0 the script ran (statuses are for the test to judge), 3 association rejected/aborted/failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    BasicColorImageBox,
    BasicColorPrintManagementMeta,
    BasicFilmBox,
    BasicFilmSession,
    BasicGrayscaleImageBox,
    BasicGrayscalePrintManagementMeta,
    Printer,
    PrinterInstance,
    PrintJob,
)

N = 64


def pattern(level: int, color: bool) -> bytes:
    rows = []
    for y in range(N):
        row = bytearray()
        for x in range(N):
            top, left = y < N // 2, x < N // 2
            value = 255 if (top and left) else level if not (top or left) else 0
            row += bytes([value] * (3 if color else 1))
        rows.append(bytes(row))
    return b"".join(rows)


def image_box(position: int, level: int, color: bool, *, pixel_bytes: int | None = None) -> Dataset:
    item = Dataset()
    item.SamplesPerPixel = 3 if color else 1
    item.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        item.PlanarConfiguration = 0
    item.Rows = item.Columns = N
    item.PixelAspectRatio = [1, 1]
    item.BitsAllocated, item.BitsStored, item.HighBit, item.PixelRepresentation = 8, 8, 7, 0
    data = pattern(level, color)
    item.PixelData = data if pixel_bytes is None else data[:pixel_bytes]
    ds = Dataset()
    ds.ImageBoxPosition = position
    setattr(ds, "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence", [item])
    return ds


def status_of(rsp: Dataset) -> int | None:
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--aet", default="PYNETDICOM")
    p.add_argument("--aec", default="AIODICOM")
    p.add_argument("--color", action="store_true")
    args = p.parse_args()
    meta = BasicColorPrintManagementMeta if args.color else BasicGrayscalePrintManagementMeta
    image_box_class = BasicColorImageBox if args.color else BasicGrayscaleImageBox

    events: list[dict] = []
    done = threading.Event()

    def on_event(event):  # PS3.4 H.4.5.2.1, H.4.6.2.1: the SCU confirms every report
        info = event.event_information
        events.append({"sop_class": str(event.request.AffectedSOPClassUID), "event_type": event.event_type,
                       "info": str(info.get("ExecutionStatusInfo", info.get("PrinterStatusInfo", "")))})
        if str(event.request.AffectedSOPClassUID) == PrintJob and event.event_type in (3, 4):
            done.set()
        return 0x0000, None

    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(meta)
    ae.add_requested_context(PrintJob)
    assoc = ae.associate(args.host, args.port, ae_title=args.aec, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event)])
    if not assoc.is_established:
        print("association failed", file=sys.stderr, flush=True)
        return 3
    out: dict = {}
    try:
        rsp, attrs = assoc.send_n_get([0x21100010, 0x21100020], Printer, PrinterInstance, meta_uid=meta)
        out["printer"] = {"status": status_of(rsp), "printer_status": str(attrs.PrinterStatus) if attrs else None}

        box = Dataset()
        box.ImageDisplayFormat = "STANDARD\\2,1"
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = BasicFilmSession, "1.2.826.0.1.3680043.2.1143.9"
        box.ReferencedFilmSessionSequence = [ref]
        rsp, _ = assoc.send_n_create(box, BasicFilmBox, generate_uid(), meta_uid=meta)
        out["film_box_before_session"] = status_of(rsp)

        session = Dataset()
        session.NumberOfCopies = 1
        session.FilmSessionLabel = "pynetdicom"
        # pynetdicom does not hand back the Affected SOP Instance UID an SCP assigns: it proposes its own
        session_uid = generate_uid()
        rsp, attrs = assoc.send_n_create(session, BasicFilmSession, session_uid, meta_uid=meta)
        out["film_session"] = {"status": status_of(rsp), "uid": session_uid,
                               "copies": int(attrs.NumberOfCopies) if attrs is not None else None}
        ref.ReferencedSOPInstanceUID = session_uid

        box.ImageDisplayFormat = "SLIDE"
        rsp, _ = assoc.send_n_create(box, BasicFilmBox, generate_uid(), meta_uid=meta)
        out["unsupported_format"] = status_of(rsp)

        box.ImageDisplayFormat = "STANDARD\\2,1"
        box.FilmSizeID = "8INX10IN"
        box.FilmOrientation = "LANDSCAPE"
        film_box_uid = generate_uid()
        rsp, attrs = assoc.send_n_create(box, BasicFilmBox, film_box_uid, meta_uid=meta)
        boxes = [str(i.ReferencedSOPInstanceUID) for i in attrs.ReferencedImageBoxSequence]
        out["film_box"] = {"status": status_of(rsp), "uid": film_box_uid, "image_boxes": len(boxes),
                           "image_box_class": str(attrs.ReferencedImageBoxSequence[0].ReferencedSOPClassUID)}

        rsp, _ = assoc.send_n_set(image_box(1, 100, args.color, pixel_bytes=100), image_box_class, boxes[0],
                                  meta_uid=meta)
        out["wrong_pixel_size"] = status_of(rsp)
        rsp, _ = assoc.send_n_set(image_box(3, 100, args.color), image_box_class, boxes[1], meta_uid=meta)
        out["position_out_of_range"] = status_of(rsp)
        rsp, _ = assoc.send_n_set(image_box(1, 100, args.color), image_box_class, "1.2.3.4.5.6", meta_uid=meta)
        out["no_such_image_box"] = status_of(rsp)
        out["image_boxes_set"] = []
        for position, level in ((1, 100), (2, 200)):
            rsp, _ = assoc.send_n_set(image_box(position, level, args.color), image_box_class, boxes[position - 1],
                                      meta_uid=meta)
            out["image_boxes_set"].append(status_of(rsp))

        rsp, reply = assoc.send_n_action(None, 1, BasicFilmBox, film_box_uid, meta_uid=meta)
        job_uid = str(reply[0x21000500].value[0].ReferencedSOPInstanceUID) if reply and 0x21000500 in reply else None
        out["print"] = {"status": status_of(rsp), "job": job_uid}
        if job_uid:
            done.wait(30)
            deadline = time.monotonic() + 30
            while True:  # the event may be lost or late: the Execution Status tells
                rsp, attrs = assoc.send_n_get([0x21000020, 0x21000030], PrintJob, job_uid)
                execution = str(attrs.ExecutionStatus) if attrs is not None and "ExecutionStatus" in attrs else None
                if execution in ("DONE", "FAILURE") or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            out["job"] = {"status": status_of(rsp), "execution_status": execution}
        out["delete_film_box"] = status_of(assoc.send_n_delete(BasicFilmBox, film_box_uid, meta_uid=meta))
        out["delete_film_session"] = status_of(assoc.send_n_delete(BasicFilmSession, session_uid, meta_uid=meta))
        out["events"] = events
    finally:
        assoc.release()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
