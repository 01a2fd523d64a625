"""Our SCU against our SCP in one process: negotiation, limits, handlers, windows, timeouts, cancellation."""

from __future__ import annotations

import copy
import gc
import weakref

import anyio
import anyio.abc
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import aiodicom
from aiodicom.dimse import status as st
from aiodicom.dimse.dataset import EncodedDataset
from aiodicom.dimse.messages import CEchoRQ, CFindRQ, CStoreRQ
from aiodicom.net.dispatch import Dispatcher, Result
from aiodicom.net.errors import AssociationAborted, AssociationRejected, AssociationTimeout, NoPresentationContext
from aiodicom.services import verification
from aiodicom.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from aiodicom.ul.pdu import AsyncOpsWindow, UserIdentityRQ

from .. import rawdicom as raw
from .conftest import running_server

pytestmark = pytest.mark.anyio
CT = get_testdata_file("CT_small.dcm")
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def fresh_ct():
    ds = dcmread(CT)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


async def test_echo_round_trip(tmp_path):
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
            status = await assoc.echo()
            assert status.ok and int(status) == 0 and str(status).startswith("0x0000")
            assert assoc.negotiated.context_for(VERIFICATION) == 1
        with anyio.fail_after(5):
            while server.associations:  # the server side ends too once released
                await anyio.sleep(0.01)


async def test_ended_associations_are_freed_by_reference_counting_alone(tmp_path):
    # A reference cycle would leave each ended association (~50 objects) to the cyclic GC, whose passes
    # then cost a tenth of the server's time at thousands of associations a second.
    gc.collect()
    gc.disable()
    try:
        async with running_server(tmp_path) as server:
            ends: list[weakref.ref] = []
            for _ in range(3):
                async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
                    assert (await assoc.echo()).ok
                    ends += [weakref.ref(assoc), *(weakref.ref(a) for a in server.associations)]
                with anyio.fail_after(5):
                    while server.associations:
                        await anyio.sleep(0.01)
                del assoc
            await anyio.sleep(0.05)  # the transports' own close callbacks
            assert len(ends) == 6
            assert [r() for r in ends] == [None] * 6
    finally:
        gc.enable()


async def test_a_peer_that_never_answers_is_given_up_within_the_callers_timeout_not_artims():
    # After the ACSE timeout we send A-ABORT and wait in Sta13 for the peer to close (PS3.8 §9.1.5) for at
    # most ARTIM: bounded by the caller's timeout, not the 10 s default, which held every client ~10 s
    # past a 0.5 s timeout against a hung PACS.
    held: list[anyio.abc.SocketStream] = []

    async def silent(stream: anyio.abc.SocketStream) -> None:
        held.append(stream)  # accepts, reads nothing, answers nothing, never closes
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        with anyio.fail_after(5):  # a guard against the old 10.5 s, not a measure of speed
            with pytest.raises(AssociationTimeout):
                async with aiodicom.connect("127.0.0.1", port, called_ae="SILENT", acse_timeout=0.5):
                    pass
        assert held  # the connection was made: the timeout is the association's, not the TCP connect's
        tg.cancel_scope.cancel()


async def test_stored_file_holds_the_data_set_byte_for_byte(tmp_path):
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            assert (await assoc.store(CT)).ok
    sent, meta = EncodedDataset.from_file(CT)
    stored = list((tmp_path / "storage").rglob("*.dcm"))
    assert len(stored) == 1
    received, stored_meta = EncodedDataset.from_file(stored[0])
    assert received.read_bytes() == sent.read_bytes()
    assert stored_meta.transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN
    assert stored[0].name == meta.sop_instance_uid + ".dcm"
    assert stored[0].parent.parent.name == str(dcmread(CT).StudyInstanceUID)


async def test_uncompressed_data_set_is_converted_to_the_accepted_syntax(tmp_path):
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [IMPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            assert (await assoc.store(CT)).ok  # the file is Explicit VR LE; only Implicit was proposed
    (stored,) = (tmp_path / "storage").rglob("*.dcm")
    ds = dcmread(stored)
    assert ds.file_meta.TransferSyntaxUID == IMPLICIT_VR_LITTLE_ENDIAN
    assert ds.PixelData == dcmread(CT).PixelData


async def test_no_context_for_a_sop_class_raises_without_breaking_the_association(tmp_path):
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
            with pytest.raises(NoPresentationContext, match=r"the peer did not accept CT Image Storage \(1\.2\.840"):
                await assoc.store(CT)
            assert (await assoc.echo()).ok


async def test_wrong_called_ae_is_rejected_permanently(tmp_path):
    async with running_server(tmp_path) as server:
        with pytest.raises(AssociationRejected) as info:
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="SOMEONE-ELSE"):
                pass
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)
    assert "called-AE-title-not-recognized" in str(info.value)


async def test_calling_ae_outside_the_allow_list_is_rejected(tmp_path):
    async with running_server(tmp_path, allowed_calling=frozenset({"GOOD"})) as server:
        with pytest.raises(AssociationRejected) as info:
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", calling_ae="BAD"):
                pass
        assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 3)
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", calling_ae="GOOD") as assoc:
            assert (await assoc.echo()).ok


async def test_over_the_association_limit_is_rejected_transient_local_limit(tmp_path):
    async with running_server(tmp_path, max_associations=2) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM"):
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM"):
                with pytest.raises(AssociationRejected) as info:
                    async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM"):
                        pass
        assert (info.value.result, info.value.source, info.value.reason) == (2, 3, 2)
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
            assert (await assoc.echo()).ok  # slots come back once associations end


@pytest.mark.parametrize("limit", [{"max_associations": 2}, {"max_associations_per_host": 2},
                                   {"max_associations_per_calling_ae": 2}])
async def test_a_burst_over_the_limit_is_admitted_up_to_the_limit(tmp_path, limit):
    # Requests arriving together must each take a slot or be refused: counting the connections still
    # negotiating used to refuse the whole burst.
    outcomes: list[object] = []
    all_tried = anyio.Event()

    async def one(server) -> None:
        try:
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
                outcomes.append("accepted")
                if len(outcomes) == 6:
                    all_tried.set()
                await all_tried.wait()  # hold the slot until every request has had its answer
                assert (await assoc.echo()).ok
        except AssociationRejected as exc:
            outcomes.append((exc.result, exc.source, exc.reason))
            if len(outcomes) == 6:
                all_tried.set()

    async with running_server(tmp_path, **limit) as server:
        for _ in range(3):  # three bursts: the slots of one come back for the next
            outcomes.clear()
            all_tried = anyio.Event()
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(one, server)
            assert sorted(map(str, outcomes)) == sorted(["accepted"] * 2 + [str((2, 3, 2))] * 4)


async def test_per_calling_ae_limit(tmp_path):
    async with running_server(tmp_path, max_associations_per_calling_ae=1) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", calling_ae="A"):
            with pytest.raises(AssociationRejected):
                async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", calling_ae="A"):
                    pass
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", calling_ae="B") as other:
                assert (await other.echo()).ok


async def test_a_user_handler_answers_its_own_status(tmp_path):
    seen = []

    async def refuse(req):
        seen.append((req.message.affected_sop_instance_uid, req.dataset().PatientName))
        return Result(status=st.OUT_OF_RESOURCES, error_comment="disk quota")

    dispatcher = Dispatcher()
    verification.install(dispatcher)
    dispatcher.support([CT_SOP_CLASS], [EXPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CStoreRQ, refuse)
    ds = fresh_ct()
    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            status = await assoc.store(ds)
    assert status.code == 0xA700 and status.error_comment == "disk quota"
    assert "Out of Resources" in str(status)
    assert seen == [(ds.SOPInstanceUID, ds.PatientName)]


async def test_a_handler_that_raises_gets_a_failure_status_and_the_association_goes_on(tmp_path):
    async def broken(req):
        raise RuntimeError("boom")

    dispatcher = Dispatcher()
    dispatcher.support([VERIFICATION], [IMPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CEchoRQ, broken)
    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
            first = await assoc.echo()
            second = await assoc.echo()
    assert first.code == st.PROCESSING_FAILURE and "boom" in first.error_comment
    assert second.code == st.PROCESSING_FAILURE


async def test_asynchronous_operations_window_runs_requests_concurrently(tmp_path):
    running = 0
    peak = 0
    gate = anyio.Event()

    async def slow_store(req):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            gate.set()
        with anyio.fail_after(5):
            await gate.wait()
        running -= 1
        return st.SUCCESS

    dispatcher = Dispatcher()
    dispatcher.support([CT_SOP_CLASS], [EXPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CStoreRQ, slow_store)
    async with running_server(tmp_path, dispatcher=dispatcher, max_operations=4) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])],
                                    async_ops=AsyncOpsWindow(max_invoked=8, max_performed=1)) as assoc:
            assert assoc.negotiated.max_operations_invoked == 4
            results = []

            async def one():
                results.append(await assoc.store(fresh_ct()))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one)
    assert peak == 4 and all(r.ok for r in results) and len(results) == 4


async def test_without_a_window_requests_run_one_at_a_time(tmp_path):
    running = peak = 0

    async def store(req):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return st.SUCCESS

    dispatcher = Dispatcher()
    dispatcher.support([CT_SOP_CLASS], [EXPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CStoreRQ, store)
    async with running_server(tmp_path, dispatcher=dispatcher, max_operations=4) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(assoc.store, fresh_ct())
    assert peak == 1


async def test_dimse_timeout_aborts_the_association(tmp_path):
    async def never(req):
        await anyio.sleep(30)
        return st.SUCCESS

    dispatcher = Dispatcher()
    dispatcher.support([VERIFICATION], [IMPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CEchoRQ, never)
    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        with pytest.raises(AssociationTimeout):
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", dimse_timeout=0.3) as assoc:
                await assoc.echo()
        with anyio.fail_after(5):
            while server.associations:
                await anyio.sleep(0.02)  # the server saw the A-ABORT and let the association go


async def test_cancelling_the_caller_aborts_and_frees_the_server_slot(tmp_path):
    started = anyio.Event()

    async def slow(req):
        started.set()
        await anyio.sleep(30)
        return st.SUCCESS

    dispatcher = Dispatcher()
    dispatcher.support([VERIFICATION], [IMPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CEchoRQ, slow)
    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                async def client():
                    async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
                        await assoc.echo()

                tg.start_soon(client)
                await started.wait()
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        with anyio.fail_after(5):
            while server.associations:
                await anyio.sleep(0.02)
        (ended,) = [a for a in [*server.associations]] or [None]
        assert ended is None


async def test_peer_abort_is_reported_to_the_caller(tmp_path):
    async with running_server(tmp_path) as server:
        with pytest.raises(AssociationAborted):
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
                (srv_assoc,) = server.associations
                await srv_assoc.abort()
                with anyio.fail_after(5):
                    await assoc.assoc.finished.wait()
                await assoc.echo()


async def test_authenticator_accepts_and_rejects_by_user_identity(tmp_path):
    async def authenticate(identity, assoc):
        if identity is not None and identity.primary == b"alice" and identity.secondary == b"secret":
            return b"token-1"
        return None

    async with running_server(tmp_path, authenticator=authenticate) as server:
        alice = UserIdentityRQ(identity_type=2, positive_response_requested=True, primary=b"alice", secondary=b"secret")
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", user_identity=alice) as assoc:
            assert (await assoc.echo()).ok
        mallory = UserIdentityRQ(identity_type=2, positive_response_requested=False, primary=b"alice", secondary=b"x")
        with pytest.raises(AssociationRejected) as info:
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", user_identity=mallory):
                pass
        assert (info.value.result, info.value.source) == (1, 1)
        with pytest.raises(AssociationRejected):
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM"):
                pass


async def test_data_set_over_the_size_limit_gets_out_of_resources_and_nothing_is_kept(tmp_path):
    async with running_server(tmp_path, max_dataset_size=1000) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN]), VERIFICATION]) as assoc:
            status = await assoc.store(CT)
            assert status.code == st.OUT_OF_RESOURCES
            assert (await assoc.echo()).ok
    assert not list((tmp_path / "storage").rglob("*.dcm"))
    assert not list((tmp_path / "storage" / ".incoming").glob("*.part"))


async def test_large_instance_over_small_pdus(tmp_path):
    ds = fresh_ct()
    ds.PixelData = bytes(range(256)) * 8192  # 2 MiB, many fragments at max PDU 4096
    ds.Rows, ds.Columns = 1024, 1024
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM", max_pdu=4096,
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            assert (await assoc.store(ds)).ok
    (stored,) = (tmp_path / "storage").rglob("*.dcm")
    assert dcmread(stored).PixelData == ds.PixelData


async def test_many_sequential_associations_reuse_nothing_stale(tmp_path):
    async with running_server(tmp_path) as server:
        for _ in range(20):
            async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM") as assoc:
                assert (await assoc.echo()).ok
        with anyio.fail_after(5):
            while server.associations:
                await anyio.sleep(0.02)


async def test_invalid_sop_instance_uid_is_refused_with_0117_and_nothing_written(tmp_path):
    ds = fresh_ct()
    async with running_server(tmp_path) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(CT_SOP_CLASS, [EXPLICIT_VR_LITTLE_ENDIAN])]) as assoc:
            status = await assoc.store(EncodedDataset.from_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN),
                                       sop_class_uid=CT_SOP_CLASS, sop_instance_uid="1.2.3/../../x")
            assert status.code == 0x0117
            assert (await assoc.store(copy.deepcopy(ds))).ok
    assert [p.name for p in (tmp_path / "storage").rglob("*.dcm")] == [ds.SOPInstanceUID + ".dcm"]
    assert not list(tmp_path.rglob("x*"))


async def test_a_c_cancel_read_in_the_same_chunk_as_its_request_cancels_it(tmp_path):
    """PS3.7 §9.3.2.3: a C-CANCEL may follow its request at once. Read in one chunk with it, it must still find
    the operation, whose task has not yet started: the find ends with Cancel, not with all its matches."""
    study_root_find = "1.2.840.10008.5.1.4.1.2.2.1"
    many = 200
    yielded = 0

    async def find(req):
        nonlocal yielded
        for _ in range(many):
            yielded += 1
            yield raw.element(0x00080052, raw.text("STUDY"))

    dispatcher = Dispatcher()
    dispatcher.support([study_root_find], [IMPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CFindRQ, find)
    find_rq = raw.command_set({raw.TAG_AFFECTED_SOP_CLASS: raw.ui(study_root_find), raw.TAG_COMMAND_FIELD: raw.us(0x0020),
                               raw.TAG_MESSAGE_ID: raw.us(7), raw.TAG_PRIORITY: raw.us(0), raw.TAG_DATA_SET_TYPE: raw.us(0)})
    cancel_rq = raw.command_set({raw.TAG_COMMAND_FIELD: raw.us(0x0FFF), raw.TAG_MESSAGE_ID_RESPONDED: raw.us(7),
                                 raw.TAG_DATA_SET_TYPE: raw.us(raw.NO_DATA_SET)})
    identifier = raw.element(0x00080052, raw.text("STUDY")) + raw.element(0x0020000D, b"")

    def client(port: int) -> list[int]:
        with raw.RawClient.connect("127.0.0.1", port) as peer:
            accept = peer.associate("AIODICOM", "RAWCLIENT", [raw.ProposedContext(1, study_root_find)])
            assert accept.accepted(1)
            # request, identifier and cancel in one P-DATA-TF, so the server reads them in one chunk
            assert peer.send(raw.p_data_tf(raw.pdv(1, find_rq, command=True, last=True),
                                           raw.pdv(1, identifier, command=False, last=True),
                                           raw.pdv(1, cancel_rq, command=True, last=True)))
            statuses = []
            while not statuses or statuses[-1] in (st.PENDING, 0xFF01):
                fields, _ = peer.read_message()
                statuses.append(raw.us_of(fields, raw.TAG_STATUS))
            peer.release()
            return statuses

    async with running_server(tmp_path, dispatcher=dispatcher) as server:
        statuses = await anyio.to_thread.run_sync(client, server.port)
    assert statuses[-1] == st.CANCEL, [hex(s) for s in statuses]
    assert len(statuses) - 1 < many and yielded < many


async def test_an_ae_title_peers_cannot_accept_is_a_value_error_before_connecting():
    for calling, called in (("AIODICOM", "SEVENTEEN-CHARS-X"), ("A\\B", "AIODICOM"), ("AIODICOM", "   ")):
        with pytest.raises(ValueError, match="is not an AE title"):
            async with aiodicom.connect("127.0.0.1", 1, calling_ae=calling, called_ae=called):
                pass


@pytest.mark.parametrize("unfinished", ["command set", "PDU"])
async def test_the_dimse_timeout_also_ends_a_half_sent_command_set_or_pdu(tmp_path, unfinished):
    """A peer that stops in the middle of a command set, or of a PDU, must not hold its association for ever when
    no idle timeout is set: the DIMSE timeout covers every message in progress, not only a data set."""
    command = raw.c_echo_rq(5)
    if unfinished == "command set":
        partial = raw.p_data_tf(raw.pdv(1, command[:10], command=True, last=False))
    else:
        partial = raw.p_data_tf(raw.pdv(1, command, command=True, last=True))[:-10]

    def client(port: int) -> object:
        with raw.RawClient.connect("127.0.0.1", port, timeout=10) as peer:
            peer.associate("AIODICOM", "RAWCLIENT", [raw.ProposedContext(1, VERIFICATION)])
            assert peer.send(partial)
            return peer.read_answer()

    async with running_server(tmp_path, dimse_timeout=0.5, idle_timeout=None) as server:
        with anyio.fail_after(8):
            answer = await anyio.to_thread.run_sync(client, server.port)
    assert isinstance(answer, raw.Abort), answer


async def test_a_second_request_with_the_message_id_of_a_running_one_is_a_duplicate_invocation(tmp_path):
    """PS3.7 C.5.3, 0x0210: within an operations window two outstanding requests may not share a Message ID (a
    C-CANCEL could not tell them apart); the second is refused, not run."""
    study_root_find = "1.2.840.10008.5.1.4.1.2.2.1"
    runs = 0

    async def find(req):
        nonlocal runs
        runs += 1
        await anyio.sleep(0.5)
        yield raw.element(0x00080052, raw.text("STUDY"))

    dispatcher = Dispatcher()
    dispatcher.support([study_root_find], [IMPLICIT_VR_LITTLE_ENDIAN])
    dispatcher.add(CFindRQ, find)
    identifier = raw.element(0x00080052, raw.text("STUDY"))
    async with running_server(tmp_path, dispatcher=dispatcher, max_operations=4) as server:
        async with aiodicom.connect("127.0.0.1", server.port, called_ae="AIODICOM",
                                    contexts=[(study_root_find, [IMPLICIT_VR_LITTLE_ENDIAN])],
                                    async_ops=AsyncOpsWindow(max_invoked=4, max_performed=1)) as assoc:
            cid = assoc.context_for(study_root_find)
            first = CFindRQ(message_id=42, affected_sop_class_uid=study_root_find)
            seen = []

            async def ask() -> None:
                async for rsp, _ in assoc.request_iter(first, cid, identifier):
                    seen.append(rsp.status)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.1)  # the first is running on the server
                await assoc.assoc.send(CFindRQ(message_id=42, affected_sop_class_uid=study_root_find), cid, identifier)
    assert seen == [st.DUPLICATE_INVOCATION] and runs == 1
