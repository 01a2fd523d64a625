"""TLS contexts from certificate, key and CA files, with a failure that names the file at fault.

OpenSSL loads certificate and key in one call and says only "[SSL] PEM lib": on failure each file is loaded
again alone to find which one it is. The CLI's options and the router's configuration share this, each
naming files in its own terms (`label`: "--tls-cert", "listener 1.tls.cert").
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path

from .transport import client_ssl_context, server_ssl_context

Label = Callable[[str], str]  # "cert", "key", "ca", or "" for the set as a whole -> how the user names it


class TlsFileError(ValueError):
    """Files that cannot be loaded; `problems`, one per file, each starting with the file's label."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def server_context(cert: Path | str, key: Path | str | None, ca: Path | str | None, *,
                   label: Label) -> ssl.SSLContext:
    cert, key, ca = _path(cert), _path(key), _path(ca)
    try:
        return server_ssl_context(str(cert), str(key) if key else None, str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(diagnose(exc, ca=ca, cert=cert, key=key, label=label)) from None


def client_context(ca: Path | str | None, cert: Path | str | None, key: Path | str | None, *, verify: bool,
                   label: Label) -> ssl.SSLContext:
    ca, cert, key = _path(ca), _path(cert), _path(key)
    try:
        return client_ssl_context(str(ca) if ca else None, str(cert) if cert else None, str(key) if key else None,
                                  verify=verify)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(diagnose(exc, ca=ca, cert=cert, key=key, label=label)) from None


def diagnose(exc: OSError, *, ca: Path | None, cert: Path | None, key: Path | None, label: Label) -> list[str]:
    """Every file that fails, each loaded alone; the key with its certificate, so that "not this
    certificate's key" is found too."""
    problems = []
    for name, path in (("cert", cert), ("ca", ca)):
        why = _load_problem(path) if path is not None else None
        if why is not None:
            problems.append(f"{label(name)}: cannot load {path}: {why} (expected PEM certificates)")
    if cert is not None and not any(p.startswith(f"{label('cert')}:") for p in problems):
        why = _load_problem(cert, key, chain=True)
        if why is not None:
            problems.append(f"{label('key')}: cannot load {key or cert} as the private key of {cert}: {why}")
    return problems or [f"{label('')}: {_reason(exc)}"]


def _path(p: Path | str | None) -> Path | None:
    return None if p is None or p == "" else Path(p)


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
