"""What every CLI command shares: client options, running on uvloop, one clear line per failure."""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..archive.uid import validate_ae_title
from ..log import configure
from ..net.errors import AssociationError, ConnectionFailed
from ..net import tlsfiles

EXIT_OK = 0
EXIT_FAILURE_STATUS = 1  # some operation answered a non-success status
EXIT_USAGE = 2
EXIT_ASSOCIATION = 3  # refused, rejected, aborted, timed out


# argparse types: a bad value is one usage line (exit 2) naming the option, never a failure later on
def port_number(text: str) -> int:
    """A TCP port to connect to: 1-65535 (a larger number would silently wrap around to another port)."""
    return _bounded_int(text, 1, 65535, "a TCP port")


def listen_port(text: str) -> int:
    """A TCP port to listen on: 0-65535, 0 for one the system picks."""
    return _bounded_int(text, 0, 65535, "a TCP port")


def positive_int(text: str) -> int:
    return _bounded_int(text, 1, None, "a positive whole number")


def _bounded_int(text: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what} ({bounds})")
    return value


def seconds(text: str) -> float:
    """A timeout: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def ae_title(text: str) -> str:
    """An AE title as peers compare it (PS3.5 §6.2 AE: 1-16 characters, no backslash or control characters)."""
    try:
        return validate_ae_title(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("host", help="peer host name or address")
    p.add_argument("port", type=port_number, help="peer TCP port")
    p.add_argument("--aet", type=ae_title, default="AIODICOM", metavar="AET", help="calling AE title (default AIODICOM)")
    p.add_argument("--aec", type=ae_title, default="ANY-SCP", metavar="AET",
                   help="called AE title (default ANY-SCP; `aiodicom serve` answers only to its --aet, AIODICOM)")
    p.add_argument("--max-pdu", type=positive_int, default=262_144, help="maximum PDU length we receive")
    p.add_argument("--timeout", type=seconds, default=30.0, help="connect and ACSE timeout in seconds (default 30)")
    p.add_argument("--dimse-timeout", type=seconds, default=60.0,
                   help="seconds to wait for each response (default 60)")
    p.add_argument("--user", metavar="NAME", help="user identity: username (PS3.7 D.3.3.7)")
    p.add_argument("--password", metavar="SECRET", help="user identity: passcode (with --user)")
    add_tls_client_options(p)
    add_log_options(p)


def user_identity_from_args(args: argparse.Namespace):
    """The User Identity sub-item for --user/--password (type 1 username, 2 username and passcode)."""
    if not getattr(args, "user", None):
        return None
    from ..ul.pdu import UserIdentityRQ

    if args.password is None:
        return UserIdentityRQ(identity_type=1, positive_response_requested=False, primary=args.user.encode())
    return UserIdentityRQ(identity_type=2, positive_response_requested=False, primary=args.user.encode(),
                          secondary=args.password.encode())


def add_tls_client_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS")
    g.add_argument("--tls", action="store_true", help="use TLS (DICOM TLS profiles, PS3.15 B.1)")
    g.add_argument("--tls-ca", metavar="FILE", help="CA certificates to verify the peer with")
    g.add_argument("--tls-cert", metavar="FILE", help="our certificate (when the peer asks for one)")
    g.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    g.add_argument("--tls-no-verify", action="store_true", help="do not verify the peer's certificate")


def add_log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="log level (default: warning for clients, info for servers)")
    p.add_argument("--log-format", choices=("auto", "text", "json"), default="auto")


def setup_logging(args: argparse.Namespace, default: str = "warning") -> None:
    level = args.log_level or {0: default, 1: "info"}.get(args.verbose, "debug")
    configure(level=level, fmt=args.log_format)


class UsageError(Exception):
    """A bad option value found after parsing (e.g. a TLS file that cannot be read): one line, exit 2."""


def _tls_label(name: str) -> str:
    return f"--tls-{name}" if name else "TLS"


def server_tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """An SCP's context for --tls-cert/--tls-key/--tls-ca; a file that cannot be loaded is a UsageError naming it."""
    if not args.tls_cert:
        return None
    try:
        return tlsfiles.server_context(args.tls_cert, args.tls_key, args.tls_ca, label=_tls_label)
    except tlsfiles.TlsFileError as exc:
        raise UsageError(f"TLS: {exc}") from None


def ssl_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """An SCU's context for --tls/--tls-ca/--tls-cert/--tls-key; a file that cannot be loaded is a UsageError."""
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    try:
        return tlsfiles.client_context(args.tls_ca, args.tls_cert, args.tls_key, verify=not args.tls_no_verify,
                                       label=_tls_label)
    except tlsfiles.TlsFileError as exc:
        raise UsageError(f"TLS: {exc}") from None


def fail(message: str, code: int) -> int:
    print(f"aiodicom: {message}", file=sys.stderr)
    return code


def run(func: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run a coroutine on uvloop when installed. What a user can meet becomes one line: a bad argument (exit 2),
    an association refused, rejected, aborted or timed out (exit 3), a port in use, a folder that cannot be
    created or another system error (exit 1)."""
    try:
        return anyio.run(func, *args, backend_options=_backend_options())
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BaseException as exc:  # a task group wraps what went wrong: unwrap one error to say it in one line
        cause = single_error(exc)
        if isinstance(cause, UsageError):
            return fail(str(cause), EXIT_USAGE)
        if isinstance(cause, (ConnectionFailed, AssociationError)):
            return fail(str(cause), EXIT_ASSOCIATION)
        if isinstance(cause, OSError):  # e.g. the port is taken, the storage folder cannot be created
            return fail(str(cause), EXIT_FAILURE_STATUS)
        raise


def single_error(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups of one error each, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
