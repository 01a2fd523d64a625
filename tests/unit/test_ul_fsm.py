"""The PS3.8 §9.2 state machine: Table 9-10 as data, and `UpperLayer` driven by bytes through Sta1-Sta13."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodicom.ul.constants import AbortReason, AbortSource
from aiodicom.ul.errors import LocalProtocolError
from aiodicom.ul.events import (
    Aborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    ConnectionLost,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
    TimedOut,
)
from aiodicom.ul.fsm import PDU_EVENTS, TRANSITIONS, TRANSPORT_OPEN_STATES, Ev, State
from aiodicom.ul.machine import Role, UlConfig, UpperLayer
from aiodicom.ul.pdu import Pdu
from aiodicom.ul.pdv import Pdv
from tests.unit import ul_fixtures as fx

_h = bytes.fromhex
ARTIM = 30.0
REQUEST_TIMEOUT = 60.0
CONFIG = UlConfig(max_pdu=16384, artim=ARTIM, request_timeout=REQUEST_TIMEOUT)
UNKNOWN_PDU = _h("08 00 00000004 00000000")  # PDU-type 08H is not in PS3.8 §9.3: Evt19

# ------------------------------------------------------------------------- Table 9-10, typed in from PS3.8
# One line per event, one cell per state Sta1 .. Sta13; "-" where the standard defines no transition.
TABLE_9_10: dict[int, str] = {
    1: "AE-1  -     -     -     -     -     -     -     -     -     -     -     -   ",
    2: "-     -     -     AE-2  -     -     -     -     -     -     -     -     -   ",
    3: "-     AA-1  AA-8  -     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6",
    4: "-     AA-1  AA-8  -     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6",
    5: "AE-5  -     -     -     -     -     -     -     -     -     -     -     -   ",
    6: "-     AE-6  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7",
    7: "-     -     AE-7  -     -     -     -     -     -     -     -     -     -   ",
    8: "-     -     AE-8  -     -     -     -     -     -     -     -     -     -   ",
    9: "-     -     -     -     -     DT-1  -     AR-7  -     -     -     -     -   ",
    10: "-     AA-1  AA-8  -     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6",
    11: "-     -     -     -     -     AR-1  -     -     -     -     -     -     -   ",
    12: "-     AA-1  AA-8  -     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6",
    13: "-     AA-1  AA-8  -     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6",
    14: "-     -     -     -     -     -     -     AR-4  AR-9  -     -     AR-4  -   ",
    15: "-     -     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  -   ",
    16: "-     AA-2  AA-3  -     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2",
    17: "-     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5",
    18: "-     AA-2  -     -     -     -     -     -     -     -     -     -     AA-2",
    19: "-     AA-1  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7",
}
EXPECTED: dict[tuple[State, Ev], str] = {
    (State(sta), Ev(evt)): cell
    for evt, line in TABLE_9_10.items()
    for sta, cell in enumerate(line.split(), start=1)
    if cell != "-"
}
# Tables 9-6 to 9-9: the state each action leads to (AE-6 and AR-8 have two outcomes, tested below)
NEXT_STATE = {"AE-1": 4, "AE-2": 5, "AE-3": 6, "AE-4": 1, "AE-5": 2, "AE-6": 3, "AE-7": 6, "AE-8": 13, "DT-1": 6,
              "DT-2": 6, "AR-1": 7, "AR-2": 8, "AR-3": 1, "AR-4": 13, "AR-5": 1, "AR-6": 7, "AR-7": 8,
              "AR-9": 11, "AR-10": 12, "AA-1": 13, "AA-2": 1, "AA-3": 1, "AA-4": 1, "AA-5": 1, "AA-6": 13,
              "AA-7": 13, "AA-8": 13}


def _name(action: Callable) -> str:
    return action.__name__.upper().replace("_", "-")


def test_transitions_are_exactly_table_9_10() -> None:
    assert {key: _name(action) for key, action in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("state", TRANSPORT_OPEN_STATES)
@pytest.mark.parametrize("event", PDU_EVENTS)
def test_every_received_pdu_has_a_row_in_every_transport_open_state(state: State, event: Ev) -> None:
    # a peer can send any PDU at any time: none may find the machine without an answer
    assert (state, event) in TRANSITIONS


def test_transport_open_states_are_all_but_idle_and_connecting() -> None:
    assert set(TRANSPORT_OPEN_STATES) == set(State) - {State.IDLE, State.AWAITING_TRANSPORT_OPEN}


# ------------------------------------------------------------------------- getting a machine into each state
def _feed(data: bytes) -> Callable[[UpperLayer], object]:
    return lambda ul: ul.receive_data(data, now=0.0)


def _open(ul: UpperLayer) -> object:
    return ul.connection_made(now=0.0)


def _send(pdu: Pdu) -> Callable[[UpperLayer], object]:
    return lambda ul: ul.send(pdu)


_ASK, _ACCEPT, _REJECT = _send(fx.RQ_VERIFICATION), _send(fx.AC_VERIFICATION), _send(fx.RJ_CALLED_AE)
_RELEASE, _RESPOND = (lambda ul: ul.release()), (lambda ul: ul.release_response())
_ACCEPTOR_STA6 = (_open, _feed(fx.ASSOC_RQ_VERIFICATION), _ACCEPT)
_REQUESTOR_STA7 = (_ASK, _open, _feed(fx.ASSOC_AC_VERIFICATION), _RELEASE)
_ACCEPTOR_STA10 = (*_ACCEPTOR_STA6, _RELEASE, _feed(fx.RELEASE_RQ))
# how each state is reached at time 0: a role and the primitives and received bytes that lead there
PATHS: dict[State, tuple[str, tuple[Callable[[UpperLayer], object], ...]]] = {
    State.IDLE: (Role.ACCEPTOR, ()),
    State.AWAITING_ASSOC_RQ: (Role.ACCEPTOR, (_open,)),
    State.AWAITING_LOCAL_ASSOC_RESPONSE: (Role.ACCEPTOR, (_open, _feed(fx.ASSOC_RQ_VERIFICATION))),
    State.AWAITING_TRANSPORT_OPEN: (Role.REQUESTOR, (_ASK,)),
    State.AWAITING_ASSOC_AC: (Role.REQUESTOR, (_ASK, _open)),
    State.ESTABLISHED: (Role.ACCEPTOR, _ACCEPTOR_STA6),
    State.AWAITING_RELEASE_RP: (Role.REQUESTOR, _REQUESTOR_STA7),
    State.AWAITING_LOCAL_RELEASE_RESPONSE: (Role.ACCEPTOR, (*_ACCEPTOR_STA6, _feed(fx.RELEASE_RQ))),
    State.COLLISION_REQUESTOR_AWAITING_RESPONSE: (Role.REQUESTOR, (*_REQUESTOR_STA7, _feed(fx.RELEASE_RQ))),
    State.COLLISION_ACCEPTOR_AWAITING_RP: (Role.ACCEPTOR, _ACCEPTOR_STA10),
    State.COLLISION_REQUESTOR_AWAITING_RP: (Role.REQUESTOR, (*_REQUESTOR_STA7, _feed(fx.RELEASE_RQ), _RESPOND)),
    State.COLLISION_ACCEPTOR_AWAITING_RESPONSE: (Role.ACCEPTOR, (*_ACCEPTOR_STA10, _feed(fx.RELEASE_RP))),
    State.AWAITING_CLOSE: (Role.ACCEPTOR, (_open, _feed(fx.ASSOC_RQ_VERIFICATION), _REJECT)),
}


def machine_in(state: State) -> UpperLayer:
    role, steps = PATHS[state]
    ul = UpperLayer(role, CONFIG)
    for step in steps:
        step(ul)
    ul.data_to_send()
    return ul


@pytest.mark.parametrize("state", list(State))
def test_each_state_is_reached_by_bytes_and_primitives(state: State) -> None:
    assert machine_in(state).state is state


def _plain(events: list) -> list:
    """Events with the free-text detail of Aborted dropped, for comparison."""
    return [dataclasses.replace(e, detail="") if isinstance(e, Aborted) else e for e in events]


def _local_abort(reason: AbortReason) -> Aborted:
    return Aborted(source=AbortSource.SERVICE_PROVIDER, reason=reason, local=True)


# ------------------------------------------------------------------------- every received PDU in every state
RECEIVED: dict[Ev, bytes] = {
    Ev.ASSOC_AC_PDU: fx.ASSOC_AC_VERIFICATION,
    Ev.ASSOC_RJ_PDU: fx.ASSOC_RJ_CALLED_AE,
    Ev.ASSOC_RQ_PDU: fx.ASSOC_RQ_VERIFICATION,
    Ev.P_DATA_TF_PDU: fx.P_DATA_ECHO_RQ,
    Ev.RELEASE_RQ_PDU: fx.RELEASE_RQ,
    Ev.RELEASE_RP_PDU: fx.RELEASE_RP,
    Ev.ABORT_PDU: fx.ABORT_USER,
    Ev.INVALID_PDU: UNKNOWN_PDU,
}


@pytest.mark.parametrize("state", TRANSPORT_OPEN_STATES)
@pytest.mark.parametrize("event", PDU_EVENTS)
def test_received_pdu_takes_the_action_of_table_9_10(state: State, event: Ev) -> None:
    ul = machine_in(state)
    before = ul.timer_deadline()
    ul.receive_data(RECEIVED[event], now=5.0)
    action = EXPECTED[state, event]
    expected_state = (9 if ul.is_requestor else 10) if action == "AR-8" else NEXT_STATE[action]
    assert ul.state is State(expected_state)
    sent = ul.data_to_send()
    if action in ("AA-1", "AA-7", "AA-8"):  # an A-ABORT goes out: provider source, and why (Table 9-26)
        assert sent == (fx.ABORT_PROVIDER_UNRECOGNIZED if event is Ev.INVALID_PDU else fx.ABORT_PROVIDER_UNEXPECTED)
    else:
        assert sent == b""
    if action in ("AA-1", "AA-8"):
        assert ul.timer_deadline() == 5.0 + ARTIM  # ARTIM (re)started
    elif action in ("AA-6", "AA-7", "AR-6", "AR-8", "DT-2", "AR-10"):
        assert ul.timer_deadline() == before  # these actions leave the timer alone
    else:  # AE-3, AE-6 stop the timer; AR-2 has none running; the rest end in Sta1
        assert ul.timer_deadline() is None


@pytest.mark.parametrize("state", list(State))
def test_transport_closed_in_each_state(state: State) -> None:
    ul = machine_in(state)
    events = ul.receive_data(b"", now=5.0)  # Evt17
    # AA-5 (Sta2) and AR-5 (Sta13) close quietly; AA-4 is an A-P-ABORT indication elsewhere
    quiet = state in (State.IDLE, State.AWAITING_ASSOC_RQ, State.AWAITING_CLOSE)
    assert events == ([] if quiet else [ConnectionLost()])
    assert ul.state is State.IDLE
    assert ul.timer_deadline() is None
    assert ul.data_to_send() == b""


# ------------------------------------------------------------------------- local primitives
PRIMITIVES: dict[Ev, Callable[[UpperLayer], object]] = {
    Ev.ASSOCIATE_REQUEST: lambda ul: ul.send(fx.RQ_VERIFICATION),
    Ev.ASSOCIATE_ACCEPT: lambda ul: ul.send(fx.AC_VERIFICATION),
    Ev.ASSOCIATE_REJECT: lambda ul: ul.send(fx.RJ_CALLED_AE),
    Ev.P_DATA_REQUEST: lambda ul: ul.send_pdata(fx.PDATA_ECHO_RQ.pdvs),
    Ev.RELEASE_REQUEST: lambda ul: ul.release(),
    Ev.RELEASE_RESPONSE: lambda ul: ul.release_response(),
}
FORBIDDEN = [(s, e) for s in State for e in PRIMITIVES if (s, e) not in EXPECTED]


@pytest.mark.parametrize(("state", "event"), FORBIDDEN)
def test_local_primitive_in_a_wrong_state_raises(state: State, event: Ev) -> None:
    ul = machine_in(state)
    deadline = ul.timer_deadline()
    with pytest.raises(LocalProtocolError):
        PRIMITIVES[event](ul)
    assert (ul.state, ul.timer_deadline(), ul.data_to_send()) == (state, deadline, b"")


def test_acceptor_answers_a_collision_only_after_the_confirmation() -> None:
    # PS3.8 §7.2.2 / Table 9-10: in Sta10 the acceptor's A-RELEASE response has no row; it waits for AR-10
    ul = machine_in(State.COLLISION_ACCEPTOR_AWAITING_RP)
    with pytest.raises(LocalProtocolError):
        ul.release_response()
    assert ul.receive_data(fx.RELEASE_RP, now=1.0) == [ReleaseConfirmed()]
    ul.release_response()
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_CLOSE, fx.RELEASE_RP)


def test_p_data_on_a_context_not_accepted_is_refused_locally() -> None:
    ul = machine_in(State.ESTABLISHED)
    with pytest.raises(LocalProtocolError):
        ul.send_pdata([Pdv(context_id=3, is_command=True, is_last=True, data=b"x")])
    assert (ul.state, ul.data_to_send()) == (State.ESTABLISHED, b"")


def test_p_data_over_the_peers_maximum_length_is_refused_locally() -> None:
    ul = machine_in(State.AWAITING_ASSOC_AC)
    ul.receive_data(fx.ASSOC_AC_VERIFICATION, now=1.0)  # the acceptor's maximum length: 65536 (PS3.8 D.1)
    fits = Pdv(context_id=1, is_command=False, is_last=True, data=bytes(65536 - 6))
    with pytest.raises(LocalProtocolError):
        ul.send_pdata([dataclasses.replace(fits, data=bytes(65536 - 5))])
    ul.send_pdata([fits])
    assert len(ul.data_to_send()) == 6 + 65536


@pytest.mark.parametrize("state", [s for s in State if EXPECTED.get((s, Ev.ABORT_REQUEST)) == "AA-1"])
def test_local_abort_sends_a_user_a_abort_and_waits_for_close(state: State) -> None:
    ul = machine_in(state)
    assert ul.abort() == []  # AA-1
    assert (ul.state, ul.data_to_send(), ul.timer_deadline()) == (State.AWAITING_CLOSE, fx.ABORT_USER, ARTIM)
    assert ul.receive_data(b"", now=1.0) == []  # AR-5
    assert ul.closed


def test_local_abort_while_connecting_just_closes() -> None:
    ul = machine_in(State.AWAITING_TRANSPORT_OPEN)
    assert ul.abort() == []  # AA-2: nothing to tell the user who asked, nothing on a wire not yet open
    assert (ul.state, ul.data_to_send()) == (State.IDLE, b"")


@pytest.mark.parametrize("state", [State.IDLE, State.AWAITING_ASSOC_RQ, State.AWAITING_CLOSE])
def test_local_abort_outside_an_association_closes_without_sending(state: State) -> None:
    ul = machine_in(state)
    assert ul.abort() == []
    assert (ul.state, ul.data_to_send(), ul.timer_deadline()) == (State.IDLE, b"", None)


# ------------------------------------------------------------------------- whole associations, by bytes
def test_acceptor_happy_path() -> None:
    ul = UpperLayer(Role.ACCEPTOR, CONFIG)
    assert not ul.closed
    assert ul.connection_made(now=0.0) == []  # Evt5, AE-5
    assert (ul.state, ul.timer_deadline()) == (State.AWAITING_ASSOC_RQ, ARTIM)
    assert ul.receive_data(fx.ASSOC_RQ_VERIFICATION, now=1.0) == [AssociationRequested(request=fx.RQ_VERIFICATION)]
    assert (ul.state, ul.timer_deadline()) == (State.AWAITING_LOCAL_ASSOC_RESPONSE, None)  # AE-6 stops ARTIM
    assert ul.send(fx.AC_VERIFICATION) == []  # AE-7
    assert ul.data_to_send() == fx.ASSOC_AC_VERIFICATION
    assert (ul.state, ul.accepted_contexts, ul.peer_max_pdu) == (State.ESTABLISHED, {1: fx.IMPLICIT_VR_LE}, 16384)
    assert ul.receive_data(fx.P_DATA_ECHO_RQ, now=2.0) == [DataReceived(pdvs=fx.PDATA_ECHO_RQ.pdvs)]  # DT-2
    assert ul.send_pdata(fx.PDATA_TWO_PDVS.pdvs) == []  # DT-1
    assert ul.data_to_send() == fx.P_DATA_TWO_PDVS
    assert ul.receive_data(fx.RELEASE_RQ, now=3.0) == [ReleaseRequested()]  # AR-2
    assert ul.state is State.AWAITING_LOCAL_RELEASE_RESPONSE
    ul.send_pdata(fx.PDATA_TWO_PDVS.pdvs)  # AR-7: answers still owed may go out before the RP
    assert ul.data_to_send() == fx.P_DATA_TWO_PDVS
    assert ul.release_response() == []  # AR-4
    assert (ul.state, ul.data_to_send(), ul.timer_deadline()) == (State.AWAITING_CLOSE, fx.RELEASE_RP, 3.0 + ARTIM)
    assert ul.receive_data(b"", now=4.0) == []  # AR-5
    assert (ul.state, ul.timer_deadline(), ul.closed) == (State.IDLE, None, True)


def test_requestor_happy_path() -> None:
    ul = UpperLayer(Role.REQUESTOR, CONFIG)
    assert ul.send(fx.RQ_VERIFICATION) == []  # AE-1: the I/O layer connects
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_TRANSPORT_OPEN, b"")
    assert ul.connection_made(now=0.0) == []  # Evt2, AE-2
    assert ul.data_to_send() == fx.ASSOC_RQ_VERIFICATION
    assert (ul.state, ul.timer_deadline()) == (State.AWAITING_ASSOC_AC, REQUEST_TIMEOUT)
    assert ul.receive_data(fx.ASSOC_AC_VERIFICATION, now=1.0) == [AssociationAccepted(accept=fx.AC_VERIFICATION)]
    assert (ul.state, ul.timer_deadline(), ul.peer_max_pdu) == (State.ESTABLISHED, None, 65536)
    ul.send_pdata(fx.PDATA_ECHO_RQ.pdvs)
    assert ul.data_to_send() == fx.P_DATA_ECHO_RQ
    assert ul.receive_data(fx.P_DATA_TWO_PDVS, now=2.0) == [DataReceived(pdvs=fx.PDATA_TWO_PDVS.pdvs)]
    assert ul.release() == []  # AR-1
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_RELEASE_RP, fx.RELEASE_RQ)
    assert ul.timer_deadline() == 2.0 + REQUEST_TIMEOUT
    assert ul.receive_data(fx.P_DATA_TWO_PDVS, now=3.0) == [DataReceived(pdvs=fx.PDATA_TWO_PDVS.pdvs)]  # AR-6
    assert ul.receive_data(fx.RELEASE_RP, now=3.0) == [ReleaseConfirmed()]  # AR-3
    assert (ul.state, ul.timer_deadline(), ul.closed) == (State.IDLE, None, True)


def _pump(a: UpperLayer, b: UpperLayer, now: float = 1.0) -> tuple[list, list]:
    """Deliver what each side queued to the other until both are quiet."""
    got_a: list = []
    got_b: list = []
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return got_a, got_b
        if out_a:
            got_b += b.receive_data(out_a, now=now)
        if out_b:
            got_a += a.receive_data(out_b, now=now)


def _pair() -> tuple[UpperLayer, UpperLayer]:
    req, acc = UpperLayer(Role.REQUESTOR, CONFIG), UpperLayer(Role.ACCEPTOR, CONFIG)
    req.send(fx.RQ_VERIFICATION)
    req.connection_made(now=0.0)
    acc.connection_made(now=0.0)
    assert _pump(req, acc) == ([], [AssociationRequested(request=fx.RQ_VERIFICATION)])
    acc.send(fx.AC_VERIFICATION)
    assert _pump(req, acc) == ([AssociationAccepted(accept=fx.AC_VERIFICATION)], [])
    return req, acc


def test_two_machines_associate_exchange_and_release() -> None:
    req, acc = _pair()
    req.send_pdata(fx.PDATA_ECHO_RQ.pdvs)
    assert _pump(req, acc) == ([], [DataReceived(pdvs=fx.PDATA_ECHO_RQ.pdvs)])
    req.release()
    assert _pump(req, acc) == ([], [ReleaseRequested()])
    acc.release_response()
    assert _pump(req, acc) == ([ReleaseConfirmed()], [])
    assert req.closed and acc.state is State.AWAITING_CLOSE
    assert acc.receive_data(b"", now=2.0) == [] and acc.closed


def test_release_collision_on_both_sides() -> None:
    # PS3.8 §7.2.2: both users ask for release at once; each sees the other's A-RELEASE-RQ
    req, acc = _pair()
    req.release()
    acc.release()
    rq_from_req, rq_from_acc = req.data_to_send(), acc.data_to_send()
    assert rq_from_req == rq_from_acc == fx.RELEASE_RQ
    assert req.receive_data(rq_from_acc, now=2.0) == [ReleaseRequested()]  # AR-8, requestor
    assert acc.receive_data(rq_from_req, now=2.0) == [ReleaseRequested()]  # AR-8, acceptor
    assert (req.state, acc.state) == (State.COLLISION_REQUESTOR_AWAITING_RESPONSE, State.COLLISION_ACCEPTOR_AWAITING_RP)
    req.release_response()  # AR-9
    assert req.state is State.COLLISION_REQUESTOR_AWAITING_RP
    assert acc.receive_data(req.data_to_send(), now=3.0) == [ReleaseConfirmed()]  # AR-10
    assert acc.state is State.COLLISION_ACCEPTOR_AWAITING_RESPONSE
    acc.release_response()  # AR-4
    assert acc.state is State.AWAITING_CLOSE
    assert req.receive_data(acc.data_to_send(), now=4.0) == [ReleaseConfirmed()]  # AR-3
    assert req.closed
    assert acc.receive_data(b"", now=5.0) == [] and acc.closed  # AR-5


def test_reject_then_peer_closes() -> None:
    ul = machine_in(State.AWAITING_LOCAL_ASSOC_RESPONSE)
    assert ul.send(fx.RJ_CALLED_AE) == []  # AE-8
    assert (ul.state, ul.data_to_send(), ul.timer_deadline()) == (State.AWAITING_CLOSE, fx.ASSOC_RJ_CALLED_AE, ARTIM)
    assert ul.receive_data(b"", now=1.0) == []  # AR-5
    assert ul.closed


def test_requestor_sees_the_reject_and_closes() -> None:
    ul = machine_in(State.AWAITING_ASSOC_AC)
    assert ul.receive_data(fx.ASSOC_RJ_CALLED_AE, now=1.0) == [AssociationRejected(reject=fx.RJ_CALLED_AE)]  # AE-4
    assert (ul.closed, ul.timer_deadline()) == (True, None)


@pytest.mark.parametrize(("data", "source", "reason"), [
    (fx.ABORT_USER, AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED),
    (fx.ABORT_PROVIDER_INVALID, AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
])
def test_peer_abort_is_indicated_and_closes(data: bytes, source: AbortSource, reason: AbortReason) -> None:
    ul = machine_in(State.ESTABLISHED)
    assert ul.receive_data(data, now=1.0) == [Aborted(source=source, reason=reason)]  # AA-3
    assert (ul.closed, ul.data_to_send()) == (True, b"")


# ------------------------------------------------------------------------- timers, by handle_timer(now)
def test_artim_expiry_in_sta2() -> None:
    ul = machine_in(State.AWAITING_ASSOC_RQ)
    assert ul.handle_timer(now=ARTIM - 0.001) == []
    assert ul.state is State.AWAITING_ASSOC_RQ
    assert ul.handle_timer(now=ARTIM) == [TimedOut()]  # Evt18, AA-2
    assert (ul.closed, ul.timer_deadline(), ul.data_to_send()) == (True, None, b"")


def test_artim_expiry_in_sta13() -> None:
    ul = machine_in(State.AWAITING_CLOSE)
    assert ul.timer_deadline() == ARTIM
    assert ul.handle_timer(now=ARTIM + 1) == []  # AA-2: the peer never closed; we do
    assert (ul.closed, ul.data_to_send()) == (True, b"")


@pytest.mark.parametrize("state", [State.AWAITING_ASSOC_AC, State.AWAITING_RELEASE_RP,
                                   State.COLLISION_REQUESTOR_AWAITING_RESPONSE, State.COLLISION_ACCEPTOR_AWAITING_RP,
                                   State.COLLISION_REQUESTOR_AWAITING_RP, State.COLLISION_ACCEPTOR_AWAITING_RESPONSE])
def test_our_wait_for_the_peer_runs_out(state: State) -> None:
    ul = machine_in(state)
    assert ul.timer_deadline() == REQUEST_TIMEOUT
    assert ul.handle_timer(now=REQUEST_TIMEOUT - 1) == []
    assert ul.handle_timer(now=REQUEST_TIMEOUT) == [TimedOut()]  # an A-ABORT request (AA-1)
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_CLOSE, fx.ABORT_USER)
    assert ul.timer_deadline() == REQUEST_TIMEOUT + ARTIM
    assert ul.handle_timer(now=REQUEST_TIMEOUT + ARTIM) == []
    assert ul.closed


@pytest.mark.parametrize("state", [State.AWAITING_LOCAL_ASSOC_RESPONSE, State.ESTABLISHED,
                                   State.AWAITING_LOCAL_RELEASE_RESPONSE])
def test_no_timer_while_the_local_user_has_the_turn(state: State) -> None:
    ul = machine_in(state)
    assert ul.timer_deadline() is None
    assert ul.handle_timer(now=1e9) == [] and ul.state is state


# ------------------------------------------------------------------------- framing and refusals
# (state, the first bytes of a PDU, the A-ABORT reason): each is answered from the 6-byte header alone, so
# nothing is buffered for a body the peer may never send, or send at a size we would not hold
FROM_THE_HEADER = {
    "P-DATA before the association": (State.AWAITING_ASSOC_RQ, fx.P_DATA_ECHO_RQ[:6], AbortReason.UNEXPECTED_PDU),
    "P-DATA over max_pdu": (State.ESTABLISHED, _h("04 00 00004001"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "RQ over 1 MiB": (State.AWAITING_ASSOC_RQ, _h("01 00 00100001"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "AC over 1 MiB": (State.AWAITING_ASSOC_AC, _h("02 00 00100001"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "release of length 5": (State.ESTABLISHED, _h("05 00 00000005"), AbortReason.INVALID_PDU_PARAMETER_VALUE),
    "unknown PDU type": (State.ESTABLISHED, UNKNOWN_PDU[:6], AbortReason.UNRECOGNIZED_PDU),
}


@pytest.mark.parametrize("case", list(FROM_THE_HEADER))
def test_refused_from_the_header_alone(case: str) -> None:
    state, header, reason = FROM_THE_HEADER[case]
    ul = machine_in(state)
    assert _plain(ul.receive_data(header, now=1.0)) == [_local_abort(reason)]
    assert ul.data_to_send() == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason])  # Table 9-26, provider source
    assert (ul.state, ul.timer_deadline()) == (State.AWAITING_CLOSE, 1.0 + ARTIM)


@pytest.mark.parametrize(("state", "header"), [(State.ESTABLISHED, _h("04 00 00004000")),  # max_pdu exactly
                                               (State.AWAITING_ASSOC_RQ, _h("01 00 00100000"))])  # 1 MiB exactly
def test_pdu_at_the_limit_is_awaited(state: State, header: bytes) -> None:
    ul = machine_in(state)
    assert (ul.receive_data(header, now=1.0), ul.state, ul.data_to_send()) == ([], state, b"")


def test_max_pdu_zero_means_no_limit() -> None:
    # PS3.8 D.1: a maximum length of 0 is no limit
    ul = UpperLayer(Role.ACCEPTOR, dataclasses.replace(CONFIG, max_pdu=0))
    ul.connection_made(now=0.0)
    ul.receive_data(fx.ASSOC_RQ_VERIFICATION, now=0.0)
    ul.send(fx.AC_VERIFICATION)
    assert ul.receive_data(_h("04 00 7FFFFFFF"), now=1.0) == [] and ul.state is State.ESTABLISHED


_ECHO_ON_CONTEXT_3 = fx.P_DATA_ECHO_RQ[:10] + b"\x03" + fx.P_DATA_ECHO_RQ[11:]


@pytest.mark.parametrize("state", [State.ESTABLISHED, State.AWAITING_RELEASE_RP])
def test_p_data_on_an_unaccepted_context_is_aborted(state: State) -> None:
    ul = machine_in(state)
    events = ul.receive_data(_ECHO_ON_CONTEXT_3, now=1.0)
    assert _plain(events) == [_local_abort(AbortReason.INVALID_PDU_PARAMETER_VALUE)]
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_CLOSE, fx.ABORT_PROVIDER_INVALID)


def test_pdu_split_byte_by_byte() -> None:
    ul = machine_in(State.AWAITING_ASSOC_RQ)
    data = fx.ASSOC_RQ_VERIFICATION
    for i in range(len(data) - 1):
        assert ul.receive_data(data[i:i + 1], now=1.0) == []
    assert ul.receive_data(data[-1:], now=1.0) == [AssociationRequested(request=fx.RQ_VERIFICATION)]
    ul.send(fx.AC_VERIFICATION)
    for i in range(len(fx.P_DATA_ECHO_RQ) - 1):
        assert ul.receive_data(fx.P_DATA_ECHO_RQ[i:i + 1], now=1.0) == []
    assert ul.receive_data(fx.P_DATA_ECHO_RQ[-1:], now=1.0) == [DataReceived(pdvs=fx.PDATA_ECHO_RQ.pdvs)]


def test_several_pdus_in_one_call() -> None:
    ul = machine_in(State.ESTABLISHED)
    events = ul.receive_data(fx.P_DATA_ECHO_RQ + fx.P_DATA_TWO_PDVS + fx.RELEASE_RQ, now=1.0)
    assert events == [DataReceived(pdvs=fx.PDATA_ECHO_RQ.pdvs), DataReceived(pdvs=fx.PDATA_TWO_PDVS.pdvs),
                      ReleaseRequested()]
    assert ul.state is State.AWAITING_LOCAL_RELEASE_RESPONSE


def test_received_pdv_data_is_a_view_of_the_received_chunk() -> None:
    ul = machine_in(State.ESTABLISHED)
    chunk = bytes(fx.P_DATA_ECHO_RQ)
    [event] = ul.receive_data(chunk, now=1.0)
    assert isinstance(event, DataReceived) and isinstance(event.pdvs[0].data, memoryview)
    assert event.pdvs[0].data.obj is chunk  # framing without copying the payload


def test_input_after_an_error_is_discarded() -> None:
    ul = machine_in(State.ESTABLISHED)
    events = ul.receive_data(UNKNOWN_PDU + fx.P_DATA_ECHO_RQ, now=1.0)
    assert _plain(events) == [_local_abort(AbortReason.UNRECOGNIZED_PDU)]  # the P-DATA behind it is not read
    ul.data_to_send()
    assert ul.receive_data(fx.P_DATA_ECHO_RQ + fx.RELEASE_RQ, now=2.0) == []
    assert (ul.state, ul.data_to_send()) == (State.AWAITING_CLOSE, b"")
    assert ul.receive_data(b"", now=3.0) == [] and ul.closed


def test_input_after_the_association_ended_is_not_read() -> None:
    # AR-3 closes the transport: a PDU behind the A-RELEASE-RP in the same chunk has no state to go to
    ul = machine_in(State.AWAITING_RELEASE_RP)
    assert ul.receive_data(fx.RELEASE_RP + fx.ABORT_USER + UNKNOWN_PDU, now=1.0) == [ReleaseConfirmed()]
    assert (ul.closed, ul.data_to_send()) == (True, b"")
    assert ul.receive_data(fx.P_DATA_ECHO_RQ, now=2.0) == []


def test_peer_abort_followed_by_more_bytes() -> None:
    ul = machine_in(State.ESTABLISHED)
    events = ul.receive_data(fx.ABORT_USER + fx.P_DATA_ECHO_RQ, now=1.0)
    assert events == [Aborted(source=AbortSource.SERVICE_USER, reason=AbortReason.NOT_SPECIFIED)]
    assert ul.closed


_STREAM_PARTS = [*RECEIVED.values(), fx.P_DATA_TWO_PDVS, _ECHO_ON_CONTEXT_3, _h("04 00 00004001")]


@given(st.sampled_from(TRANSPORT_OPEN_STATES), st.lists(st.sampled_from(_STREAM_PARTS), min_size=1, max_size=6),
       st.lists(st.integers(0, 600), max_size=8))
@settings(max_examples=300)
def test_any_pdu_stream_gives_the_same_answer_however_it_is_split(state: State, parts: list[bytes],
                                                                   cuts: list[int]) -> None:
    stream = b"".join(parts)
    whole = machine_in(state)
    expected = whole.receive_data(stream, now=1.0)  # never raises: peer input only ever yields events
    split = machine_in(state)
    got: list = []
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            got += split.receive_data(stream[a:b], now=1.0)
    assert got == expected
    assert (split.state, split.data_to_send(), split.timer_deadline()) == \
        (whole.state, whole.data_to_send(), whole.timer_deadline())


@given(st.sampled_from(TRANSPORT_OPEN_STATES), st.lists(st.binary(min_size=1, max_size=80), max_size=6))
@settings(max_examples=300)
def test_arbitrary_bytes_from_the_peer_never_raise(state: State, chunks: list[bytes]) -> None:
    ul = machine_in(state)
    for chunk in chunks:
        for event in ul.receive_data(chunk, now=1.0):
            if isinstance(event, Aborted) and event.local:
                assert ul.data_to_send().endswith(bytes([7, 0, 0, 0, 0, 4, 0, 0, 2, event.reason]))
    ul.receive_data(b"", now=2.0)
    assert ul.state is State.IDLE
