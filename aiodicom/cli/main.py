"""`aiodicom`: the command line. Verbs mirror DCMTK's tools."""

from __future__ import annotations

import argparse
import sys

from . import commit, echo, index, load, mpps, printcmd, query, route, serve, store, worklist
from .common import run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiodicom", description="asyncio DICOM network engine")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (echo, store, query, serve, index, load, route, printcmd, worklist, mpps, commit):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --workers` starts its workers with it
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
