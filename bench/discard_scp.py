"""aiodicom's receive path with storage taken out: a Server whose Dispatcher answers every C-STORE with
Success and keeps nothing (the counterpart of DCMTK `storescp --ignore`).

Every PDU is still framed, every PDV assembled and every command decoded: only the file write and
fsync are gone. Fragments go to a sink that counts them; on SIGTERM the counts are written to
--count-file so the bench can check that everything arrived.

    python bench/discard_scp.py --port P [--count-file FILE]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiodicom.cli.common import run
from aiodicom.dimse import status as st
from aiodicom.dimse.messages import CStoreRQ
from aiodicom.net.dispatch import Dispatcher, Result, ServiceRequest
from aiodicom.net.server import Server, ServerConfig
from aiodicom.services import verification
from aiodicom.uids import ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from aiodicom.ul.machine import UlConfig


class Counts:
    def __init__(self) -> None:
        self.instances = 0
        self.bytes = 0


class _CountingSink:
    """Takes each fragment and drops it (fragments are slices of the received PDU: nothing to free)."""

    __slots__ = ("counts", "size")

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.size = 0

    def write(self, data: memoryview) -> None:
        self.size += len(data)

    def close(self) -> int:
        return self.size

    def abort(self) -> None:
        self.size = 0


def build(port: int, counts: Counts) -> Server:
    dispatcher = Dispatcher()
    verification.install(dispatcher)
    dispatcher.support(STORAGE_SOP_CLASSES, ALL_TRANSFER_SYNTAXES)

    async def on_store(req: ServiceRequest) -> Result:
        counts.instances += 1
        counts.bytes += req.payload if isinstance(req.payload, int) else 0
        return Result(status=st.SUCCESS)

    dispatcher.add(CStoreRQ, on_store, sink=lambda assoc, message, context_id: _CountingSink(counts), inline=True)
    config = ServerConfig(host="127.0.0.1", port=port, ae_title="AIODICOM", promiscuous=True,
                          max_associations=20_000, ul=UlConfig(max_pdu=262_144, artim=30.0))
    return Server(config, dispatcher)


async def main(args: argparse.Namespace) -> int:
    counts = Counts()
    server = build(args.port, counts)
    async with anyio.create_task_group() as tg:
        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    server.shutdown()
                    return

        tg.start_soon(stop_on_signal)
        await server.serve()
        tg.cancel_scope.cancel()
    if args.count_file:
        Path(args.count_file).write_text(json.dumps({"instances": counts.instances, "bytes": counts.bytes}))
    return 0


if __name__ == "__main__":
    from aiodicom.log import configure

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count-file")
    configure(level="warning", fmt="json")
    sys.exit(run(main, p.parse_args()))
