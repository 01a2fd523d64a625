"""What every CLI command shares: client options, running on uvloop, one clear line per failure."""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..log import configure
from ..net.errors import AssociationError, ConnectionFailed
from ..net import tlsfiles

EXIT_OK = 0
EXIT_FAILURE_STATUS = 1  # some operation answered a non-success status
EXIT_USAGE = 2
EXIT_ASSOCIATION = 3  # refused, rejected, aborted, timed out


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("host", help="peer host name or address")
    p.add_argument("port", type=int, help="peer TCP port")
    p.add_argument("--aet", default="AIODICOM", metavar="AET", help="calling AE title (default AIODICOM)")
    p.add_argument("--aec", default="ANY-SCP", metavar="AET", help="called AE title (default ANY-SCP)")
    p.add_argument("--max-pdu", type=int, default=262_144, help="maximum PDU length we receive")
    p.add_argument("--timeout", type=float, default=30.0, help="connect and ACSE timeout in seconds")
    p.add_argument("--dimse-timeout", type=float, default=60.0, help="seconds to wait for each response")
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
    """Run a coroutine on uvloop when installed; association failures become one line and exit 3."""
    try:
        return anyio.run(func, *args, backend_options=_backend_options())
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except ConnectionFailed as exc:
        return fail(str(exc), EXIT_ASSOCIATION)
    except AssociationError as exc:
        return fail(str(exc), EXIT_ASSOCIATION)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
