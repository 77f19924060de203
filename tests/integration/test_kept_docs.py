"""Kept documents (``projections.kept_docs``) against a real table: a consumer that no
longer reads back what it wrote still leaves every row the fold of its pupil's events."""

from __future__ import annotations

import json
import uuid

import pytest

from senflow.projections.audit import PROJECTION as AUDIT
from senflow.projections.base import fold
from senflow.projections.kept_docs import KeptDocs
from senflow.projections.tables import _json, apply_events, ensure_tables, snapshot
from senflow.services.store.eventstore import EventStore
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(pool):
    name = f"kept_{uuid.uuid4().hex[:10]}"
    async with pool.acquire() as conn:
        await ensure_tables(conn, AUDIT, name)
    yield name
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")


async def _pupil(store: EventStore, events: int):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    for version in range(1, events):
        await store.append(pupil, [new_event(concern(f"concern {version}"))], version)
    return pupil, await store.read_stream(pupil, personal=False)


async def _apply(pool, store, schema, events, kept):
    async def fetch_missing(stream_id, first, last):  # type: ignore[no-untyped-def]
        return await store.read_stream(stream_id, first, last, personal=False)

    async with pool.acquire() as conn:
        return await apply_events(
            conn, AUDIT, events, fetch_missing, schema=schema, lock=False, kept=kept
        )


async def _row(pool, schema, pupil):
    async with pool.acquire() as conn:
        return (await snapshot(conn, AUDIT, schema))[pupil]


async def test_a_row_another_writer_moved_on_stays_the_fold_of_its_events(pool, store, schema):
    pupil, events = await _pupil(store, 6)
    kept = KeptDocs()
    await _apply(pool, store, schema, events[:3], kept)  # this consumer: versions 1-3, kept
    await _apply(pool, store, schema, events[:5], None)  # another writer: on to 5
    stats = await _apply(pool, store, schema, [events[3]], kept)  # version 4, news to us
    assert stats.applied == 1
    version, _, doc = await _row(pool, schema, pupil)
    assert version == 5 and doc == fold(AUDIT, events[:5])  # the older write changed nothing

    await _apply(pool, store, schema, [events[5]], kept)
    version, _, doc = await _row(pool, schema, pupil)
    assert version == 6 and doc == fold(AUDIT, events)
    # the bound counts the kept document's JSON
    assert kept.bytes == len(_json(kept.take([pupil])[pupil].doc))


async def test_a_failed_write_keeps_nothing_ahead_of_the_table(pool, store, schema):
    """Else the redelivered batch would look like a duplicate and never be written."""
    pupil, events = await _pupil(store, 3)
    kept = KeptDocs()
    await _apply(pool, store, schema, events[:2], kept)
    async with pool.acquire() as conn:
        await conn.execute(
            f"ALTER TABLE {schema}.docs ADD CONSTRAINT refuse CHECK (version < 3) NOT VALID"
        )
    with pytest.raises(Exception, match="refuse"):
        await _apply(pool, store, schema, [events[2]], kept)
    async with pool.acquire() as conn:
        await conn.execute(f"ALTER TABLE {schema}.docs DROP CONSTRAINT refuse")
    stats = await _apply(pool, store, schema, [events[2]], kept)  # the redelivery
    assert stats.applied == 1 and stats.duplicates == 0
    version, _, doc = await _row(pool, schema, pupil)
    assert version == 3 and doc == fold(AUDIT, events)


async def test_kept_documents_are_not_read_again(pool, store, schema):
    """The point of keeping them: a later batch of the same pupils writes without reading.
    (Seen by changing the row behind the consumer's back: the next write replaces it
    with the fold, which only the kept document can have given.)"""
    pupil, events = await _pupil(store, 3)
    kept = KeptDocs()
    await _apply(pool, store, schema, events[:2], kept)
    async with pool.acquire() as conn:
        await conn.execute(f"UPDATE {schema}.docs SET doc = '{{\"stale\": true}}'::jsonb")
    await _apply(pool, store, schema, [events[2]], kept)
    version, _, doc = await _row(pool, schema, pupil)
    assert version == 3 and doc == fold(AUDIT, events)
    await _apply(pool, store, schema, [events[2]], None)  # without: read, a duplicate
    assert (await _row(pool, schema, pupil))[2] == fold(AUDIT, events)


async def test_a_rebuilt_table_is_not_overwritten_from_kept_documents(pool, store, schema):
    """A rebuild swaps in another table, perhaps folded by newer code: what the consumer
    kept from the old one must not be folded on and written over it."""
    pupil, events = await _pupil(store, 4)
    kept = KeptDocs()
    await _apply(pool, store, schema, events[:3], kept)
    before = kept.table
    rebuilt = fold(AUDIT, events[:3])
    assert rebuilt is not None
    rebuilt = {k: v for k, v in rebuilt.items() if k != "entries"}
    rebuilt["counts"] = {"pupil_registered": 100, "concern_raised": 2}  # "newer code"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"ALTER TABLE {schema}.docs RENAME TO docs_before")
        await conn.execute(f"CREATE TABLE {schema}.docs (LIKE {schema}.docs_before INCLUDING ALL)")
        await conn.execute(
            f"""INSERT INTO {schema}.docs (stream_id, trust_id, school_urn, version, position, doc)
                VALUES ($1, 'trust-7', '123456', 3, $2, $3::jsonb)""",
            pupil,
            events[2].position,
            json.dumps(rebuilt),
        )
    await _apply(pool, store, schema, [events[3]], kept)
    version, _, doc = await _row(pool, schema, pupil)
    assert version == 4 and doc["counts"] == {"pupil_registered": 100, "concern_raised": 3}
    assert kept.table != before
