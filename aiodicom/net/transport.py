"""Sockets: TCP (and TLS) connections and listeners, tuned for DICOM traffic."""

from __future__ import annotations

import contextlib
import resource
import socket
import ssl

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener
from anyio.streams.tls import TLSStream

LISTEN_BACKLOG = 4096  # a burst of thousands of connects must not be refused (capped by net.core.somaxconn)
RECEIVE_SIZE = 262_144  # one read may carry several PDUs; fewer, larger reads cost less per byte


def tune(stream: ByteStream) -> None:
    """TCP_NODELAY: DIMSE is request/response, Nagle would add a delayed-ACK wait to every message."""
    with contextlib.suppress(Exception):
        sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_connection(host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                          server_hostname: str | None = None) -> ByteStream:
    stream: ByteStream = await anyio.connect_tcp(host, port)
    tune(stream)
    if ssl_context is not None:
        try:
            stream = await TLSStream.wrap(stream, server_side=False, hostname=server_hostname or host,
                                          ssl_context=ssl_context, standard_compatible=False)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
    return stream


async def start_tls_server_side(stream: ByteStream, ssl_context: ssl.SSLContext) -> ByteStream:
    return await TLSStream.wrap(stream, server_side=True, ssl_context=ssl_context, standard_compatible=False)


async def create_listener(host: str, port: int, *, reuse_port: bool = False) -> SocketListener:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=LISTEN_BACKLOG,
                                               reuse_port=reuse_port)
    return listener.listeners[0] if len(listener.listeners) == 1 else listener  # type: ignore[return-value]


def peer_address(stream: ByteStream) -> tuple[str, int]:
    with contextlib.suppress(Exception):
        addr = stream.extra(SocketAttribute.remote_address)
        return str(addr[0]), int(addr[1])
    return ("?", 0)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (each association is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


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
