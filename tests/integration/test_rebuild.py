"""A rebuild (whole log folded in memory, one COPY; in one process or split by pupil across
worker processes) writes what applying the log batch by batch writes, as the live consumers
do; and the whole-log reader decodes what read_all does."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from senflow.events import catalogue as ev
from senflow.projections.catalogue import PROJECTIONS
from senflow.projections.rebuild import _shares, rebuild
from senflow.projections.tables import apply_events, ensure_tables
from senflow.services.application import SenflowService
from senflow.services.store.db import create_pool, database_name, with_database
from senflow.services.store.eventstore import EventStore
from senflow.services.store.migrate import migrate
from senflow.services.workflow.commands import parse_command
from tests.conftest import BASE_URL
from tests.integration.helpers import new_event, upn
from tests.integration.story import secondary_need_correction, story

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of this module's own: these tests fold the whole log and compare, so
    they must not see what other tests leave (some tamper with rows on purpose)."""
    url = f"{database_url}_rebuild"
    await migrate(url)
    p = await create_pool(url, min_size=2, max_size=10)
    yield p
    await p.close()
    admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    finally:
        await admin.close()


async def _record_stories(store: EventStore) -> None:
    """Whole histories, one corrected, one transferred, one erased: every path of evolve."""
    svc = SenflowService(store)
    pupils = [uuid.uuid4() for _ in range(3)]
    for n, pupil in enumerate(pupils):
        for raw in story(pupil, upn(300 + n)):
            assert (await svc.handle(parse_command(raw))).accepted
    timeline = (await svc.history(pupils[0])).timeline
    started = next(e for e in timeline if e.event_type == "sen_support_started")
    corrected = secondary_need_correction(pupils[0], started)
    moved = {
        "command": "transfer_pupil",
        "pupil_id": str(pupils[1]),
        "occurred_at": "2026-10-06",
        "actor": {"user_id": "senco.1", "role": "senco"},
        "payload": {"from_urn": "123456", "to_urn": "654321"},
    }
    for raw in (corrected, moved):
        assert (await svc.handle(parse_command(raw))).accepted, raw["command"]
    erased = ev.PersonalDataErased(reason_code="erasure_request", reason="SAR-9")
    await store.erase(pupils[2], new_event(erased))


async def test_the_whole_log_reader_decodes_what_read_all_does(store: EventStore):
    await _record_stories(store)
    position = 0
    while expected := await store.read_all(position, 97):
        assert await store.scan_withheld(position, 97) == expected
        position = expected[-1].position
    assert await store.scan_withheld(position, 97) == []


async def _batch_by_batch(pool, store: EventStore, projection, schema: str) -> None:
    """What a rebuild wrote before it folded in memory: apply_events on each page of the log."""

    async def no_gaps(stream_id, first, last):  # type: ignore[no-untyped-def]
        return await store.read_stream(stream_id, first, last, personal=False)

    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await ensure_tables(conn, projection, schema)
        position = 0
        while events := await store.read_all(position, 50):
            async with conn.transaction():
                await apply_events(conn, projection, events, no_gaps, schema)
            position = events[-1].position


COLUMNS = "stream_id, trust_id, school_urn, version, position, doc"


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(PROJECTIONS))
async def test_a_rebuild_writes_what_applying_the_log_writes(
    store: EventStore, pool, name, workers
):
    await _record_stories(store)
    await _record_stories(store)  # more pupils, so each worker's share likely holds some
    projection = PROJECTIONS[name]
    await _batch_by_batch(pool, store, projection, "check_applied")
    # Small pages: a worker's page ends inside a pupil's events as well as between pupils.
    result = await rebuild(
        pool, store, projection, swap=False, target="check_rebuilt", batch=7, workers=workers
    )
    async with pool.acquire() as conn:
        applied = await conn.fetch(f"SELECT {COLUMNS} FROM check_applied.docs ORDER BY 1")
        rebuilt = await conn.fetch(f"SELECT {COLUMNS} FROM check_rebuilt.docs ORDER BY 1")
        events = await conn.fetchval("SELECT count(*) FROM events")
        await conn.execute("DROP SCHEMA check_applied CASCADE")
        await conn.execute("DROP SCHEMA check_rebuilt CASCADE")
    assert result.events == events and result.pupils == len(applied) > 0
    assert [tuple(r) for r in rebuilt] == [tuple(r) for r in applied]


async def test_a_rebuild_in_workers_swaps_in_what_one_process_writes(store: EventStore, pool):
    await _record_stories(store)
    projection = PROJECTIONS["register"]
    tables = []
    for workers in (1, 2):
        result = await rebuild(pool, store, projection, workers=workers)
        assert result.swapped
        async with pool.acquire() as conn:
            tables.append(await conn.fetch(f"SELECT {COLUMNS} FROM {projection.schema}.docs"))
    one, two = ({tuple(r) for r in rows} for rows in tables)
    assert one == two and len(one) == result.pupils > 0


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_the_shares_cover_every_stream_id_once(workers):
    shares = _shares(workers)
    assert shares[0][0] == uuid.UUID(int=0)
    assert shares[-1][1] == uuid.UUID(int=(1 << 128) - 1)
    for (_, last), (first, _) in itertools.pairwise(shares):
        assert first.int == last.int + 1
