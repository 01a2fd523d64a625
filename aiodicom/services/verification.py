"""Verification SOP Class SCP (PS3.4 Annex A): C-ECHO answers Success."""

from __future__ import annotations

from ..dimse import status as st
from ..dimse.messages import CEchoRQ
from ..net.dispatch import Dispatcher, ServiceRequest
from ..uids import ALL_TRANSFER_SYNTAXES, VERIFICATION


async def echo(req: ServiceRequest) -> int:
    return st.SUCCESS


def install(dispatcher: Dispatcher) -> None:
    dispatcher.support({VERIFICATION: ALL_TRANSFER_SYNTAXES})
    dispatcher.add(CEchoRQ, echo, inline=True)
