"""The router's TLS contexts, built one way for `route --check` and for start-up, so that a certificate, key or
CA file that cannot be loaded is found by the check, and named: ssl alone says "[SSL] PEM lib" and no file."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from ..net.transport import client_ssl_context, server_ssl_context


class TlsFileError(ValueError):
    """Files of one `tls` table that cannot be loaded; `problems` are worded as configuration problems."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def server_context(where: str, cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """A listener's context; `where` names its table in problems (`listener 1`)."""
    try:
        return server_ssl_context(str(cert), str(key), str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(_diagnose(where, exc, ca=ca, cert=cert, key=key)) from None


def client_context(where: str, ca: Path | None, cert: Path | None, key: Path | None,
                   verify: bool) -> ssl.SSLContext:
    """A destination's context; `where` names its table in problems (`destination.PACS`)."""
    try:
        return client_ssl_context(str(ca) if ca else None, str(cert) if cert else None, str(key) if key else None,
                                  verify=verify)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(_diagnose(where, exc, ca=ca, cert=cert, key=key)) from None


def _diagnose(where: str, exc: OSError, *, ca: Path | None, cert: Path | None, key: Path | None) -> list[str]:
    """Every file that fails, each loaded alone (OpenSSL loads certificate and key in one call and stops at
    the first failure); the key with its certificate, so "not this certificate's key" is found too."""
    problems = []
    for name, path in (("cert", cert), ("ca", ca)):
        why = _load_problem(path) if path is not None else None
        if why is not None:
            problems.append(f"{where}.tls.{name}: cannot load {path}: {why} (expected PEM certificates)")
    if cert is not None and not any(p.startswith(f"{where}.tls.cert:") for p in problems):
        why = _load_problem(cert, key, chain=True)
        if why is not None:
            problems.append(f"{where}.tls.key: cannot load {key or cert} as the private key of {cert}: {why}")
    return problems or [f"{where}.tls: {_reason(exc)}"]


def _load_problem(cert: Path, key: Path | None = None, *, chain: bool = False) -> str | None:
    """Why `cert` (as trusted certificates), or with `chain` `cert` and `key` (as our own), do not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if chain:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
        else:
            ctx.load_verify_locations(cafile=str(cert))
    except (ssl.SSLError, OSError) as exc:
        return _reason(exc)
    return None


def _reason(exc: OSError) -> str:
    if not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror  # e.g. "Permission denied"
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(exc))  # the C source line helps nobody here
