"""Several services behind one DIMSE request type, chosen by SOP class.

A dispatcher holds one handler per request type; N-CREATE serves MPPS and Print, N-ACTION serves
Storage Commitment and Print, and so on. A `SopClassRouter` is that one handler: it looks at the
SOP class the message names (Affected or Requested SOP Class UID) and calls the service for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dimse import status as st
from ..dimse.messages import Request
from ..net.dispatch import Dispatcher, Handler, Result, ServiceRequest, message_sop_class


class SopClassRouter:
    """Routes (request type, SOP class) to a handler; one router per dispatcher."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.routes: dict[type[Request], dict[str, Handler]] = {}

    @classmethod
    def for_dispatcher(cls, dispatcher: Dispatcher) -> SopClassRouter:
        router = getattr(dispatcher, "_sop_class_router", None)
        if router is None:
            router = cls(dispatcher)
            dispatcher._sop_class_router = router  # type: ignore[attr-defined]
        return router

    def add(self, request_type: type[Request], sop_class_uid: str, handler: Handler) -> None:
        table = self.routes.setdefault(request_type, {})
        if not table:
            self.dispatcher.add(request_type, self._route_for(table))
        table[sop_class_uid] = handler

    def _route_for(self, table: dict[str, Handler]) -> Callable[[ServiceRequest], Any]:
        def route(req: ServiceRequest) -> Any:
            handler = table.get(message_sop_class(req.message))
            if handler is None:
                return _not_served(req, recognized=message_sop_class(req.message) in self.dispatcher.supported)
            return handler(req)

        return route


async def _not_served(req: ServiceRequest, *, recognized: bool) -> Result:
    """The SOP class the message names is not served by this operation. A C-service: 0x0122 SOP Class not
    supported (PS3.4 C.4.1.1.4, as DCMTK answers). An N-service on a class we serve otherwise: the operation is
    not one of its own, 0x0211 Unrecognized operation (PS3.7 C.4.2), e.g. N-GET of an MPPS; on another class,
    0x0118 No such SOP Class (PS3.7 C.5.11)."""
    sop_class = message_sop_class(req.message)
    if req.message.command_field < 0x0100:
        status = st.SOP_CLASS_NOT_SUPPORTED
    else:
        status = st.UNRECOGNIZED_OPERATION if recognized else st.NO_SUCH_SOP_CLASS
    return Result(status=status, error_comment=f"{type(req.message).__name__} not supported for {sop_class}")
