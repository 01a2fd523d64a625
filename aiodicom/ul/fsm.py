"""The DICOM Upper Layer state machine of PS3.8 §9.2 as data: states, events, actions, Table 9-10.

Actions take the machine and the input that triggered them (a PDU, a primitive or an error) and
return the next state. The machine (machine.py) supplies the side effects they need: queueing a
PDU, emitting an event, arming or stopping ARTIM, asking the I/O layer to close the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from . import events as ev
from .constants import AbortReason, AbortSource, RejectResult, RejectSource, PROTOCOL_VERSION_NOT_SUPPORTED
from .errors import RemoteProtocolError
from .pdu import Abort, AssociateRJ, ReleaseRP, ReleaseRQ

if TYPE_CHECKING:
    from .machine import UpperLayer


class State(IntEnum):
    IDLE = 1  # Sta1
    AWAITING_ASSOC_RQ = 2  # Sta2: transport open, ARTIM running
    AWAITING_LOCAL_ASSOC_RESPONSE = 3  # Sta3
    AWAITING_TRANSPORT_OPEN = 4  # Sta4
    AWAITING_ASSOC_AC = 5  # Sta5
    ESTABLISHED = 6  # Sta6
    AWAITING_RELEASE_RP = 7  # Sta7
    AWAITING_LOCAL_RELEASE_RESPONSE = 8  # Sta8
    COLLISION_REQUESTOR_AWAITING_RESPONSE = 9  # Sta9
    COLLISION_ACCEPTOR_AWAITING_RP = 10  # Sta10
    COLLISION_REQUESTOR_AWAITING_RP = 11  # Sta11
    COLLISION_ACCEPTOR_AWAITING_RESPONSE = 12  # Sta12
    AWAITING_CLOSE = 13  # Sta13: association gone, waiting for the transport to close


class Ev(IntEnum):
    ASSOCIATE_REQUEST = 1  # Evt1: A-ASSOCIATE request (local user)
    TRANSPORT_CONFIRM = 2  # Evt2
    ASSOC_AC_PDU = 3  # Evt3
    ASSOC_RJ_PDU = 4  # Evt4
    TRANSPORT_INDICATION = 5  # Evt5
    ASSOC_RQ_PDU = 6  # Evt6
    ASSOCIATE_ACCEPT = 7  # Evt7: A-ASSOCIATE response primitive (accept)
    ASSOCIATE_REJECT = 8  # Evt8: A-ASSOCIATE response primitive (reject)
    P_DATA_REQUEST = 9  # Evt9
    P_DATA_TF_PDU = 10  # Evt10
    RELEASE_REQUEST = 11  # Evt11
    RELEASE_RQ_PDU = 12  # Evt12
    RELEASE_RP_PDU = 13  # Evt13
    RELEASE_RESPONSE = 14  # Evt14
    ABORT_REQUEST = 15  # Evt15
    ABORT_PDU = 16  # Evt16
    TRANSPORT_CLOSED = 17  # Evt17
    ARTIM_EXPIRED = 18  # Evt18
    INVALID_PDU = 19  # Evt19: unrecognized or invalid PDU


Action = Callable[["UpperLayer", Any], State]


def _abort_reason_for(inp: Any) -> tuple[AbortReason, str]:
    """The provider A-ABORT reason for a PDU that arrived where it may not (or a decode error)."""
    if isinstance(inp, RemoteProtocolError):
        return inp.reason, str(inp)
    return AbortReason.UNEXPECTED_PDU, f"unexpected {type(inp).__name__} PDU in {{state}}"


# --- Association establishment (Table 9-6) -------------------------------------------------
def ae_1(ul: UpperLayer, rq: Any) -> State:
    """AE-1: issue TRANSPORT CONNECT (the I/O layer opens the connection)."""
    ul.request = rq
    return State.AWAITING_TRANSPORT_OPEN


def ae_2(ul: UpperLayer, _: Any) -> State:
    """AE-2: send A-ASSOCIATE-RQ; our own answer deadline starts (PS3.8 leaves it to the implementation)."""
    ul.queue_pdu(ul.request)
    ul.start_timer(ul.config.request_timeout)
    return State.AWAITING_ASSOC_AC


def ae_3(ul: UpperLayer, ac: Any) -> State:
    """AE-3: A-ASSOCIATE confirmation (accept)."""
    ul.stop_timer()
    ul.set_accept(ac)
    ul.emit(ev.AssociationAccepted(accept=ac))
    return State.ESTABLISHED


def ae_4(ul: UpperLayer, rj: Any) -> State:
    """AE-4: A-ASSOCIATE confirmation (reject), close the transport."""
    ul.stop_timer()
    ul.emit(ev.AssociationRejected(reject=rj))
    return State.IDLE


def ae_5(ul: UpperLayer, _: Any) -> State:
    """AE-5: transport connection accepted; ARTIM bounds the wait for the A-ASSOCIATE-RQ."""
    ul.start_timer(ul.config.artim)
    return State.AWAITING_ASSOC_RQ


def ae_6(ul: UpperLayer, rq: Any) -> State:
    """AE-6: stop ARTIM; A-ASSOCIATE indication if the provider can accept the RQ, else RJ."""
    ul.stop_timer()
    if not rq.protocol_version & 1:  # PS3.8 §9.3.2: bit 0 = protocol version 1
        ul.queue_pdu(AssociateRJ(result=RejectResult.PERMANENT, source=RejectSource.SERVICE_PROVIDER_ACSE,
                                 reason=PROTOCOL_VERSION_NOT_SUPPORTED))
        ul.start_timer(ul.config.artim)
        return State.AWAITING_CLOSE
    ul.request = rq
    ul.emit(ev.AssociationRequested(request=rq))
    return State.AWAITING_LOCAL_ASSOC_RESPONSE


def ae_7(ul: UpperLayer, ac: Any) -> State:
    """AE-7: send A-ASSOCIATE-AC."""
    ul.set_accept(ac)
    ul.queue_pdu(ac)
    return State.ESTABLISHED


def ae_8(ul: UpperLayer, rj: Any) -> State:
    """AE-8: send A-ASSOCIATE-RJ, start ARTIM (the peer closes the transport)."""
    ul.queue_pdu(rj)
    ul.start_timer(ul.config.artim)
    return State.AWAITING_CLOSE


# --- Data transfer (Table 9-7) ---------------------------------------------------------------
def dt_1(ul: UpperLayer, pdvs: Any) -> State:
    """DT-1: send P-DATA-TF."""
    ul.queue_pdata(pdvs)
    return State.ESTABLISHED


def dt_2(ul: UpperLayer, pdu: Any) -> State:
    """DT-2: P-DATA indication."""
    ul.emit(ev.DataReceived(pdvs=pdu.pdvs))
    return State.ESTABLISHED


# --- Release (Table 9-8) ---------------------------------------------------------------------
def ar_1(ul: UpperLayer, _: Any) -> State:
    """AR-1: send A-RELEASE-RQ."""
    ul.queue_pdu(ReleaseRQ())
    ul.start_timer(ul.config.request_timeout)
    return State.AWAITING_RELEASE_RP


def ar_2(ul: UpperLayer, _: Any) -> State:
    """AR-2: A-RELEASE indication."""
    ul.emit(ev.ReleaseRequested())
    return State.AWAITING_LOCAL_RELEASE_RESPONSE


def ar_3(ul: UpperLayer, _: Any) -> State:
    """AR-3: A-RELEASE confirmation, close the transport."""
    ul.stop_timer()
    ul.emit(ev.ReleaseConfirmed())
    return State.IDLE


def ar_4(ul: UpperLayer, _: Any) -> State:
    """AR-4: send A-RELEASE-RP, start ARTIM (the requestor closes the transport)."""
    ul.queue_pdu(ReleaseRP())
    ul.start_timer(ul.config.artim)
    return State.AWAITING_CLOSE


def ar_5(ul: UpperLayer, _: Any) -> State:
    """AR-5: stop ARTIM."""
    ul.stop_timer()
    return State.IDLE


def ar_6(ul: UpperLayer, pdu: Any) -> State:
    """AR-6: P-DATA indication while awaiting A-RELEASE-RP."""
    ul.emit(ev.DataReceived(pdvs=pdu.pdvs))
    return State.AWAITING_RELEASE_RP


def ar_7(ul: UpperLayer, pdvs: Any) -> State:
    """AR-7: send P-DATA-TF while the peer's release is pending."""
    ul.queue_pdata(pdvs)
    return State.AWAITING_LOCAL_RELEASE_RESPONSE


def ar_8(ul: UpperLayer, _: Any) -> State:
    """AR-8: A-RELEASE indication (release collision)."""
    ul.emit(ev.ReleaseRequested())
    return State.COLLISION_REQUESTOR_AWAITING_RESPONSE if ul.is_requestor else State.COLLISION_ACCEPTOR_AWAITING_RP


def ar_9(ul: UpperLayer, _: Any) -> State:
    """AR-9: send A-RELEASE-RP."""
    ul.queue_pdu(ReleaseRP())
    return State.COLLISION_REQUESTOR_AWAITING_RP


def ar_10(ul: UpperLayer, _: Any) -> State:
    """AR-10: A-RELEASE confirmation (collision, acceptor side)."""
    ul.emit(ev.ReleaseConfirmed())
    return State.COLLISION_ACCEPTOR_AWAITING_RESPONSE


# --- Abort (Table 9-9) -----------------------------------------------------------------------
def aa_1(ul: UpperLayer, inp: Any) -> State:
    """AA-1: send A-ABORT, (re)start ARTIM.

    For a local A-ABORT request the source is the service-user. When AA-1 answers a PDU received in
    Sta2 (nothing established yet, the peer broke the protocol) we send service-provider source
    with the reason, as AA-8 does, so the peer learns why: the reason field is what makes the
    answer useful and PS3.8 Table 9-26 defines it only for that source.
    """
    if isinstance(inp, Abort):  # Evt15: the local user's abort request
        ul.queue_pdu(inp)
    else:
        reason, detail = _abort_reason_for(inp)
        ul.queue_pdu(Abort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
        ul.emit(ev.Aborted(source=AbortSource.SERVICE_PROVIDER, reason=reason, local=True,
                           detail=detail.replace("{state}", ul.state.name)))
    ul.start_timer(ul.config.artim)
    return State.AWAITING_CLOSE


def aa_2(ul: UpperLayer, inp: Any) -> State:
    """AA-2: stop ARTIM, close the transport."""
    ul.stop_timer()
    if isinstance(inp, Abort) and ul.state is not State.AWAITING_TRANSPORT_OPEN:
        # an A-ABORT PDU received in Sta2 or Sta13; in Sta4 the Abort is the local user's own request
        # (Evt15), which has no indication to give back to it (PS3.8 §7.3)
        ul.emit(ev.Aborted(source=inp.source, reason=inp.reason))
    elif inp is Ev.ARTIM_EXPIRED and ul.state is State.AWAITING_ASSOC_RQ:
        ul.emit(ev.TimedOut())
    return State.IDLE


def aa_3(ul: UpperLayer, abort: Any) -> State:
    """AA-3: A-ABORT (user) or A-P-ABORT (provider) indication, close the transport."""
    ul.stop_timer()
    ul.emit(ev.Aborted(source=abort.source, reason=abort.reason))
    return State.IDLE


def aa_4(ul: UpperLayer, _: Any) -> State:
    """AA-4: A-P-ABORT indication (the transport closed under us)."""
    ul.stop_timer()
    ul.emit(ev.ConnectionLost())
    return State.IDLE


def aa_5(ul: UpperLayer, _: Any) -> State:
    """AA-5: stop ARTIM (the peer closed before sending an A-ASSOCIATE-RQ)."""
    ul.stop_timer()
    return State.IDLE


def aa_6(ul: UpperLayer, _: Any) -> State:
    """AA-6: ignore the PDU (the association is already gone)."""
    return State.AWAITING_CLOSE


def aa_7(ul: UpperLayer, inp: Any) -> State:
    """AA-7: send A-ABORT."""
    reason, _ = _abort_reason_for(inp)
    ul.queue_pdu(Abort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
    return State.AWAITING_CLOSE


def aa_8(ul: UpperLayer, inp: Any) -> State:
    """AA-8: send A-ABORT (service-provider source), A-P-ABORT indication, start ARTIM."""
    reason, detail = _abort_reason_for(inp)
    ul.queue_pdu(Abort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
    ul.emit(ev.Aborted(source=AbortSource.SERVICE_PROVIDER, reason=reason, local=True,
                       detail=detail.replace("{state}", ul.state.name)))
    ul.start_timer(ul.config.artim)
    return State.AWAITING_CLOSE


# --- Table 9-10 ------------------------------------------------------------------------------
S = State
_CONNECTED = (S.AWAITING_LOCAL_ASSOC_RESPONSE, S.AWAITING_ASSOC_AC, S.ESTABLISHED, S.AWAITING_RELEASE_RP,
              S.AWAITING_LOCAL_RELEASE_RESPONSE, S.COLLISION_REQUESTOR_AWAITING_RESPONSE,
              S.COLLISION_ACCEPTOR_AWAITING_RP, S.COLLISION_REQUESTOR_AWAITING_RP,
              S.COLLISION_ACCEPTOR_AWAITING_RESPONSE)  # Sta3, Sta5-Sta12


def _row(default: Action, **overrides: Action) -> dict[State, Action]:
    """One event's row: `default` in Sta3 and Sta5-12, Sta2 and Sta13 and others as given."""
    row = {s: default for s in _CONNECTED}
    for name, action in overrides.items():
        row[State[name]] = action
    return row


_ROWS: dict[Ev, dict[State, Action]] = {
    Ev.ASSOCIATE_REQUEST: {S.IDLE: ae_1},
    Ev.TRANSPORT_CONFIRM: {S.AWAITING_TRANSPORT_OPEN: ae_2},
    Ev.ASSOC_AC_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, AWAITING_ASSOC_AC=ae_3, AWAITING_CLOSE=aa_6),
    Ev.ASSOC_RJ_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, AWAITING_ASSOC_AC=ae_4, AWAITING_CLOSE=aa_6),
    Ev.TRANSPORT_INDICATION: {S.IDLE: ae_5},
    Ev.ASSOC_RQ_PDU: _row(aa_8, AWAITING_ASSOC_RQ=ae_6, AWAITING_CLOSE=aa_7),
    Ev.ASSOCIATE_ACCEPT: {S.AWAITING_LOCAL_ASSOC_RESPONSE: ae_7},
    Ev.ASSOCIATE_REJECT: {S.AWAITING_LOCAL_ASSOC_RESPONSE: ae_8},
    Ev.P_DATA_REQUEST: {S.ESTABLISHED: dt_1, S.AWAITING_LOCAL_RELEASE_RESPONSE: ar_7},
    Ev.P_DATA_TF_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, ESTABLISHED=dt_2, AWAITING_RELEASE_RP=ar_6,
                           AWAITING_CLOSE=aa_6),
    Ev.RELEASE_REQUEST: {S.ESTABLISHED: ar_1},
    Ev.RELEASE_RQ_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, ESTABLISHED=ar_2, AWAITING_RELEASE_RP=ar_8,
                            AWAITING_CLOSE=aa_6),
    Ev.RELEASE_RP_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, AWAITING_RELEASE_RP=ar_3,
                            COLLISION_ACCEPTOR_AWAITING_RP=ar_10, COLLISION_REQUESTOR_AWAITING_RP=ar_3,
                            AWAITING_CLOSE=aa_6),
    Ev.RELEASE_RESPONSE: {S.AWAITING_LOCAL_RELEASE_RESPONSE: ar_4, S.COLLISION_REQUESTOR_AWAITING_RESPONSE: ar_9,
                          S.COLLISION_ACCEPTOR_AWAITING_RESPONSE: ar_4},
    Ev.ABORT_REQUEST: _row(aa_1, AWAITING_TRANSPORT_OPEN=aa_2),
    Ev.ABORT_PDU: _row(aa_3, AWAITING_ASSOC_RQ=aa_2, AWAITING_CLOSE=aa_2),
    Ev.TRANSPORT_CLOSED: _row(aa_4, AWAITING_ASSOC_RQ=aa_5, AWAITING_TRANSPORT_OPEN=aa_4, AWAITING_CLOSE=ar_5),
    Ev.ARTIM_EXPIRED: {S.AWAITING_ASSOC_RQ: aa_2, S.AWAITING_CLOSE: aa_2},
    Ev.INVALID_PDU: _row(aa_8, AWAITING_ASSOC_RQ=aa_1, AWAITING_CLOSE=aa_7),
}

TRANSITIONS: Final[Mapping[tuple[State, Ev], Action]] = {
    (state, event): action for event, row in _ROWS.items() for state, action in row.items()
}

# Events carried by a received PDU; PS3.8 gives each a row in every state where the transport is open.
PDU_EVENTS: Final = (Ev.ASSOC_AC_PDU, Ev.ASSOC_RJ_PDU, Ev.ASSOC_RQ_PDU, Ev.P_DATA_TF_PDU, Ev.RELEASE_RQ_PDU,
                     Ev.RELEASE_RP_PDU, Ev.ABORT_PDU, Ev.INVALID_PDU)
TRANSPORT_OPEN_STATES: Final = (S.AWAITING_ASSOC_RQ, *_CONNECTED, S.AWAITING_CLOSE)
