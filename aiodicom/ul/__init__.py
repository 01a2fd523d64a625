"""The DICOM Upper Layer (PS3.8), sans-IO: PDU codec, negotiation and the §9.2 state machine."""

from .constants import AbortReason, AbortSource, ContextResult, RejectResult, RejectSource
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .fsm import Ev, State
from .machine import Role, UlConfig, UpperLayer
from .pdv import Pdv

__all__ = [
    "AbortReason", "AbortSource", "ContextResult", "Ev", "LocalProtocolError", "Pdv", "ProtocolError",
    "RejectResult", "RejectSource", "RemoteProtocolError", "Role", "State", "UlConfig", "UpperLayer",
]
