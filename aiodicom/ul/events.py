"""What the Upper Layer tells its user (the indications and confirmations of PS3.8 §7)."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import AbortReason, AbortSource
from .pdu import AssociateAC, AssociateRJ, AssociateRQ
from .pdv import Pdv


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationRequested:
    """A-ASSOCIATE indication (acceptor, Sta3): answer with `UpperLayer.send(AssociateAC|AssociateRJ)`."""

    request: AssociateRQ


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationAccepted:
    """A-ASSOCIATE confirmation, accept (requestor, Sta6)."""

    accept: AssociateAC


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationRejected:
    """A-ASSOCIATE confirmation, reject (requestor): the transport is to be closed."""

    reject: AssociateRJ


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """P-DATA indication: the PDVs of one P-DATA-TF PDU, their data slices of the received bytes."""

    pdvs: tuple[Pdv, ...]


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication: answer with `UpperLayer.release_response()` (Sta8, or a collision)."""


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation: the association is over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Aborted:
    """A-ABORT (peer user) or A-P-ABORT (provider: a protocol error, ours or the peer's) indication.

    `local` is True when this side detected the error and sent the A-ABORT itself.
    """

    source: AbortSource
    reason: AbortReason
    local: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The transport closed without a release or abort (A-P-ABORT, AA-4)."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """ARTIM (or the requestor's wait for an answer) expired; the transport is to be closed."""


UlEvent = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | DataReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
    | ConnectionLost
    | TimedOut
)
