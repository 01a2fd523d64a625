"""A pynetdicom Storage SCP for interop tests, run as its own process (pynetdicom's threads stay out of pytest).

Accepts Verification and every storage SOP class pynetdicom knows, each with every transfer syntax it knows, and
writes each received data set as a PS3.10 file `OUT/<SOP Instance UID>.dcm` whose data set is byte for byte what
came over the wire (pynetdicom's `encoded_dataset()`: nothing is decoded or re-encoded). Files appear atomically
(write to a dot-file, then rename), so a test never reads a half-written one.

    python pynetdicom_scp.py --port P --out DIR [--aet AET] [--require-called-aet] [--store-status HEX]
                             [--tls-cert F --tls-key F [--tls-ca F]]

--store-status answers every C-STORE with that status and stores nothing (to see how a sender reports failures).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import ssl
import sys
from pathlib import Path

from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

# PS3.5 §9.1: a UID is digits and dots; anything else must not become part of a file name.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def handle_store(event: Event, out: Path, forced_status: int | None) -> int:
    if forced_status is not None:
        return forced_status
    uid = str(event.request.AffectedSOPInstanceUID)
    if not _UID.match(uid) or len(uid) > 64:
        return 0x0117                                   # PS3.7 Annex C: invalid SOP instance
    data = event.encoded_dataset(include_meta=True)
    tmp = out / f".{uid}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / f"{uid}.dcm")
    print(f"stored {uid} {event.context.transfer_syntax}", flush=True)
    return 0x0000


def server_tls(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED               # a client must show a certificate this CA signed
    return ctx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aet", default="PYNETDICOM")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--require-called-aet", action="store_true",
                   help="reject associations whose called AE is not --aet (PS3.8 RJ reason 7)")
    p.add_argument("--store-status", type=lambda v: int(v, 16))
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)

    args.out.mkdir(parents=True, exist_ok=True)
    ae = AE(ae_title=args.aet)
    ae.require_called_aet = args.require_called_aet
    ae.maximum_associations = 50
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    tls = server_tls(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    print(f"listening on {args.host}:{args.port} as {args.aet}", flush=True)
    ae.start_server(
        (args.host, args.port), block=True, ssl_context=tls,
        evt_handlers=[(evt.EVT_C_STORE, handle_store, [args.out, args.store_status])],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
