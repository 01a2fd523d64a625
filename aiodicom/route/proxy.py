"""Proxy mode: the C-STORE response waits for the destination's and relays it.

Nothing is queued: the data set is received into the usual spool (memory, then a temp file), forwarded
over a pooled association as it was received (converted only when needed), and the sender gets the
destination's status and comment. With several destinations the worst answer wins (a failure over a
warning over Success), so the sender retries whenever one of them did not take it.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from ..dimse import status as st
from ..dimse.dataset import EncodedDataset
from ..dimse.messages import CStoreRQ
from ..dimse.transcode import CannotConvert
from ..net.dispatch import Dispatcher, Result, ServiceRequest
from ..net.errors import AssociationError
from ..uids import ALL_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from .forwarder import NotAccepted, send_instance
from .ingest import Intake, morph_dataset, peek_encoded
from .pool import DestinationPool, DestinationUnavailable
from .rules import Action, Delivery
from .status import DestinationStats

_RANK = {st.Category.SUCCESS: 0, st.Category.WARNING: 1, st.Category.FAILURE: 2}


class Proxy:
    def __init__(self, intake: Intake, pools: dict[str, DestinationPool], stats: dict[str, DestinationStats],
                 *, log: Any) -> None:
        self.intake, self.pools, self.stats, self.log = intake, pools, stats, log

    def install(self, dispatcher: Dispatcher) -> None:
        dispatcher.support(STORAGE_SOP_CLASSES, ALL_TRANSFER_SYNTAXES)
        dispatcher.add(CStoreRQ, self.handle)

    async def handle(self, req: ServiceRequest) -> Result:
        payload = req.payload
        if not isinstance(payload, EncodedDataset):
            return Result(status=st.CANNOT_UNDERSTAND, error_comment="C-STORE-RQ without a data set")
        msg: CStoreRQ = req.message  # type: ignore[assignment]
        attributes = await anyio.to_thread.run_sync(peek_encoded, payload, self.intake.tags,
                                                    limiter=self.intake.limiter) if self.intake.tags else {}
        decision = self.intake.decide(req, sop_class_uid=msg.affected_sop_class_uid,
                                      sop_instance_uid=msg.affected_sop_instance_uid,
                                      transfer_syntax=payload.transfer_syntax, attributes=attributes)
        if decision.action is not Action.FORWARD:
            return self.intake.answer(decision)
        results: list[Result] = [Result()] * len(decision.deliveries)

        async def one(i: int, delivery: Delivery) -> None:
            results[i] = await self._forward(delivery, payload, req)

        async with anyio.create_task_group() as tg:
            for i, delivery in enumerate(decision.deliveries):
                tg.start_soon(one, i, delivery)
        return max(results, key=lambda r: _RANK.get(st.category(r.status), 2))

    async def _forward(self, delivery: Delivery, payload: EncodedDataset, req: ServiceRequest) -> Result:
        msg: CStoreRQ = req.message  # type: ignore[assignment]
        sop_class, sop_instance = msg.affected_sop_class_uid, msg.affected_sop_instance_uid
        name = delivery.destination
        stats = self.stats[name]
        started = time.time()
        data = payload
        result: Result
        outcome = "failed"
        try:
            if delivery.morph is not None:
                data, new_class, new_instance = await anyio.to_thread.run_sync(
                    morph_dataset, payload, delivery.morph, limiter=self.intake.limiter)
                sop_class, sop_instance = new_class or sop_class, new_instance or sop_instance
            sent = await send_instance(self.pools[name], data, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                       limiter=self.intake.limiter)
        except DestinationUnavailable as exc:
            stats.unreachable += 1
            # PS3.4 B.2.3 Refused: Out of Resources: transient, the sender may try again later
            result = Result(status=st.OUT_OF_RESOURCES, error_comment=f"destination {name} unreachable")
            stats.error(str(exc))
        except NotAccepted as exc:
            stats.failed_attempts += 1
            result = Result(status=st.SOP_CLASS_NOT_SUPPORTED, error_comment=str(exc))
            stats.error(str(exc))
        except CannotConvert as exc:
            stats.failed_attempts += 1
            result = Result(status=st.CANNOT_UNDERSTAND, error_comment=str(exc))
            stats.error(str(exc))
        except AssociationError as exc:
            stats.failed_attempts += 1
            result = Result(status=st.PROCESSING_FAILURE, error_comment=f"association to {name} failed")
            stats.error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a data set the morph cannot decode, and the like
            stats.failed_attempts += 1
            result = Result(status=st.CANNOT_UNDERSTAND, error_comment=f"cannot forward: {exc}")
            stats.error(str(exc))
        else:
            result = Result(status=sent.status.code, error_comment=sent.status.error_comment)
            if sent.status.category in (st.Category.SUCCESS, st.Category.WARNING):
                outcome = "delivered"
                stats.delivered += 1
                stats.converted += sent.converted
                stats.rate.add(time.time())
            else:
                stats.failed_attempts += 1
                stats.error(str(sent.status))
        finally:
            if data is not payload:
                data.close()
        log = self.log.info if outcome == "delivered" else self.log.warning
        log("routed", sop_instance=sop_instance, rule=delivery.rule, destination=name, outcome=outcome, mode="proxy",
            status=f"0x{result.status:04X}", latency_ms=round((time.time() - started) * 1000, 1),
            **({"error": result.error_comment} if outcome != "delivered" else {}))
        return result
