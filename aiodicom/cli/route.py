"""`aiodicom route`: the routing node (store-and-forward or proxy), and its operating commands.

    aiodicom route --config route.toml           run it
    aiodicom route --check route.toml            validate the configuration, do not serve
    aiodicom route status --config route.toml    queues, oldest entry, rates, failures, dead letters
    aiodicom route retry --config route.toml     hand dead letters back to their queues
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio

from ..route.config import ConfigError, Mode, RouterConfig, load_config
from ..route.queue import Spool, SpoolBusy
from ..route.router import Router
from ..route.rules import Action, Rule
from ..route.status import (
    dead_letters,
    destinations_in,
    format_status,
    read_status,
    retry_dead_letters,
)
from ..route.tls import TlsFileError
from .common import (
    EXIT_FAILURE_STATUS,
    EXIT_OK,
    EXIT_USAGE,
    add_log_options,
    fail,
    setup_logging,
    single_error,
)
from .workers import die_with_parent, start_worker, stop_workers, watch_workers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("route", help="run a routing node (rules, durable queues, retries)",
                       description="Receive instances, decide by the rules of a TOML file where each goes, and forward "
                                   "them: store-and-forward (Success once durable in the spool) or proxy (the "
                                   "destination's answer relayed). See examples/route.toml.")
    p.add_argument("--config", metavar="FILE", help="the routing configuration (TOML)")
    p.add_argument("--check", metavar="FILE", help="validate this configuration and exit (0 valid, 2 not)")
    p.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)  # set on the workers a router starts
    add_log_options(p)
    p.set_defaults(func=main, route_command=None)
    commands = p.add_subparsers(dest="route_command", metavar="{status,retry}")

    s = commands.add_parser("status",
                            help="queue depth, oldest entry, rates, failures and dead letters per destination")
    _spool_options(s)
    s.add_argument("--json", action="store_true", help="print the status as JSON")

    r = commands.add_parser("retry", help="hand dead letters back to their destinations' queues")
    _spool_options(r)
    r.add_argument("--destination", metavar="NAME", action="append", help="only this destination's (repeatable)")
    r.add_argument("--list", action="store_true", help="list the dead letters and why, change nothing")
    r.add_argument("uids", nargs="*", metavar="SOP_INSTANCE_UID", help="only these instances (default: all)")


def _spool_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", dest="sub_config", metavar="FILE", help="the routing configuration (TOML)")
    g.add_argument("--spool", metavar="DIR", help="the spool folder (instead of --config)")


async def main(args: argparse.Namespace) -> int:
    if args.route_command == "status":
        return _status(args)
    if args.route_command == "retry":
        return _retry(args)
    if args.check:
        return _check(args.check)
    if not args.config:
        return fail("route needs --config FILE (or --check FILE, or the status/retry commands)", EXIT_USAGE)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    if not config.listeners:
        return fail(f"{args.config}: no [[listener]]: the router would receive nothing", EXIT_USAGE)
    setup_logging(args, default="info")
    if args.process and not die_with_parent():
        return fail("the router process that started this worker has ended", EXIT_USAGE)
    router = Router(config, process=args.process)
    workers: list[subprocess.Popen] = []
    worker_ended = False

    def ended(proc: subprocess.Popen) -> None:
        nonlocal worker_ended
        worker_ended = True
        router.log.error("a worker ended: stopping the router (restarted, it delivers every queued entry)",
                         pid=proc.pid, exit_code=proc.returncode)
        router.shutdown()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, router)
            await tg.start(_serve_then_stop, router, tg.cancel_scope)
            if args.process == 0 and config.workers > 1:  # listening and loaded: the others may start
                workers = [start_worker([*args.argv, "--process", str(k)], router.log) for k in range(1, config.workers)]
                tg.start_soon(watch_workers, workers, ended)
    except BaseException as exc:  # task groups wrap what went wrong: say it in one line
        cause = single_error(exc)
        if isinstance(cause, SpoolBusy):
            return fail(str(cause), EXIT_USAGE)
        if isinstance(cause, TlsFileError):  # changed since the configuration was checked at start
            return fail(f"{args.config}: {cause}", EXIT_USAGE)
        if isinstance(cause, OSError):
            return fail(f"cannot start: {cause}", EXIT_FAILURE_STATUS)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await stop_workers(workers, router.log)
    router.log.info("router stopped", queued={name: len(q) for name, q in router.queues.items()},
                    memory_budget_refusals=router.budget.refusals, memory_budget_pauses=router.budget.pauses)
    return EXIT_FAILURE_STATUS if worker_ended else EXIT_OK


async def _serve_then_stop(router: Router, scope: anyio.CancelScope, *,
                           task_status: anyio.abc.TaskStatus[list[int]] = anyio.TASK_STATUS_IGNORED) -> None:
    await router.serve(task_status=task_status)
    scope.cancel()


async def _stop_on_signal(router: Router) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            router.shutdown()
            return


def _check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return fail(str(exc), EXIT_USAGE)
    rules = config.rules
    assert rules is not None
    print(f"{path}: valid: {len(config.listeners)} listener(s), {len(config.destinations)} destination(s), "
          f"{len(rules.rules)} rule(s); spool {config.spool}")
    print(f"{path}: default: {_default_text(rules.default)}")
    if not config.listeners:
        print(f"{path}: warning: no [[listener]]: the router would only drain its queues", file=sys.stderr)
    _check_workers(path, config)
    return EXIT_OK


def _check_workers(path: str, config: RouterConfig) -> None:
    """How processes share a destination with fewer associations than there are processes."""
    n = config.workers
    few = {name: d.max_associations for name, d in config.destinations.items() if d.max_associations < n}
    for name, limit in few.items():
        who = "the first process delivers" if limit == 1 else f"the first {limit} processes deliver"
        print(f"{path}: destination {name}: max_associations = {limit} < workers = {n}: only {who} to it; the "
              f"others hand their instances over through the spool")
    if few and any(li.mode is Mode.PROXY for li in config.listeners):
        listed = ", ".join(f"{name} (max_associations = {limit})" for name, limit in few.items())
        print(f"{path}: warning: proxy mode with workers = {n}: each process forwards over its own associations, "
              f"so {listed} may get up to {n} at once", file=sys.stderr)


def _default_text(default: Rule) -> str:
    """What an instance no rule matches gets, in words."""
    if default.action is Action.UNROUTED:
        return ("not set: an instance no rule matches is refused (0xA700 Refused: Out of Resources) and stays with "
                "its sender; set [router].default to forward, \"drop\" or \"reject\" such instances")
    if default.action is Action.DROP:
        return "drop (Success, then discarded)"
    if default.action is Action.REJECT:
        return "reject (0x0124 Refused: Not Authorized)"
    return f"forward to {', '.join(default.destinations)}" + (" (morphed)" if default.morph else "")


def _spool_of(args: argparse.Namespace) -> tuple[Path, list[str]] | int:
    """The spool folder and destination names from --spool or --config; an exit code when there is none."""
    if args.spool:
        root, names = Path(args.spool), []
    elif not args.sub_config:
        return fail("give --config FILE or --spool DIR", EXIT_USAGE)
    else:
        try:
            config: RouterConfig = load_config(args.sub_config)
        except ConfigError as exc:
            return fail(str(exc), EXIT_USAGE)
        root, names = config.spool, list(config.destinations)
    if not root.is_dir():
        return fail(f"no spool at {root}", EXIT_USAGE)
    return root, names


def _status(args: argparse.Namespace) -> int:
    found = _spool_of(args)
    if isinstance(found, int):
        return found
    root, names = found
    status = read_status(root, names)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


def _retry(args: argparse.Namespace) -> int:
    found = _spool_of(args)
    if isinstance(found, int):
        return found
    root, names = found
    spool = Spool(root)  # not opened: the running router holds the lock and takes what lands in inbox/
    known = destinations_in(root, names)
    unknown = [name for name in args.destination or () if name not in known]
    if unknown:
        return fail(f"no destination {', '.join(map(repr, unknown))} in {root} (known: {', '.join(known) or 'none'})",
                    EXIT_USAGE)
    targets = args.destination or known
    if args.list:
        for entry in dead_letters(spool, targets):
            print(f"{entry.destination}  {entry.sop_instance_uid}  attempts={entry.attempts}  {entry.reason}")
        return EXIT_OK
    moved = retry_dead_letters(spool, targets, uids=args.uids)
    missing = set(args.uids) - {e.sop_instance_uid for e in moved}
    print(f"{len(moved)} dead letter(s) handed back to their queues")
    if missing:
        return fail(f"no dead letter for {', '.join(sorted(missing))}", EXIT_FAILURE_STATUS)
    return EXIT_OK
