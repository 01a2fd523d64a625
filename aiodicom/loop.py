"""Which event loop runs us: the fast paths that talk to asyncio directly need to know it is asyncio."""

from __future__ import annotations

import asyncio


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop (uvloop's too), or None under another anyio backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
