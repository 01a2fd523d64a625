"""`aiodicom serve`: Verification and Storage SCP writing PS3.10 files, like DCMTK's storescp."""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import subprocess
import tomllib
from pathlib import Path

import anyio
import structlog

from ..archive.catchup import catch_up
from ..archive.feeder import FedIndex, IndexFeeder
from ..archive.filestore import DuplicatePolicy, FileStore, StoredInstance
from ..archive.groupcommit import DataSync
from ..archive.index import INDEX_FILENAME, ArchiveIndex, IndexRecord
from ..archive.index_sqlite import SqliteIndex
from ..archive.rebuild import rebuild_index, storage_files
from ..archive.workflow_db import WorkflowDb
from ..load.workload import WorkloadError, parse_size
from ..log import get_logger
from ..net.budget import DEFAULT_LIMIT, SMALLEST_LIMIT, MemoryBudget
from ..net.dispatch import Dispatcher
from ..net.server import Server, ServerConfig
from ..services import commitment, mpps, printing, query, retrieve, storage, verification, worklist
from ..services.retrieve import Peer
from ..ul.machine import UlConfig
from .common import (
    EXIT_OK,
    EXIT_USAGE,
    add_log_options,
    ae_title,
    fail,
    listen_port,
    positive_int,
    seconds,
    server_tls_from_args,
    setup_logging,
)
from .workers import die_with_parent, start_worker, stop_workers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run an SCP: storage, query/retrieve, worklist, MPPS, commitment, print",
                       description="Verification, Storage, Query/Retrieve (C-FIND, C-MOVE, C-GET), Modality Worklist "
                                   "(--worklist), MPPS, Storage Commitment and Print Management SCP. Every instance "
                                   "is written as a PS3.10 file under STORAGE/<study>/<series>/<instance>.dcm, "
                                   "durable before Success, and indexed for queries.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=listen_port, default=11112, help="TCP port (default 11112; 0: any free one)")
    p.add_argument("--aet", type=ae_title, default="AIODICOM", help="our AE title (default AIODICOM)")
    p.add_argument("--storage", default="storage", metavar="DIR", help="storage folder (default ./storage)")
    p.add_argument("--sync", choices=("on", "off"), default="on",
                   help="fsync each instance before Success (default on; off is DCMTK storescp's behaviour)")
    p.add_argument("--sync-method", choices=[d.value for d in DataSync], default=DataSync.FDATASYNC.value,
                   help="with --sync on, how: fdatasync (default) and fsync sync each file and folder; syncfs "
                        "syncs the whole file system once per group of instances: faster for many small "
                        "instances at once, but it also waits for other programs' unwritten data there")
    p.add_argument("--duplicates", choices=[d.value for d in DuplicatePolicy], default="overwrite",
                   help="an instance stored again: overwrite (default), keep-first (Warning B006), reject (0x0111)")
    p.add_argument("--promiscuous", action="store_true", help="accept any called AE title")
    p.add_argument("--allow-aet", action="append", type=ae_title, metavar="AET",
                   help="accept only these calling AE titles (repeatable)")
    p.add_argument("--max-associations", type=positive_int, default=4096, help="concurrent associations (default 4096)")
    p.add_argument("--max-associations-per-host", type=positive_int, metavar="N",
                   help="concurrent associations from one peer address")
    p.add_argument("--max-associations-per-aet", type=positive_int, metavar="N",
                   help="concurrent associations from one calling AE title")
    p.add_argument("--max-pdu", type=positive_int, default=262_144, help="largest PDU we accept (default 262144)")
    p.add_argument("--max-dataset-size", type=positive_int, metavar="BYTES", help="refuse larger data sets with 0xA700")
    p.add_argument("--memory-budget", type=budget_size, default=DEFAULT_LIMIT, metavar="SIZE",
                   help="bytes of received data held in memory at once, all associations together (e.g. 64M; "
                        "default 256M): beyond it instances go straight to disk and sockets are read slower")
    p.add_argument("--max-operations", type=positive_int, default=16,
                   help="asynchronous operations window we perform per association (default 16)")
    p.add_argument("--acse-timeout", type=seconds, default=10.0,
                   help="ARTIM: total seconds to establish an association (default 10)")
    p.add_argument("--dimse-timeout", type=seconds, default=60.0, help="seconds between PDUs of one message")
    p.add_argument("--idle-timeout", type=seconds, help="abort associations idle this many seconds")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    p.add_argument("--tls-ca", metavar="FILE", help="require client certificates signed by this CA")
    p.add_argument("--peer", action="append", default=[], metavar="AET=HOST:PORT",
                   help="a C-MOVE destination (repeatable)")
    p.add_argument("--config", metavar="FILE", help="TOML file with a [peers] table: AET = \"host:port\"")
    p.add_argument("--case-insensitive-pn", action="store_true", help="match person names ignoring case")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="N processes on one port (SO_REUSEPORT), one event loop each, sharing the storage folder")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set on the workers a parent starts
    p.add_argument("--users", metavar="FILE",
                   help="require user identity (PS3.7 D.3.3.7): TOML [users] table, name = \"password\"")
    p.add_argument("--worklist", metavar="DIR", help="Modality Worklist files (.wl/.dcm as DCMTK's wlmscpfs reads "
                                                     "them, sub-folders too), re-read when they change")
    completed = p.add_mutually_exclusive_group()
    completed.add_argument("--worklist-hide-completed", dest="worklist_hide_completed", action="store_true",
                           default=True, help="a step whose MPPS is COMPLETED leaves the worklist (default)")
    completed.add_argument("--keep-completed", dest="worklist_hide_completed", action="store_false",
                           help="keep completed steps on the worklist, with status COMPLETED")
    p.add_argument("--print-dir", metavar="DIR",
                   help="Print SCP output: a PNG, PDF and JSON per print job (default STORAGE/print)")
    add_log_options(p)
    p.set_defaults(func=main)


def parse_peer(spec: str) -> tuple[str, Peer]:
    """AET=HOST:PORT (IPv6 hosts in brackets: AET=[::1]:104)."""
    aet, sep, where = spec.partition("=")
    host, colon, port = where.rpartition(":")
    if not (sep and colon and aet and host and port.isdigit()):
        raise ValueError(f"not AET=HOST:PORT: {spec!r}")
    return aet.strip(), Peer(host.strip("[]"), int(port))


def load_peers(args: argparse.Namespace) -> dict[str, Peer]:
    peers: dict[str, Peer] = {}
    if args.config:
        with open(args.config, "rb") as f:
            table = tomllib.load(f).get("peers", {})
        for aet, where in table.items():
            peers.update([parse_peer(f"{aet}={where}")])
    peers.update(parse_peer(spec) for spec in args.peer)
    return peers


def load_users(path: str) -> dict[str, str]:
    with open(path, "rb") as f:
        users = tomllib.load(f).get("users", {})
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise ValueError(f"{path}: [users] must map names to password strings")
    return users


def password_authenticator(users: dict[str, str]):
    """Accept a username (type 1, for users with an empty password) or username and passcode (type 2)."""

    async def authenticate(identity, assoc) -> bytes | None:
        if identity is None or identity.identity_type not in (1, 2):
            return None
        name = identity.primary.decode("utf-8", "replace")
        expected = users.get(name)
        given = identity.secondary.decode("utf-8", "replace") if identity.identity_type == 2 else ""
        if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
            assoc.log.warning("user identity refused", user=name)
            return None
        assoc.user_identity = name
        return b""

    return authenticate


def budget_size(text: str) -> int:
    try:
        size = parse_size(text)
    except WorkloadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size < SMALLEST_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is below the smallest memory budget, 1M")
    return size


def index_record(stored: StoredInstance) -> IndexRecord:
    return IndexRecord(path=stored.path, size=stored.size, transfer_syntax=stored.transfer_syntax,
                       sop_class_uid=stored.sop_class_uid, sop_instance_uid=stored.sop_instance_uid,
                       attributes=stored.attributes)


def build(args: argparse.Namespace, store: FileStore, index: ArchiveIndex, workflow: WorkflowDb | None,
          background: list) -> Server:
    """The server; with `workflow`, also Worklist, MPPS and Storage Commitment. Its background tasks
    (the index feeder, commitment reports, the worklist folder watcher) are appended to `background`
    for the caller to start before serving."""
    dispatcher = Dispatcher()
    verification.install(dispatcher)

    # Success waits for the file (synced or not), never for the index: the feeder adds records in
    # batches, and the services read through FedIndex, which waits for what this process filed. With
    # several workers a query may reach another process than the store did: each adds its records
    # without gathering them first, so they show there within a transaction's time (milliseconds).
    several = getattr(args, "workers", 1) > 1 or getattr(args, "worker", False)
    feeder = IndexFeeder(index, log=get_logger(), gather=0.0 if several else 0.1)
    background.append(feeder.run)
    index = FedIndex(index, feeder)

    async def index_it(stored, req) -> None:
        feeder.put(index_record(stored))

    storage.install(dispatcher, store, on_stored=index_it)
    query.install(dispatcher, index, case_insensitive_pn=args.case_insensitive_pn)
    retrieve.install(dispatcher, index, peers=load_peers(args), ae_title=args.aet)
    print_dir = getattr(args, "print_dir", None)
    printing.install(dispatcher, printing.FilePrinter(Path(print_dir) if print_dir else store.root / "print"))
    if workflow is not None:  # their state lives in STORAGE/workflow.sqlite; worklist after query: it shares C-FIND
        worklist.install(dispatcher, workflow, hide_completed=getattr(args, "worklist_hide_completed", True),
                         case_insensitive_pn=args.case_insensitive_pn)
        mpps.install(dispatcher, workflow)
        reports = commitment.install(dispatcher, workflow, index, peers=load_peers(args), ae_title=args.aet)
        background.append(reports.run)
        if getattr(args, "worker", False):  # the first process retries reports and follows the worklist folder
            reports.retries = False
        elif getattr(args, "worklist", None):
            background.append(worklist.WorklistFolder(workflow, args.worklist).run)
    ssl_context = server_tls_from_args(args)
    config = ServerConfig(
        host=args.host, port=args.port, ae_title=args.aet, promiscuous=args.promiscuous,
        allowed_calling=frozenset(args.allow_aet) if args.allow_aet else None,
        max_associations=args.max_associations, max_associations_per_host=args.max_associations_per_host,
        max_associations_per_calling_ae=args.max_associations_per_aet,
        ul=UlConfig(max_pdu=args.max_pdu, artim=args.acse_timeout),
        dimse_timeout=args.dimse_timeout, idle_timeout=args.idle_timeout, max_operations=args.max_operations,
        max_dataset_size=args.max_dataset_size, ssl_context=ssl_context,
        authenticator=password_authenticator(load_users(args.users)) if getattr(args, "users", None) else None,
        reuse_port=several, memory_budget=store.budget,
    )
    return Server(config, dispatcher)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args, default="info")
    if args.workers > 1 or args.worker:  # their lines interleave, and association ids restart in each process
        structlog.contextvars.bind_contextvars(pid=os.getpid())
    log = get_logger()
    try:
        load_peers(args)
        if args.users:
            load_users(args.users)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        return fail(f"bad configuration: {exc}", EXIT_USAGE)
    if args.workers > 1 and args.port == 0:
        return fail("--workers needs a fixed --port (each worker binds the same one)", EXIT_USAGE)
    if args.worker and not die_with_parent():
        return fail("the process that started this worker has ended", EXIT_USAGE)
    root = Path(args.storage)
    budget = MemoryBudget(args.memory_budget)
    store = FileStore(root, sync=args.sync == "on", duplicates=DuplicatePolicy(args.duplicates), budget=budget,
                      data_sync=DataSync(args.sync_method))
    workers: list[subprocess.Popen] = []
    try:
        if not args.worker and not (root / INDEX_FILENAME).exists() and any(storage_files(root)):
            log.info("no index for a storage folder with files: rebuilding it")
            stats = await anyio.to_thread.run_sync(rebuild_index, root)
            log.info("index rebuilt", indexed=stats.indexed, unreadable=len(stats.unreadable))
        elif not args.worker and (root / INDEX_FILENAME).exists():
            caught = await anyio.to_thread.run_sync(catch_up, root)
            if caught.indexed or caught.unreadable:
                log.warning("indexed files a previous run had not (it stopped with records queued)",
                            indexed=caught.indexed, unreadable=len(caught.unreadable), folders=caught.folders,
                            seconds=round(caught.seconds, 2))
            for path, why in caught.unreadable[:20]:
                log.warning("file left out of the index", path=str(path), error=why)
        async with await SqliteIndex.open(root) as index, await WorkflowDb.open(root) as workflow:
            background: list = []
            server = build(args, store, index, workflow, background)
            log.info("storage", folder=str(store.root), sync=args.sync, sync_method=store.data_sync.value,
                     duplicates=args.duplicates, memory_budget=budget.limit)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, server)
                for task in background:  # started before we listen: e.g. the worklist folder is indexed
                    await tg.start(task)
                if not args.worker:
                    argv = [a for a in args.argv if a != "--worker"]
                    workers = [start_worker([*argv, "--worker"], log) for _ in range(args.workers - 1)]
                await server.serve()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stop_workers(workers, log)
        store.close()
    # how often the budget sent instances to disk at once or held connections back: a sign to raise it
    log.info("stopped", memory_budget_refusals=budget.refusals, memory_budget_pauses=budget.pauses)
    return EXIT_OK


async def _stop_on_signal(server: Server) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            server.shutdown()
            return
