"""The routing node: listeners, the spool and its queues, the forwarder and the pools, in one task group.

    router = Router(load_config("route.toml"))
    ports = await tg.start(router.serve)        # listening, queues loaded, forwarding under way

At start the spool is locked (one router per spool), instances a crash caught between the spool and the
queues are dropped (never acknowledged), and every queued entry is loaded, in arrival order, before the
listeners open.

With `workers` > 1 (cli/route.py), that first process starts the others once it listens. Each process
binds the same ports (SO_REUSEPORT), receives and forwards on its own event loop over its share of each
destination's associations, and delivers what it received (entry names carry its PID). A destination with
fewer associations than there are processes is served only by the first ones: the others file its entries
in inbox/DEST, which the first process takes (so one association stays one, and in order). Only the first
loads the queues at start and takes back dead letters from inbox/; if a worker dies, the first stops the
router, so that its restart reloads every entry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import anyio

from ..archive.peek import SOP_CLASS_UID, SOP_INSTANCE_UID
from ..log import get_logger
from ..net.budget import MemoryBudget
from ..net.dispatch import Dispatcher
from ..net.server import Server, ServerConfig
from ..services import verification
from ..ul.machine import UlConfig
from .config import Listener, Mode, RouterConfig
from .forwarder import Forwarder
from .ingest import Intake, SpoolStore, StoreAndForward
from .pool import DestinationPool
from .proxy import Proxy
from .queue import DirSyncer, ReadyQueue, Spool
from .status import DestinationStats, status_file
from .tls import server_context

STATUS_INTERVAL = 2.0  # seconds between writes of SPOOL/status.json
HAND_OFF_INTERVAL = 0.1  # seconds between looks at inbox/ when workers hand instances over to the first process


class Router:
    def __init__(self, config: RouterConfig, *, log: Any = None, workers: int = 16, process: int = 0) -> None:
        assert config.rules is not None
        self.config = config
        self.process = process  # 0: the first (or only) process of the router; else a worker it started
        self.log = log or get_logger(component="route", **({"process": process} if process else {}))
        self.limiter = anyio.CapacityLimiter(workers)
        self.spool = Spool(config.spool, sync=config.sync)
        # one association: strictly first in, first out, so that each study arrives in its order
        self.queues = {name: ReadyQueue(fifo=d.max_associations == 1) for name, d in config.destinations.items()}
        self.stats = {name: DestinationStats() for name in config.destinations}
        self.syncer = DirSyncer(self.limiter)
        self.budget = MemoryBudget(config.memory_budget)  # this process's: its listeners and its spool share it
        self.pools: dict[str, DestinationPool] = {}
        self.servers: list[Server] = []
        self.ports: list[int] = []
        self._cancel: anyio.CancelScope | None = None

    async def serve(self, *, task_status: anyio.abc.TaskStatus[list[int]] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled (or `shutdown()`); reports the listening ports through task_status."""
        c = self.config
        names = list(c.destinations)
        first = self.process == 0
        if first:
            await anyio.to_thread.run_sync(self.spool.open)
        store: SpoolStore | None = None
        try:
            if first:  # the workers start later, on a spool already prepared and loaded
                await self._load(names)
            tags = c.rules.tags | {SOP_CLASS_UID, SOP_INSTANCE_UID}  # type: ignore[union-attr]
            store = SpoolStore(self.spool.received, sync=c.sync, data_sync=c.sync_method,
                               index_tags=frozenset(tags), workers=self.limiter.total_tokens, budget=self.budget)
            intake = Intake(rules=c.rules, spool=self.spool, queues=self.queues, log=self.log,  # type: ignore[arg-type]
                            limiter=self.limiter, syncer=self.syncer, stats=self.stats)
            shares = {name: share(d.max_associations, c.workers, self.process) for name, d in c.destinations.items()}
            # no share of a destination's associations (it has fewer than there are processes): its
            # instances go to the first process through inbox/, so the destination's limit holds
            self.spool.hand_off = frozenset(name for name, n in shares.items() if n == 0)
            destinations = {name: dataclasses.replace(d, max_associations=shares[name])
                            for name, d in c.destinations.items()}
            # proxy mode must answer from here, so it gets one association even without a share
            self.pools = {name: DestinationPool(dataclasses.replace(d, max_associations=max(d.max_associations, 1)),
                                                log=self.log) for name, d in destinations.items()}
            handing_off = any(d.max_associations < c.workers for d in c.destinations.values())
            forwarder = Forwarder(spool=self.spool, destinations=destinations, queues=self.queues,
                                  pools=self.pools, stats=self.stats, retry=c.retry, log=self.log,
                                  limiter=self.limiter, syncer=self.syncer, watch_inboxes=first,
                                  inbox_interval=HAND_OFF_INTERVAL if handing_off else 1.0)
            self.servers = [self._server(li, intake, store, f"listener {i}", self.budget)
                            for i, li in enumerate(c.listeners, 1)]
            with anyio.CancelScope() as self._cancel:
                async with anyio.create_task_group() as tg:
                    for pool in self.pools.values():
                        await tg.start(pool.serve)
                    await tg.start(forwarder.run)
                    self.ports = [await tg.start(server.serve) for server in self.servers]
                    tg.start_soon(self._write_status)
                    self.log.info("router started", spool=str(self.spool.root), ports=self.ports,
                                  destinations=names, queued={n: len(q) for n, q in self.queues.items()},
                                  sync=c.sync, sync_method=store.data_sync.value)
                    task_status.started(self.ports)
        finally:
            if store is not None:
                store.close()
            self.spool.close()

    async def _load(self, names: list[str]) -> None:
        await anyio.to_thread.run_sync(self.spool.prepare, names)
        dropped = await anyio.to_thread.run_sync(self.spool.sweep_received)
        if dropped:
            self.log.warning("dropped instances never acknowledged (crash before queueing)", count=dropped)
        for name in names:
            entries = await anyio.to_thread.run_sync(self.spool.load, name)
            for entry in entries:
                self.queues[name].push(entry)
            if entries:
                self.log.info("queue loaded", destination=name, entries=len(entries))

    def shutdown(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def _server(self, li: Listener, intake: Intake, store: SpoolStore, where: str, budget: MemoryBudget) -> Server:
        dispatcher = Dispatcher()
        verification.install(dispatcher)
        if li.mode is Mode.PROXY:
            Proxy(intake, self.pools, self.stats, log=self.log).install(dispatcher)
        else:
            StoreAndForward(intake, store).install(dispatcher)
        tls = li.tls
        ssl_context = server_context(where, tls.cert, tls.key, tls.ca) if tls else None  # TlsFileError names the file
        config = ServerConfig(host=li.host, port=li.port, ae_title=li.ae_title, promiscuous=li.promiscuous,
                              allowed_calling=li.allowed_calling, max_associations=li.max_associations,
                              ul=UlConfig(max_pdu=li.max_pdu), max_operations=li.max_operations,
                              spool_dir=str(self.spool.tmp), ssl_context=ssl_context, memory_budget=budget,
                              reuse_port=self.config.workers > 1)
        return Server(config, dispatcher, log=self.log.bind(listener=f"{li.host}:{li.port}", mode=li.mode.value))

    # -- status.json, for `aiodicom route status`
    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"pid": os.getpid(), "updated": now,
                               "listeners": [f"{li.ae_title}@{li.host}:{port} ({li.mode.value})"
                                             for li, port in zip(self.config.listeners, self.ports, strict=False)],
                               "destinations": {}}
        for name, queue in self.queues.items():
            row = self.stats[name].snapshot(now)
            pool = self.pools.get(name)
            row.update(queued=len(queue) + queue.in_flight, in_flight=queue.in_flight,
                       paused_for=round(max(queue.paused_until - now, 0.0), 1),
                       associations=len(pool.members) if pool else 0,
                       associations_opened=pool.opened if pool else 0)  # since start: many more than open is churn
            out["destinations"][name] = row
        return out

    async def _write_status(self) -> None:
        path = self.spool.root / status_file(self.process)
        temp = path.with_name(f".{path.name}.tmp")
        while True:
            data = json.dumps(self.snapshot(), indent=1).encode()

            def write(data: bytes = data) -> None:
                temp.write_bytes(data)
                os.replace(temp, path)

            try:
                await anyio.to_thread.run_sync(write, limiter=self.limiter)
            except OSError as exc:
                self.log.warning("cannot write the status file", path=str(path), error=str(exc))
            await anyio.sleep(STATUS_INTERVAL)


def share(total: int, processes: int, process: int) -> int:
    """A process's part of a destination's association limit: the limit split evenly, never more in all (the
    first processes get one each when there are fewer associations than processes; the first always has one)."""
    return total // processes + (1 if process < total % processes else 0)
