"""Appends from kept heads (one round trip), and every way a kept head can be wrong.

A store keeps the heads its committed appends left and writes the next append from
them in one call (``senflow_append_known``); the server checks the heads under
their locks. Two stores on one database are two processes: each moves heads the
other has kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from senflow.events import catalogue as ev
from senflow.services.store.coalescing import CoalescingAppender
from senflow.services.store.eventstore import (
    NOTIFY_CHANNEL,
    AppendRequest,
    ConcurrencyConflict,
    EventStore,
    StreamErased,
    vault,
)
from senflow.services.store.tenancy import TrustPool
from senflow.services.store.verify import verify
from tests.integration.helpers import TENANT, concern, new_event, registered

pytestmark = pytest.mark.integration


async def _rows(pool, pupil) -> list[tuple[int, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT version, event_type FROM events WHERE stream_id = $1 ORDER BY version", pupil
        )
    return [(r["version"], r["event_type"]) for r in rows]


async def test_an_append_to_a_kept_head_takes_one_call_and_chains_as_a_locked_one(store, pool):
    pupil = uuid.uuid4()
    first = await store.append(pupil, [new_event(registered())], 0)
    assert store.paths == {"locked": 1}  # a new pupil: its head is made under lock
    second = await store.append(pupil, [new_event(concern()), new_event(concern("more"))], 1)
    assert store.paths == {"locked": 1, "known": 1}
    assert (second.first_version, second.last_version) == (2, 3)
    assert first.last_position < second.positions[0] < second.positions[1]

    events = await store.read_stream(pupil)
    assert [e.version for e in events] == [1, 2, 3]
    assert events[2].data.description == "more"  # sealed with the pupil's key, opens
    assert (await verify(pool, stream_id=pupil)).ok
    async with pool.acquire() as conn:
        head = await conn.fetchrow(
            "SELECT version, last_hash FROM streams WHERE stream_id = $1", pupil
        )
        last = await conn.fetchval(
            "SELECT hash FROM events WHERE stream_id = $1 AND version = 3", pupil
        )
    kept = store.heads.get(pupil)
    assert kept is not None
    assert (head["version"], head["last_hash"]) == (3, last) == (kept.version, kept.last_hash)


async def test_a_head_moved_by_another_process_falls_back_and_loses_nothing(store, pool):
    pupil = uuid.uuid4()
    other = EventStore(pool)
    await store.append(pupil, [new_event(registered())], 0)
    await other.append(pupil, [new_event(concern("by the other"))])  # store's head is stale

    result = await store.append(pupil, [new_event(concern("by the first"))])
    assert result.first_version == 3
    assert store.paths == {"locked": 2, "moved": 1}
    assert [v for v, _ in await _rows(pool, pupil)] == [1, 2, 3]
    assert (await verify(pool, stream_id=pupil)).ok
    # and the locked path left the true head kept: the next append is one call again
    await store.append(pupil, [new_event(concern("again"))], 3)
    assert store.paths["known"] == 1


async def test_a_stale_expected_version_is_still_a_conflict_with_the_current_version(store, pool):
    pupil = uuid.uuid4()
    other = EventStore(pool)
    await store.append(pupil, [new_event(registered())], 0)
    await other.append(pupil, [new_event(concern())], 1)
    # Expected 1 is what store kept, and wrong: the server refuses the kept head and
    # the locked path names the stream's real version.
    with pytest.raises(ConcurrencyConflict) as err:
        await store.append(pupil, [new_event(concern("late"))], 1)
    assert (err.value.expected, err.value.current) == (1, 2)
    assert store.paths["moved"] == 1  # the kept head was tried, and refused
    assert await _rows(pool, pupil) == [(1, "pupil_registered"), (2, "concern_raised")]


async def test_an_erasure_by_another_process_refuses_an_append_from_its_kept_head(store, pool):
    pupil = uuid.uuid4()
    other = EventStore(pool)
    await store.append(pupil, [new_event(registered())], 0)
    before = store.heads.get(pupil)
    erased = ev.PersonalDataErased(reason_code="erasure_request", reason="SAR-1")
    await other.erase(pupil, new_event(erased))
    # A process elsewhere hears nothing of it and still keeps the head with its key.
    store.heads.forget([pupil])
    store.heads.keep({pupil: before})

    with pytest.raises(StreamErased):
        await store.append(pupil, [new_event(concern())])
    assert store.paths["moved"] == 1
    assert [t for _, t in await _rows(pool, pupil)] == ["pupil_registered", "personal_data_erased"]


async def test_a_key_destroyed_without_an_event_is_caught_by_the_server(store, pool):
    """The head did not move, but the key it was kept with is gone: never seal with it."""
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE vault_keys SET key = NULL, destroyed_at = now() WHERE stream_id = $1",
            pupil,
        )
    with pytest.raises(StreamErased):
        await store.append(pupil, [new_event(concern())], 1)
    assert store.paths["moved"] == 1
    assert len(await _rows(pool, pupil)) == 1


async def test_a_kept_key_that_is_not_the_pupils_is_never_used(store, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    kept = store.heads.get(pupil)
    assert kept is not None
    store.heads.keep({pupil: dataclasses.replace(kept, key=vault.new_key())})

    await store.append(pupil, [new_event(concern("opens with the real key"))], 1)
    assert store.paths["moved"] == 1
    events = await EventStore(pool).read_stream(pupil)
    assert events[1].data.description == "opens with the real key"


async def test_a_retry_through_a_kept_head_is_answered_as_the_original(store, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    event = new_event(concern())
    original = await store.append(pupil, [event])
    assert store.paths["known"] == 1
    # No expected version: the kept head (now 2) is used, and the insert meets the id.
    retry = await store.append(pupil, [event])
    assert retry.duplicate and store.paths["moved"] == 1
    assert (retry.first_version, retry.positions) == (2, original.positions)
    assert len(await _rows(pool, pupil)) == 2


async def test_a_request_that_expects_another_version_takes_the_locked_path(store, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    with pytest.raises(ConcurrencyConflict):
        await store.append(pupil, [new_event(concern())], 5)
    assert store.paths == {"locked": 2}  # the kept head disagreed: no call was spent on it


async def test_a_batch_from_kept_heads_moves_each_stream_in_order(store, pool):
    a, b = uuid.uuid4(), uuid.uuid4()
    await store.append_many(
        [
            AppendRequest(a, [new_event(registered(1))], 0),
            AppendRequest(b, [new_event(registered(2))], 0),
        ]
    )
    outcomes = await store.append_many(
        [
            AppendRequest(b, [new_event(concern("b2"))], 1),
            AppendRequest(a, [new_event(concern("a2"))], 1),
            AppendRequest(b, [new_event(concern("b3"))], 2),
        ]
    )
    assert store.paths["known"] == 1
    assert [(o.stream_id, o.first_version) for o in outcomes] == [(b, 2), (a, 2), (b, 3)]
    assert [d.data.description for d in (await store.read_stream(b))[1:]] == ["b2", "b3"]
    assert (await verify(pool)).ok


async def test_two_processes_appending_to_the_same_pupils_lose_nothing(pool):
    """Two stores (two processes' worth of kept heads) through coalescers, on the same
    pupils at once: every append lands once, in order, and every chain holds."""
    pupils = [uuid.uuid4() for _ in range(6)]
    setup = EventStore(pool)
    for i, p in enumerate(pupils):
        await setup.append(p, [new_event(registered(i + 1))], 0)
    stores = [EventStore(pool), EventStore(pool)]
    appenders = [CoalescingAppender(s) for s in stores]
    per_writer = 15

    async def writer(appender: CoalescingAppender, pupil: uuid.UUID, tag: str) -> None:
        for n in range(per_writer):
            await appender.append(pupil, [new_event(concern(f"{tag}{n}"))])

    try:
        await asyncio.gather(
            *(writer(ap, p, f"{k}-") for p in pupils for k, ap in enumerate(appenders))
        )
    finally:
        for ap in appenders:
            await ap.close()
    for p in pupils:
        events = await setup.read_stream(p)
        assert [e.version for e in events] == list(range(1, 2 + 2 * per_writer))
        positions = [e.position for e in events]
        assert positions == sorted(positions)  # versions committed in position order
        for k in range(2):
            mine = [e.data.description for e in events[1:] if e.data.description[0] == str(k)]
            assert mine == [f"{k}-{n}" for n in range(per_writer)]  # each writer's in order
    assert (await verify(pool)).ok


async def test_concurrent_appends_to_one_pupil_from_one_store_chain_in_order(store, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    results = await asyncio.gather(
        *(store.append(pupil, [new_event(concern(f"n{n}"))]) for n in range(12))
    )
    assert sorted(r.first_version for r in results) == list(range(2, 14))
    events = await store.read_stream(pupil)
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert (await verify(pool, stream_id=pupil)).ok
    assert store.paths["known"] >= 1  # the first of them at least found its head kept


async def test_an_append_from_a_kept_head_wakes_tailing_readers(store, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(*args: object) -> None:
        heard.put_nowait(str(args[3]))

    async with pool.acquire() as listener:
        await listener.add_listener(NOTIFY_CHANNEL, hear)
        try:
            result = await store.append(pupil, [new_event(concern()), new_event(concern())], 1)
            assert store.paths["known"] == 1
            assert await asyncio.wait_for(heard.get(), 5) == str(result.last_position)
        finally:
            await listener.remove_listener(NOTIFY_CHANNEL, hear)


async def test_an_erasure_in_this_process_leaves_no_store_holding_the_key(store, pool):
    pupil = uuid.uuid4()
    other = EventStore(pool)
    await store.append(pupil, [new_event(registered())], 0)
    before = store.heads.get(pupil)
    assert before is not None and before.key is not None
    erased = ev.PersonalDataErased(reason_code="erasure_request", reason="SAR-2")
    await other.erase(pupil, new_event(erased))
    kept = store.heads.get(pupil)
    assert kept is not None and kept.key is None and kept.version == 2
    # An append that committed before the erasure and keeps its head late cannot put
    # the key back.
    store.heads.keep({pupil: before})
    assert store.heads.get(pupil).key is None
    with pytest.raises(StreamErased):
        await store.append(pupil, [new_event(concern())])
    assert store.paths["moved"] == 0  # refused without spending a call on the kept head


async def test_an_empty_batch_appends_nothing(store):
    assert await store.append_many([]) == []


async def test_kept_heads_under_row_level_security(pool):
    """The API's stores write through a connection that sees one trust only."""
    store = EventStore(TrustPool(pool, TENANT.trust_id))  # type: ignore[arg-type]
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    await store.append(pupil, [new_event(concern())], 1)
    assert store.paths == {"locked": 1, "known": 1}
    assert [v for v, _ in await _rows(pool, pupil)] == [1, 2]
    assert (await verify(pool, stream_id=pupil)).ok


def test_kept_heads_are_bounded_and_copied():
    from senflow.services.store.eventstore import _Head, _KeptHeads

    kept = _KeptHeads(capacity=2)
    heads = {uuid.uuid4(): _Head(1, b"h", b"k", ("t", "s")) for _ in range(3)}
    kept.keep(heads)
    first, second, third = heads
    assert len(kept) == 2 and kept.get(first) is None
    heads[third].version = 9  # a batch moving its own copy on
    assert kept.get(third).version == 1
    kept.forget([second])
    assert kept.get(second) is None and len(kept) == 1
    kept.keep({third: _Head(0, None, b"old", ("t", "s"))})  # a slower task's older head
    assert kept.get(third).version == 1 and kept.get(third).key == b"k"
