"""Long-running services: the relay and the projection consumers, each its own process.

``senflow serve relay`` and ``senflow serve register|provision-map|audit`` run
these until SIGTERM or SIGINT, then stop gracefully: consumers finish and
acknowledge the batch in hand, the relay stops after its current batch.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

import structlog

from senflow.projections.catalogue import PROJECTIONS
from senflow.projections.consumer import build_consumer
from senflow.services.application import SenflowService
from senflow.services.bus.topology import Topology
from senflow.services.relay import Relay
from senflow.services.scheduler import Scheduler
from senflow.services.settings import Settings
from senflow.services.store.db import create_pool
from senflow.services.store.eventstore import EventStore

log = structlog.get_logger(__name__)


def topology_from(settings: Settings) -> Topology:
    return Topology(prefix=settings.bus_prefix, partitions=settings.partitions)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_relay(settings: Settings) -> None:
    stop = _stop_on_signals()
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        relay = Relay(
            EventStore(pool), settings.database_url, settings.amqp_url, topology_from(settings)
        )
        await relay.run(stop)
    finally:
        await pool.close()


async def serve_scheduler(settings: Settings) -> None:
    stop = _stop_on_signals()
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        store = EventStore(pool)
        await Scheduler(store, SenflowService(store)).run(stop, settings.scheduler_every)
    finally:
        await pool.close()


async def serve_projection(
    settings: Settings, name: str, partitions: Sequence[int] | None = None
) -> None:
    stop = _stop_on_signals()
    projection = PROJECTIONS[name]
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        service = build_consumer(
            projection,
            pool,
            EventStore(pool),
            settings.amqp_url,
            topology_from(settings),
            partitions,
        )
        await service.prepare()
        await service.broker.start()
        log.info("consumer_started", projection=name, partitions=partitions or "all")
        await stop.wait()
        await service.stop()
        log.info("consumer_stopped", projection=name, **vars(service.batcher.stats))
    finally:
        await pool.close()
