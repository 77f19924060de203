"""The consumer service shared by every projection: pages in, one write per batch out.

Each message is a page of events (``bus.pages``). aio-pika hands each delivery
to its own task, so handlers run concurrently. To keep order and to batch, the
handler only parks its page in a :class:`Batcher` and waits. The batcher sorts
what it holds by delivery tag (the channel's delivery order), applies the
events with one write of the pupils' documents, each also its pupil's checkpoint,
and only then acknowledges the pages (with one multiple ack where the tags run
on, see ``acks``) and lets the handlers return. If the batch fails, each page
is tried alone and, if that fails too, its events one by one: every good event
is applied, and only a page holding an event that cannot be is nacked (and
dead-lettered after the delivery limit; its good events are duplicates then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel

from senflow.events.envelope import RecordedEvent
from senflow.projections.acks import Acknowledger, Delivery
from senflow.projections.base import Projection
from senflow.projections.kept_docs import DEFAULT_MAX_BYTES, KeptDocs
from senflow.projections.tables import ApplyStats, apply_events, ensure_tables
from senflow.services.bus.pages import PartlyInvalid, parse_page
from senflow.services.bus.topology import Topology, declare
from senflow.services.metrics import PROJECTION_APPLIED, PROJECTION_DUPLICATES, PROJECTION_FILLED
from senflow.services.store.eventstore import EventStore

log = structlog.get_logger(__name__)

# Failures of the database, not of the messages: wait and try again.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)

ApplyBatch = Callable[[Sequence[RecordedEvent]], Awaitable[ApplyStats]]
RATE_SPAN = 0.25  # seconds: how far back a consumer's arrival rate looks, roughly


@dataclass
class _Parked:
    delivery: Delivery
    events: list[RecordedEvent]
    invalid: Exception | None = None  # some envelopes could not be read (see PartlyInvalid)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """Collects concurrently delivered pages and applies them in batches, in order.

    One loop task does all the applying; handlers park their page and wait for
    the loop to settle it (result or error). A batch is the parked pages in
    delivery order, up to ``max_batch`` events (a bigger page goes alone), of
    every partition this process consumes: one write for them all (and one read of
    the documents it does not keep).
    (A loop per partition was tried: at a light load it doubled the writes and
    made the latency's tail worse, 77-94 ms at p95 against 51-61.)

    Under load it waits a little between writes: while events arrive at
    ``busy_rate`` a second or more, a write starts no sooner than ``linger`` after
    the one before began. Each write rewrites its pupils' whole documents, so
    applying as soon as anything arrives made more, smaller writes the busier
    the consumer was (measured: with 0.1 s the database spent a quarter less
    CPU and the pipeline sustained more). A lighter load never waits.

    The arrival rate is a moving average over about ``RATE_SPAN``, so a light
    load that follows a burst stops waiting within a batch or two. (It was the
    count of the last whole second: for up to two seconds after a burst every
    event waited ``linger``, which was most of the latency's p95 in a run that
    followed one.)
    """

    def __init__(
        self,
        apply: ApplyBatch,
        max_batch: int = 5000,
        max_wait: float = 0.0,
        name: str = "",
        linger: float = 0.1,
        busy_rate: float = 1000.0,
    ) -> None:
        self.apply, self.max_batch, self.max_wait = apply, max_batch, max_wait
        self.linger, self.busy_rate = linger, busy_rate
        self._next_at = 0.0  # loop time before which a busy consumer does not write again
        self._last_start = -math.inf  # loop time the last batch began
        self.rate = 0.0  # events/s arriving, averaged over about RATE_SPAN
        self.acks = Acknowledger()
        self.name = name  # the projection, for metrics
        self._parked: list[_Parked] = []
        self._parked_events = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self.stats = ApplyStats()

    async def submit(
        self,
        delivery: Delivery,
        events: list[RecordedEvent],
        invalid: Exception | None = None,
    ) -> None:
        """Park a page until its batch is applied and acknowledged (or nacked: raises).

        With ``invalid`` the page had envelopes that could not be read: its good
        events are applied all the same, then it is dead-lettered at once.
        """
        parked = _Parked(delivery, events, invalid)
        self._parked.append(parked)
        self._parked_events += len(events)
        self._wake.set()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run())
        await parked.done

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._parked_events < self.max_batch:
                # By default a bare yield, so deliveries already read from the socket
                # park too. No longer than that: the relay batches events into pages,
                # and pages arriving during a write make the next batch anyway.
                await asyncio.sleep(self.max_wait)
                wait = self._next_at - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._wake.clear()
            ordered = sorted(self._parked, key=_tag)
            batch = _first_pages(ordered, self.max_batch)
            self._parked = ordered[len(batch) :]
            size = sum(len(p.events) for p in batch)
            self._parked_events -= size
            if batch:
                self._pace(size)
                await self._apply(batch)
            if self._parked:
                self._wake.set()

    def _pace(self, size: int) -> None:
        """Count a batch as it starts, and set when the next may start."""
        now = asyncio.get_running_loop().time()
        # A batch holds what arrived since the last began: size / elapsed is the rate
        # over that gap, weighted by how long the gap was (an average over time, so
        # many quick small batches count no more than one that took as long).
        elapsed = max(now - self._last_start, 0.001)
        weight = 1.0 - math.exp(-elapsed / RATE_SPAN)
        self.rate += weight * (size / elapsed - self.rate)
        self._last_start = now
        self._next_at = now + self.linger if self.rate >= self.busy_rate else 0.0

    async def _apply(self, batch: list[_Parked]) -> None:
        try:
            self._count(await self._until_reachable([e for p in batch for e in p.events]))
        except Exception as exc:
            log.warning("batch_failed_applying_page_by_page", pages=len(batch), error=repr(exc))
            for p in batch:
                await self._apply_alone(p)
            return
        await self._ack([p for p in batch if p.invalid is None])
        for p in batch:
            self._log_applied(p.events)
            await self._finish(p)

    async def _finish(self, page: _Parked) -> None:
        """Settle a page whose events are applied: it is done, unless it had envelopes
        that could not be read, which send it to the dead letters at once."""
        if page.invalid is None:
            _settle(page.done)
            return
        log.error("page_partly_invalid", error=repr(page.invalid)[:500])
        await self.nack(page.delivery, requeue=False)
        if not page.done.done():
            page.done.set_exception(page.invalid)

    async def _apply_alone(self, page: _Parked) -> None:
        """Apply one page, or else each of its events: the good ones go in, a bad one
        leaves the page nacked (redelivered, then dead-lettered at the delivery limit)."""
        try:
            self._count(await self._until_reachable(page.events))
        except Exception:
            failure = await self._apply_one_by_one(page.events)
            if failure is not None:
                await self.nack(page.delivery)
                if not page.done.done():
                    page.done.set_exception(failure)
                return
        if page.invalid is None:
            await self._ack([page])
        self._log_applied(page.events)
        await self._finish(page)

    async def _apply_one_by_one(self, events: list[RecordedEvent]) -> Exception | None:
        failure: Exception | None = None
        for e in events:
            try:
                self._count(await self._until_reachable([e]))
            except Exception as exc:
                log.error(
                    "event_not_applied",
                    event_id=str(e.event_id),
                    stream_id=str(e.stream_id),
                    version=e.version,
                    correlation_id=str(e.correlation_id),
                    error=repr(exc),
                )
                failure = failure or exc
        return failure

    def _log_applied(self, events: list[RecordedEvent]) -> None:
        if not log.is_enabled_for(logging.DEBUG):  # the fields cost, even unlogged
            return
        for e in events:
            log.debug(
                "event_applied",
                projection=self.name,
                event_id=str(e.event_id),
                correlation_id=str(e.correlation_id),
                version=e.version,
            )

    async def _ack(self, batch: list[_Parked]) -> None:
        try:
            await self.acks.ack(p.delivery for p in batch)
        except Exception as exc:  # the channel is gone: the broker redelivers, versions dedupe
            log.warning("ack_failed", size=len(batch), error=repr(exc))

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        """Return a delivery to its queue now (a bad message; the delivery limit ends it),
        or dead-letter it at once (``requeue=False``: it could never succeed)."""
        try:
            await self.acks.nack(delivery, requeue)
        except Exception as exc:
            log.warning("nack_failed", error=repr(exc))

    async def _until_reachable(self, events: list[RecordedEvent]) -> ApplyStats:
        """Apply, waiting out database outages with the messages held unacknowledged.

        An outage says nothing about the messages: nacking them would spend their
        delivery attempts and dead-letter good events. Only a failure of the batch
        itself (a bad event, a bug in a projection) reaches the caller.
        """
        pause = 0.2
        while True:
            try:
                return await self.apply(events)
            except TRANSIENT as exc:
                log.warning(
                    "database_unavailable_holding_batch",
                    size=len(events),
                    error=repr(exc),
                    retry_in=pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _count(self, s: ApplyStats) -> None:
        self.stats.applied += s.applied
        self.stats.duplicates += s.duplicates
        self.stats.filled += s.filled
        if self.name:
            PROJECTION_APPLIED.labels(self.name).inc(s.applied)
            PROJECTION_DUPLICATES.labels(self.name).inc(s.duplicates)
            PROJECTION_FILLED.labels(self.name).inc(s.filled)


def _first_pages(pages: list[_Parked], max_events: int) -> list[_Parked]:
    """The first pages holding no more than ``max_events`` events (at least one page)."""
    taken, count = 0, 0
    for p in pages:
        if taken and count + len(p.events) > max_events:
            break
        taken, count = taken + 1, count + len(p.events)
    return pages[:taken]


def _tag(p: _Parked) -> int:
    return int(p.delivery.delivery_tag or 0)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def documents_apply(
    pool: asyncpg.Pool,
    store: EventStore,
    projection: Projection,
    kept: KeptDocs | None = None,
) -> ApplyBatch:
    """Apply a batch: its pupils' documents written in one statement.

    The documents this consumer last wrote are ``kept`` (``kept_docs``): only the
    others are read, so at a light load a batch is one statement.

    No explicit transaction: BEGIN, COMMIT and row locks were two more round trips
    and most of a batch's time at a light load. Each pupil's row is its own
    checkpoint, written only over an older version (``apply_events``), and the
    write is committed before the batch is acknowledged; a crash between the
    write and the ack redelivers events the documents already hold: duplicates.
    """

    async def fetch_missing(stream_id, first, last):  # type: ignore[no-untyped-def]
        return await store.read_stream(stream_id, first, last, personal=False)

    async def apply(events: Sequence[RecordedEvent]) -> ApplyStats:
        async with pool.acquire() as conn:
            return await apply_events(
                conn, projection, events, fetch_missing, lock=False, kept=kept
            )

    return apply


@dataclass
class ConsumerService:
    """One projection's consumer: a broker, its partition queues and the batcher.

    FastStream's broker holds the connection and its channel (prefetch per
    partition queue) and declares the topology; the partition queues it declares
    are aio-pika's, and their deliveries go straight to the handler. FastStream's
    subscriber path (context scopes, middlewares, decoding stages per message)
    cost a quarter of a consumer's CPU at a light load, where a page holds an
    event or two; as in the relay, which publishes through aio-pika on
    FastStream's channel.
    """

    projection: Projection
    broker: RabbitBroker
    batcher: Batcher
    pool: asyncpg.Pool
    topology: Topology
    partitions: list[int]
    graceful_timeout: float = 10.0
    _consuming: list[tuple[Any, str]] = field(default_factory=list)
    _handler: _Handler | None = None

    async def prepare(self) -> None:
        async with self.pool.acquire() as conn:
            await ensure_tables(conn, self.projection)
        await self.broker.connect()
        await declare(self.broker, self.topology)

    async def start(self) -> None:
        """Consume the partition queues (after ``prepare``); a lost connection is
        restored, consumers included, by aio-pika's robust channel."""
        self._handler = _Handler(self.batcher)
        for p in self.partitions:
            queue = await self.broker.declare_queue(self.topology.queue(self.projection.name, p))
            tag = await queue.consume(self._handler, no_ack=False)
            self._consuming.append((queue, tag))

    async def stop(self) -> None:
        """Stop consuming, give the pages being handled ``graceful_timeout`` to be applied
        and acknowledged, then close (what is left unacknowledged is redelivered)."""
        for queue, tag in self._consuming:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self._consuming.clear()
        if self._handler is not None:
            await self._handler.settled(self.graceful_timeout)
        await self.broker.stop()
        await self.batcher.close()


def build_consumer(
    projection: Projection,
    pool: asyncpg.Pool,
    store: EventStore,
    amqp_url: str,
    topology: Topology,
    partitions: Sequence[int] | None = None,
    prefetch: int = 16,
    max_batch: int = 5000,
    kept_bytes: int = DEFAULT_MAX_BYTES,
    linger: float = 0.1,
    busy_rate: float = 1000.0,
) -> ConsumerService:
    """A consumer of the projection's partition queues (all of them unless told which).

    ``prefetch`` counts pages (up to ``bus.pages.PAGE_SIZE`` events each) per
    partition; ``max_batch`` counts the events applied in one write. The prefetch
    bounds a batch first (16 pages of 200 per partition): big batches cost less
    per event (a pupil's document is written once for all its events in the
    batch), measured 10-15% less consumer CPU than batches of 500. ``kept_bytes``
    bounds the documents kept between batches (their JSON; 0 keeps none);
    ``linger`` and ``busy_rate`` pace a busy consumer's writes (``Batcher``).
    """
    broker = RabbitBroker(
        amqp_url,
        default_channel=Channel(prefetch_count=prefetch),
        logger=None,
    )
    batcher = Batcher(
        documents_apply(pool, store, projection, KeptDocs(kept_bytes) if kept_bytes else None),
        max_batch=max_batch,
        name=projection.name,
        linger=linger,
        busy_rate=busy_rate,
    )
    chosen = list(partitions if partitions is not None else range(topology.partitions))
    return ConsumerService(projection, broker, batcher, pool, topology, chosen)


class _Handler:
    """The callback of the partition queues: parse a page and park it in the batcher."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, delivery: Any) -> None:
        self.active += 1
        self._idle.clear()
        try:
            await self._handle(delivery)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def _handle(self, delivery: Any) -> None:
        invalid: PartlyInvalid | None = None
        try:
            events = parse_page(delivery.body)
        except PartlyInvalid as exc:  # apply what can be read, dead-letter the page
            events, invalid = exc.events, exc
        except Exception as exc:
            # Parsing fails the same way every time: dead-letter it now (after a
            # fix, `senflow dlq replay` sends it again).
            log.error("message_not_parsed", error=repr(exc)[:500])
            await self.batcher.nack(delivery, requeue=False)
            return
        with contextlib.suppress(Exception):  # the batcher logged it and nacked
            await self.batcher.submit(delivery, events, invalid=invalid)

    async def settled(self, seconds: float) -> None:
        """Until no page is being handled, or ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)
