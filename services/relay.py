"""The relay: tail the event store and publish every event to RabbitMQ, in order, once confirmed.

There are two feeds, each a relay of its own (``Feed``): pages of events for
the projections (see ``bus.pages``; ``senflow serve relay``, checkpoint "main")
and one message per event for downstream systems (``senflow serve
public-feed``, checkpoint "public").

The events table is the outbox: an event exists once committed, and the relay
carries it to the bus afterwards, so there is no window where a write reaches
one and not the other. The relay publishes each batch with publisher confirms
(persistent; pages mandatory, returns raised) and moves its checkpoint only
after every message of the batch was confirmed. A crash or a broker outage
means the batch is published again: consumers drop the duplicates by event id
/ version.

One relay of a name is active at a time: it holds a PostgreSQL session
advisory lock on a connection of its own. A second instance waits on that lock as a standby; when
the active one dies its session ends, the lock is released and the standby
takes over from the shared checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from enum import StrEnum

import aio_pika
import asyncpg
import structlog
from aiormq.exceptions import AMQPError
from faststream.rabbit import RabbitBroker, RabbitExchange
from faststream.rabbit.schemas import Channel

from senflow.events.envelope import RecordedEvent
from senflow.services.bus.pages import cut, page_message
from senflow.services.bus.topology import Topology, declare, routing_key
from senflow.services.metrics import RELAY_LAG, RELAY_PUBLISHED
from senflow.services.store.db import SERVER_SETTINGS
from senflow.services.store.eventstore import NOTIFY_CHANNEL, EventStore

log = structlog.get_logger(__name__)

_RELAY_LOCK = 0x5E4F2E  # with hashtext(name): one active relay per name


def make_broker(amqp_url: str) -> RabbitBroker:
    return RabbitBroker(
        amqp_url,
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        graceful_timeout=10.0,
        logger=None,
    )


def message_headers(e: RecordedEvent) -> dict[str, str | int]:
    return {
        "stream_id": str(e.stream_id),
        "version": e.version,
        "position": e.position,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "trust_id": e.tenant.trust_id,
        "school_urn": e.tenant.school_urn,
        "correlation_id": str(e.correlation_id),
    }


def event_message(e: RecordedEvent, body: bytes) -> aio_pika.Message:
    """The public feed's message of one event."""
    return aio_pika.Message(
        body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(e.event_id),
        correlation_id=str(e.correlation_id),
        content_type="application/json",
        headers=message_headers(e),
    )


class Feed(StrEnum):
    """What a relay publishes. Each feed is its own relay (its own checkpoint and
    leader), so a slow or busy public feed never holds up the projections."""

    PAGES = "pages"  # the projections: pages of events per partition, mandatory
    EVENTS = "events"  # the public feed: one message per event, for downstream systems


# Each feed's relay name, which names its checkpoint and its leader lock.
RELAY_NAMES = {Feed.PAGES: "main", Feed.EVENTS: "public"}

Outgoing = tuple[RabbitExchange, aio_pika.Message, str, bool]  # exchange, message, key, mandatory


def outgoing(feed: Feed, topology: Topology, events: Sequence[RecordedEvent]) -> list[Outgoing]:
    """The messages that carry ``events`` on ``feed``, in the order they must leave.

    Pages are mandatory: a page no queue takes (the projections' queues deleted)
    comes back and fails the batch, so nothing moves past it. The public feed is
    not: downstream systems come and go, and the store keeps every event for a
    subscriber that binds later to catch up from.
    """
    bodies = [e.model_dump_json().encode() for e in events]
    if feed is Feed.EVENTS:
        return [
            (
                topology.events,
                event_message(e, body),
                routing_key(e.event_type, e.tenant.trust_id, e.tenant.school_urn),
                False,
            )
            for e, body in zip(events, bodies, strict=True)
        ]
    if not topology.services:
        return []
    return [
        (
            topology.pages,
            page_message(partition, [events[i] for i in page], [bodies[i] for i in page]),
            str(partition),
            True,
        )
        for partition, page in cut(topology, events)
    ]


async def publish(
    broker: RabbitBroker,
    topology: Topology,
    events: Sequence[RecordedEvent],
    feed: Feed = Feed.PAGES,
) -> None:
    """Publish events on ``feed`` in order; returns once the broker confirmed every message.

    Waiting for each confirm before sending the next message would cap the
    relay at one broker round trip (a quorum-queue commit) per message. So the
    first message goes alone (the channel and the exchange are then ready and
    cached) and the rest are sent without waiting for each other's confirm:
    each publish takes the channel's lock (FIFO) in the order its task was
    created and writes its frames before releasing it, so the messages leave
    in order; all confirms are then awaited together. If any fails, the others
    are cancelled and the batch is retried whole (the checkpoint has not
    moved); consumers drop duplicates and fill gaps from the store.
    """
    messages = outgoing(feed, topology, events)
    if not messages:
        return
    if log.is_enabled_for(logging.DEBUG):  # building the fields costs, even unlogged
        for e in events:
            log.debug(
                "event_publishing",
                feed=feed.value,
                event_id=str(e.event_id),
                correlation_id=str(e.correlation_id),
                position=e.position,
            )
    exchange = await broker.declare_exchange(messages[0][0])

    async def send(m: aio_pika.Message, key: str, mandatory: bool) -> None:
        # Straight to aio-pika on the broker's confirming channel: FastStream's publish
        # path (middlewares, per-call option handling) cost more than the publish itself.
        await exchange.publish(m, routing_key=key, mandatory=mandatory)

    await send(*messages[0][1:])
    tasks = [asyncio.ensure_future(send(*m[1:])) for m in messages[1:]]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Relay:
    def __init__(
        self,
        store: EventStore,
        dsn: str,
        amqp_url: str,
        topology: Topology,
        name: str = "main",
        batch: int = 500,
        idle_wait: float = 0.5,
        start_position: int = 0,
        feed: Feed = Feed.PAGES,
    ) -> None:
        self.store, self.dsn, self.amqp_url, self.topology = store, dsn, amqp_url, topology
        self.name, self.batch, self.idle_wait = name, batch, idle_wait
        self.feed = feed
        self.start_position = start_position  # where a relay of a new name begins
        self.is_leader = asyncio.Event()
        self.published = 0
        self.session_pid: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to lead, then relay until ``stop`` is set; survives broker and DB outages."""
        while not stop.is_set():
            try:
                await self._lead(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay_database_unavailable", error=str(exc))
                self.is_leader.clear()
                await _sleep_or_stop(stop, 1.0)

    async def _lead(self, stop: asyncio.Event) -> None:
        lock = await asyncpg.connect(self.dsn, server_settings=SERVER_SETTINGS)
        self.session_pid = lock.get_server_pid()
        wake = asyncio.Event()
        try:
            while not await lock.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", _RELAY_LOCK, self.name
            ):
                if stop.is_set():
                    return
                await _sleep_or_stop(stop, 1.0)  # standby
            await lock.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
            await lock.execute(
                "INSERT INTO relay_checkpoint (name, position) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING",
                self.name,
                self.start_position,
            )
            self.is_leader.set()
            log.info("relay_leading", name=self.name)
            await self._relay(lock, wake, stop)
        finally:
            self.is_leader.clear()
            with contextlib.suppress(Exception):
                await lock.close()

    async def _relay(
        self, lock: asyncpg.Connection, wake: asyncio.Event, stop: asyncio.Event
    ) -> None:
        broker = make_broker(self.amqp_url)
        connected = False
        backoff = 0.2
        try:
            while not stop.is_set():
                if lock.is_closed():
                    raise asyncpg.InterfaceError("relay lock connection lost")
                try:
                    if not connected:
                        await broker.connect()
                        await declare(broker, self.topology)
                        connected = True
                    moved = await self._one_batch(broker, lock)
                    backoff = 0.2
                except Exception as exc:
                    # aiormq's connection errors are OSErrors too: sort them out first
                    if not _broker_trouble(exc):
                        raise  # the database: give up the lead and start again
                    # broker trouble: nothing moved, try again
                    log.warning("relay_publish_failed", error=repr(exc), retry_in=backoff)
                    await _sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if not moved:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(_first(wake, stop), self.idle_wait)
        finally:
            with contextlib.suppress(Exception):
                await broker.stop()

    async def _one_batch(self, broker: RabbitBroker, lock: asyncpg.Connection) -> int:
        checkpoint = await lock.fetchval(
            "SELECT position FROM relay_checkpoint WHERE name = $1", self.name
        )
        events = await self.store.read_all(checkpoint, self.batch)
        if not events:
            RELAY_LAG.set(0)
            return 0
        await publish(broker, self.topology, events, self.feed)
        # Only confirmed events move the checkpoint; a crash before this line
        # republishes the batch, which consumers recognise as duplicates.
        await lock.execute(
            "UPDATE relay_checkpoint SET position = $2, updated_at = now() WHERE name = $1",
            self.name,
            events[-1].position,
        )
        self.published += len(events)
        RELAY_PUBLISHED.inc(len(events))
        RELAY_LAG.set(max(0, await self.store.head_position() - events[-1].position))
        log.debug("relay_published", count=len(events), position=events[-1].position)
        return len(events)


def _broker_trouble(exc: BaseException) -> bool:
    if isinstance(exc, AMQPError | aio_pika.exceptions.AMQPException):
        return True
    return not isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
