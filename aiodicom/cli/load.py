"""`aiodicom load HOST PORT`: the load generator (closed or open loop, operation mix, live progress, report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..load import report
from ..load.generator import LoadGenerator, LoadResult, Plan, Target
from ..load.hold import Holder, HoldPlan, HoldResult
from ..load.workload import (
    MODALITIES,
    FindQuery,
    Mix,
    Stamper,
    UidSource,
    Workload,
    WorkloadError,
    folder_templates,
    parse_size,
    synthetic_template,
)
from ..net.transport import raise_open_file_limit
from .common import (
    EXIT_ASSOCIATION,
    EXIT_FAILURE_STATUS,
    EXIT_OK,
    EXIT_USAGE,
    add_client_options,
    fail,
    setup_logging,
    ssl_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load", help="generate load: many associations, echo/store/find mix, latency report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive a DICOM peer with N concurrent workers (each one operation at a time), closed loop or "
                    "open loop at --rate, for --duration seconds or --count operations, and report operations/s, "
                    "MB/s, latency percentiles and errors by kind.",
        epilog="examples:\n"
               "  aiodicom load 127.0.0.1 11112 --aec PACS --op store --concurrency 16 --duration 30\n"
               "  aiodicom load 127.0.0.1 11112 --aec PACS --mix echo=1,store=3 --size 10k --count 5000 --json\n"
               "  aiodicom load 127.0.0.1 11112 --aec PACS --op echo --per-operation-association -c 4 --duration 10\n"
               "  aiodicom load 127.0.0.1 11112 --aec PACS --op find -k QueryRetrieveLevel=STUDY -k 'PatientName=A*'"
               " --rate 50\n"
               "  aiodicom load 127.0.0.1 11112 --aec PACS --hold 10000 --echo-interval 5 --server-pid 1234")
    add_client_options(p)
    what = p.add_argument_group("what to send")
    what.add_argument("--op", "--mix", dest="mix", default="echo", metavar="MIX",
                      help="operation or weighted mix of echo, store, find (e.g. store, echo=1,store=3; default echo)")
    what.add_argument("--size", default="512k", help="synthetic instance size (e.g. 10k, 512k, 2M; default 512k)")
    what.add_argument("--modality", default="CT", type=str.upper, choices=sorted(MODALITIES),
                      help="synthetic instance modality (default CT)")
    what.add_argument("--files", metavar="DIR", type=Path,
                      help="send the DICOM files under DIR (each re-stamped with fresh UIDs) instead of synthetic ones")
    what.add_argument("--series-size", type=int, default=100, help="instances per series/study (default 100)")
    what.add_argument("-k", "--query", action="append", default=[], metavar="KEY[=VALUE]",
                      help="C-FIND key (repeatable; default a STUDY-level PatientName=* query)")
    what.add_argument("--model", default="study", choices=("patient", "study", "psonly", "worklist"),
                      help="C-FIND information model (default study root)")
    how = p.add_argument_group("how hard and how long")
    how.add_argument("-c", "--concurrency", type=int, default=1, help="workers, each with its own association (default 1)")
    how.add_argument("--rate", type=float, help="open loop: start this many operations per second")
    how.add_argument("--duration", type=float, help="seconds to run (default 10 unless --count)")
    how.add_argument("--count", type=int, help="operations to run")
    how.add_argument("--per-operation-association", action="store_true",
                     help="open and release an association around every operation (default: each worker reuses one)")
    how.add_argument("--full-client", action="store_true",
                     help="with --per-operation-association: echo through the full aiodicom client too (default: a "
                          "lean pre-encoded associate+echo+release cycle, so that the client is not the bottleneck)")
    hold = p.add_argument_group("holding associations")
    hold.add_argument("--hold", type=int, metavar="N", help="hold N associations open instead (idle, then echoing)")
    hold.add_argument("--echo-interval", type=float, default=5.0, help="with --hold: seconds between echoes (default 5)")
    hold.add_argument("--idle", type=float, default=3.0, help="with --hold: idle seconds before echoing (default 3)")
    hold.add_argument("--echo-duration", type=float, default=10.0, help="with --hold: seconds of echoing (default 10)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    out.add_argument("--no-progress", action="store_true", help="no live progress line")
    out.add_argument("--server-pid", type=int, metavar="PID",
                     help="also report this local server process's CPU and memory (Linux /proc)")
    p.set_defaults(func=main)


def build_workload(args: argparse.Namespace) -> Workload:
    mix = Mix.parse(args.mix)
    templates, stamper, query = [], None, None
    if "store" in mix.operations:
        uids = UidSource()
        stamper = Stamper(uids, args.series_size)
        if args.files is not None:
            if not args.files.is_dir():
                raise WorkloadError(f"{args.files} is not a folder")
            templates = folder_templates(args.files, uids)
        else:
            templates = [synthetic_template(args.modality, parse_size(args.size), uids)]
    if "find" in mix.operations:
        query = FindQuery.build(args.query, args.model)
    return Workload(mix, templates, query, stamper)


def _target(args: argparse.Namespace) -> Target:
    return Target(host=args.host, port=args.port, calling_ae=args.aet, called_ae=args.aec,
                  ssl_context=ssl_from_args(args), max_pdu=args.max_pdu, connect_timeout=args.timeout,
                  acse_timeout=args.timeout, dimse_timeout=args.dimse_timeout)


def _check_descriptors(wanted: int) -> None:
    """Each association is a socket: raise RLIMIT_NOFILE to its hard limit, and say when that caps us."""
    soft, hard = raise_open_file_limit()
    if soft < wanted + 64:
        print(f"aiodicom: warning: open-file limit {soft} (hard {hard}) is below the {wanted} associations asked",
              file=sys.stderr)


async def main(args: argparse.Namespace) -> int:
    setup_logging(args, default="error")
    if args.hold is not None:
        return await _hold(args)
    try:
        workload = build_workload(args)
        duration = args.duration if args.duration is not None else (None if args.count is not None else 10.0)
        plan = Plan(concurrency=args.concurrency, rate=args.rate, duration=duration, count=args.count,
                    per_operation_association=args.per_operation_association, lean_echo=not args.full_client)
    except (WorkloadError, ValueError, OSError) as exc:
        return fail(str(exc), EXIT_USAGE)
    _check_descriptors(plan.concurrency)
    generator = LoadGenerator(_target(args), plan, workload, server_pid=args.server_pid)
    with report.LiveLine(enabled=None if not args.no_progress else False) as live:
        result = await generator.run(progress=live.snapshot if live.enabled else None)
    _emit(args, result)
    return exit_code(result)


def exit_code(result: LoadResult) -> int:
    """0: every operation succeeded (or warned); 3: some association failed; 1: some failure status only."""
    kinds = result.error_kinds()
    if any(n for k, n in kinds.items() if k != "failure status"):
        return EXIT_ASSOCIATION
    return EXIT_FAILURE_STATUS if kinds.get("failure status") else EXIT_OK


async def _hold(args: argparse.Namespace) -> int:
    try:
        plan = HoldPlan(count=args.hold, echo_interval=args.echo_interval, idle=args.idle,
                        echo_duration=args.echo_duration)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    _check_descriptors(plan.count)
    with report.LiveLine(enabled=None if not args.no_progress else False) as live:
        result = await Holder(_target(args), plan, server_pid=args.server_pid).run(progress=live.show)
    _emit(args, result)
    if result.failed or result.release_errors or result.echo["errors"]:
        return EXIT_ASSOCIATION
    return EXIT_OK


def _emit(args: argparse.Namespace, result: LoadResult | HoldResult) -> None:
    if args.json:
        sys.stdout.write(report.to_json(result) + "\n")
    elif hasattr(result, "by_operation"):
        report.print_load(result)
    else:
        report.print_hold(result)
    sys.stdout.flush()
