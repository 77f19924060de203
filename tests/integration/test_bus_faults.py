"""Breaking things on purpose: the broker stopped mid-run. Nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import pytest

from senflow.projections.rebuild import rebuild
from senflow.projections.tables import snapshot
from tests.integration.bus import (
    delete_topology,
    eventually,
    running_consumer,
    running_relay,
    unique_topology,
)
from tests.integration.helpers import concern, new_event, registered
from tests.integration.test_bus import ORDERLY, _all_applied, _docs

pytestmark = pytest.mark.integration

RABBITMQCTL = shutil.which("rabbitmqctl")
needs_broker_control = pytest.mark.skipif(
    RABBITMQCTL is None, reason="needs rabbitmqctl for the local broker"
)


def broker(action: str) -> None:
    subprocess.run([RABBITMQCTL, action], check=True, capture_output=True, timeout=120)


@pytest.fixture
async def topology():
    t = unique_topology(["orderly"], partitions=2)
    yield t
    await delete_topology(t)


@needs_broker_control
async def test_broker_restart_mid_run_loses_nothing_and_counts_nothing_twice(
    store, pool, migrated, topology
):
    pupils = [uuid.uuid4() for _ in range(60)]
    expected: dict[uuid.UUID, int] = {}

    async def write(rounds: int) -> None:
        for r in range(rounds):
            for p in pupils:
                data = registered(pupils.index(p)) if r == 0 else concern(f"round {r}")
                result = await store.append(p, [new_event(data)], expected.get(p, 0))
                expected[p] = result.last_version
            await asyncio.sleep(0.01)

    async with (
        running_relay(store, migrated, topology) as relay,
        running_consumer(ORDERLY, pool, store, topology) as consumer,
    ):
        await write(10)  # 600 events before the outage
        await eventually(lambda: _all_applied(pool, dict(expected)), what="first part")
        writing = asyncio.create_task(write(25))  # 1,500 more, during and after it
        await asyncio.sleep(0.2)
        await asyncio.to_thread(broker, "stop_app")
        await asyncio.sleep(2)
        await asyncio.to_thread(broker, "start_app")
        await writing
        await eventually(
            lambda: _all_applied(pool, dict(expected)), within=120, what="everything applied"
        )
        # The relay may still be waiting for the confirms of its last batch (its pages
        # already consumed): it counts a batch only once the broker confirmed all of it.
        await eventually(
            lambda: _at_least(relay.published, sum(expected.values())), what="relay confirmed"
        )

    docs = await _docs(pool, expected)
    assert all(docs[p] == list(range(1, v + 1)) for p, v in expected.items())
    assert sum(expected.values()) == 60 * 35
    assert consumer.batcher.stats.applied >= 60 * 35

    await rebuild(pool, store, ORDERLY, swap=False, target="senflow_orderly_fault")
    async with pool.acquire() as conn:
        live = await snapshot(conn, ORDERLY)
        rebuilt = await snapshot(conn, ORDERLY, "senflow_orderly_fault")
        await conn.execute("DROP SCHEMA senflow_orderly_fault CASCADE")
    assert {p: live[p] for p in pupils} == {p: rebuilt[p] for p in pupils}


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def test_a_database_outage_holds_messages_instead_of_dead_lettering_them(
    store, pool, migrated, topology
):
    """Messages that arrive while PostgreSQL is unreachable wait; none is dead-lettered."""
    from urllib.parse import urlsplit, urlunsplit

    from senflow.services.store.db import create_pool
    from tests.integration.bus import queue_depth
    from tests.integration.test_api_faults import Proxy

    parts = urlsplit(migrated)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.up()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    behind_proxy = await create_pool(urlunsplit(parts._replace(netloc=netloc)), min_size=1)
    try:
        async with (
            running_relay(store, migrated, topology),
            running_consumer(ORDERLY, behind_proxy, store, topology),
        ):
            await proxy.down()  # the consumer's database goes away
            pupils = {}
            for n in range(5):
                pupil = uuid.uuid4()
                r = await store.append(pupil, [new_event(registered(n)), new_event(concern())], 0)
                pupils[pupil] = r.last_version
            await asyncio.sleep(4)  # long enough to spend ten deliveries if it nacked
            assert await queue_depth(topology.dlq("orderly").name) == 0
            await proxy.up()
            await eventually(
                lambda: _all_applied(pool, pupils),
                within=60,
                what="applied once the database is back",
            )
        assert await queue_depth(topology.dlq("orderly").name) == 0
    finally:
        await behind_proxy.close()
        await proxy.down()
