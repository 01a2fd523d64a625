"""The router's TOML configuration, validated whole at start: every problem is reported at once, each
naming where it is (`destination.PACS.port: ...`, `rule 2 ('ct').forward: unknown destination 'PACZ'`).

    [router]                       # spool folder, our AE title, what an unmatched instance gets
    [retry]                        # backoff and when to give up (dead letters)
    [[listener]]                   # ports we receive on: AE title, TLS, store-and-forward or proxy
    [destination.NAME]             # where we send: AE, host, port, TLS, associations, transfer syntaxes
    [[rule]]                       # ordered: conditions → forward / drop / reject, tag morphing

See examples/route.toml for every key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

from ..archive.groupcommit import DataSync
from ..archive.uid import is_valid_ae_title
from ..load.workload import WorkloadError, parse_size
from ..net.budget import DEFAULT_LIMIT, SMALLEST_LIMIT
from .names import transfer_syntax_uid
from .rules import RuleSet, compile_rules
from .tls import TlsFileError, client_context, server_context

DEFAULT_PORT: Final = 11112


class ConfigError(ValueError):
    """The configuration is unusable; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        head = f"{source}: " if source else ""
        super().__init__(head + ("; ".join(problems) if len(problems) == 1 else
                                 f"{len(problems)} problems:\n  " + "\n  ".join(problems)))


class Mode(Enum):
    STORE_AND_FORWARD = "store-and-forward"  # Success once durable in the spool; forwarded later
    PROXY = "proxy"  # the destination's answer is relayed to the sender


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path | None = None  # require client certificates signed by it


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    ae_title: str = "ROUTER"
    mode: Mode = Mode.STORE_AND_FORWARD
    promiscuous: bool = False
    allowed_calling: frozenset[str] | None = None
    tls: ServerTls | None = None
    max_associations: int = 1024
    max_pdu: int = 262_144
    max_operations: int = 16  # asynchronous operations window we perform (PS3.7 D.3.3.3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    name: str
    ae_title: str
    host: str
    port: int
    calling_ae: str
    max_associations: int = 2
    # What the destination should receive, in order of preference (empty: whatever it accepts, the
    # instance's own syntax first). Instances in other syntaxes are converted when possible.
    transfer_syntaxes: tuple[str, ...] = ()
    tls: ClientTls | None = None
    connect_timeout: float = 10.0
    dimse_timeout: float = 120.0
    idle_timeout: float = 30.0  # release a pooled association unused this long
    max_pdu: int = 262_144


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    initial: float = 1.0  # seconds before the first retry
    maximum: float = 300.0  # the backoff never grows past this
    multiplier: float = 2.0
    max_attempts: int = 20  # failed deliveries before an instance becomes a dead letter
    max_age: float = 7 * 86400.0  # seconds in the queue before it becomes a dead letter


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig:
    spool: Path
    ae_title: str = "ROUTER"
    sync: bool = True  # fsync the spool before Success; off: a crash may lose acknowledged instances
    sync_method: DataSync = DataSync.FDATASYNC  # how (serve --sync-method): syncfs, one per group, for many small
    workers: int = 1  # processes sharing the listeners (SO_REUSEPORT) and the spool, one event loop each
    memory_budget: int = DEFAULT_LIMIT  # received bytes held in memory at once, per process (net/budget.py)
    listeners: tuple[Listener, ...] = ()
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    rules: RuleSet | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    source: str = ""  # the file it came from


# ---- parsing ---------------------------------------------------------------------------------------

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(ms|s|m|h|d)?\s*")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DEST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class _Reader:
    """Typed access to one TOML table, collecting problems instead of stopping at the first."""

    def __init__(self, table: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.table, self.where, self.problems = table, where, problems
        self.used: set[str] = set()

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.where}.{key}: {text}" if key else f"{self.where}: {text}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"expected text, got {value!r}")
            return default
        return value.strip()

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(key)
        if value is None:
            return default
        if value not in choices:
            self.problem(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
            return default
        return value

    def ae(self, key: str, default: str | None = None) -> str | None:
        value = self.text(key, default)
        if value is not None and not is_valid_ae_title(value):
            self.problem(key, f"{value!r} is not an AE title (1-16 printable ASCII characters, no backslash)")
        return value

    def integer(self, key: str, default: int, low: int = 0, high: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            self.problem(key, f"expected an integer {bounds}, got {value!r}")
            return default
        return value

    def size(self, key: str, default: int, low: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        try:
            size = value if isinstance(value, int) and not isinstance(value, bool) else parse_size(str(value))
        except WorkloadError:
            size = -1
        if size < low:
            self.problem(key, f"expected a size of at least {low >> 20}M, like \"64M\" or \"1G\", got {value!r}")
            return default
        return size

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {value!r}")
            return default
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        m = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            self.problem(key, f"expected seconds or a duration like \"30s\", \"5m\", \"2h\", \"7d\", got {value!r}")
            return default
        return float(m[1]) * _UNITS[m[2]]

    def path(self, key: str, base: Path) -> Path | None:
        value = self.text(key)
        return None if value is None else (base / Path(value).expanduser())

    def table_of(self, key: str) -> Mapping[str, Any] | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(key, "expected a table")
            return None
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            self.problem("", f"unknown keys {unknown}")


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a config file; ConfigError lists every problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError([f"cannot read it: {exc.strerror or exc}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return parse_config(data, base=path.parent.absolute(), source=str(path))


def parse_config(data: Mapping[str, Any], *, base: Path, source: str = "") -> RouterConfig:
    problems: list[str] = []
    unknown = sorted(set(data) - {"router", "retry", "listener", "destination", "rule"})
    if unknown:
        problems.append(f"unknown sections {unknown} (router, retry, listener, destination, rule)")
    router = _Reader(_table(data, "router", problems), "router", problems)
    ae_title = router.ae("ae_title", "ROUTER") or "ROUTER"
    spool = router.path("spool", base) or base / "spool"
    sync = router.boolean("sync", True)
    sync_method = DataSync(router.choice("sync_method", DataSync.FDATASYNC.value, tuple(d.value for d in DataSync)))
    workers = router.integer("workers", 1, 1, 64)
    memory_budget = router.size("memory_budget", DEFAULT_LIMIT, SMALLEST_LIMIT)
    default = router._get("default")
    router.finish()

    retry = _retry(_table(data, "retry", problems), problems)
    listeners = _listeners(data.get("listener", []), ae_title, base, problems)
    destinations = _destinations(data.get("destination", {}), ae_title, base, problems)
    rules_raw = data.get("rule", [])
    if not isinstance(rules_raw, list):
        problems.append("rule: write each rule as a [[rule]] table")
        rules_raw = []
    ruleset, rule_problems = compile_rules(rules_raw, default, destinations)
    problems += rule_problems
    if workers > 1 and any(li.port == 0 for li in listeners):
        problems.append("router: workers > 1 needs a fixed port for every [[listener]] (each process binds it)")
    if problems:
        raise ConfigError(problems, source)
    return RouterConfig(spool=spool, ae_title=ae_title, sync=sync, sync_method=sync_method, workers=workers,
                        memory_budget=memory_budget, listeners=listeners, destinations=destinations,
                        rules=ruleset, retry=retry, source=source)


def _table(data: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        problems.append(f"{key}: expected a [{key}] table")
        return {}
    return value


def _retry(table: Mapping[str, Any], problems: list[str]) -> RetryPolicy:
    r = _Reader(table, "retry", problems)
    d = RetryPolicy()
    policy = RetryPolicy(initial=r.seconds("initial", d.initial), maximum=r.seconds("maximum", d.maximum),
                         multiplier=d.multiplier, max_attempts=r.integer("max_attempts", d.max_attempts, 1),
                         max_age=r.seconds("max_age", d.max_age))
    multiplier = table.get("multiplier")
    r.used.add("multiplier")
    if multiplier is not None:
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier < 1:
            r.problem("multiplier", f"expected a number >= 1, got {multiplier!r}")
        else:
            policy = RetryPolicy(initial=policy.initial, maximum=policy.maximum, multiplier=float(multiplier),
                                 max_attempts=policy.max_attempts, max_age=policy.max_age)
    if policy.maximum < policy.initial:
        r.problem("maximum", f"{policy.maximum} s is below initial ({policy.initial} s)")
    r.finish()
    return policy


def _server_tls(raw: Any, where: str, base: Path, problems: list[str]) -> ServerTls | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.append(f"{where}.tls: expected {{ cert = \"...\", key = \"...\", ca = \"...\" }}")
        return None
    r = _Reader(raw, f"{where}.tls", problems)
    cert, key, ca = r.path("cert", base), r.path("key", base), r.path("ca", base)
    r.finish()
    if cert is None or key is None:
        r.problem("", "needs cert and key")
        return None
    missing = False
    for p, name in ((cert, "cert"), (key, "key"), (ca, "ca")):
        if p is not None and not p.is_file():
            r.problem(name, f"no such file: {p}")
            missing = True
    if not missing:
        try:  # as start-up will: a file that is there but does not load is found now
            server_context(where, cert, key, ca)
        except TlsFileError as exc:
            problems += exc.problems
    return ServerTls(cert=cert, key=key, ca=ca)


def _client_tls(raw: Any, where: str, base: Path, problems: list[str]) -> ClientTls | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return ClientTls()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}.tls: expected true or "
                        f"{{ ca = \"...\", cert = \"...\", key = \"...\", verify = true }}")
        return None
    r = _Reader(raw, f"{where}.tls", problems)
    tls = ClientTls(ca=r.path("ca", base), cert=r.path("cert", base), key=r.path("key", base),
                    verify=r.boolean("verify", True))
    r.finish()
    usable = (tls.cert is None) == (tls.key is None)
    if not usable:
        r.problem("", "cert and key go together")
    for p, name in ((tls.ca, "ca"), (tls.cert, "cert"), (tls.key, "key")):
        if p is not None and not p.is_file():
            r.problem(name, f"no such file: {p}")
            usable = False
    if usable:
        try:  # as start-up will: a file that is there but does not load is found now
            client_context(where, tls.ca, tls.cert, tls.key, tls.verify)
        except TlsFileError as exc:
            problems += exc.problems
    return tls


def _listeners(raw: Any, ae_title: str, base: Path, problems: list[str]) -> tuple[Listener, ...]:
    if not isinstance(raw, list):
        problems.append("listener: write each listener as a [[listener]] table")
        return ()
    out: list[Listener] = []
    for i, table in enumerate(raw, 1):
        where = f"listener {i}"
        if not isinstance(table, Mapping):
            problems.append(f"{where}: expected a table")
            continue
        r = _Reader(table, where, problems)
        mode_text = r.text("mode", Mode.STORE_AND_FORWARD.value)
        try:
            mode = Mode(mode_text)
        except ValueError:
            r.problem("mode", f"{mode_text!r} is not \"store-and-forward\" or \"proxy\"")
            mode = Mode.STORE_AND_FORWARD
        allowed = r._get("allow_aet")
        if allowed is not None and not (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
            r.problem("allow_aet", "expected a list of AE titles")
            allowed = None
        out.append(Listener(
            host=r.text("host", "127.0.0.1") or "127.0.0.1", port=r.integer("port", DEFAULT_PORT, 0, 65535),
            ae_title=r.ae("ae_title", ae_title) or ae_title, mode=mode, promiscuous=r.boolean("promiscuous", False),
            allowed_calling=frozenset(allowed) if allowed else None,
            tls=_server_tls(r._get("tls"), where, base, problems),
            max_associations=r.integer("max_associations", 1024, 1), max_pdu=r.integer("max_pdu", 262_144, 0),
            max_operations=r.integer("max_operations", 16, 1, 65535),
        ))
        r.finish()
    ports = [(li.host, li.port) for li in out if li.port]
    for hp in {p for p in ports if ports.count(p) > 1}:
        problems.append(f"listener: {hp[0]}:{hp[1]} is configured twice")
    return tuple(out)


def _destinations(raw: Any, ae_title: str, base: Path, problems: list[str]) -> dict[str, Destination]:
    if not isinstance(raw, Mapping):
        problems.append("destination: write each as a [destination.NAME] table")
        return {}
    out: dict[str, Destination] = {}
    for name, table in raw.items():
        where = f"destination.{name}"
        if not _DEST_NAME.fullmatch(name):
            problems.append(f"{where}: a destination name is 1-64 letters, digits, '.', '_' or '-' (it names folders)")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{where}: expected a table")
            continue
        r = _Reader(table, where, problems)
        host = r.text("host")
        port = r.integer("port", 0, 1, 65535)
        dest_ae = r.ae("ae_title")
        if host is None:
            r.problem("host", "missing")
        if "port" not in table:
            r.problem("port", "missing")
        if dest_ae is None:
            r.problem("ae_title", "missing (the called AE title)")
        syntaxes: list[str] = []
        raw_ts = r._get("transfer_syntaxes") or []
        if not isinstance(raw_ts, list):
            r.problem("transfer_syntaxes", "expected a list of transfer syntax UIDs or keywords")
            raw_ts = []
        for item in raw_ts:
            uid = transfer_syntax_uid(item) if isinstance(item, str) else None
            if uid is None:
                r.problem("transfer_syntaxes", f"{item!r} is not a transfer syntax UID or keyword "
                                               f"(e.g. ExplicitVRLittleEndian, JPEG2000Lossless)")
            else:
                syntaxes.append(uid)
        d = Destination(
            name=name, ae_title=dest_ae or "", host=host or "", port=port,
            calling_ae=r.ae("calling_ae", ae_title) or ae_title,
            max_associations=r.integer("max_associations", 2, 1, 64), transfer_syntaxes=tuple(dict.fromkeys(syntaxes)),
            tls=_client_tls(r._get("tls"), where, base, problems),
            connect_timeout=r.seconds("connect_timeout", 10.0), dimse_timeout=r.seconds("dimse_timeout", 120.0),
            idle_timeout=r.seconds("idle_timeout", 30.0), max_pdu=r.integer("max_pdu", 262_144, 0),
        )
        r.finish()
        out[name] = d
    return out
