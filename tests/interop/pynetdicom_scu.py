"""A pynetdicom SCU for interop tests, run as its own process (pynetdicom's threads stay out of pytest).

    python pynetdicom_scu.py echo  HOST PORT [--aet A] [--aec B] [--repeat N] [TLS]
    python pynetdicom_scu.py store HOST PORT FILE... [--aet A] [--aec B] [--status-log PATH] [TLS]
    TLS: [--tls-ca F] [--tls-cert F --tls-key F]   (TLS is used when any of them is given)

`store` opens one association proposing each file's SOP class in the file's own transfer syntax and sends each
file's data set exactly as it is in the file (pynetdicom's chunked sending: no decoding, no re-encoding). After
each response it prints `<SOP Instance UID> 0x<status>` on stdout and, flushed line by line, to --status-log, so a
test that kills the server mid-way still knows which instances were acknowledged.

Exit codes mirror `aiodicom`: 0 all Success, 1 some other status, 3 association rejected/aborted/failed.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from pathlib import Path
from typing import TextIO

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

_config.STORE_SEND_CHUNKED_DATASET = True   # send the file's encoded data set as is
MAX_CONTEXTS = 128                          # PS3.8 §9.3.2.2: presentation context IDs are odd numbers 1..255


def client_tls(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def associate(args: argparse.Namespace, ae: AE):
    tls_args = None
    if args.tls_ca or args.tls_cert:
        tls_args = (client_tls(args.tls_ca, args.tls_cert, args.tls_key), args.host)
    assoc = ae.associate(args.host, args.port, ae_title=args.aec, tls_args=tls_args)
    if not assoc.is_established:
        what = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        print(f"association {what}", file=sys.stderr, flush=True)
        return None
    return assoc


def echo(args: argparse.Namespace) -> int:
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    assoc = associate(args, ae)
    if assoc is None:
        return 3
    try:
        for _ in range(args.repeat):
            status = assoc.send_c_echo()
            if "Status" not in status:
                print("no C-ECHO response", file=sys.stderr, flush=True)
                return 3
            print(f"echo 0x{status.Status:04X}", flush=True)
            if status.Status != 0:
                return 1
    finally:
        assoc.release()
    return 0


def store(args: argparse.Namespace, log: TextIO | None) -> int:
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    metas = [(path, read_file_meta_info(path)) for path in args.files]
    contexts = sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for _, m in metas})
    if len(contexts) > MAX_CONTEXTS:
        print(f"{len(contexts)} presentation contexts needed, at most {MAX_CONTEXTS}", file=sys.stderr)
        return 2
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    assoc = associate(args, ae)
    if assoc is None:
        return 3
    worst = 0
    try:
        for message_id, (path, meta) in enumerate(metas, start=1):
            status = assoc.send_c_store(path, msg_id=message_id % 0x10000)
            if "Status" not in status:                  # aborted, timed out or an invalid response
                print(f"{meta.MediaStorageSOPInstanceUID} no response", file=sys.stderr, flush=True)
                return 3
            line = f"{meta.MediaStorageSOPInstanceUID} 0x{status.Status:04X}"
            print(line, flush=True)
            if log is not None:
                log.write(line + "\n")
                log.flush()
            if status.Status != 0:
                worst = 1
    finally:
        if assoc.is_established:
            assoc.release()
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("verb", choices=("echo", "store"))
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--aet", default="PYNETDICOM")
    p.add_argument("--aec", default="ANY-SCP")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--status-log", type=Path)
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if args.verb == "echo":
        return echo(args)
    if not args.files:
        p.error("store needs at least one file")
    if args.status_log is None:
        return store(args, None)
    with open(args.status_log, "a", encoding="ascii") as log:
        return store(args, log)


if __name__ == "__main__":
    sys.exit(main())
