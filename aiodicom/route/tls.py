"""The router's TLS contexts, built one way for `route --check` and for start-up, so that a certificate, key or
CA file that cannot be loaded is found by the check and named as the configuration names it."""

from __future__ import annotations

import ssl
from pathlib import Path

from ..net import tlsfiles
from ..net.tlsfiles import TlsFileError

__all__ = ["TlsFileError", "client_context", "server_context"]


def _label(where: str) -> tlsfiles.Label:
    return lambda name: f"{where}.tls.{name}" if name else f"{where}.tls"


def server_context(where: str, cert: Path, key: Path, ca: Path | None) -> ssl.SSLContext:
    """A listener's context; `where` names its table in problems (`listener 1`)."""
    return tlsfiles.server_context(cert, key, ca, label=_label(where))


def client_context(where: str, ca: Path | None, cert: Path | None, key: Path | None,
                   verify: bool) -> ssl.SSLContext:
    """A destination's context; `where` names its table in problems (`destination.PACS`)."""
    return tlsfiles.client_context(ca, cert, key, verify=verify, label=_label(where))
