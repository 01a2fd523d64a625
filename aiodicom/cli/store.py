"""`aiodicom store HOST PORT PATH...`: C-STORE files as they are encoded, like DCMTK's storescu."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.transcode import why_not
from ..net.client import MAX_CONTEXTS, connect
from ..net.errors import NoPresentationContext
from ..uids import EXPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED_TRANSFER_SYNTAXES
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
    p = sub.add_parser("store", help="send DICOM files with C-STORE",
                       description="Send PS3.10 files with C-STORE over one association, each in its own "
                                   "transfer syntax; one the peer refuses goes in an uncompressed syntax it "
                                   "accepted (a compressed one decoded with the convert extra's codecs).")
    add_client_options(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders with --recursive")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="list only the files that did not get Success")
    p.set_defaults(func=main)


@dataclass(slots=True)
class Item:
    path: Path
    sop_class: str = ""
    sop_instance: str = ""
    transfer_syntax: str = ""
    size: int = 0
    outcome: str = ""
    code: int | None = None
    encoded: EncodedDataset | None = None  # where the data set lies in the file, read once when planning

    @property
    def stored(self) -> bool:
        return self.code is not None and st.category(self.code) in (st.Category.SUCCESS, st.Category.WARNING)


def collect(paths: list[str], recursive: bool) -> tuple[list[Path], list[str]]:
    files, errors = [], []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if not recursive:
                errors.append(f"{p}: is a folder (use --recursive)")
                continue
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files.extend(Path(root) / n for n in sorted(names))
        elif p.is_file():
            files.append(p)
        else:
            errors.append(f"{p}: no such file")
    return files, errors


def plan(files: list[Path]) -> tuple[list[Item], list[Item]]:
    """Read each file's meta; what is not a PS3.10 file is reported, not sent."""
    good, bad = [], []
    for path in files:
        item = Item(path)
        try:
            encoded, meta = EncodedDataset.from_file(path)
        except Exception as exc:
            item.outcome = f"not a DICOM file ({exc})"
            bad.append(item)
            continue
        item.sop_class, item.sop_instance = meta.sop_class_uid, meta.sop_instance_uid
        item.transfer_syntax, item.size, item.encoded = meta.transfer_syntax, encoded.size, encoded
        good.append(item)
    return good, bad


def batches(items: list[Item]) -> list[tuple[list[tuple[str, tuple[str, ...]]], list[Item]]]:
    """Group files so each association proposes at most 128 presentation contexts (PS3.8 §9.3.2.2).

    Each (SOP class, transfer syntax) gets a context of its own, so an acceptor that prefers another
    syntax cannot make us convert what we could send as it is; a second context offers the other
    uncompressed syntaxes, used only when the first is refused: for an uncompressed file always, for a
    compressed one when its decoder is installed (the convert extra; Client.store then decodes it).
    """
    out: list[tuple[list[tuple[str, tuple[str, ...]]], list[Item]]] = []
    seen: dict[tuple[str, str], int] = {}
    for item in items:
        key = (item.sop_class, item.transfer_syntax)
        if key not in seen:
            proposals = [(item.sop_class, (item.transfer_syntax,))]
            if why_not(item.transfer_syntax, EXPLICIT_VR_LITTLE_ENDIAN) is None:  # uncompressed, or decodable
                others = tuple(ts for ts in UNCOMPRESSED_TRANSFER_SYNTAXES if ts != item.transfer_syntax)
                proposals.append((item.sop_class, others))
            if not out or len(out[-1][0]) + len(proposals) > MAX_CONTEXTS:
                out.append(([], []))
                seen = {}
            out[-1][0].extend(proposals)
            seen[key] = len(out) - 1
        out[seen[key]][1].append(item)
    return out


async def main(args: argparse.Namespace) -> int:
    setup_logging(args)
    files, errors = collect(args.paths, args.recursive)
    for e in errors:
        print(f"aiodicom: {e}", file=sys.stderr)
    items, unreadable = plan(files)
    for item in unreadable:
        print(f"aiodicom: {item.path}: {item.outcome}", file=sys.stderr)
    if not items:
        return fail("nothing to send", EXIT_FAILURE_STATUS)
    started = time.monotonic()
    progress = _progress(len(items), disabled=args.no_progress or len(items) < 2 or not sys.stderr.isatty())
    try:
        for contexts, group in batches(items):
            async with connect(args.host, args.port, calling_ae=args.aet, called_ae=args.aec,
                               contexts=contexts, ssl_context=ssl_from_args(args), max_pdu=args.max_pdu,
                               connect_timeout=args.timeout, acse_timeout=args.timeout,
                               dimse_timeout=args.dimse_timeout, user_identity=user_identity_from_args(args)) as assoc:
                for item in group:
                    try:
                        status = await assoc.store(item.encoded, sop_class_uid=item.sop_class,
                                                   sop_instance_uid=item.sop_instance)
                    except NoPresentationContext as exc:
                        item.outcome = str(exc)
                    else:
                        item.code = status.code
                        item.outcome = str(status)
                    progress.advance()
    finally:
        progress.close()
    return _summary(items, unreadable + [Item(Path(e.split(":")[0]), outcome=e) for e in errors],
                    time.monotonic() - started, quiet=args.quiet)


def _summary(items: list[Item], unreadable: list[Item], elapsed: float, *, quiet: bool) -> int:
    """One line per file (its SOP Instance UID and status), then the totals."""
    ok = [i for i in items if i.stored]
    failed = len(ok) < len(items)
    for item in items:
        if not quiet or item.code != st.SUCCESS:
            print(f"{item.path} {item.sop_instance}: {item.outcome}", file=sys.stdout if item.stored else sys.stderr)
    volume = sum(i.size for i in ok)
    by_status = Counter(i.outcome for i in items)
    print(f"Stored {len(ok)}/{len(items) + len(unreadable)} instances ({volume / 1e6:.1f} MB) in {elapsed:.2f} s"
          + ("" if len(by_status) <= 1 else "; " + ", ".join(f"{n}× {s}" for s, n in by_status.most_common())))
    return EXIT_OK if not failed and not unreadable else EXIT_FAILURE_STATUS


class _progress:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, total: int, *, disabled: bool) -> None:
        self._bar = None
        if not disabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task("C-STORE", total=total)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
