"""Sockets: TCP (and TLS) connections and listeners, tuned for DICOM traffic."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
from collections.abc import Callable
from pathlib import Path

from .stream import FastStream, StreamProtocol, open_stream

LISTEN_BACKLOG = 4096  # a burst of thousands of connects must not be refused (capped by net.core.somaxconn)
RECEIVE_SIZE = 1 << 20  # one chunk as the transport delivered it (uvloop reads up to 256 KiB at a time)


async def open_connection(host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                          server_hostname: str | None = None, handshake_timeout: float | None = None) -> FastStream:
    """A TCP (TLS when given a context) connection; TCP_NODELAY set."""
    return await open_stream(host, port, ssl_context=ssl_context, server_hostname=server_hostname,
                             ssl_handshake_timeout=handshake_timeout)


async def start_server(on_connect: Callable[[StreamProtocol], None], host: str, port: int, *,
                       ssl_context: ssl.SSLContext | None = None, handshake_timeout: float | None = None,
                       reuse_port: bool = False) -> asyncio.Server:
    """Listen; `on_connect(protocol)` runs (in the loop) for each connection once it is open (after the
    TLS handshake when serving TLS)."""

    def factory() -> StreamProtocol:
        protocol = StreamProtocol()
        protocol.on_connect = on_connect
        return protocol

    kwargs = {}
    if ssl_context is not None:
        kwargs = {"ssl": ssl_context, "ssl_handshake_timeout": handshake_timeout}
    return await asyncio.get_running_loop().create_server(
        factory, host, port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port or None, **kwargs)


NR_OPEN_FALLBACK = 1 << 20  # Linux's default fs.nr_open, for systems that do not tell us theirs


def open_file_limits(soft: int, hard: int, nr_open: int) -> tuple[int, int]:
    """The (soft, hard) RLIMIT_NOFILE to set: the soft limit raised to the hard limit, or to `nr_open` (the most
    descriptors the kernel gives one process) when the hard limit is unlimited; never lowered. The hard limit
    stays as it is: lowering it could not be undone by this process."""
    if soft == resource.RLIM_INFINITY:
        return soft, hard
    return max(soft, nr_open if hard == resource.RLIM_INFINITY else hard), hard


def kernel_nr_open() -> int:
    """Linux's fs.nr_open (the ceiling of any process's open-file limit); a common default elsewhere."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return NR_OPEN_FALLBACK


def raise_open_file_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (each association is one descriptor); the hard limit
    stays as it is. Returns (soft limit now, the most it could be: the hard limit, or fs.nr_open when that is
    unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nr_open = kernel_nr_open()
    wanted = open_file_limits(soft, hard, nr_open)
    if wanted != (soft, hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            soft = wanted[0]
    return soft, (nr_open if hard == resource.RLIM_INFINITY else hard)


def server_ssl_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS for an SCP; with `ca`, clients must present a certificate it signed (DICOM TLS profiles)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                       verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
