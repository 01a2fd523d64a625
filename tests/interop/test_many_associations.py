"""1,000 associations open at the same moment against one `aiodicom serve`, driven by the raw asyncio client.

Every client associates, then waits at a barrier until all 1,000 are associated (so the server really holds
them all at once), then sends a C-ECHO and releases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.peers import HOST, Running, aiodicom_serve
from tests.rawdicom import (
    SUCCESS,
    VERIFICATION,
    AsyncRawClient,
    ProposedContext,
    echo_cycle,
    raise_nofile_limit,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

AET = "AIODICOM"
N = 1_000
STEP_TIMEOUT = 60.0  # per read or write; generous for 1,000 peers on two cores, still far from a hang
ECHO_CTX = (ProposedContext(1, VERIFICATION),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    # Raised before the server starts: it inherits the limit. Each side needs one descriptor per association.
    limit = raise_nofile_limit()
    assert limit >= N + 256, f"RLIMIT_NOFILE hard limit {limit} is too low for {N} associations"
    limits = ("--max-associations", str(2 * N), "--max-associations-per-host", str(2 * N))
    with aiodicom_serve(tmp_path_factory.mktemp("many"), *limits) as r:
        yield r


async def _associate_all_then_echo(port: int, n: int) -> tuple[list[str], int]:
    """Failures (one line each) and how many associations were open together at the barrier."""
    barrier = asyncio.Barrier(n)
    at_barrier = 0

    async def one(i: int) -> str | None:
        nonlocal at_barrier
        client: AsyncRawClient | None = None
        try:
            client = await AsyncRawClient.connect(HOST, port, timeout=STEP_TIMEOUT)
            await client.associate(AET, f"MANY{i}", ECHO_CTX)
            at_barrier += 1
            await barrier.wait()  # every association is established at this moment
            status = await client.echo(1, message_id=i + 1)
            if status != SUCCESS:
                return f"#{i}: C-ECHO status {status:#06x}"
            await client.release()
            return None
        except (AssertionError, OSError, TimeoutError, asyncio.BrokenBarrierError) as exc:
            await barrier.abort()  # release the others instead of leaving them waiting for this one
            return f"#{i}: {exc!r}"
        finally:
            if client is not None:
                await client.aclose()

    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    failures = [o for o in outcomes if o is not None]
    failures.sort(key=lambda line: "BrokenBarrierError" in line)  # root causes first, their echoes after
    return failures, at_barrier


def test_1000_concurrent_associations_each_echo_and_release(server: Running) -> None:
    failures, together = asyncio.run(_associate_all_then_echo(server.port, N))
    assert not failures, f"{len(failures)} of {N} failed, e.g. {failures[:5]}"
    assert together == N
    assert server.proc.poll() is None
    assert echo_cycle(HOST, server.port, AET) == SUCCESS  # and it still serves the next peer
