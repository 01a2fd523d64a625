"""Storage Commitment Push Model (PS3.4 Annex J), SCP and SCU in one process: what counts as committed and why
not, the report on the requesting association or on a new one with SCP/SCU role selection, refusals, and pending
requests that survive a restart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

import aiodicom
from aiodicom.archive.filestore import FileStore
from aiodicom.archive.index import IndexRecord, StoredInstance
from aiodicom.archive.index_sqlite import SqliteIndex
from aiodicom.archive.workflow_db import WorkflowDb
from aiodicom.dimse import status as st
from aiodicom.net.dispatch import Dispatcher
from aiodicom.net.server import Server, ServerConfig
from aiodicom.scu.commitment import (
    CommitmentListener,
    CommitmentRefused,
    commit,
    commitment_contexts,
    instance_refs,
    request_commitment,
)
from aiodicom.services import storage, verification
from aiodicom.services.commitment import (
    REASON_CLASS_INSTANCE_CONFLICT,
    REASON_NO_SUCH_OBJECT_INSTANCE,
    REASON_SOP_CLASS_NOT_SUPPORTED,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH,
    CommitmentReport,
    CommitmentService,
    FailedInstance,
    InstanceRef,
    Refusal,
    assess,
    commitment_request,
    parse_request,
)
from aiodicom.services.retrieve import Peer
from aiodicom.uids import VERIFICATION
from aiodicom.ul.machine import UlConfig
from tests.dicomdata import generated_dataset, write_part10
from tests.integration.conftest import running_server

SC = str(SecondaryCaptureImageStorage)
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- the rules, without the network ----------------------------------------------------------------------------------

def refused(ds, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse_request(ds, **kwargs)
    return caught.value


def test_a_request_needs_a_transaction_uid_and_references():
    assert refused(None).status == st.INVALID_ARGUMENT_VALUE
    assert "Transaction UID" in refused(Dataset()).comment
    no_refs = Dataset()
    no_refs.TransactionUID = generate_uid()
    assert "Referenced SOP Sequence" in refused(no_refs).comment
    bad = commitment_request(generate_uid(), [InstanceRef(SC, "1.2.x")])
    assert "item 1" in refused(bad).comment
    big = commitment_request(generate_uid(), [InstanceRef(SC, generate_uid()) for _ in range(3)])
    assert refused(big, max_references=2).status == st.RESOURCE_LIMITATION


def test_assess_gives_the_failure_reason_of_each_instance():
    def stored(uid: str, cls: str) -> StoredInstance:
        return StoredInstance(path=Path("/x"), size=1, transfer_syntax=EXPLICIT, sop_class_uid=cls,
                              sop_instance_uid=uid, series_instance_uid="1", study_instance_uid="1", patient_id="P")

    refs = [InstanceRef(SC, "1.1"), InstanceRef(SC, "1.2"), InstanceRef(CT, "1.3"), InstanceRef("1.2.3.4", "1.4"),
            InstanceRef(SC, "1.5")]
    archive = {"1.1": stored("1.1", SC), "1.3": stored("1.3", SC), "1.4": stored("1.4", "1.2.3.4"),
               "1.5": stored("1.5", SC)}
    report = assess(refs, archive, on_disk={"1.1", "1.3", "1.4"}, sop_classes={SC, CT}, transaction_uid="9.9")
    assert report.committed == (InstanceRef(SC, "1.1"),)
    assert report.failed == (
        FailedInstance(SC, "1.2", REASON_NO_SUCH_OBJECT_INSTANCE),  # not in the archive
        FailedInstance(CT, "1.3", REASON_CLASS_INSTANCE_CONFLICT),  # stored under another class
        FailedInstance("1.2.3.4", "1.4", REASON_SOP_CLASS_NOT_SUPPORTED),
        FailedInstance(SC, "1.5", REASON_NO_SUCH_OBJECT_INSTANCE),  # indexed but its file is gone
    )
    assert report.event_type == 2 and not report.ok
    assert str(report.failed[0]) == "0x0112 No such object instance"


def test_the_report_data_set_round_trips():
    report = CommitmentReport("1.2.3", (InstanceRef(SC, "1.1"),), (FailedInstance(CT, "1.2", 0x0112),))
    ds = report.to_dataset("ARCHIVE")
    assert ds.RetrieveAETitle == "ARCHIVE" and ds.FailedSOPSequence[0].FailureReason == 0x0112
    assert CommitmentReport.from_dataset(ds) == report
    everything = CommitmentReport("1.2.4", (InstanceRef(SC, "1.1"),), ())
    assert everything.event_type == 1 and "FailedSOPSequence" not in everything.to_dataset()


# --- over the network ------------------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def archive(root: Path, *, peers: dict[str, Peer] | None = None, deliver: bool = True
                  ) -> AsyncIterator[tuple[int, CommitmentService]]:
    """Our archive as `serve` builds it: storage indexed, commitment SCP; `deliver=False` never reports (as if it
    stopped right after answering the N-ACTION)."""
    store = FileStore(root)
    async with await SqliteIndex.open(root) as index, await WorkflowDb.open(root) as db:
        async def index_it(stored, req) -> None:
            await index.add([IndexRecord(path=stored.path, size=stored.size, transfer_syntax=stored.transfer_syntax,
                                         sop_class_uid=stored.sop_class_uid, sop_instance_uid=stored.sop_instance_uid,
                                         attributes=stored.attributes)])

        dispatcher = Dispatcher()
        verification.install(dispatcher)
        storage.install(dispatcher, store, on_stored=index_it)
        service = CommitmentService(db, index, peers=peers, ae_title="ARCHIVE", retry_interval=0.05,
                                    max_retry_interval=0.2)
        service.install(dispatcher)
        async with anyio.create_task_group() as tg:
            if deliver:
                await tg.start(service.run)
            async with running_server(root, dispatcher=dispatcher) as server:
                yield server.port, service
            tg.cancel_scope.cancel()
    store.close()


@contextlib.asynccontextmanager
async def listening(listener: CommitmentListener, ae_title: str = "MODALITY") -> AsyncIterator[int]:
    """The SCU's own SCP, where a report on a new association arrives."""
    server = Server(ServerConfig(host="127.0.0.1", port=0, ae_title=ae_title, ul=UlConfig(artim=5.0)),
                    listener.dispatcher())
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        yield port
        tg.cancel_scope.cancel()


def files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_part10(generated_dataset(pixel_bytes=64), folder / f"{i}.dcm", EXPLICIT) for i in range(n)]


def connect(port: int, listener: CommitmentListener | None = None):
    return aiodicom.connect("127.0.0.1", port, calling_ae="MODALITY", called_ae="AIODICOM",
                            contexts=[VERIFICATION, (SC, [EXPLICIT]), *commitment_contexts()],
                            dispatcher=listener.dispatcher() if listener else None)


@pytest.mark.anyio
async def test_report_on_the_same_association_lists_committed_and_failed(tmp_path):
    sent = files(tmp_path / "src", 3)
    listener = CommitmentListener()
    async with archive(tmp_path / "archive") as (port, _service), connect(port, listener) as assoc:
        for path in sent:
            assert (await assoc.store(path)).ok
        missing = InstanceRef(SC, generate_uid())
        report = await commit(assoc, [*instance_refs(sent), missing], listener, timeout=10)
    assert report.event_type == 2
    assert set(report.committed) == set(instance_refs(sent))
    assert report.failed == (FailedInstance(missing.sop_class_uid, missing.sop_instance_uid, 0x0112),)


@pytest.mark.anyio
async def test_all_committed_is_event_type_1(tmp_path):
    sent = files(tmp_path / "src", 2)
    listener = CommitmentListener()
    async with archive(tmp_path / "archive") as (port, service), connect(port, listener) as assoc:
        for path in sent:
            assert (await assoc.store(path)).ok
        report = await commit(assoc, instance_refs(sent), listener, timeout=10)
        assert report.ok and report.event_type == 1 and len(report.committed) == 2
        with anyio.fail_after(10):  # marked once our N-EVENT-REPORT-RSP is back, just after the listener has it
            while (await service.db.get_commitment(report.transaction_uid)).state != "reported":
                await anyio.sleep(0.02)
        # a Transaction UID is never reused (J.3.3.1.2): asking again with it is refused
        with pytest.raises(CommitmentRefused) as again:
            await request_commitment(assoc, instance_refs(sent), transaction_uid=report.transaction_uid)
        assert again.value.status.code == st.INVALID_ARGUMENT_VALUE


@pytest.mark.anyio
async def test_report_on_a_new_association_once_the_requestor_has_released(tmp_path):
    sent = files(tmp_path / "src", 1)
    listener = CommitmentListener()
    async with listening(listener) as listen_port:
        peers = {"MODALITY": Peer("127.0.0.1", listen_port)}
        async with archive(tmp_path / "archive", peers=peers) as (port, _service):
            async with connect(port) as assoc:  # no dispatcher: this association cannot take the report
                assert (await assoc.store(sent[0])).ok
            transaction = generate_uid()
            listener.expect(transaction)
            async with connect(port) as assoc:
                await request_commitment(assoc, instance_refs(sent), transaction_uid=transaction)
            report = await listener.wait(transaction, timeout=10)
    assert report.ok and report.committed == tuple(instance_refs(sent))


@pytest.mark.anyio
async def test_refusals(tmp_path):
    async with archive(tmp_path / "archive") as (port, _service), connect(port) as assoc:
        info = commitment_request(generate_uid(), [InstanceRef(SC, generate_uid())])
        wrong_action = await assoc.n_action(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, 2, info)
        assert wrong_action.status.code == st.NO_SUCH_ACTION_TYPE == 0x0123
        wrong_instance = await assoc.n_action(STORAGE_COMMITMENT_PUSH, generate_uid(), 1, info)
        assert wrong_instance.status.code == st.NO_SUCH_OBJECT_INSTANCE
        empty = Dataset()
        empty.TransactionUID = generate_uid()
        empty.ReferencedSOPSequence = Sequence()
        no_refs = await assoc.n_action(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, 1, empty)
        assert no_refs.status.code == st.INVALID_ARGUMENT_VALUE and "Referenced SOP" in no_refs.status.error_comment
        assert (await assoc.echo()).ok


@pytest.mark.anyio
async def test_an_unknown_requestor_stays_pending_with_the_reason(tmp_path):
    async with archive(tmp_path / "archive") as (port, service):
        async with connect(port) as assoc:
            transaction = await request_commitment(assoc, [InstanceRef(SC, generate_uid())])
        with anyio.fail_after(10):
            while not (record := await service.db.get_commitment(transaction)).attempts:
                await anyio.sleep(0.02)
        assert record.state == "pending"
        assert "not a known peer" in record.last_error


@pytest.mark.anyio
async def test_a_pending_request_is_answered_after_a_restart(tmp_path):
    sent = files(tmp_path / "src", 2)
    root = tmp_path / "archive"
    async with archive(root, deliver=False) as (port, _service), connect(port) as assoc:
        for path in sent:
            assert (await assoc.store(path)).ok
        transaction = await request_commitment(assoc, instance_refs(sent))
    listener = CommitmentListener()
    listener.expect(transaction)
    async with listening(listener) as listen_port, \
            archive(root, peers={"MODALITY": Peer("127.0.0.1", listen_port)}) as (_port, service):
        report = await listener.wait(transaction, timeout=10)
        assert report.ok and set(report.committed) == set(instance_refs(sent))
        with anyio.fail_after(10):
            while (await service.db.get_commitment(transaction)).state != "reported":
                await anyio.sleep(0.02)
