"""Hostile and heavy peers against a running `aiodicom serve`, driven by the independent raw client.

Each case checks the standard's answer (A-ASSOCIATE-RJ, PS3.8 Table 9-21; A-ABORT, Table 9-26; the actions of
the state table, §9.2 Table 9-10) arrives instead of silence, then that a normal peer on another connection is
still served. The first tests prove the raw client's bytes right against DCMTK storescp (conftest's `storescp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from tests.peers import HOST, Running, aiodicom_serve, wait_until
from tests.rawdicom import (
    ASSOCIATE_AC,
    ASSOCIATE_RQ,
    IMPLICIT_VR_LE,
    INVALID_SOP_INSTANCE,
    ITEM_ABSTRACT_SYNTAX,
    ITEM_MAXIMUM_LENGTH,
    ITEM_PRESENTATION_CONTEXT_AC,
    ITEM_PRESENTATION_CONTEXT_RQ,
    ITEM_TRANSFER_SYNTAX,
    ITEM_USER_INFORMATION,
    P_DATA_TF,
    REASON_INVALID_PDU_PARAMETER,
    REASON_UNEXPECTED_PDU,
    REASON_UNRECOGNIZED_PDU,
    RELEASE_RQ,
    RJ_CALLED_AE_NOT_RECOGNIZED,
    RJ_PERMANENT,
    RJ_PROTOCOL_VERSION_NOT_SUPPORTED,
    RJ_SOURCE_PROVIDER_ACSE,
    RJ_SOURCE_USER,
    SECONDARY_CAPTURE,
    SOURCE_SERVICE_PROVIDER,
    SOURCE_SERVICE_USER,
    SUCCESS,
    TAG_MESSAGE_ID_RESPONDED,
    TAG_STATUS,
    VERIFICATION,
    Abort,
    AssociateAccept,
    AssociateReject,
    AsyncRawClient,
    Closed,
    ProposedContext,
    RawClient,
    Release,
    application_context_item,
    associate_rq,
    associate_rq_fields,
    c_echo_rq,
    c_store_rq,
    echo_cycle,
    element,
    item,
    message_pdus,
    minimal_dataset,
    nested_sequences,
    new_uid,
    p_data_tf,
    pdu,
    pdv,
    presentation_context_item,
    raise_nofile_limit,
    release_rq,
    us_of,
    user_information_item,
)

pytestmark = pytest.mark.interop

AET = "AIODICOM"  # aiodicom_serve's default --aet
CALLING = "HOSTILE"
MAX_PDU = 16_384
ECHO_CTX = (ProposedContext(1, VERIFICATION),)
STORE_CTXS = (ProposedContext(1, VERIFICATION), ProposedContext(3, SECONDARY_CAPTURE))


# ================================================ fixtures ================================================


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with aiodicom_serve(tmp_path_factory.mktemp("hostile"), "--max-pdu", str(MAX_PDU)) as r:
        yield r


@pytest.fixture(scope="module")
def artim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with aiodicom_serve(tmp_path_factory.mktemp("artim"), "--acse-timeout", "2") as r:
        yield r


def assert_still_serving(server: Running) -> None:
    """A well-behaved peer on a fresh connection: associate, C-ECHO, release."""
    assert server.proc.poll() is None, f"server exited:\n{server.output()[-4000:]}"
    assert echo_cycle(HOST, server.port, AET, calling_ae="WELLBEHAVED") == SUCCESS


def assert_aborted(client: RawClient, reason: int) -> None:
    """The A-ABORT (service-provider source, `reason`) arrives. Having sent it, the server is in Sta13 and may
    wait for us to close the transport, as a requestor does on an A-ABORT (PS3.8 Table 9-10, AA-3); that it does
    not wait forever is test_aborted_peer_that_lingers_is_closed_by_artim."""
    assert client.read_answer() == Abort(SOURCE_SERVICE_PROVIDER, reason)


@contextlib.contextmanager
def associated(server: Running, contexts: tuple[ProposedContext, ...] = ECHO_CTX) -> Iterator[RawClient]:
    with RawClient.connect(HOST, server.port) as client:
        client.associate(AET, CALLING, contexts)
        yield client


def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ============================== the raw client itself, checked against DCMTK ==============================


def test_raw_client_associates_echoes_and_stores_bit_for_bit_with_dcmtk(storescp: Running) -> None:
    contexts = (*STORE_CTXS, ProposedContext(5, "1.2.3.4.5.6.7"))  # an abstract syntax nobody knows
    sop, study, series = new_uid(), new_uid(), new_uid()
    pixels = bytes(range(256)) * 160  # 40 KiB: the data set spans several 16 KiB PDUs
    dataset = minimal_dataset(SECONDARY_CAPTURE, sop, study, series, element(0x7FE00010, pixels))
    with RawClient.connect(HOST, storescp.port) as client:
        ac = client.associate("DCMTKSCP", CALLING, contexts)
        assert ac.max_pdu > 0
        assert [(c.id, c.result) for c in ac.contexts] == [(1, 0), (3, 0), (5, 3)]  # 3: abstract syntax not supported
        assert client.echo(1, message_id=7) == SUCCESS
        assert client.store(3, SECONDARY_CAPTURE, sop, dataset, message_id=8) == SUCCESS
        client.release()
    assert storescp.storage is not None  # conftest's storescp: --fork +B, files named <modality>.<SOP UID>
    wait_until(lambda: any(storescp.storage.glob(f"*{sop}")), timeout=10, what="storescp's file")
    [stored] = storescp.storage.glob(f"*{sop}")
    assert stored.read_bytes().endswith(dataset)  # +B: storescp wrote the data set exactly as we encoded it
    ds = pydicom.dcmread(stored)
    assert (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (sop, study, series)
    assert ds.PixelData == pixels


def test_raw_client_reads_dcmtk_rejection_of_protocol_version_0(storescp: Running) -> None:
    with RawClient.connect(HOST, storescp.port) as client:
        client.send(associate_rq("DCMTKSCP", CALLING, ECHO_CTX, protocol_version=0))
        assert client.read_answer() == AssociateReject(RJ_PERMANENT, RJ_SOURCE_PROVIDER_ACSE, 2)


def test_raw_client_reads_dcmtk_abort_of_p_data_before_association(storescp: Running) -> None:
    with RawClient.connect(HOST, storescp.port) as client:
        client.send(p_data_tf(pdv(1, c_echo_rq(), command=True, last=True)))
        assert isinstance(client.read_answer(), Abort)
        client.expect_closed()


# ============================================ framing and junk ============================================

GARBAGE = {
    "http request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # 'G' = 47H: no such PDU type
    "tls client hello": bytes.fromhex("160301009d010000990303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00",
    "nul bytes": bytes(64),  # type 00H
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_aborted_as_unrecognized_pdu(server: Running, garbage: bytes) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(garbage)
        assert_aborted(client, REASON_UNRECOGNIZED_PDU)
    assert_still_serving(server)


@pytest.mark.parametrize("established", [False, True], ids=["before association", "after association"])
@pytest.mark.parametrize("pdu_type", [0x08, 0x42, 0xFF])
def test_unknown_pdu_type_is_aborted_as_unrecognized(server: Running, established: bool, pdu_type: int) -> None:
    with RawClient.connect(HOST, server.port) as client:
        if established:
            client.associate(AET, CALLING, ECHO_CTX)
        client.send(pdu(pdu_type, bytes(4)))
        assert_aborted(client, REASON_UNRECOGNIZED_PDU)
    assert_still_serving(server)


def test_associate_rq_sent_one_byte_at_a_time_is_accepted(server: Running) -> None:
    with RawClient.connect(HOST, server.port) as client:
        rq = associate_rq(AET, CALLING, ECHO_CTX)
        for i in range(len(rq)):  # TCP_NODELAY: each byte leaves as its own segment
            client.send(rq[i : i + 1])
        assert isinstance(client.read_answer(), AssociateAccept)
        assert client.echo(1) == SUCCESS
        client.release()


def test_pdus_coalesced_in_one_write_are_each_answered(server: Running) -> None:
    with associated(server) as client:
        client.send(b"".join(message_pdus(1, c_echo_rq(3), command=True, max_pdu=MAX_PDU)) + release_rq())
        fields, dataset = client.read_message()
        assert (us_of(fields, TAG_MESSAGE_ID_RESPONDED), us_of(fields, TAG_STATUS), dataset) == (3, SUCCESS, None)
        assert client.read_answer() == Release(reply=True)


# ======================================= malformed A-ASSOCIATE-RQ =========================================

FIELDS = associate_rq_fields(AET, CALLING)
APP = application_context_item()
PC = presentation_context_item(ProposedContext(1, VERIFICATION))
UI = user_information_item(MAX_PDU)
AC_PC = item(ITEM_PRESENTATION_CONTEXT_AC, bytes([1, 0, 0, 0]) + item(ITEM_TRANSFER_SYNTAX, IMPLICIT_VR_LE.encode()))


def _rq(*parts: bytes) -> bytes:
    return pdu(ASSOCIATE_RQ, b"".join(parts))


def _with_length(it: bytes, length: int) -> bytes:
    return it[:2] + struct.pack(">H", length) + it[4:]


MALFORMED_RQ = {
    "last item overruns the PDU": _rq(FIELDS, APP, PC, _with_length(UI, len(UI) - 4 + 64)),
    "presentation context item overruns the PDU": _rq(FIELDS, APP, _with_length(PC, 0xFFFF), UI),
    "PDU ends inside an item header": _rq(FIELDS, APP, PC, UI, bytes([ITEM_USER_INFORMATION, 0])),
    "sub-item overruns its item": _rq(
        FIELDS, APP,
        item(ITEM_PRESENTATION_CONTEXT_RQ, bytes([1, 0, 0, 0])
             + item(ITEM_ABSTRACT_SYNTAX, VERIFICATION.encode(), length=len(VERIFICATION) + 40)
             + item(ITEM_TRANSFER_SYNTAX, b"1.2.840.10008.1.2")),
        UI,
    ),
    "maximum length sub-item of 2 bytes": _rq(
        FIELDS, APP, PC, item(ITEM_USER_INFORMATION, item(ITEM_MAXIMUM_LENGTH, b"\x40\x00"))
    ),
    "presentation context item without its ID": _rq(FIELDS, APP, item(ITEM_PRESENTATION_CONTEXT_RQ, b""), UI),
    "PDU shorter than its fixed fields": _rq(FIELDS[:20]),
    "even presentation context ID": _rq(FIELDS, APP, presentation_context_item(ProposedContext(2, VERIFICATION)), UI),
    "zero presentation context ID": _rq(FIELDS, APP, presentation_context_item(ProposedContext(0, VERIFICATION)), UI),
}


@pytest.mark.parametrize("rq", MALFORMED_RQ.values(), ids=MALFORMED_RQ.keys())
def test_malformed_associate_rq_is_aborted_as_invalid_parameter(server: Running, rq: bytes) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(rq)
        assert_aborted(client, REASON_INVALID_PDU_PARAMETER)
    assert_still_serving(server)


@pytest.mark.parametrize("announced", [(1 << 20) + 1, 0xFFFFFFFF], ids=["1 MiB + 1", "4 GiB - 1"])
def test_associate_rq_announcing_over_1_mib_is_aborted_from_its_header(server: Running, announced: int) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(struct.pack(">BBL", ASSOCIATE_RQ, 0, announced))  # the 6-byte header, nothing more
        assert_aborted(client, REASON_INVALID_PDU_PARAMETER)
    assert_still_serving(server)


def test_wrong_called_ae_is_rejected_permanently_by_the_user(server: Running) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(associate_rq("NOT-" + AET, CALLING, ECHO_CTX))
        assert client.read_answer() == AssociateReject(RJ_PERMANENT, RJ_SOURCE_USER, RJ_CALLED_AE_NOT_RECOGNIZED)
    assert_still_serving(server)


def test_leading_and_trailing_spaces_of_the_called_ae_are_not_significant(server: Running) -> None:
    with RawClient.connect(HOST, server.port) as client:  # PS3.8 Table 9-11, bytes 11-26
        client.send(associate_rq("  " + AET, CALLING, ECHO_CTX))
        assert isinstance(client.read_answer(), AssociateAccept)
        client.release()


@pytest.mark.parametrize("version", [0x0000, 0x0002])
def test_protocol_version_without_bit_0_is_rejected(server: Running, version: int) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(associate_rq(AET, CALLING, ECHO_CTX, protocol_version=version))
        assert client.read_answer() == AssociateReject(
            RJ_PERMANENT, RJ_SOURCE_PROVIDER_ACSE, RJ_PROTOCOL_VERSION_NOT_SUPPORTED
        )
    assert_still_serving(server)


@pytest.mark.parametrize("version", [0x0003, 0xFFFF])
def test_protocol_version_with_bit_0_set_is_accepted(server: Running, version: int) -> None:
    # Table 9-11: "A receiver ... implementing only this version ... shall only test that bit 0 is set."
    with RawClient.connect(HOST, server.port) as client:
        client.send(associate_rq(AET, CALLING, ECHO_CTX, protocol_version=version))
        assert isinstance(client.read_answer(), AssociateAccept)
        assert client.echo(1) == SUCCESS
        client.release()


def test_reserved_fields_are_not_tested_when_received(server: Running) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(associate_rq(AET, CALLING, ECHO_CTX, reserved=0xFF))
        assert isinstance(client.read_answer(), AssociateAccept)
        client.release()


# =========================================== wrong PDU, wrong state ===========================================


def test_p_data_before_association_is_aborted_as_unexpected(server: Running) -> None:
    with RawClient.connect(HOST, server.port) as client:
        client.send(p_data_tf(pdv(1, c_echo_rq(), command=True, last=True)))
        assert_aborted(client, REASON_UNEXPECTED_PDU)
    assert_still_serving(server)


@pytest.mark.parametrize("peer_max_pdu", [1, 6])
def test_a_peer_whose_maximum_pdu_leaves_no_room_for_a_response_is_aborted_not_left_waiting(
    server: Running, peer_max_pdu: int,
) -> None:
    """PS3.8 D.1 sets no minimum, but a P-DATA-TF needs 6 bytes of PDV header: no response fits. Every request must
    be answered or the association aborted (DCMTK and pynetdicom abort too), never left without an answer."""
    with RawClient.connect(HOST, server.port) as client:
        client.associate(AET, CALLING, ECHO_CTX, max_pdu=peer_max_pdu)
        client.send(b"".join(message_pdus(1, c_echo_rq(3), command=True, max_pdu=MAX_PDU)))
        assert client.read_answer() == Abort(SOURCE_SERVICE_USER, 0)
    assert_still_serving(server)


@pytest.mark.parametrize("calling", [b"\xe9CHO", b"A\\B", b"A\x01B"], ids=["non-ASCII", "backslash", "control"])
def test_a_calling_ae_title_outside_the_ae_repertoire_still_associates_and_stores(
    server: Running, calling: bytes,
) -> None:
    """A modality configured with such a title: DCMTK accepts and stores. The AC echoes the field (PS3.8 Table 9-17)
    and the file is stored without a Source AE Title (optional, PS3.10 7.1) that could not hold it; it used to be
    an A-ABORT for the request (non-ASCII) or for every C-STORE (backslash, control character)."""
    rq = bytearray(associate_rq(AET, "PLACEHOLDER", STORE_CTXS))
    rq[26:42] = calling.ljust(16)  # PDU header 6, protocol version and reserved 4, called AE 16: calling AE
    sop, study, series = new_uid(), new_uid(), new_uid()
    with RawClient.connect(HOST, server.port) as client:
        client.send(bytes(rq))
        answer = client.read_answer()
        assert isinstance(answer, AssociateAccept) and answer.accepted(3), answer
        client.accept = answer
        assert client.store(3, SECONDARY_CAPTURE, sop, minimal_dataset(SECONDARY_CAPTURE, sop, study, series)) == SUCCESS
        client.release()
    stored = pydicom.dcmread(server.storage / study / series / f"{sop}.dcm")
    assert stored.SOPInstanceUID == sop and "SourceApplicationEntityTitle" not in stored.file_meta
    assert_still_serving(server)


def test_two_release_requests_in_one_write_get_the_state_tables_abort_without_an_internal_error(
    server: Running,
) -> None:
    """Sta8 + a second A-RELEASE-RQ is AA-8 (PS3.8 Table 9-10): A-ABORT, unexpected PDU. Both PDUs are read before
    the first is answered; answering it in Sta13 used to raise inside the association ('internal error')."""
    with associated(server) as client:
        client.send(release_rq() + release_rq())
        assert_aborted(client, REASON_UNEXPECTED_PDU)
    assert_still_serving(server)
    assert "RELEASE_RESPONSE (Evt14) is not allowed" not in server.output()


def test_a_request_missing_a_mandatory_element_is_answered_0212_and_the_association_goes_on(
    server: Running,
) -> None:
    """PS3.7 9.3.1.1: a C-STORE-RQ without its Affected SOP Instance UID cannot be performed, but it can be answered:
    0x0212 Mistyped argument for its Message ID, its data set dropped, the next request served (it was an A-ABORT)."""
    from tests import rawdicom as raw

    sop = new_uid()
    no_instance = raw.command_set({raw.TAG_AFFECTED_SOP_CLASS: raw.ui(SECONDARY_CAPTURE),
                                   raw.TAG_COMMAND_FIELD: raw.us(raw.C_STORE_RQ), raw.TAG_MESSAGE_ID: raw.us(21),
                                   raw.TAG_PRIORITY: raw.us(0), raw.TAG_DATA_SET_TYPE: raw.us(0)})
    with associated(server, STORE_CTXS) as client:
        assert client.send_message(3, no_instance, minimal_dataset(SECONDARY_CAPTURE, sop, new_uid(), new_uid()))
        fields, _ = client.read_message()
        assert raw.us_of(fields, raw.TAG_COMMAND_FIELD) == raw.C_STORE_RSP
        assert raw.us_of(fields, raw.TAG_MESSAGE_ID_RESPONDED) == 21
        assert raw.us_of(fields, raw.TAG_STATUS) == 0x0212
        assert client.echo(message_id=22) == SUCCESS
        client.release()
    assert_still_serving(server)


def test_a_sop_class_negotiated_on_no_context_is_refused_and_nothing_is_stored_or_created(server: Running) -> None:
    """PS3.7 D.3.2: a SOP class is used over a context negotiated for it. A C-STORE naming a class never negotiated
    (1.2.3.4, on the Secondary Capture context) gets 0x0122 and is not stored; an MPPS N-CREATE on an association
    that proposed only Verification gets 0x0118 and creates nothing (both were Success). A class negotiated on
    another context of the association is still served on this one, as DCMTK does."""
    from tests import rawdicom as raw

    mpps = "1.2.840.10008.3.1.2.3.3"
    sop, study, series = new_uid(), new_uid(), new_uid()
    with associated(server, STORE_CTXS) as client:
        assert client.store(3, "1.2.3.4", sop, minimal_dataset("1.2.3.4", sop, study, series)) == 0x0122
        served = new_uid()   # Secondary Capture, negotiated on context 3, sent on the Verification context 1
        assert client.store(1, SECONDARY_CAPTURE, served, minimal_dataset(SECONDARY_CAPTURE, served, study, series),
                            message_id=2) == SUCCESS
        client.release()
    assert not (server.storage / study / series / f"{sop}.dcm").exists()
    assert (server.storage / study / series / f"{served}.dcm").exists()
    n_create = raw.command_set({raw.TAG_AFFECTED_SOP_CLASS: raw.ui(mpps), raw.TAG_COMMAND_FIELD: raw.us(0x0140),
                                raw.TAG_MESSAGE_ID: raw.us(5), raw.TAG_DATA_SET_TYPE: raw.us(raw.NO_DATA_SET),
                                raw.TAG_AFFECTED_SOP_INSTANCE: raw.ui(new_uid())})
    with associated(server) as client:   # Verification only
        assert client.send_message(1, n_create)
        fields, _ = client.read_message()
        assert raw.us_of(fields, raw.TAG_COMMAND_FIELD) == 0x8140
        assert raw.us_of(fields, raw.TAG_STATUS) == 0x0118
        client.release()
    assert_still_serving(server)


WRONG_AFTER_ASSOCIATION = {
    "P-DATA on a context never proposed": (
        p_data_tf(pdv(3, c_echo_rq(), command=True, last=True)), REASON_INVALID_PDU_PARAMETER),
    "P-DATA on an even context ID": (
        p_data_tf(pdv(2, c_echo_rq(), command=True, last=True)), REASON_INVALID_PDU_PARAMETER),
    "PDV item overruns the PDU": (
        pdu(P_DATA_TF, struct.pack(">LBB", 400, 1, 3) + c_echo_rq()), REASON_INVALID_PDU_PARAMETER),
    "PDV item too short for its header": (pdu(P_DATA_TF, struct.pack(">LB", 1, 1)), REASON_INVALID_PDU_PARAMETER),
    "A-RELEASE-RQ of 2 bytes": (pdu(RELEASE_RQ, bytes(2)), REASON_INVALID_PDU_PARAMETER),
    "second A-ASSOCIATE-RQ": (associate_rq(AET, CALLING, ECHO_CTX), REASON_UNEXPECTED_PDU),
    "A-ASSOCIATE-AC from the requestor": (pdu(ASSOCIATE_AC, FIELDS + APP + AC_PC + UI), REASON_UNEXPECTED_PDU),
}


@pytest.mark.parametrize("sent, reason", WRONG_AFTER_ASSOCIATION.values(), ids=WRONG_AFTER_ASSOCIATION.keys())
def test_bad_pdu_after_association_is_aborted(server: Running, sent: bytes, reason: int) -> None:
    with associated(server) as client:
        client.send(sent)
        assert_aborted(client, reason)
    assert_still_serving(server)


def test_p_data_on_a_rejected_context_is_aborted(server: Running) -> None:
    contexts = (*ECHO_CTX, ProposedContext(3, "1.2.3.4.5.6.7"))
    with associated(server, contexts) as client:
        assert client.accept is not None and not client.accept.accepted(3)
        client.send(p_data_tf(pdv(3, c_echo_rq(), command=True, last=True)))
        assert_aborted(client, REASON_INVALID_PDU_PARAMETER)
    assert_still_serving(server)


@pytest.mark.parametrize("whole_pdu", [True, False], ids=["max + 1, sent whole", "4 GiB - 1, header only"])
def test_p_data_over_the_advertised_max_pdu_is_aborted(server: Running, whole_pdu: bool) -> None:
    with associated(server) as client:
        assert client.accept is not None and client.accept.max_pdu == MAX_PDU
        if whole_pdu:  # PS3.8 D.1: the maximum length bounds the P-DATA-TF variable field, i.e. the PDU length
            fragment = c_echo_rq().ljust(MAX_PDU + 1 - 6, b"\0")
            client.send(pdu(P_DATA_TF, struct.pack(">LBB", len(fragment) + 2, 1, 3) + fragment))
        else:
            client.send(struct.pack(">BBL", P_DATA_TF, 0, 0xFFFFFFFF))
        assert_aborted(client, REASON_INVALID_PDU_PARAMETER)
    assert_still_serving(server)


def test_p_data_of_exactly_the_advertised_max_pdu_is_accepted(server: Running) -> None:
    sop = new_uid()
    dataset = minimal_dataset(SECONDARY_CAPTURE, sop, new_uid(), new_uid(), element(0x7FE00010, bytes(3 * MAX_PDU)))
    pdus = list(message_pdus(3, dataset, command=False, max_pdu=MAX_PDU))
    assert len(pdus[0]) == 6 + MAX_PDU  # each but the last fills the limit exactly
    with associated(server, STORE_CTXS) as client:
        assert client.store(3, SECONDARY_CAPTURE, sop, dataset) == SUCCESS
        client.release()


# ================================================ slow peers ================================================


def test_silent_peer_is_closed_by_artim(artim_server: Running) -> None:
    started = time.monotonic()
    with RawClient.connect(HOST, artim_server.port, timeout=10) as client:
        answer = client.read_answer()  # PS3.8 §9.1.4 / Table 9-10 Sta2+Evt18: AA-2, close the transport
        if isinstance(answer, Abort):
            answer = client.read_answer()
        assert isinstance(answer, Closed)
    assert time.monotonic() - started >= 1.0  # closed by the 2 s timer, not on sight
    assert_still_serving(artim_server)


def test_aborted_peer_that_lingers_is_closed_by_artim(artim_server: Running) -> None:
    with RawClient.connect(HOST, artim_server.port, timeout=10) as client:
        client.send(pdu(0x08, bytes(4)))
        assert client.read_answer() == Abort(SOURCE_SERVICE_PROVIDER, REASON_UNRECOGNIZED_PDU)
        client.expect_closed()  # Sta13: ARTIM runs while the server waits for our close (PS3.8 AA-8, AR-5)
    assert_still_serving(artim_server)


def test_byte_dripping_peer_cannot_outlive_the_artim_deadline(artim_server: Running) -> None:
    rq = associate_rq(AET, CALLING, ECHO_CTX)
    deadline = time.monotonic() + 10
    sock = socket.create_connection((HOST, artim_server.port), timeout=0.5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    closed, sent = False, 0
    with sock:
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(rq[sent : sent + 1])
                sent += 1
                closed = sock.recv(64) == b""  # an A-ABORT may precede the close: keep reading
            except TimeoutError:
                continue  # 0.5 s of silence: send the next byte
            except (BrokenPipeError, ConnectionResetError):
                closed = True
    assert closed, f"still open after 10 s and {sent} bytes: the 2 s ARTIM must be a total deadline"
    assert sent < len(rq)
    assert_still_serving(artim_server)


def _drip(port: int, stop: threading.Event) -> None:
    rq = associate_rq(AET, "DRIPPER", ECHO_CTX)
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(rq)):
            if stop.wait(0.5):
                return
            sock.sendall(rq[i : i + 1])


def test_idle_and_dripping_peers_do_not_delay_an_echo(server: Running) -> None:
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(server.port, stop), daemon=True)
    idle = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(32)]
    try:
        dripper.start()
        # Every read of this echo is bounded by 5 s, half the server's default 10 s ARTIM: a server that
        # waits on the idle peers before serving this one fails with Silence.
        assert echo_cycle(HOST, server.port, AET, calling_ae="BUSYDAY", timeout=5.0) == SUCCESS
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        dripper.join(10)


# ================================================== scale ==================================================


def _listen_backlogs(port: int) -> list[int]:
    """Send-Q of a listening socket in `ss -ltn` is its accept-queue limit (the listen() backlog)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    return [int(fields[2]) for fields in map(str.split, out.splitlines()) if len(fields) >= 4]


def test_listen_backlog_is_at_least_1024(server: Running) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    if int(Path("/proc/sys/net/core/somaxconn").read_text()) < 1024:
        pytest.skip("net.core.somaxconn < 1024 caps every listen backlog on this host")
    backlogs = _listen_backlogs(server.port)
    assert backlogs and min(backlogs) >= 1024, backlogs


async def _burst(port: int, n: int) -> list[str]:
    async def one(i: int) -> str | None:
        try:
            client = await AsyncRawClient.connect(HOST, port, timeout=30)
        except (OSError, TimeoutError) as exc:  # refused, reset, or not accepted in time
            return f"connect #{i}: {exc!r}"
        try:
            if i % 2 == 0:  # half associate and release, half leave right after the handshake
                await client.associate(AET, CALLING, ECHO_CTX)
                await client.release()
        except (AssertionError, OSError, TimeoutError) as exc:
            return f"association #{i}: {exc!r}"
        finally:
            await client.aclose()
        return None

    return [f for f in await asyncio.gather(*(one(i) for i in range(n))) if f]


@pytest.mark.slow
def test_burst_of_2000_connects_is_neither_refused_nor_left_hanging(tmp_path: Path) -> None:
    assert raise_nofile_limit() >= 2_200
    limits = ("--max-associations", "4000", "--max-associations-per-host", "4000")
    with aiodicom_serve(tmp_path, *limits) as srv:
        failures = asyncio.run(_burst(srv.port, 2_000))
        assert not failures, f"{len(failures)} failed, e.g. {failures[:5]}"
        assert_still_serving(srv)


# ============================================ storage attacks ============================================


def test_deeply_nested_sequences_do_not_bring_the_server_down(server: Running) -> None:
    sop = new_uid()
    dataset = minimal_dataset(SECONDARY_CAPTURE, sop, new_uid(), new_uid(), nested_sequences(10_000))
    with RawClient.connect(HOST, server.port, timeout=60) as client:
        client.associate(AET, CALLING, STORE_CTXS)
        status = client.store(3, SECONDARY_CAPTURE, sop, dataset)  # any status will do: an answer is the point
        assert 0 <= status <= 0xFFFF
        client.release()
    assert_still_serving(server)


def _dicom_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm") if p.is_file()]


def _incoming_is_empty(storage: Path) -> bool:
    """No temp file left in .incoming/; the `*.lock` files there are the running processes' session locks
    (one flock per process, so concurrent processes never sweep each other's temp files), not data."""
    incoming = storage / ".incoming"
    return not incoming.exists() or all(p.suffix == ".lock" for p in incoming.iterdir())


@pytest.mark.parametrize("reset", [False, True], ids=["FIN", "RST"])
def test_peer_vanishing_mid_data_set_leaves_no_partial_file(tmp_path: Path, reset: bool) -> None:
    with aiodicom_serve(tmp_path) as srv:
        storage = tmp_path / "storage"
        sop = new_uid()
        pixel_header = element(0x7FE00010, b"", length=8 << 20)  # announces 8 MiB, of which 4 MiB arrive
        partial = minimal_dataset(SECONDARY_CAPTURE, sop, new_uid(), new_uid(), pixel_header) + bytes(4 << 20)
        client = RawClient.connect(HOST, srv.port)
        client.associate(AET, CALLING, STORE_CTXS)
        assert client.send_message(3, c_store_rq(SECONDARY_CAPTURE, sop), partial, last=False)
        eventually(lambda: not _incoming_is_empty(storage), timeout=5)  # let a spooling server start its file
        client.close(reset=reset)
        assert_still_serving(srv)
        assert eventually(lambda: not _dicom_files(storage) and _incoming_is_empty(storage)), sorted(
            storage.rglob("*")
        )


def test_sop_instance_uid_escaping_the_storage_folder_is_refused_and_nothing_written(tmp_path: Path) -> None:
    bad = "1.2.3/../../x"
    study, series = new_uid(), new_uid()
    with aiodicom_serve(tmp_path) as srv:
        storage = tmp_path / "storage"
        before = set(tmp_path.rglob("*"))
        with associated(srv, STORE_CTXS) as client:
            dataset = minimal_dataset(SECONDARY_CAPTURE, bad, study, series)
            assert client.store(3, SECONDARY_CAPTURE, bad, dataset) == INVALID_SOP_INSTANCE
            client.release()
        assert_still_serving(srv)
        new = set(tmp_path.rglob("*")) - before
    assert not _dicom_files(tmp_path)
    assert not [p for p in new if p.name.startswith("x") or study in str(p)], sorted(new)
    assert not [p for p in new if storage not in p.parents], sorted(new)  # nothing outside the storage folder
    assert _incoming_is_empty(storage)
