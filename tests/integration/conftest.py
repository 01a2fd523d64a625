"""In-process server fixtures: our SCP and SCU in one event loop, no subprocess."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from aiodicom.archive.filestore import FileStore
from aiodicom.net.dispatch import Dispatcher
from aiodicom.net.server import Server, ServerConfig
from aiodicom.services import storage, verification
from aiodicom.ul.machine import UlConfig


@pytest.fixture
def anyio_backend():
    return "asyncio"


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, *, dispatcher: Dispatcher | None = None, **config) -> AsyncIterator[Server]:
    """Our SCP on 127.0.0.1, an ephemeral port, storing under tmp_path/storage unless a dispatcher is given."""
    store = None
    if dispatcher is None:
        store = FileStore(tmp_path / "storage")
        dispatcher = Dispatcher()
        verification.install(dispatcher)
        storage.install(dispatcher, store)
    config.setdefault("ul", UlConfig(artim=5.0))
    server = Server(ServerConfig(host="127.0.0.1", port=0, ae_title="AIODICOM", **config), dispatcher)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
            if store is not None:
                store.close()
