"""Helpers for tests against the real RabbitMQ: unique topologies, running services, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import aio_pika
import asyncpg

from senflow.projections.base import Projection
from senflow.projections.consumer import ConsumerService, build_consumer
from senflow.services.bus.topology import Topology, remove
from senflow.services.relay import Feed, Relay
from senflow.services.store.eventstore import EventStore

AMQP_URL = os.environ.get("SENFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def unique_topology(services: Sequence[str], partitions: int = 2) -> Topology:
    return Topology(
        prefix=f"senflow-test-{uuid.uuid4().hex[:8]}",
        partitions=partitions,
        services=tuple(services),
    )


async def delete_topology(topology: Topology) -> None:
    await remove(AMQP_URL, topology)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within: float = 30.0,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


@asynccontextmanager
async def running_relay(
    store: EventStore,
    dsn: str,
    topology: Topology,
    name: str | None = None,
    feed: Feed = Feed.PAGES,
) -> AsyncIterator[Relay]:
    """A relay of its own name starting at the store's head: it publishes this test's events
    (in pages to the projections, or with ``Feed.EVENTS`` one by one to the public feed)."""
    relay = Relay(
        store,
        dsn,
        AMQP_URL,
        topology,
        name=name or f"{topology.prefix}.{feed.value}",
        idle_wait=0.05,
        start_position=await store.head_position(),
        feed=feed,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@asynccontextmanager
async def running_consumer(
    projection: Projection,
    pool: asyncpg.Pool,
    store: EventStore,
    topology: Topology,
    partitions: Sequence[int] | None = None,
) -> AsyncIterator[ConsumerService]:
    service = build_consumer(projection, pool, store, AMQP_URL, topology, partitions)
    await service.prepare()
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()
