"""`aiodicom find|move|get HOST PORT -k ...`: Query/Retrieve SCU, like DCMTK's findscu, movescu and getscu."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from ..archive.filestore import FileStore
from ..dimse import status as st
from ..net.client import connect
from ..net.dispatch import Dispatcher
from ..net.errors import OperationFailed
from ..net.qr import get_contexts, sop_class, total
from ..services import storage
from ..uids import ALL_TRANSFER_SYNTAXES, UNCOMPRESSED_TRANSFER_SYNTAXES
from .common import (
    EXIT_FAILURE_STATUS,
    EXIT_OK,
    EXIT_USAGE,
    add_client_options,
    ae_title,
    fail,
    setup_logging,
    ssl_from_args,
    user_identity_from_args,
)
from .keys import KeySpecError, build_identifier

MODELS = ("patient", "study", "psonly")


def _common(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    add_client_options(p)
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY[=VALUE]",
                   help="query key: keyword or gggg,eeee; Seq[0].Keyword for sequence items; no value = return key")
    p.add_argument("--model", choices=models, default="study", help="information model (default study root)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("find", help="query with C-FIND", description="C-FIND against a Query/Retrieve or Worklist SCP.")
    _common(p, (*MODELS, "worklist"))
    p.add_argument("--json", action="store_true", help="print the matches in the DICOM JSON model")
    p.set_defaults(func=find_main)
    p = sub.add_parser("move", help="retrieve with C-MOVE", description="C-MOVE matches to a destination AE.")
    _common(p, MODELS)
    p.add_argument("--dest", required=True, type=ae_title, metavar="AET", help="move destination AE title")
    p.set_defaults(func=move_main)
    p = sub.add_parser("get", help="retrieve with C-GET", description="C-GET matches into a folder.")
    _common(p, MODELS)
    p.add_argument("--out", default=".", metavar="DIR", help="where received instances are written")
    p.set_defaults(func=get_main)


def _identifier(args: argparse.Namespace):
    try:
        with warnings.catch_warnings():  # pydicom warns of a value its VR does not allow: the peer answers that
            warnings.simplefilter("ignore")  # (0xA900 with a comment), one line instead of a warning and a line
            return build_identifier(args.key)
    except KeySpecError as exc:
        raise SystemExit(fail(str(exc), EXIT_USAGE)) from None


def _connect(args: argparse.Namespace, contexts, **extra):
    return connect(args.host, args.port, calling_ae=args.aet, called_ae=args.aec, contexts=contexts,
                   ssl_context=ssl_from_args(args), max_pdu=args.max_pdu, connect_timeout=args.timeout,
                   acse_timeout=args.timeout, dimse_timeout=args.dimse_timeout,
                   user_identity=user_identity_from_args(args), **extra)


async def find_main(args: argparse.Namespace) -> int:
    setup_logging(args)
    identifier = _identifier(args)
    matches = []
    async with _connect(args, [(sop_class(args.model, 0), UNCOMPRESSED_TRANSFER_SYNTAXES)]) as assoc:
        try:
            async with contextlib.aclosing(assoc.find(identifier, model=args.model)) as results:
                async for match in results:
                    matches.append(match)
        except OperationFailed as exc:
            if matches:  # what arrived before the failure; no empty table
                _print_matches(matches, identifier, args.json)
            return fail(f"C-FIND failed: {exc}", EXIT_FAILURE_STATUS)
    _print_matches(matches, identifier, args.json)
    print(f"{len(matches)} match{'es' if len(matches) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _print_matches(matches, identifier, as_json: bool) -> None:
    if as_json:
        print(json.dumps([m.to_json_dict() for m in matches], indent=1))
        return
    tags = [e.tag for e in identifier]
    for m in matches:
        tags.extend(e.tag for e in m if e.tag not in tags)
    names = [_name(t) for t in tags]
    rows = [[_cell(m.get(t)) for t in tags] for m in matches]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _name(tag) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"{tag.group:04X},{tag.element:04X}"


def _cell(elem) -> str:
    if elem is None or elem.value is None:
        return ""
    if elem.VR == "SQ":  # each item's attributes, so that keys asked for inside a sequence show
        return " ".join("[" + ", ".join(f"{_name(e.tag)}={_cell(e)}" for e in item) + "]" for item in elem.value)
    if elem.VM > 1:
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value)


async def _report(progress_iter) -> int:
    final = None
    async with contextlib.aclosing(progress_iter) as responses:
        async for progress in responses:
            if progress.final:
                final = progress
            else:
                print(f"  {progress}", file=sys.stderr)
    assert final is not None
    print(f"{final}; {final.completed or 0} of {total(final)} sub-operations completed")
    for uid in final.failed_sop_instances:
        print(f"  failed: {uid}", file=sys.stderr)
    ok = final.status == st.SUCCESS and not final.failed
    return EXIT_OK if ok else EXIT_FAILURE_STATUS


async def move_main(args: argparse.Namespace) -> int:
    setup_logging(args)
    identifier = _identifier(args)
    async with _connect(args, [(sop_class(args.model, 1), UNCOMPRESSED_TRANSFER_SYNTAXES)]) as assoc:
        return await _report(assoc.move(identifier, args.dest, model=args.model))


async def get_main(args: argparse.Namespace) -> int:
    setup_logging(args)
    identifier = _identifier(args)
    contexts, roles = get_contexts(args.model, transfer_syntaxes=ALL_TRANSFER_SYNTAXES[:12])
    with FileStore(Path(args.out)) as store:
        dispatcher = Dispatcher()
        storage.install(dispatcher, store)
        async with _connect(args, contexts, roles=roles, dispatcher=dispatcher) as assoc:
            return await _report(assoc.get(identifier, model=args.model))
