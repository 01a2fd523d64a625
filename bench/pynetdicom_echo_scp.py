"""A pynetdicom Verification SCP that admits many associations (its default is 10), for the idle-hold and
associations-per-second scenarios. Run as its own process: pynetdicom's two threads per association stay
out of the bench's process.

    python bench/pynetdicom_echo_scp.py --port P [--max-associations N]
"""

from __future__ import annotations

import argparse
import logging
import sys

from pynetdicom import AE
from pynetdicom.sop_class import Verification


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aet", default="PYNETDICOM")
    p.add_argument("--max-associations", type=int, default=1000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    ae = AE(ae_title=args.aet)
    ae.maximum_associations = args.max_associations
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_supported_context(Verification)
    ae.start_server((args.host, args.port), block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
