"""`aiodicom commit HOST PORT FILE...`: Storage Commitment SCU; waits for the report, prints each instance's fate.

The report may come on the association that asked (kept open while waiting) or on a new one from the
SCP (PS3.4 J.3.3.1.3): with `--listen-port` an SCP runs meanwhile, under our AE title (`--aet`), for
the peer to call back (it must know us: e.g. `aiodicom serve --peer AET=HOST:PORT`). Exit code 0 when
every instance is committed, 1 when some failed, the request was refused or no report came in time.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from ..dimse.errors import InvalidFileError
from ..net.client import connect
from ..net.errors import AssociationError
from ..net.server import Server, ServerConfig
from ..scu.commitment import CommitmentListener, CommitmentRefused, commit, commitment_contexts, instance_refs
from .common import (
    EXIT_FAILURE_STATUS,
    EXIT_OK,
    EXIT_USAGE,
    add_client_options,
    fail,
    listen_port,
    setup_logging,
    ssl_from_args,
)
from .store import collect


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("commit", help="request storage commitment for DICOM files and wait for the report",
                       description="Storage Commitment Push Model SCU (PS3.4 J): N-ACTION for the files' instances, "
                                   "then the N-EVENT-REPORT, on this association or on one the SCP opens to "
                                   "--listen-port.")
    add_client_options(p)
    p.add_argument("paths", nargs="+", metavar="FILE", help="PS3.10 files (their SOP class and instance UIDs)")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into folders")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for the report (default 60)")
    p.add_argument("--listen-port", type=listen_port, metavar="PORT", help="also take the report on a new association here")
    p.add_argument("--listen-host", default="127.0.0.1", metavar="HOST",
                   help="address for --listen-port (default 127.0.0.1, as serve; 0.0.0.0 for a PACS on another machine)")
    p.add_argument("--transaction-uid", metavar="UID", help="Transaction UID (default: a new 2.25 UID)")
    p.set_defaults(func=main)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    files, errors = collect(args.paths, args.recursive)
    for error in errors:
        print(f"aiodicom: {error}", file=sys.stderr)
    try:
        refs = instance_refs(files)
    except (OSError, InvalidFileError) as exc:
        return fail(f"not a DICOM file: {exc}", EXIT_USAGE)
    if errors or not refs:
        return fail("nothing to commit" if not errors else "some paths cannot be read", EXIT_USAGE)
    listener = CommitmentListener()
    failure: AssociationError | None = None
    async with anyio.create_task_group() as tg:
        if args.listen_port is not None:
            server = Server(ServerConfig(host=args.listen_host, port=args.listen_port, ae_title=args.aet),
                            listener.dispatcher())
            try:
                await tg.start(server.serve)
            except (OSError, BaseExceptionGroup) as exc:
                error = _os_error(exc)
                if error is None:
                    raise
                return fail(f"cannot listen on {args.listen_host}:{args.listen_port}: {error.strerror or error}",
                            EXIT_USAGE)
        try:
            async with connect(args.host, args.port, calling_ae=args.aet, called_ae=args.aec,
                               contexts=commitment_contexts(), dispatcher=listener.dispatcher(),
                               ssl_context=ssl_from_args(args), max_pdu=args.max_pdu, connect_timeout=args.timeout,
                               acse_timeout=args.timeout, dimse_timeout=args.dimse_timeout) as assoc:
                report = await commit(assoc, refs, listener, timeout=args.wait, transaction_uid=args.transaction_uid)
        except AssociationError as exc:  # re-raised below, out of the task group: `run` reports it (exit 3)
            failure = exc
        except CommitmentRefused as exc:
            return fail(str(exc), EXIT_FAILURE_STATUS)
        except TimeoutError:
            return fail(f"no storage commitment report within {args.wait:g} s", EXIT_FAILURE_STATUS)
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    failed = {f.sop_instance_uid: f for f in report.failed}
    committed = set(report.committed)
    for ref, path in zip(refs, files):
        reason = failed.pop(ref.sop_instance_uid, None)
        if reason is None and ref in committed:
            print(f"committed  {path}")
        else:
            print(f"FAILED     {path}  {reason or 'not in the report'}")
    for uid, reason in failed.items():  # reported but not asked for: show it anyway
        print(f"FAILED     {uid}  {reason}")
    print(f"transaction {report.transaction_uid}: {len(report.committed)} committed, {len(report.failed)} failed",
          file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILURE_STATUS


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (e.g. address in use) behind a failure, however deep in exception groups."""
    if isinstance(exc, OSError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if (found := _os_error(inner)) is not None:
            return found
    return None
