"""Relay, topology and the shared consumer mechanism against the real RabbitMQ and PostgreSQL.

The projection here ("orderly") records the versions it saw and refuses any
out of order, so ordering, duplicates and gaps show directly.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest

from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection, fold
from senflow.projections.rebuild import rebuild
from senflow.projections.tables import snapshot
from senflow.services.bus.deadletters import list_dead_letters, replay_dead_letters
from senflow.services.bus.pages import page_message
from senflow.services.relay import Feed, Relay, message_headers
from senflow.services.store.eventstore import EventStore
from tests.integration.bus import (
    AMQP_URL,
    delete_topology,
    eventually,
    queue_depth,
    running_consumer,
    running_relay,
    unique_topology,
)
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration

FAIL_ON: set[uuid.UUID] = set()  # events the orderly projection refuses, to make poison


def orderly_evolve(doc: Doc | None, e: RecordedEvent) -> Doc:
    if e.event_id in FAIL_ON:
        raise RuntimeError(f"refusing {e.event_id}")
    doc = doc or {"versions": [], "types": []}
    if doc["versions"] and e.version != doc["versions"][-1] + 1:
        raise AssertionError(f"out of order: {e.version} after {doc['versions'][-1]}")
    return {
        "versions": [*doc["versions"], e.version],
        "types": [*doc["types"], e.event_type],
        "trust_id": e.tenant.trust_id,
        "school_urn": e.tenant.school_urn,
    }


ORDERLY = Projection(name="orderly", evolve=orderly_evolve)


@pytest.fixture
async def topology():
    t = unique_topology(["orderly"], partitions=2)
    yield t
    await delete_topology(t)


async def _append_pupils(store: EventStore, pupils: int, extra: int) -> dict[uuid.UUID, int]:
    versions = {}
    for n in range(pupils):
        pupil = uuid.uuid4()
        batch = [new_event(registered(n))] + [new_event(concern(f"{n}/{i}")) for i in range(extra)]
        result = await store.append(pupil, batch, 0)
        versions[pupil] = result.last_version
    return versions


async def _docs(pool, pupils) -> dict[uuid.UUID, list[int]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT stream_id, doc FROM senflow_orderly.docs WHERE stream_id = ANY($1::uuid[])",
            list(pupils),
        )
    return {r["stream_id"]: json.loads(r["doc"])["versions"] for r in rows}


async def _all_applied(pool, expected: dict[uuid.UUID, int]) -> bool:
    docs = await _docs(pool, expected)
    return all(docs.get(p, [])[-1:] == [v] for p, v in expected.items())


async def test_relay_publishes_every_event_with_its_contract(store, pool, migrated, topology):
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    events = await channel.declare_exchange(topology.events.name, "topic", durable=True)
    tap = await channel.declare_queue(exclusive=True)
    await tap.bind(events, routing_key="#")
    try:
        async with running_relay(store, migrated, topology, feed=Feed.EVENTS):
            pupil = uuid.uuid4()
            result = await store.append(pupil, [new_event(registered()), new_event(concern())], 0)
            got = []
            async with tap.iterator() as it:
                async for msg in it:
                    got.append(msg)
                    await msg.ack()
                    if len(got) == 2:
                        break
        stored = await store.read_stream(pupil, personal=False)
        for msg, e in zip(got, stored, strict=True):
            assert msg.message_id == str(e.event_id)
            assert msg.routing_key == f"{e.event_type}.trust-7.123456"
            assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert msg.headers == message_headers(e)
            assert b"Amy" not in msg.body and b"Finds it hard" not in msg.body
            assert b"$sealed" not in msg.body
        assert [m.message_id for m in got] == [str(i) for i in result.event_ids]
    finally:
        await connection.close()


async def test_events_reach_the_projection_once_and_in_order(store, pool, migrated, topology):
    async with (
        running_relay(store, migrated, topology),
        running_consumer(ORDERLY, pool, store, topology),
    ):
        expected = await _append_pupils(store, pupils=30, extra=4)
        for pupil in list(expected)[:10]:  # more events for some, appended later
            r = await store.append(pupil, [new_event(concern("later"))], expected[pupil])
            expected[pupil] = r.last_version
        await eventually(lambda: _all_applied(pool, expected), what="all events applied")
    docs = await _docs(pool, expected)
    assert all(docs[p] == list(range(1, v + 1)) for p, v in expected.items())


async def test_a_duplicate_message_is_counted_once_and_a_gap_is_filled_from_the_store(
    store, pool, topology
):
    pupil = uuid.uuid4()
    await store.append(
        pupil, [new_event(registered()), new_event(concern()), new_event(concern())], 0
    )
    v1, v2, v3 = await store.read_stream(pupil, personal=False)
    async with running_consumer(ORDERLY, pool, store, topology) as service:
        for page in ([v1], [v1, v3], [v2], [v3]):  # a duplicate, a gap (v2 missing), late ones
            await send_page(service, topology, page)
        await eventually(lambda: _all_applied(pool, {pupil: 3}), what="v3 applied")
        await asyncio.sleep(0.3)  # let the late duplicates arrive too
    assert (await _docs(pool, [pupil]))[pupil] == [1, 2, 3]
    assert service.batcher.stats.filled >= 1 and service.batcher.stats.duplicates >= 2


async def test_poison_goes_to_the_dead_letter_queue_and_the_rest_flow(store, pool, topology):
    good, bad = uuid.uuid4(), uuid.uuid4()
    await store.append(good, [new_event(registered(1)), new_event(concern())], 0)
    refused = await store.append(bad, [new_event(registered(2))], 0)
    FAIL_ON.add(refused.event_ids[0])
    try:
        async with running_consumer(ORDERLY, pool, store, topology) as service:
            garbage = b'[{"this is": "not an event"}]'
            await service.broker.publish(
                garbage,
                exchange=topology.pages,
                routing_key="0",
                message_id="garbage",
                persist=True,
            )
            # One page holds both pupils, the bad one's event in the middle of the good's.
            g1, g2 = await store.read_stream(good, personal=False)
            [b1] = await store.read_stream(bad, personal=False)
            page = await send_page(service, topology, [g1, b1, g2], partition=1)
            dlq = topology.dlq("orderly").name
            await eventually(lambda: _all_applied(pool, {good: 2}), what="good pupil applied")
            await eventually(lambda: _depth_is(dlq, 2), within=60, what="two dead letters")
            letters = await list_dead_letters(AMQP_URL, topology, "orderly")
            assert {lt.message_id for lt in letters} == {"garbage", page}
            reasons = {lt.message_id: lt.reason for lt in letters}
            # unparseable: dead-lettered at once; failing to apply: after the delivery limit
            assert reasons == {"garbage": "rejected", page: "delivery_limit"}
            [dead] = [lt for lt in letters if lt.message_id == page]
            assert dead.events == [f"{e.event_id} {e.stream_id} v{e.version}" for e in (g1, b1, g2)]
            assert dead.from_queue == topology.queue_name("orderly", 1)
            assert await queue_depth(dlq) == 2  # listing removed nothing

            FAIL_ON.clear()  # the bug is fixed: re-drive the page
            replayed = await replay_dead_letters(AMQP_URL, topology, "orderly", page)
            assert replayed == 1
            await eventually(lambda: _all_applied(pool, {bad: 1}), what="replayed event")
            assert await queue_depth(dlq) == 1
    finally:
        FAIL_ON.clear()


async def send_page(
    service, topology, events: list[RecordedEvent], partition: int | None = None
) -> str:
    """Publish ``events`` as one page (to their pupil's partition unless told); its id."""
    if partition is None:
        partition = topology.partition_of(events[0].stream_id)
    bodies = [e.model_dump_json().encode() for e in events]
    message = page_message(partition, events, bodies)
    await service.broker.publish(
        message.body,
        exchange=topology.pages,
        routing_key=str(partition),
        headers=message.headers,
        message_id=message.message_id,
        persist=True,
    )
    return str(message.message_id)


async def _depth_is(queue: str, n: int) -> bool:
    return await queue_depth(queue) == n


async def test_two_consumers_on_different_partitions_keep_every_pupils_order(
    store, pool, migrated, topology
):
    async with (
        running_relay(store, migrated, topology),
        running_consumer(ORDERLY, pool, store, topology, partitions=[0]) as first,
        running_consumer(ORDERLY, pool, store, topology, partitions=[1]) as second,
    ):
        expected = await _append_pupils(store, pupils=40, extra=5)
        await eventually(lambda: _all_applied(pool, expected), what="all events applied")
    assert first.batcher.stats.applied > 0 and second.batcher.stats.applied > 0
    docs = await _docs(pool, expected)
    assert all(docs[p] == list(range(1, v + 1)) for p, v in expected.items())
    assert first.batcher.stats.filled == second.batcher.stats.filled == 0


async def test_a_standby_relay_takes_over_when_the_active_one_dies(store, pool, migrated, topology):
    async with running_consumer(ORDERLY, pool, store, topology):
        head = await store.head_position()
        active = Relay(
            store, migrated, AMQP_URL, topology, "ha", idle_wait=0.05, start_position=head
        )
        standby = Relay(
            store, migrated, AMQP_URL, topology, "ha", idle_wait=0.05, start_position=head
        )
        stop_active, stop_standby = asyncio.Event(), asyncio.Event()
        active_task = asyncio.create_task(active.run(stop_active))
        await asyncio.wait_for(active.is_leader.wait(), 10)
        standby_task = asyncio.create_task(standby.run(stop_standby))
        try:
            first = await _append_pupils(store, pupils=5, extra=1)
            await eventually(lambda: _all_applied(pool, first), what="first batch")
            assert not standby.is_leader.is_set() and standby.published == 0

            # The active relay's database session dies (as when its process is killed):
            # its lock goes with it. It is told to stop so it does not come back.
            stop_active.set()
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_terminate_backend($1)", active.session_pid)
            await asyncio.wait_for(standby.is_leader.wait(), 10)
            second = await _append_pupils(store, pupils=5, extra=1)
            await eventually(lambda: _all_applied(pool, second), what="after takeover")
            assert standby.published >= 10
        finally:
            stop_active.set()
            stop_standby.set()
            await asyncio.gather(active_task, standby_task, return_exceptions=True)


async def test_live_read_model_equals_a_rebuild(store, pool, migrated, topology):
    async with (
        running_relay(store, migrated, topology),
        running_consumer(ORDERLY, pool, store, topology),
    ):
        expected = await _append_pupils(store, pupils=20, extra=3)
        await eventually(lambda: _all_applied(pool, expected), what="all applied")
    await rebuild(pool, store, ORDERLY, swap=False, target="senflow_orderly_check")
    async with pool.acquire() as conn:
        live = await snapshot(conn, ORDERLY)
        rebuilt = await snapshot(conn, ORDERLY, "senflow_orderly_check")
        await conn.execute("DROP SCHEMA senflow_orderly_check CASCADE")
    # The database is shared with other tests whose events never went through this
    # consumer: every live document must equal its rebuilt one, and ours must be there.
    assert set(expected) <= set(live)
    assert {p: rebuilt[p] for p in live} == live
    for pupil in expected:
        events = await store.read_stream(pupil, personal=False)
        assert live[pupil][2] == fold(ORDERLY, events)


async def test_a_page_no_queue_takes_stops_the_relay_instead_of_vanishing(
    store, pool, migrated, topology
):
    """The projections' queues deleted by mistake: a mandatory page comes back, and the
    checkpoint must not move until they are there again."""
    async with running_relay(store, migrated, topology) as relay:
        await asyncio.wait_for(relay.is_leader.wait(), 10)
        await eventually(lambda: _queues_exist(topology), what="the relay declared the queues")
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            for p in range(topology.partitions):
                await channel.queue_delete(topology.queue_name("orderly", p))
        finally:
            await connection.close()
        start = await _checkpoint(pool, relay.name)
        published = relay.published
        pupil = uuid.uuid4()
        await store.append(pupil, [new_event(registered())], 0)
        await asyncio.sleep(1.0)
        assert await _checkpoint(pool, relay.name) == start and relay.published == published

        # Once the queues are back (a consumer declares them), the held event goes out.
        async with running_consumer(ORDERLY, pool, store, topology):
            await eventually(lambda: _all_applied(pool, {pupil: 1}), what="the held event")
        assert await _checkpoint(pool, relay.name) > start


async def test_the_public_feed_does_not_wait_for_subscribers(store, pool, migrated):
    """No projection and no downstream queue: the relay carries on (the store keeps all)."""
    bare = unique_topology([], partitions=1)
    try:
        async with running_relay(store, migrated, bare, feed=Feed.EVENTS) as relay:
            await asyncio.wait_for(relay.is_leader.wait(), 10)
            await store.append(uuid.uuid4(), [new_event(registered())], 0)
            await eventually(lambda: _published(relay), what="the event relayed")
    finally:
        await delete_topology(bare)


async def _published(relay: Relay) -> bool:
    return relay.published >= 1


async def _checkpoint(pool, name: str) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval("SELECT position FROM relay_checkpoint WHERE name = $1", name)
        )


async def _queues_exist(topology) -> bool:
    try:
        for p in range(topology.partitions):
            await queue_depth(topology.queue_name("orderly", p))
    except Exception:
        return False
    return True


async def test_writers_of_one_pupil_racing_without_locks_leave_the_newest_document(store, pool):
    """Two consumers may apply a pupil's events at once (a standby taking over, a page
    redelivered): each reads, folds and writes without a lock, and the document ends as
    the fold of the most events any of them applied, never an older or mixed one."""
    import random

    from senflow.projections.consumer import documents_apply
    from senflow.projections.tables import ensure_tables

    async with pool.acquire() as conn:
        await ensure_tables(conn, ORDERLY)
    apply = documents_apply(pool, store, ORDERLY)
    rng = random.Random(7)
    pupils = []
    for n in range(12):
        pupil = uuid.uuid4()
        batch = [new_event(registered(n))] + [new_event(concern(f"{i}")) for i in range(7)]
        await store.append(pupil, batch, 0)
        pupils.append((pupil, await store.read_stream(pupil, personal=False)))
    for pupil, events in pupils:
        cuts = [rng.randint(1, len(events)) for _ in range(4)]
        # each writer has all events up to its cut, some from the start, some from later
        await asyncio.gather(*(apply(events[rng.randint(0, c - 1) : c]) for c in cuts))
        docs = await _docs(pool, [pupil])
        assert docs[pupil] == list(range(1, max(cuts) + 1))


async def test_documents_are_compressed_with_lz4_where_the_server_has_it(pool):
    from senflow.projections.tables import ensure_tables

    async with pool.acquire() as conn:
        await ensure_tables(conn, ORDERLY)
        await ensure_tables(conn, ORDERLY)  # again: a no-op, no error
        has_lz4 = await conn.fetchval(
            """SELECT 'lz4' = ANY(enumvals) FROM pg_settings
                WHERE name = 'default_toast_compression'"""
        )
        method = await conn.fetchval(
            """SELECT attcompression::text FROM pg_attribute
                WHERE attrelid = 'senflow_orderly.docs'::regclass AND attname = 'doc'"""
        )
    assert method == ("l" if has_lz4 else "")


async def test_the_pages_relay_retires_the_old_hash_exchanges_once_it_leads(
    store, migrated, topology
):
    """A release before pages fed the queues from per-service hash exchanges on the public
    feed. They stay while an old relay may publish (the public feed's relay leaves them),
    and go once the pages relay holds the lead, so no event arrives twice after."""
    legacy = topology.legacy_hash_exchange("orderly")
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        events = await channel.declare_exchange(topology.events.name, "topic", durable=True)
        old = await channel.declare_exchange(legacy, "topic", durable=True)
        await old.bind(events, routing_key="#")

        async def exists() -> bool:
            probe = await connection.channel()
            try:
                await probe.declare_exchange(legacy, "topic", passive=True)
                return True
            except aio_pika.exceptions.ChannelClosed:
                return False

        async with running_relay(store, migrated, topology, feed=Feed.EVENTS) as feed:
            await asyncio.wait_for(feed.is_leader.wait(), 10)
            await asyncio.sleep(0.3)
            assert await exists()
        async with running_relay(store, migrated, topology) as relay:
            await asyncio.wait_for(relay.is_leader.wait(), 10)
            await eventually(lambda: _gone(exists), what="the old exchange retired")
    finally:
        await connection.close()


async def _gone(exists) -> bool:
    return not await exists()
