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
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aio_pika
import asyncpg
import structlog
from aiormq.exceptions import AMQPError
from faststream.rabbit import RabbitBroker, RabbitExchange
from faststream.rabbit.schemas import Channel

from senflow.events.envelope import RecordedEvent
from senflow.services.bus.pages import cut, page_message
from senflow.services.bus.topology import Topology, declare, retire_legacy, routing_key
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


_FINISH_SECONDS = 5.0  # on stop, how long batches in flight may take to be confirmed

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


async def send(
    broker: RabbitBroker,
    topology: Topology,
    events: Sequence[RecordedEvent],
    feed: Feed = Feed.PAGES,
) -> list[asyncio.Task[Any]]:
    """Start publishing events on ``feed``: one task per message, each done once the
    broker confirmed its message, failed if it was refused or came back.

    Waiting for each confirm before sending the next message would cap the
    relay at one broker round trip (a quorum-queue commit) per message. So all
    messages are handed to publish tasks at once: each task takes the channel's
    lock (FIFO) in the order it was created and writes its frames before
    releasing it, so the messages leave in order, this batch's after any
    earlier batch's; their confirms are then awaited together.
    """
    messages = outgoing(feed, topology, events)
    if log.is_enabled_for(logging.DEBUG):  # building the fields costs, even unlogged
        for e in events:
            log.debug(
                "event_publishing",
                feed=feed.value,
                event_id=str(e.event_id),
                correlation_id=str(e.correlation_id),
                position=e.position,
            )
    if not messages:
        return []
    # Declared (and cached) before the tasks exist, so none of them waits on it.
    exchange = await broker.declare_exchange(messages[0][0])
    # Straight to aio-pika on the broker's confirming channel: FastStream's publish
    # path (middlewares, per-call option handling) cost more than the publish itself.
    return [
        asyncio.ensure_future(exchange.publish(m, routing_key=key, mandatory=mandatory))
        for _, m, key, mandatory in messages
    ]


@dataclass
class _InFlight:
    """A batch sent and not yet confirmed."""

    last_position: int
    events: int
    tasks: list[asyncio.Task[Any]]
    confirmed: asyncio.Future[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.confirmed = asyncio.gather(*self.tasks)

    def cancel(self) -> None:
        """Stop what is still being sent (nothing is awaited: see ``_pipeline``)."""
        for t in self.tasks:
            t.cancel()

    async def settled(self) -> None:
        """Until every task has ended; their failures are retrieved, not raised."""
        await asyncio.gather(self.confirmed, *self.tasks, return_exceptions=True)


class Relay:
    def __init__(
        self,
        store: EventStore,
        dsn: str,
        amqp_url: str,
        topology: Topology,
        name: str | None = None,
        batch: int = 500,
        idle_wait: float = 0.5,
        start_position: int = 0,
        feed: Feed = Feed.PAGES,
        in_flight: int = 4,
        checkpoint_every: float = 0.2,
    ) -> None:
        self.store, self.dsn, self.amqp_url, self.topology = store, dsn, amqp_url, topology
        self.name = name or RELAY_NAMES[feed]  # its checkpoint and its leader lock
        self.batch, self.idle_wait = batch, idle_wait
        self.feed, self.in_flight = feed, in_flight
        # The checkpoint is written at most this often (and on stop): at a light load a
        # write per batch was a round trip per event. A crash republishes what was
        # confirmed since, and consumers drop it as duplicates.
        self.checkpoint_every = checkpoint_every
        self._confirmed_to: int | None = None  # confirmed, not yet written
        self._saved_at = 0.0
        self._backoff = 0.2
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
        # The checkpoint is only a hint of where to resume: an update lost in a crash
        # means a batch published twice, which consumers drop. So its commits need not
        # wait for the disk (the store's own commits still do, on other connections).
        lock = await asyncpg.connect(
            self.dsn, server_settings={**SERVER_SETTINGS, "synchronous_commit": "off"}
        )
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
        self._backoff = 0.2
        try:
            while not stop.is_set():
                try:
                    if not connected:
                        await broker.connect()
                        await declare(broker, self.topology)
                        if self.feed is Feed.PAGES:
                            # Only now, holding the lead no relay of an older release can
                            # hold: until this point its per-event messages must still
                            # reach the projections' queues.
                            await retire_legacy(broker, self.topology)
                        connected = True
                    await self._pipeline(broker, lock, wake, stop)
                except Exception as exc:
                    # aiormq's connection errors are OSErrors too: sort them out first
                    if not _broker_trouble(exc):
                        raise  # the database: give up the lead and start again
                    # broker trouble: the checkpoint did not pass what failed, start from it
                    log.warning("relay_publish_failed", error=repr(exc), retry_in=self._backoff)
                    await _sleep_or_stop(stop, self._backoff)
                    self._backoff = min(self._backoff * 2, 5.0)
        finally:
            with contextlib.suppress(Exception):
                await broker.stop()

    async def _pipeline(
        self,
        broker: RabbitBroker,
        lock: asyncpg.Connection,
        wake: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        """Read, send and confirm batches from the checkpoint on, until ``stop``.

        Up to ``in_flight`` batches are sent before the oldest is confirmed: the
        next batch is read and sent while the broker commits the last one, so a
        commit never waits a whole confirm round trip to be read. Batches are
        confirmed, and the checkpoint moved, in order; a failure ends the
        pipeline and the batches after the checkpoint are sent again.
        """
        sent_to = await lock.fetchval(
            "SELECT position FROM relay_checkpoint WHERE name = $1", self.name
        )
        self._confirmed_to = None
        pending: deque[_InFlight] = deque()
        # After a read shorter than a batch the relay is at the head as it was then;
        # it reads again only once a commit has been notified since (``wake``), so a
        # quiet store costs no reads. ``wake`` is cleared just before each read: a
        # commit the read could not see sets it again, so none is missed.
        caught_up = False
        try:
            while not stop.is_set():
                if lock.is_closed():
                    raise asyncpg.InterfaceError("relay lock connection lost")
                events: list[RecordedEvent] = []
                if len(pending) < self.in_flight and not (caught_up and not wake.is_set()):
                    wake.clear()
                    events = await self.store.read_all(sent_to, self.batch)
                    caught_up = len(events) < self.batch
                if events:
                    tasks = await send(broker, self.topology, events, self.feed)
                    pending.append(_InFlight(events[-1].position, len(events), tasks))
                    sent_to = events[-1].position
                if len(pending) >= self.in_flight:  # full: new commits must wait anyway
                    await _first(pending[0].confirmed, stop)
                elif pending and (caught_up or not events):
                    await _first(pending[0].confirmed, wake, stop)
                elif not pending:
                    RELAY_LAG.set(0)
                    if not await self._idle(lock, wake, stop):
                        caught_up = False  # nothing notified for a while: look anyway
                await self._confirm(lock, pending)
            await self._finish(lock, pending)
        finally:
            # Every task is cancelled before anything is awaited: a batch sent in this
            # very turn must not go out after the pipeline has given up on an earlier one.
            for batch in pending:
                batch.cancel()
            await asyncio.gather(*(b.settled() for b in pending))
            # What was confirmed before a failure need not be sent again.
            with contextlib.suppress(Exception):
                await self._save(lock)

    async def _idle(
        self, lock: asyncpg.Connection, wake: asyncio.Event, stop: asyncio.Event
    ) -> bool:
        """Wait for a commit (True) or ``idle_wait`` (False), writing a checkpoint due meanwhile."""
        if self._confirmed_to is not None:
            due = self._saved_at + self.checkpoint_every - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), max(0.0, due))
                return True
            await self._save(lock)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(wake, stop), self.idle_wait)
            return True
        return False

    async def _finish(self, lock: asyncpg.Connection, pending: deque[_InFlight]) -> None:
        """On stop: give the batches in flight a moment to be confirmed and checkpointed,
        so a restart does not send them again (it would be safe, only wasteful)."""
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait([b.confirmed for b in pending]), _FINISH_SECONDS
                )
            with contextlib.suppress(Exception):
                await self._confirm(lock, pending)

    async def _confirm(self, lock: asyncpg.Connection, pending: deque[_InFlight]) -> None:
        """Move the checkpoint past the oldest batches the broker has confirmed."""
        done: list[_InFlight] = []
        while pending and pending[0].confirmed.done():
            failed = pending[0].confirmed.exception()
            if failed is not None:
                self._count(done)  # what was confirmed before it stands (see ``finally``)
                raise failed
            done.append(pending.popleft())
        if not done:
            return
        self._count(done)
        if time.monotonic() - self._saved_at >= self.checkpoint_every:
            await self._save(lock)
        self._backoff = 0.2
        last = done[-1].last_position
        # A batch shorter than asked for reached the head as it was then: no query needed.
        behind = 0
        if done[-1].events == self.batch:
            behind = max(0, await self.store.head_position() - last)
        RELAY_LAG.set(behind)

    def _count(self, done: list[_InFlight]) -> None:
        """Confirmed batches: only they move the checkpoint (written by ``_save``; a crash
        before that republishes them, which consumers recognise as duplicates)."""
        if not done:
            return
        self._confirmed_to = done[-1].last_position
        count = sum(b.events for b in done)
        self.published += count
        RELAY_PUBLISHED.inc(count)
        log.debug("relay_published", count=count, position=self._confirmed_to)

    async def _save(self, lock: asyncpg.Connection) -> None:
        """Write the confirmed position as the checkpoint, if it moved since the last write."""
        if self._confirmed_to is None:
            return
        position, self._confirmed_to = self._confirmed_to, None
        await lock.execute(
            "UPDATE relay_checkpoint SET position = $2, updated_at = now() WHERE name = $1",
            self.name,
            position,
        )
        self._saved_at = time.monotonic()


def _broker_trouble(exc: BaseException) -> bool:
    if isinstance(exc, AMQPError | aio_pika.exceptions.AMQPException):
        return True
    return not isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError)


async def _first(*things: asyncio.Event | asyncio.Future[Any]) -> None:
    """Until the first of these is set or done (a failed future is left to its owner)."""
    waiters = [asyncio.create_task(t.wait()) if isinstance(t, asyncio.Event) else t for t in things]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w, t in zip(waiters, things, strict=True):
            if w is not t:
                w.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
