"""`aiodicom`: the command line. Verbs mirror DCMTK's tools."""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import run

# verb → the module that registers it: only the module of the verb given is imported (the print and
# routing modules pull in Pillow, numpy and more; an `aiodicom echo` should not wait for them)
VERBS = {"echo": "echo", "store": "store", "find": "query", "move": "query", "get": "query", "serve": "serve",
         "index": "index", "load": "load", "route": "route", "print": "printcmd", "worklist": "worklist",
         "mpps": "mpps", "commit": "commit"}


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """All verbs, or only the module of `verb` when it is a known one."""
    p = argparse.ArgumentParser(prog="aiodicom", description="asyncio DICOM network engine")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = [VERBS[verb]] if verb in VERBS else list(dict.fromkeys(VERBS.values()))
    for name in names:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return p


def _version() -> str:
    """The package version and the Implementation Version Name sent on the wire (PS3.7 D.3.3.2)."""
    from importlib.metadata import PackageNotFoundError, version

    from ..implementation import IMPLEMENTATION_VERSION_NAME

    try:
        package = version("aiodicom")
    except PackageNotFoundError:  # run from a checkout without installing
        package = "(not installed)"
    return f"aiodicom {package} (implementation version name {IMPLEMENTATION_VERSION_NAME})"


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    args = parser(given[0] if given else None).parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --workers` starts its workers with it
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
