"""`aiodicom serve`: Verification and Storage SCP writing PS3.10 files, like DCMTK's storescp."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import anyio

from ..archive.filestore import DuplicatePolicy, FileStore
from ..log import get_logger
from ..net.dispatch import Dispatcher
from ..net.server import Server, ServerConfig
from ..net.transport import server_ssl_context
from ..services import storage, verification
from ..ul.machine import UlConfig
from .common import EXIT_OK, add_log_options, setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run an SCP that stores what it receives",
                       description="Verification and Storage SCP: every instance is written as a PS3.10 file "
                                   "under STORAGE/<study>/<series>/<instance>.dcm, durable before Success.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
    p.add_argument("--aet", default="AIODICOM", help="our AE title (default AIODICOM)")
    p.add_argument("--storage", default="storage", metavar="DIR", help="storage folder (default ./storage)")
    p.add_argument("--sync", choices=("on", "off"), default="on",
                   help="fsync each instance before Success (default on; off is DCMTK storescp's behaviour)")
    p.add_argument("--duplicates", choices=[d.value for d in DuplicatePolicy], default="overwrite",
                   help="an instance stored again: overwrite (default), keep-first (Warning B006), reject (0x0111)")
    p.add_argument("--promiscuous", action="store_true", help="accept any called AE title")
    p.add_argument("--allow-aet", action="append", metavar="AET", help="accept only these calling AE titles")
    p.add_argument("--max-associations", type=int, default=4096, help="concurrent associations (default 4096)")
    p.add_argument("--max-associations-per-host", type=int, metavar="N")
    p.add_argument("--max-associations-per-aet", type=int, metavar="N")
    p.add_argument("--max-pdu", type=int, default=262_144, help="largest PDU we accept (default 262144)")
    p.add_argument("--max-dataset-size", type=int, metavar="BYTES", help="refuse larger data sets with 0xA700")
    p.add_argument("--max-operations", type=int, default=16,
                   help="asynchronous operations window we perform per association (default 16)")
    p.add_argument("--acse-timeout", type=float, default=10.0,
                   help="ARTIM: total seconds to establish an association (default 10)")
    p.add_argument("--dimse-timeout", type=float, default=60.0, help="seconds between PDUs of one message")
    p.add_argument("--idle-timeout", type=float, help="abort associations idle this many seconds")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    p.add_argument("--tls-ca", metavar="FILE", help="require client certificates signed by this CA")
    add_log_options(p)
    p.set_defaults(func=main)


def build(args: argparse.Namespace) -> tuple[Server, FileStore]:
    store = FileStore(Path(args.storage), sync=args.sync == "on", duplicates=DuplicatePolicy(args.duplicates))
    dispatcher = Dispatcher()
    verification.install(dispatcher)
    storage.install(dispatcher, store)
    ssl_context = server_ssl_context(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    config = ServerConfig(
        host=args.host, port=args.port, ae_title=args.aet, promiscuous=args.promiscuous,
        allowed_calling=frozenset(args.allow_aet) if args.allow_aet else None,
        max_associations=args.max_associations, max_associations_per_host=args.max_associations_per_host,
        max_associations_per_calling_ae=args.max_associations_per_aet,
        ul=UlConfig(max_pdu=args.max_pdu, artim=args.acse_timeout),
        dimse_timeout=args.dimse_timeout, idle_timeout=args.idle_timeout, max_operations=args.max_operations,
        max_dataset_size=args.max_dataset_size, spool_dir=str(store.incoming), ssl_context=ssl_context,
    )
    return Server(config, dispatcher), store


async def main(args: argparse.Namespace) -> int:
    setup_logging(args, default="info")
    log = get_logger()
    server, store = build(args)
    log.info("storage", folder=str(store.root), sync=args.sync, duplicates=args.duplicates)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, server)
            await server.serve()
            tg.cancel_scope.cancel()
    finally:
        store.close()
    log.info("stopped")
    return EXIT_OK


async def _stop_on_signal(server: Server) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            server.shutdown()
            return
