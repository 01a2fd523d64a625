"""`aiodicom echo HOST PORT`: C-ECHO, like DCMTK's echoscu."""

from __future__ import annotations

import argparse

from ..net.client import connect
from .common import (
    EXIT_FAILURE_STATUS,
    EXIT_OK,
    add_client_options,
    fail,
    setup_logging,
    ssl_from_args,
    user_identity_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("echo", help="verify a peer with C-ECHO", description="Send C-ECHO requests (Verification).")
    add_client_options(p)
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="send N C-ECHO requests (default 1)")
    p.set_defaults(func=main)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    async with connect(args.host, args.port, calling_ae=args.aet, called_ae=args.aec, ssl_context=ssl_from_args(args),
                       max_pdu=args.max_pdu, connect_timeout=args.timeout, acse_timeout=args.timeout,
                       dimse_timeout=args.dimse_timeout, user_identity=user_identity_from_args(args)) as assoc:
        for i in range(args.repeat):
            status = await assoc.echo()
            if not status.ok:
                return fail(f"C-ECHO {i + 1}/{args.repeat} to {args.aec}@{args.host}:{args.port}: {status}",
                            EXIT_FAILURE_STATUS)
    print(f"C-ECHO to {args.aec}@{args.host}:{args.port}: Success ({args.repeat}/{args.repeat})")
    return EXIT_OK
