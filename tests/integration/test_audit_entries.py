"""The audit trail's entries as rows of their own: written once per event, read back as
the trail, and moved out of the documents of releases that kept them inside."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from senflow.projections.audit import PROJECTION as AUDIT
from senflow.projections.base import fold
from senflow.projections.tables import apply_events, ensure_tables, read_doc, snapshot
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(pool):
    name = f"audit_{uuid.uuid4().hex[:10]}"
    yield name
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


async def _pupil(store, events: int):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    for version in range(1, events):
        await store.append(pupil, [new_event(concern(f"concern {version}"))], version)
    return pupil, await store.read_stream(pupil, personal=False)


async def _apply(conn, store, schema, events):
    async def fetch_missing(stream_id, first, last):  # type: ignore[no-untyped-def]
        return await store.read_stream(stream_id, first, last, personal=False)

    return await apply_events(conn, AUDIT, events, fetch_missing, schema=schema, lock=False)


async def test_each_event_is_one_row_and_a_redelivery_adds_none(pool, store, schema):
    pupil, events = await _pupil(store, 4)
    async with pool.acquire() as conn:
        await ensure_tables(conn, AUDIT, schema)
        await _apply(conn, store, schema, events[:1])
        await _apply(conn, store, schema, events[3:])  # a gap: 2 and 3 read from the store
        await _apply(conn, store, schema, events)  # all of them again
        rows = await conn.fetch(
            f"SELECT version, position, entry FROM {schema}.entries ORDER BY version"
        )
        trail = await read_doc(conn, AUDIT, pupil, schema)
    assert [(r["version"], r["position"]) for r in rows] == [
        (e.version, e.position) for e in events
    ]
    summary = json.loads(await _doc_text(pool, schema))
    assert "entries" not in summary and summary["counts"]["concern_raised"] == 3
    assert trail is not None and trail["version"] == 4
    assert trail["doc"] == fold(AUDIT, events)


async def test_trails_kept_inside_documents_are_moved_to_rows_once(pool, store, schema):
    """A release before entries were rows: its documents held the whole trail."""
    pupil, events = await _pupil(store, 3)
    earlier = dataclasses.replace(AUDIT, entry=None, assemble=None, upgrades=())
    old_doc = fold(AUDIT, events)  # what such a release wrote: the trail, corrected_by and all
    async with pool.acquire() as conn:
        await ensure_tables(conn, earlier, schema)
        await conn.execute(
            f"""INSERT INTO {schema}.docs (stream_id, trust_id, school_urn, version, position, doc)
                VALUES ($1, 'trust-7', '123456', 3, $2, $3::jsonb)""",
            pupil,
            events[-1].position,
            json.dumps(old_doc),
        )
        before = await read_doc(conn, AUDIT, pupil, schema)  # read by a newer release
        await ensure_tables(conn, AUDIT, schema)
        await ensure_tables(conn, AUDIT, schema)  # a second start changes nothing
        stored = json.loads(await conn.fetchval(f"SELECT doc FROM {schema}.docs"))
        entries = await conn.fetchval(f"SELECT count(*) FROM {schema}.entries")
        read = await snapshot(conn, AUDIT, schema)
    assert before is not None and before["doc"] == old_doc
    assert "entries" not in stored and entries == 3
    assert read[pupil][2] == old_doc


async def _doc_text(pool, schema):
    async with pool.acquire() as conn:
        return await conn.fetchval(f"SELECT doc FROM {schema}.docs")
