"""`aiodicom index rebuild DIR`: the files are the truth; re-create the index from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from ..archive.rebuild import rebuild_index
from .common import EXIT_FAILURE_STATUS, EXIT_OK, EXIT_USAGE, add_log_options, fail, setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="manage the archive index", description="Manage the archive index.")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    r = isub.add_parser("rebuild", help="re-create the index of a storage folder from its files")
    r.add_argument("storage", metavar="DIR", help="the storage folder (as given to serve --storage)")
    add_log_options(r)
    r.set_defaults(func=rebuild)


async def rebuild(args: argparse.Namespace) -> int:
    setup_logging(args)
    if not Path(args.storage).is_dir():
        return fail(f"{args.storage}: no such folder (the storage folder given to serve --storage)", EXIT_USAGE)

    live = sys.stderr.isatty()  # a progress line for a person watching; a log or a pipe gets the summary only

    def progress(seen: int, indexed: int) -> None:
        if live:
            print(f"\r{seen} files read, {indexed} indexed", end="", file=sys.stderr, flush=True)

    stats = await anyio.to_thread.run_sync(lambda: rebuild_index(args.storage, progress=progress))
    if live:
        print(file=sys.stderr)
    for path, reason in stats.unreadable:
        print(f"{path}: {reason}", file=sys.stderr)
    print(f"indexed {stats.indexed} of {stats.files} files in {stats.seconds:.1f} s")
    return EXIT_OK if not stats.unreadable else EXIT_FAILURE_STATUS
