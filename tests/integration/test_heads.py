"""Every event has its stream's head row: checked per statement, kept by the heads' triggers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pytest

from senflow.services.store import migrate as migrations
from senflow.services.store import vault
from senflow.services.store.db import create_pool, with_database
from senflow.services.store.eventstore import _COLUMN_NAMES, EventStore, _row
from senflow.services.store.migrate import migrate
from senflow.services.store.verify import verify
from tests.conftest import BASE_URL
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration


def _headless_rows(count: int) -> tuple[uuid.UUID, list[tuple]]:
    """Rows of a pupil whose head row was never made."""
    pupil, key, now, rows, last = uuid.uuid4(), vault.new_key(), datetime.now(UTC), [], None
    events = [new_event(registered())] + [new_event(concern()) for _ in range(count - 1)]
    for version, e in enumerate(events, start=1):
        rows.append(_row(pupil, version, e, now, key, last))
        last = rows[-1][-1]
    return pupil, rows


async def test_an_event_without_a_head_row_is_refused_by_insert_and_by_copy(pool):
    pupil, rows = _headless_rows(3)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=str(pupil)):
            await conn.copy_records_to_table("events", records=rows, columns=_COLUMN_NAMES)
        placeholders = ", ".join(f"${i}" for i in range(1, 17))
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=str(pupil)):
            await conn.execute(
                f"INSERT INTO events ({', '.join(_COLUMN_NAMES)}) VALUES ({placeholders})",
                *rows[0],
            )
        assert await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", pupil) == 0


async def test_a_head_with_events_cannot_be_deleted_renamed_or_truncated(store: EventStore, pool):
    pupil, empty = uuid.uuid4(), uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    async with pool.acquire() as conn:
        for sql in (
            "DELETE FROM streams WHERE stream_id = $1",
            "UPDATE streams SET stream_id = gen_random_uuid() WHERE stream_id = $1",
        ):
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="has events"):
                await conn.execute(sql, pupil)
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="TRUNCATE"):
            await conn.execute("TRUNCATE streams")
        # A head nothing was appended to holds nothing: it may go, as with the foreign key.
        await conn.execute("INSERT INTO streams (stream_id) VALUES ($1)", empty)
        assert await conn.execute("DELETE FROM streams WHERE stream_id = $1", empty) == "DELETE 1"
    assert len(await store.read_stream(pupil)) == 1


@asynccontextmanager
async def _database_before(version: int, monkeypatch) -> AsyncIterator[str]:
    """A database of its own, migrated up to (not including) ``version``; later
    ``migrate`` calls see every migration. Dropped afterwards."""
    url = with_database(BASE_URL, f"senflow_test_heads_{uuid.uuid4().hex[:10]}")
    everything = migrations.available()
    monkeypatch.setattr(
        migrations, "available", lambda: [m for m in everything if m.version < version]
    )
    try:
        await migrate(url)
        monkeypatch.setattr(migrations, "available", lambda: everything)
        yield url
    finally:
        admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()


async def _appended_by_an_old_release(conn: asyncpg.Connection, events: list) -> uuid.UUID:
    """A pupil's events as a release without the later migrations wrote them: the head,
    the key and the rows, by plain SQL (this release's store needs its own migrations)."""
    pupil, key, now, last = uuid.uuid4(), vault.new_key(), datetime.now(UTC), None
    rows = []
    for version, e in enumerate(events, start=1):
        rows.append(_row(pupil, version, e, now, key, last))
        last = rows[-1][-1]
    tenant = events[-1].tenant
    await conn.execute(
        "INSERT INTO streams (stream_id, version, last_hash, trust_id, school_urn) "
        "VALUES ($1, $2, $3, $4, $5)",
        pupil,
        len(rows),
        last,
        tenant.trust_id,
        tenant.school_urn,
    )
    await conn.execute("INSERT INTO vault_keys (stream_id, key) VALUES ($1, $2)", pupil, key)
    await conn.copy_records_to_table("events", records=rows, columns=_COLUMN_NAMES)
    return pupil


async def test_a_database_from_before_the_change_migrates_with_its_events(monkeypatch):
    async with _database_before(5, monkeypatch) as url:
        pool = await create_pool(url)
        try:
            store = EventStore(pool)
            async with pool.acquire() as conn:
                before = await _appended_by_an_old_release(
                    conn, [new_event(registered()), new_event(concern())]
                )
            assert [m.version for m in await migrate(url)] == [5, 6, 7, 8]
            after = uuid.uuid4()
            await store.append(after, [new_event(registered())], 0)
            await store.append(before, [new_event(concern("later"))], 2)
            assert (await verify(pool)).ok
            async with pool.acquire() as conn:
                assert not await conn.fetchval(
                    "SELECT count(*) FROM pg_constraint WHERE conname = 'events_stream_id_fkey'"
                )
                with pytest.raises(asyncpg.ForeignKeyViolationError):
                    await conn.execute("DELETE FROM streams WHERE stream_id = $1", before)
        finally:
            await pool.close()


async def test_the_public_feed_starts_where_the_relay_had_published_to(monkeypatch):
    """Upgrading from a release whose one relay published both feeds: the public feed's
    checkpoint is seeded from it by the migration, before any new relay moves "main"."""
    async with _database_before(6, monkeypatch) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO relay_checkpoint (name, position) VALUES ('main', 42)")
            await migrate(url)
            rows = dict(await conn.fetch("SELECT name, position FROM relay_checkpoint"))
            assert rows == {"main": 42, "public": 42}
        finally:
            await conn.close()


async def test_a_head_may_be_updated_to_its_own_id(store, pool, migrated):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    async with pool.acquire() as conn:
        assert (
            await conn.execute(
                "UPDATE streams SET stream_id = stream_id WHERE stream_id = $1", pupil
            )
            == "UPDATE 1"
        )
