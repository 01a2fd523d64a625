"""pynetdicom as a Storage Commitment Push Model SCU or SCP, for interop tests, run as its own process.

    python pynetdicom_commitment.py scu HOST PORT CLASS:INSTANCE... [--aet A] [--aec B] [--listen-port P]
                                        [--release] [--wait S] [--transaction-uid UID] [--no-request]
        Sends the N-ACTION (prints {"action_status": ..., "comment": ...}), then waits for the report: on the same
        association (kept open unless --release) and, with --listen-port, on new associations (the SCP role is
        accepted for the requestor). Prints the report as one JSON line {"event_type", "transaction_uid",
        "committed": [[class, instance]...], "failed": [[class, instance, reason]...], "via": "same"|"new"}.
        --no-request only listens, for a report on --transaction-uid asked for earlier.
        Exit: 0 a report came, 1 none within --wait, 2 the N-ACTION failed, 3 no association.
    python pynetdicom_commitment.py scp --port P --have FILE.json [--aet A] [--mode same|new]
                                        [--requestor-port Q] [--delay S]
        Commits what FILE.json lists ([[class, instance]...]); reports on the requesting association (same) or on a
        new one to 127.0.0.1:Q with the SCP role proposed (new), --delay seconds after answering the N-ACTION.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel as COMMIT

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


def report_json(event, via: str) -> dict:
    info = event.event_information
    return {
        "event_type": int(event.event_type),
        "transaction_uid": str(info.get("TransactionUID", "")),
        "committed": [[str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)]
                      for i in info.get("ReferencedSOPSequence", [])],
        "failed": [[str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID), int(i.FailureReason)]
                   for i in info.get("FailedSOPSequence", [])],
        "via": via,
    }


def scu(args: argparse.Namespace) -> int:
    done = threading.Event()
    transaction_uid = args.transaction_uid or generate_uid()

    def on_report(via: str):
        def handler(event) -> tuple[int, None]:
            report = report_json(event, via)
            if report["transaction_uid"] == transaction_uid and not done.is_set():
                print(json.dumps(report), flush=True)
                done.set()
            return 0x0000, None
        return handler

    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(COMMIT)
    server = None
    if args.listen_port:
        ae.add_supported_context(COMMIT, scu_role=True, scp_role=True)
        server = ae.start_server(("127.0.0.1", args.listen_port), block=False,
                                 evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report("new"))])
        print(f"listening on {args.listen_port} as {args.aet}", flush=True)
    try:
        if not args.no_request:
            code = request(args, ae, transaction_uid, on_report("same"), done)
            if code:
                return code
        return 0 if done.wait(args.wait) else 1
    finally:
        if server is not None:
            server.shutdown()


def request(args: argparse.Namespace, ae: AE, transaction_uid: str, handler, done: threading.Event) -> int:
    # with --release this association takes no report: one sent on it before the release is refused
    handlers = [] if args.release else [(evt.EVT_N_EVENT_REPORT, handler)]
    assoc = ae.associate(args.host, args.port, ae_title=args.aec, evt_handlers=handlers)
    if not assoc.is_established:
        print("association failed", file=sys.stderr, flush=True)
        return 3
    info = Dataset()
    info.TransactionUID = transaction_uid
    refs = []
    for spec in args.refs:
        cls, _, uid = spec.partition(":")
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        refs.append(item)
    info.ReferencedSOPSequence = refs
    try:
        status, _ = assoc.send_n_action(info, 1, COMMIT, WELL_KNOWN)
        code = int(status.Status) if status and "Status" in status else -1
        print(json.dumps({"action_status": code, "comment": status.get("ErrorComment") if status else None,
                          "transaction_uid": transaction_uid}), flush=True)
        if code != 0:
            return 2
        if not args.release:
            done.wait(args.wait)
    finally:
        if assoc.is_established:
            assoc.release()
    return 0


def scp(args: argparse.Namespace) -> int:
    have = {tuple(x) for x in json.loads(Path(args.have).read_text())}
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_supported_context(COMMIT)
    ae.add_requested_context(COMMIT)

    def report(info: Dataset) -> tuple[int, Dataset]:
        out = Dataset()
        out.TransactionUID = info.TransactionUID
        committed, failed = [], []
        for ref in info.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = (ref.ReferencedSOPClassUID,
                                                                        ref.ReferencedSOPInstanceUID)
            if (str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID)) in have:
                committed.append(item)
            else:
                item.FailureReason = 0x0112
                failed.append(item)
        if committed:
            out.ReferencedSOPSequence = committed
        if failed:
            out.FailedSOPSequence = failed
        return (2 if failed else 1), out

    def send(event_assoc, requestor: str, info: Dataset) -> None:
        time.sleep(args.delay)  # the N-ACTION-RSP goes out first
        event_type, out = report(info)
        if args.mode == "same":
            assoc = event_assoc
        else:
            assoc = ae.associate("127.0.0.1", args.requestor_port, ae_title=requestor,
                                 ext_neg=[build_role(COMMIT, scp_role=True)])
        if not assoc.is_established:
            print("report association failed", flush=True)
            return
        status, _ = assoc.send_n_event_report(out, event_type, COMMIT, WELL_KNOWN)
        print(f"report {out.TransactionUID} event {event_type} via {args.mode}: "
              f"0x{int(status.Status) if status else -1:04X}", flush=True)
        if args.mode == "new":
            assoc.release()

    def on_action(event) -> tuple[int, None]:
        info = event.action_information
        print(f"request {info.TransactionUID} from {event.assoc.requestor.ae_title}", flush=True)
        threading.Thread(target=send, args=(event.assoc, event.assoc.requestor.ae_title, info), daemon=True).start()
        return 0x0000, None

    print(f"listening on {args.port} as {args.aet}", flush=True)
    ae.start_server(("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_N_ACTION, on_action)])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("scu")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("refs", nargs="*", metavar="CLASS:INSTANCE")
    s.add_argument("--aet", default="PYNETDICOM")
    s.add_argument("--aec", default="AIODICOM")
    s.add_argument("--listen-port", type=int)
    s.add_argument("--release", action="store_true")
    s.add_argument("--wait", type=float, default=30.0)
    s.add_argument("--transaction-uid")
    s.add_argument("--no-request", action="store_true")
    c = sub.add_parser("scp")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--aet", default="PYNETDICOM")
    c.add_argument("--have", required=True)
    c.add_argument("--mode", choices=["same", "new"], default="same")
    c.add_argument("--requestor-port", type=int)
    c.add_argument("--delay", type=float, default=0.2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    return scu(args) if args.role == "scu" else scp(args)


if __name__ == "__main__":
    sys.exit(main())
