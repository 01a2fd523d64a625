"""aiodicom: an asyncio DICOM network engine (PS3.7 DIMSE over the PS3.8 Upper Layer).

    async with aiodicom.connect("pacs.example", 104, called_ae="PACS", contexts=[...]) as assoc:
        await assoc.echo()
        await assoc.store("image.dcm")
"""

from .dimse.dataset import EncodedDataset
from .net.client import Client, Status, connect
from .net.dispatch import Dispatcher, Result, ServiceRequest
from .net.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    AssociationTimeout,
    ConnectionFailed,
    NoPresentationContext,
)
from .net.server import Server, ServerConfig

__version__ = "0.1.0"

__all__ = [
    "AssociationAborted", "AssociationError", "AssociationRejected", "AssociationTimeout", "Client",
    "ConnectionFailed", "Dispatcher", "EncodedDataset", "NoPresentationContext", "Result", "Server",
    "ServerConfig", "ServiceRequest", "Status", "connect",
]
