"""An SCU embedded in your own code: echo a peer, then send every file of a folder on one association.

    python examples/scu_echo_and_store.py 127.0.0.1 11112 AIODICOM ./study
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

import aiodicom
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.uids import VERIFICATION


async def main(host: str, port: int, called_ae: str, folder: str) -> int:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    # propose each SOP class in each transfer syntax found (a file is sent as it is encoded)
    contexts = {VERIFICATION: {"1.2.840.10008.1.2"}}
    for path in files:
        _, meta = EncodedDataset.from_file(path)
        contexts.setdefault(meta.sop_class_uid, set()).add(meta.transfer_syntax)
    proposals = [(sop_class, sorted(tss)) for sop_class, tss in contexts.items()]
    failures = 0
    async with aiodicom.connect(host, port, called_ae=called_ae, contexts=proposals) as assoc:
        print("echo:", await assoc.echo())
        for path in files:
            status = await assoc.store(path)
            failures += not status.ok
            print(f"{path}: {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    host, port, aec, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sys.exit(anyio.run(main, host, port, aec, folder))
