"""Association negotiation as pure functions (PS3.8 §7.1, PS3.7 Annex D.3.3).

The acceptor side: an A-ASSOCIATE-RQ and a policy in, an A-ASSOCIATE-AC or -RJ out. The requestor
side: what an A-ASSOCIATE-AC granted, in a form the association layer can use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .constants import (
    APPLICATION_CONTEXT_NAME,
    ContextResult,
    RejectReason,
    RejectResult,
    RejectSource,
)
from .pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    ExtendedNegotiation,
    PresentationContextAC,
    RoleSelection,
    UserIdentityAC,
    UserInformation,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptorPolicy:
    """What an acceptor agrees to.

    `supported` maps an abstract syntax to the transfer syntaxes accepted for it, in no particular
    order: the requestor's order of preference decides among them (PS3.8 §7.1.1.13 leaves the
    choice to the acceptor; honouring the proposer's order keeps what a modality sends as sent).
    """

    ae_title: str
    supported: Mapping[str, Sequence[str] | frozenset[str]]
    implementation_class_uid: str
    implementation_version_name: str | None = None
    max_pdu: int = 262_144
    promiscuous: bool = False  # accept any called AE title
    allowed_calling: frozenset[str] | None = None  # None: any calling AE title
    max_operations_performed: int = 1  # async ops window: how many operations we run at once (0: no limit)
    max_operations_invoked: int = 1  # how many we invoke at once on the requestor (C-GET sub-operations)
    scp_role_for_requestor: frozenset[str] = frozenset()  # SOP classes where the requestor may act as SCP
    extended: Callable[[ExtendedNegotiation], bytes | None] | None = None  # answer to SOP class extended negotiation


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """What an association agreed, from either side's point of view."""

    contexts: Mapping[int, tuple[str, str]] = field(default_factory=dict)  # ID → (abstract, transfer syntax)
    rejected: Mapping[int, tuple[str, ContextResult]] = field(default_factory=dict)
    max_operations_invoked: int = 1  # by the requestor (what the acceptor performs at once)
    max_operations_performed: int = 1  # by the requestor (what the acceptor may invoke at once)
    roles: Mapping[str, tuple[bool, bool]] = field(default_factory=dict)  # SOP class → (requestor SCU, SCP)
    extended: Mapping[str, bytes] = field(default_factory=dict)

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int | None:
        """The ID of an accepted context for an abstract syntax (and transfer syntax, when given)."""
        for cid, (abstract, ts) in self.contexts.items():
            if abstract == abstract_syntax and (transfer_syntax is None or ts == transfer_syntax):
                return cid
        return None


def _window_min(a: int, b: int) -> int:
    """PS3.7 D.3.3.3: 0 means unlimited, so the smaller of two limits treats 0 as infinity."""
    if a == 0:
        return b
    if b == 0:
        return a
    return min(a, b)


def check_association(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateRJ | None:
    """The A-ASSOCIATE-RJ that PS3.8 Table 9-21 prescribes for this RQ under this policy, if any."""
    if rq.application_context != APPLICATION_CONTEXT_NAME:
        return AssociateRJ(result=RejectResult.PERMANENT, source=RejectSource.SERVICE_USER,
                           reason=RejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
    if not policy.promiscuous and rq.called_ae != policy.ae_title:
        return AssociateRJ(result=RejectResult.PERMANENT, source=RejectSource.SERVICE_USER,
                           reason=RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED)
    if policy.allowed_calling is not None and rq.calling_ae not in policy.allowed_calling:
        return AssociateRJ(result=RejectResult.PERMANENT, source=RejectSource.SERVICE_USER,
                           reason=RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED)
    return None


def accept(rq: AssociateRQ, policy: AcceptorPolicy, *, identity_response: bytes | None = None) -> AssociateAC:
    """The A-ASSOCIATE-AC for an RQ that `check_association` let through."""
    contexts = []
    for ctx in rq.contexts:
        offered = policy.supported.get(ctx.abstract_syntax)
        if offered is None:
            contexts.append(PresentationContextAC(context_id=ctx.context_id,
                                                  result=ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        chosen = next((ts for ts in ctx.transfer_syntaxes if ts in offered), None)
        if chosen is None:
            contexts.append(PresentationContextAC(context_id=ctx.context_id,
                                                  result=ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED))
        else:
            contexts.append(PresentationContextAC(context_id=ctx.context_id, result=ContextResult.ACCEPTANCE,
                                                  transfer_syntax=chosen))
    ui = rq.user_info
    proposed_classes = {c.abstract_syntax for c in rq.contexts}
    # PS3.7 D.3.3.4: answer each proposed role; the requestor keeps its default SCU role when asked,
    # and may act as SCP only for the classes the policy allows (storage classes of a C-GET SCP).
    roles = tuple(
        RoleSelection(sop_class_uid=r.sop_class_uid, scu_role=r.scu_role,
                      scp_role=r.scp_role and r.sop_class_uid in policy.scp_role_for_requestor)
        for r in ui.roles
        if r.sop_class_uid in proposed_classes
    )
    window = None
    if ui.async_ops is not None:
        window = AsyncOpsWindow(
            max_invoked=_window_min(ui.async_ops.max_invoked, policy.max_operations_performed),
            max_performed=_window_min(ui.async_ops.max_performed, policy.max_operations_invoked),
        )
    extended = []
    if policy.extended is not None:
        for item in ui.extended:
            answer = policy.extended(item)
            if answer is not None:
                extended.append(ExtendedNegotiation(sop_class_uid=item.sop_class_uid, info=answer))
    identity_ac = None
    asked = ui.user_identity_rq
    if asked is not None and asked.positive_response_requested:
        # With a response from whoever verified the identity, send it. Without one, answer only a username or
        # username and passcode (types 1, 2: zero length, PS3.15 B.4); a Kerberos, SAML or JWT identity (3-5)
        # nobody verified gets no positive response, whose server-response would have to carry a ticket or an
        # assertion (PS3.7 D.3.3.7.2)
        if identity_response is not None:
            identity_ac = UserIdentityAC(server_response=identity_response)
        elif asked.identity_type in (1, 2):
            identity_ac = UserIdentityAC(server_response=b"")
    return AssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=tuple(contexts),
        user_info=UserInformation(
            max_pdu=policy.max_pdu,
            implementation_class_uid=policy.implementation_class_uid,
            implementation_version_name=policy.implementation_version_name,
            async_ops=window,
            roles=roles,
            extended=tuple(extended),
            user_identity_ac=identity_ac,
        ),
    )


def negotiated(rq: AssociateRQ, ac: AssociateAC) -> Negotiated:
    """What an RQ and its AC agreed (both sides compute the same thing)."""
    abstract = {c.context_id: c.abstract_syntax for c in rq.contexts}
    contexts, rejected = {}, {}
    for c in ac.contexts:
        if c.context_id not in abstract:
            continue  # an AC context the RQ never proposed: ignored rather than trusted
        if c.result == ContextResult.ACCEPTANCE:
            contexts[c.context_id] = (abstract[c.context_id], c.transfer_syntax)
        else:
            rejected[c.context_id] = (abstract[c.context_id], c.result)
    rq_window = rq.user_info.async_ops
    ac_window = ac.user_info.async_ops
    invoked = performed = 1
    if rq_window is not None and ac_window is not None:
        invoked = _window_min(rq_window.max_invoked, ac_window.max_invoked)
        performed = _window_min(rq_window.max_performed, ac_window.max_performed)
    proposed_roles = {r.sop_class_uid: r for r in rq.user_info.roles}
    roles = {}
    for r in ac.user_info.roles:
        p = proposed_roles.get(r.sop_class_uid)
        if p is not None:
            roles[r.sop_class_uid] = (p.scu_role and r.scu_role, p.scp_role and r.scp_role)
    return Negotiated(
        contexts=contexts,
        rejected=rejected,
        max_operations_invoked=invoked,
        max_operations_performed=performed,
        roles=roles,
        extended={e.sop_class_uid: e.info for e in ac.user_info.extended},
    )
