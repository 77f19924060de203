"""Long-running services: the relay and the projection consumers, each its own process.

``senflow serve relay`` (the projections' feed), ``senflow serve public-feed``
(one message per event for downstream systems) and ``senflow serve
register|provision-map|audit|compliance`` run these until SIGTERM or SIGINT,
then stop gracefully: consumers finish and acknowledge the batch in hand, a
relay gives its batches in flight up to 5 s to be confirmed and checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence

import aio_pika
import asyncpg
import structlog

from senflow.projections.base import Projection
from senflow.projections.catalogue import PROJECTIONS
from senflow.projections.consumer import build_consumer
from senflow.services.application import SenflowService
from senflow.services.bus.topology import Topology
from senflow.services.metrics import DEAD_LETTERS, PROJECTION_LAG, every, serve_metrics
from senflow.services.relay import RELAY_NAMES, Feed, Relay
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


async def serve_relay(settings: Settings, feed: Feed = Feed.PAGES) -> None:
    stop = _stop_on_signals()
    serve_metrics(settings.metrics_port)
    pool = await create_pool(settings.database_url, max_size=4, session_reset=False)
    try:
        relay = Relay(
            EventStore(pool),
            settings.database_url,
            settings.amqp_url,
            topology_from(settings),
            name=RELAY_NAMES[feed],
            feed=feed,  # a new feed starts at 0; migration 0006 seeded the public one
            checkpoint_every=settings.relay_checkpoint_every,
        )
        await relay.run(stop)
    finally:
        await pool.close()


async def serve_public_feed(settings: Settings) -> None:
    await serve_relay(settings, Feed.EVENTS)


async def serve_scheduler(settings: Settings) -> None:
    stop = _stop_on_signals()
    serve_metrics(settings.metrics_port)
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        store = EventStore(pool)
        await Scheduler(store, SenflowService(store)).run(stop, settings.scheduler_every)
    finally:
        await pool.close()


class _Observer:
    """Lag and dead-letter depth of one projection, for the metrics endpoint.

    Keeps one AMQP connection for the depth: opening one every ten seconds in every
    consumer made RabbitMQ and the consumers do a handshake's work at the same moments.
    """

    def __init__(self, pool: asyncpg.Pool, projection: Projection, settings: Settings) -> None:
        self.pool, self.projection, self.settings = pool, projection, settings
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def __call__(self) -> None:
        async with self.pool.acquire() as conn:
            head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
            mine = await conn.fetchval(
                f"SELECT coalesce(max(position), 0) FROM {self.projection.schema}.docs"
            )
        PROJECTION_LAG.labels(self.projection.name).set(head - mine)
        if self.connection is None or self.connection.is_closed:
            self.connection = await aio_pika.connect(self.settings.amqp_url, timeout=5)
        channel = await self.connection.channel()
        try:
            dlq = await channel.declare_queue(
                topology_from(self.settings).dlq(self.projection.name).name, passive=True
            )
            DEAD_LETTERS.labels(self.projection.name).set(dlq.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


async def serve_projection(
    settings: Settings, name: str, partitions: Sequence[int] | None = None
) -> None:
    stop = _stop_on_signals()
    projection = PROJECTIONS[name]
    pool = await create_pool(settings.database_url, max_size=4, session_reset=False)
    try:
        service = build_consumer(
            projection,
            pool,
            EventStore(pool),
            settings.amqp_url,
            topology_from(settings),
            partitions,
            prefetch=settings.consumer_prefetch,
            kept_bytes=settings.consumer_kept_bytes,
            linger=settings.consumer_linger,
            busy_rate=settings.consumer_busy_rate,
        )
        await service.prepare()
        await service.start()
        log.info("consumer_started", projection=name, partitions=partitions or "all")
        serve_metrics(settings.metrics_port)
        observe = _Observer(pool, projection, settings)
        watching = asyncio.create_task(every(10.0, stop, observe))
        await stop.wait()
        await watching
        with contextlib.suppress(Exception):
            await observe.close()
        await service.stop()
        log.info("consumer_stopped", projection=name, **vars(service.batcher.stats))
    finally:
        await pool.close()
