"""A Storage SCP with a handler of your own: log each instance, keep only CT, refuse the rest.

    python examples/custom_storage_handler.py --port 11113
    storescu -aec MYSCP 127.0.0.1 11113 image.dcm
"""

from __future__ import annotations

import argparse

import anyio

from aiodicom import Dispatcher, Result, Server, ServerConfig
from aiodicom.dimse import status
from aiodicom.dimse.messages import CStoreRQ
from aiodicom.services import verification
from aiodicom.uids import ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


async def on_store(req) -> Result:
    # req.payload is the data set as received (in memory, or spooled to a temp file when large);
    # decoding it costs time, so only do it when the handler needs the attributes.
    if req.message.affected_sop_class_uid != CT_IMAGE_STORAGE:
        return Result(status=status.OUT_OF_RESOURCES, error_comment="this node keeps CT only")
    ds = req.dataset()
    print(f"{req.calling_ae}: {ds.PatientName} {ds.Modality} {req.message.affected_sop_instance_uid}")
    return Result(status=status.SUCCESS)


async def main(port: int) -> None:
    dispatcher = Dispatcher()
    verification.install(dispatcher)
    dispatcher.support(STORAGE_SOP_CLASSES, ALL_TRANSFER_SYNTAXES)
    dispatcher.add(CStoreRQ, on_store)
    await Server(ServerConfig(host="127.0.0.1", port=port, ae_title="MYSCP"), dispatcher).serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=11113)
    anyio.run(main, parser.parse_args().port, backend_options={"use_uvloop": True})
