"""Association negotiation (PS3.8 §7.1, PS3.7 Annex D.3.3): the acceptor's answer and what both sides agree."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiodicom.ul.constants import ContextResult, describe_reject
from aiodicom.ul.events import AssociationAccepted, AssociationRequested
from aiodicom.ul.fsm import State
from aiodicom.ul.machine import Role, UlConfig, UpperLayer
from aiodicom.ul.negotiation import AcceptorPolicy, Negotiated, accept, check_association, negotiated
from aiodicom.ul.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    ExtendedNegotiation,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    decode_pdu,
    encode_pdu,
)
from tests.unit import ul_fixtures as fx

CT, VERIFICATION = fx.CT_IMAGE_STORAGE, fx.VERIFICATION
EXPLICIT, IMPLICIT = fx.EXPLICIT_VR_LE, fx.IMPLICIT_VR_LE
DEFLATED, JPEG_BASELINE = "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50"
STORAGE_INFO_ANSWER = bytes.fromhex("01 00 00 00 00 00")


def _extended_answer(item: ExtendedNegotiation) -> bytes | None:
    return STORAGE_INFO_ANSWER if item.sop_class_uid == CT else None


POLICY = AcceptorPolicy(
    ae_title="STORESCP",
    supported={CT: frozenset({IMPLICIT, EXPLICIT}), VERIFICATION: (IMPLICIT,)},
    implementation_class_uid=fx.IMPLEMENTATION_UID,
    implementation_version_name=fx.IMPLEMENTATION_VERSION,
    max_pdu=65536,
    max_operations_performed=3,
    max_operations_invoked=1,
    extended=_extended_answer,
)


def _rq(*contexts: PresentationContextRQ, **user_info: object) -> AssociateRQ:
    return AssociateRQ(called_ae="STORESCP", calling_ae="STORESCU", contexts=contexts,
                       user_info=UserInformation(max_pdu=16384, **user_info))  # type: ignore[arg-type]


def _ctx(cid: int, abstract: str, *syntaxes: str) -> PresentationContextRQ:
    return PresentationContextRQ(context_id=cid, abstract_syntax=abstract, transfer_syntaxes=syntaxes)


# ---------------------------------------------------------------------------------- A-ASSOCIATE-RJ (Table 9-21)
def test_acceptable_request_is_not_rejected() -> None:
    assert check_association(fx.RQ_FULL, POLICY) is None


def test_unknown_called_ae_is_rejected_1_1_7() -> None:
    rj = check_association(dataclasses.replace(fx.RQ_FULL, called_ae="OTHER"), POLICY)
    assert rj == AssociateRJ(result=1, source=1, reason=7)
    assert encode_pdu(rj) == fx.ASSOC_RJ_CALLED_AE
    assert describe_reject(rj.result, rj.source, rj.reason).endswith("called-AE-title-not-recognized (1/1/7)")


def test_promiscuous_acceptor_takes_any_called_ae() -> None:
    policy = dataclasses.replace(POLICY, promiscuous=True)
    assert check_association(dataclasses.replace(fx.RQ_FULL, called_ae="OTHER"), policy) is None


def test_calling_ae_outside_the_allowed_set_is_rejected_1_1_3() -> None:
    policy = dataclasses.replace(POLICY, allowed_calling=frozenset({"MODALITY"}))
    assert check_association(fx.RQ_FULL, policy) == AssociateRJ(result=1, source=1, reason=3)
    assert check_association(dataclasses.replace(fx.RQ_FULL, calling_ae="MODALITY"), policy) is None


def test_foreign_application_context_is_rejected_1_1_2() -> None:
    rq = dataclasses.replace(fx.RQ_FULL, application_context="1.2.3.4.5")
    assert check_association(rq, POLICY) == AssociateRJ(result=1, source=1, reason=2)


def _acceptor_fed(rq_bytes: bytes) -> tuple[UpperLayer, list]:
    ul = UpperLayer(Role.ACCEPTOR, UlConfig(artim=30.0))
    ul.connection_made(now=0.0)
    return ul, ul.receive_data(rq_bytes, now=1.0)


def test_protocol_version_without_bit_0_is_rejected_1_2_2_by_the_provider() -> None:
    # PS3.8 §9.3.2 and AE-6: the provider answers; the user gets no A-ASSOCIATE indication (§7.1.2.6)
    data = bytearray(fx.ASSOC_RQ_VERIFICATION)
    data[6:8] = b"\x00\x02"
    ul, events = _acceptor_fed(bytes(data))
    assert events == []
    assert ul.data_to_send() == fx.ASSOC_RJ_PROTOCOL_VERSION  # 03 00 00000004 00 01 02 02
    assert (ul.state, ul.timer_deadline()) == (State.AWAITING_CLOSE, 31.0)
    assert ul.receive_data(b"", now=2.0) == [] and ul.closed


def test_only_bit_0_of_the_protocol_version_is_tested() -> None:
    data = bytearray(fx.ASSOC_RQ_VERIFICATION)
    data[6:8] = b"\x80\x03"  # later versions also offered: still version 1 to us
    ul, events = _acceptor_fed(bytes(data))
    assert [type(e) for e in events] == [AssociationRequested] and ul.state is State.AWAITING_LOCAL_ASSOC_RESPONSE


# ---------------------------------------------------------------------------------- A-ASSOCIATE-AC
def test_full_request_gets_the_typed_in_answer() -> None:
    assert encode_pdu(accept(fx.RQ_FULL, POLICY, identity_response=b"ticket")) == fx.ASSOC_AC_FULL


@pytest.mark.parametrize(("proposed", "chosen"), [((EXPLICIT, IMPLICIT), EXPLICIT), ((IMPLICIT, EXPLICIT), IMPLICIT),
                                                  ((JPEG_BASELINE, IMPLICIT, EXPLICIT), IMPLICIT)])
def test_transfer_syntax_follows_the_requestors_order(proposed: tuple[str, ...], chosen: str) -> None:
    ac = accept(_rq(_ctx(1, CT, *proposed)), POLICY)
    assert ac.contexts == (PresentationContextAC(context_id=1, result=ContextResult.ACCEPTANCE,
                                                 transfer_syntax=chosen),)


_POOL = [IMPLICIT, EXPLICIT, DEFLATED, JPEG_BASELINE, "1.2.840.10008.1.2.2"]


@given(st.lists(st.sampled_from(_POOL), min_size=1, unique=True), st.frozensets(st.sampled_from(_POOL)))
def test_chosen_syntax_is_the_first_proposed_one_supported(proposed: list[str], supported: frozenset[str]) -> None:
    policy = dataclasses.replace(POLICY, supported={CT: supported})
    [ctx] = accept(_rq(_ctx(7, CT, *proposed)), policy).contexts
    first = next((ts for ts in proposed if ts in supported), None)
    if first is None:
        assert (ctx.result, ctx.transfer_syntax) == (ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
    else:
        assert (ctx.result, ctx.transfer_syntax) == (ContextResult.ACCEPTANCE, first)


def test_each_context_gets_its_own_result_in_order() -> None:
    ac = accept(_rq(_ctx(1, CT, JPEG_BASELINE), _ctx(3, "1.2.3.999", IMPLICIT), _ctx(5, VERIFICATION, IMPLICIT)),
                POLICY)
    assert ac.contexts == (
        PresentationContextAC(context_id=1, result=ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
        PresentationContextAC(context_id=3, result=ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        PresentationContextAC(context_id=5, result=ContextResult.ACCEPTANCE, transfer_syntax=IMPLICIT),
    )
    assert decode_pdu(encode_pdu(ac)) == ac  # rejected contexts still encode to a valid AC


def test_answer_echoes_the_ae_titles_and_states_our_limits() -> None:
    ac = accept(fx.RQ_VERIFICATION, POLICY)
    assert (ac.called_ae, ac.calling_ae) == ("ANY-SCP", "ECHOSCU")  # PS3.8 Table 9-17: echoed, not tested
    assert (ac.user_info.max_pdu, ac.user_info.implementation_class_uid) == (65536, fx.IMPLEMENTATION_UID)


def test_roles_are_answered_per_class_and_scp_only_where_allowed() -> None:
    # PS3.7 D.3.3.4: each proposed role is accepted or refused; a class not proposed gets no answer
    roles = (RoleSelection(sop_class_uid=CT, scu_role=False, scp_role=True),
             RoleSelection(sop_class_uid=VERIFICATION, scu_role=True, scp_role=True),
             RoleSelection(sop_class_uid="1.2.3.999", scu_role=True, scp_role=True))
    rq = _rq(_ctx(1, CT, IMPLICIT), _ctx(3, VERIFICATION, IMPLICIT), roles=roles)
    ac = accept(rq, dataclasses.replace(POLICY, scp_role_for_requestor=frozenset({CT})))
    assert ac.user_info.roles == (RoleSelection(sop_class_uid=CT, scu_role=False, scp_role=True),
                                  RoleSelection(sop_class_uid=VERIFICATION, scu_role=True, scp_role=False))
    assert negotiated(rq, ac).roles == {CT: (False, True), VERIFICATION: (True, False)}


def test_no_role_proposed_means_no_role_answered() -> None:
    rq = _rq(_ctx(1, CT, IMPLICIT))
    assert accept(rq, POLICY).user_info.roles == ()
    assert negotiated(rq, accept(rq, POLICY)).roles == {}


@pytest.mark.parametrize(("proposed", "ours", "answer"), [
    ((5, 5), (3, 1), (3, 1)),  # (invoked, performed) proposed; ours = (performed, invoked) at once
    ((0, 0), (3, 1), (3, 1)),  # 0: the requestor sets no limit, ours stand
    ((4, 2), (0, 0), (4, 2)),  # we set no limit: the proposal stands
    ((0, 0), (0, 0), (0, 0)),  # unlimited both ways
    ((1, 1), (8, 8), (1, 1)),
])
def test_async_operations_window(proposed: tuple[int, int], ours: tuple[int, int], answer: tuple[int, int]) -> None:
    # PS3.7 D.3.3.3: 0 = unlimited; the acceptor answers no more than was proposed nor than it can do
    rq = _rq(_ctx(1, CT, IMPLICIT), async_ops=AsyncOpsWindow(max_invoked=proposed[0], max_performed=proposed[1]))
    policy = dataclasses.replace(POLICY, max_operations_performed=ours[0], max_operations_invoked=ours[1])
    ac = accept(rq, policy)
    assert ac.user_info.async_ops == AsyncOpsWindow(max_invoked=answer[0], max_performed=answer[1])
    n = negotiated(rq, ac)
    assert (n.max_operations_invoked, n.max_operations_performed) == answer


def test_no_window_proposed_means_the_default_of_one() -> None:
    rq = _rq(_ctx(1, CT, IMPLICIT))
    ac = accept(rq, dataclasses.replace(POLICY, max_operations_performed=0))
    assert ac.user_info.async_ops is None  # PS3.7 D.3.3.3: absent from the AC when absent from the RQ
    assert (negotiated(rq, ac).max_operations_invoked, negotiated(rq, ac).max_operations_performed) == (1, 1)


_WINDOW = st.integers(0, 0xFFFF)


@given(_WINDOW, _WINDOW, _WINDOW, _WINDOW)
def test_window_never_exceeds_a_limit_either_side_set(pi: int, pp: int, ours_p: int, ours_i: int) -> None:
    rq = _rq(_ctx(1, CT, IMPLICIT), async_ops=AsyncOpsWindow(max_invoked=pi, max_performed=pp))
    w = accept(rq, dataclasses.replace(POLICY, max_operations_performed=ours_p,
                                       max_operations_invoked=ours_i)).user_info.async_ops
    assert w is not None
    for got, limits in ((w.max_invoked, (pi, ours_p)), (w.max_performed, (pp, ours_i))):
        finite = [n for n in limits if n]
        assert got == (min(finite) if finite else 0)


def test_user_identity_response_only_when_asked_for() -> None:
    # PS3.7 D.3.3.7: the server response sub-item answers a positive-response request only
    asks = UserIdentityRQ(identity_type=1, positive_response_requested=True, primary=b"alice")
    rq = _rq(_ctx(1, CT, IMPLICIT), user_identity_rq=asks)
    assert accept(rq, POLICY, identity_response=b"token").user_info.user_identity_ac == UserIdentityAC(
        server_response=b"token")
    assert accept(rq, POLICY).user_info.user_identity_ac == UserIdentityAC(server_response=b"")
    silent = _rq(_ctx(1, CT, IMPLICIT), user_identity_rq=dataclasses.replace(asks, positive_response_requested=False))
    assert accept(silent, POLICY, identity_response=b"token").user_info.user_identity_ac is None


@pytest.mark.parametrize("identity_type", [3, 4, 5])
def test_a_kerberos_saml_or_jwt_identity_nobody_verified_gets_no_positive_response(identity_type: int) -> None:
    """PS3.7 D.3.3.7.2: the server-response of types 3-5 carries a ticket or an assertion; an acceptor that did not
    verify the identity accepts without a User Identity sub-item (DCMTK and pynetdicom send none either)."""
    asks = UserIdentityRQ(identity_type=identity_type, positive_response_requested=True, primary=b"opaque-token")
    rq = _rq(_ctx(1, CT, IMPLICIT), user_identity_rq=asks)
    assert accept(rq, POLICY).user_info.user_identity_ac is None
    assert accept(rq, POLICY, identity_response=b"assertion").user_info.user_identity_ac == UserIdentityAC(
        server_response=b"assertion")


def test_extended_negotiation_is_answered_by_the_policy() -> None:
    items = (ExtendedNegotiation(sop_class_uid=CT, info=b"\x02\x00\x03\x00\x01\x00"),
             ExtendedNegotiation(sop_class_uid=VERIFICATION, info=b"\x01"))
    rq = _rq(_ctx(1, CT, IMPLICIT), extended=items)
    ac = accept(rq, POLICY)
    assert ac.user_info.extended == (ExtendedNegotiation(sop_class_uid=CT, info=STORAGE_INFO_ANSWER),)
    assert negotiated(rq, ac).extended == {CT: STORAGE_INFO_ANSWER}
    assert accept(rq, dataclasses.replace(POLICY, extended=None)).user_info.extended == ()


# ---------------------------------------------------------------------------------- what both sides agree
def test_negotiated_from_the_typed_in_pdus() -> None:
    n = negotiated(fx.RQ_FULL, fx.AC_FULL)
    assert n.contexts == {1: (CT, EXPLICIT), 3: (VERIFICATION, IMPLICIT)}
    assert n.rejected == {}
    assert (n.max_operations_invoked, n.max_operations_performed) == (3, 1)
    assert n.roles == {CT: (True, False)}
    assert n.context_for(CT) == 1
    assert n.context_for(CT, IMPLICIT) is None
    assert n.context_for(VERIFICATION, IMPLICIT) == 3


def test_rejected_and_unproposed_contexts() -> None:
    rq = _rq(_ctx(1, CT, JPEG_BASELINE), _ctx(3, VERIFICATION, IMPLICIT))
    ac = dataclasses.replace(accept(rq, POLICY), contexts=(
        *accept(rq, POLICY).contexts,
        PresentationContextAC(context_id=99, result=ContextResult.ACCEPTANCE, transfer_syntax=IMPLICIT)))
    n = negotiated(rq, ac)
    assert n.contexts == {3: (VERIFICATION, IMPLICIT)}  # ID 99 was never proposed: not trusted
    assert n.rejected == {1: (CT, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED)}


def _associate(rq: AssociateRQ, policy: AcceptorPolicy) -> tuple[UpperLayer, UpperLayer, AssociateRQ, AssociateAC,
                                                                  AssociateAC]:
    """Run the RQ through a requestor and an acceptor machine, by bytes: the machines, the RQ the acceptor saw,
    the AC it sent and the AC the requestor saw."""
    req, acc = UpperLayer(Role.REQUESTOR), UpperLayer(Role.ACCEPTOR)
    req.send(rq)
    req.connection_made(now=0.0)
    acc.connection_made(now=0.0)
    [requested] = acc.receive_data(req.data_to_send(), now=0.0)
    assert isinstance(requested, AssociationRequested)
    answer = accept(requested.request, policy)
    acc.send(answer)
    [accepted] = req.receive_data(acc.data_to_send(), now=0.0)
    assert isinstance(accepted, AssociationAccepted)
    return req, acc, requested.request, answer, accepted.accept


def test_both_sides_agree_through_the_machines() -> None:
    req, acc, rq_seen, ac_sent, ac_seen = _associate(fx.RQ_FULL, POLICY)
    assert negotiated(fx.RQ_FULL, ac_seen) == negotiated(rq_seen, ac_sent) == negotiated(fx.RQ_FULL, fx.AC_FULL)
    assert req.accepted_contexts == acc.accepted_contexts == {1: EXPLICIT, 3: IMPLICIT}
    assert (req.peer_max_pdu, acc.peer_max_pdu) == (65536, 32768)  # each side holds the other's limit


_ABSTRACTS = [CT, VERIFICATION, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.999"]


@st.composite
def _proposals(draw: st.DrawFn) -> AssociateRQ:
    ids = draw(st.lists(st.integers(0, 127).map(lambda n: 2 * n + 1), min_size=1, max_size=5, unique=True))
    contexts = [_ctx(i, draw(st.sampled_from(_ABSTRACTS)), *draw(st.lists(st.sampled_from(_POOL), min_size=1,
                                                                           max_size=3, unique=True))) for i in ids]
    window = draw(st.one_of(st.none(), st.builds(AsyncOpsWindow, max_invoked=_WINDOW, max_performed=_WINDOW)))
    roles = tuple(RoleSelection(sop_class_uid=a, scu_role=draw(st.booleans()), scp_role=draw(st.booleans()))
                  for a in draw(st.lists(st.sampled_from(_ABSTRACTS), max_size=3, unique=True)))
    return _rq(*contexts, async_ops=window, roles=roles)


@given(_proposals(), st.fixed_dictionaries({CT: st.frozensets(st.sampled_from(_POOL)),
                                            VERIFICATION: st.frozensets(st.sampled_from(_POOL))}),
       st.frozensets(st.sampled_from(_ABSTRACTS)), _WINDOW, _WINDOW)
@settings(max_examples=150)
def test_negotiated_agrees_on_both_sides(rq: AssociateRQ, supported: dict, scp_ok: frozenset, perf: int,
                                         inv: int) -> None:
    policy = dataclasses.replace(POLICY, supported=supported, scp_role_for_requestor=scp_ok,
                                 max_operations_performed=perf, max_operations_invoked=inv)
    req, acc, rq_seen, ac_sent, ac_seen = _associate(rq, policy)
    on_requestor, on_acceptor = negotiated(rq, ac_seen), negotiated(rq_seen, ac_sent)
    assert on_requestor == on_acceptor
    assert set(on_requestor.contexts) == set(req.accepted_contexts) == set(acc.accepted_contexts)
    assert set(on_requestor.contexts) | set(on_requestor.rejected) == {c.context_id for c in rq.contexts}
    for cid, (abstract, ts) in on_requestor.contexts.items():
        proposed = next(c for c in rq.contexts if c.context_id == cid)
        assert abstract == proposed.abstract_syntax and ts in proposed.transfer_syntaxes and ts in supported[abstract]


def test_negotiated_without_anything_is_the_default() -> None:
    assert negotiated(_rq(_ctx(1, "1.2.3.999", IMPLICIT)), AssociateAC(
        called_ae="A", calling_ae="B", contexts=())) == Negotiated()
