"""Rebuild a projection from the store into fresh tables, then swap them in atomically.

The live consumer keeps serving from the old tables while the rebuild reads
the whole log into ``<schema>_rebuild``. The swap takes an exclusive lock on
the live table (the consumer's next write waits), applies whatever was
appended since, renames the schemas and drops the old one, all in one
transaction. The live consumer then carries on against the new tables, whose
per-pupil versions tell it what is already applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from senflow.projections.base import Projection
from senflow.projections.tables import apply_events, ensure_tables
from senflow.services.store.eventstore import EventStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RebuildResult:
    events: int
    pupils: int
    position: int
    swapped: bool


async def _fill(
    conn: asyncpg.Connection,
    store: EventStore,
    projection: Projection,
    schema: str,
    after: int,
    batch: int,
) -> tuple[int, int]:
    async def no_gaps(stream_id, first, last):  # type: ignore[no-untyped-def]
        # Reading the log in position order never skips a version of a pupil.
        return await store.read_stream(stream_id, first, last, personal=False)

    count, position = 0, after
    while True:
        events = await store.read_all(position, batch)
        if not events:
            return count, position
        await apply_events(conn, projection, events, no_gaps, schema)
        count += len(events)
        position = events[-1].position


async def rebuild(
    pool: asyncpg.Pool,
    store: EventStore,
    projection: Projection,
    swap: bool = True,
    target: str | None = None,
    batch: int = 5000,
) -> RebuildResult:
    """Rebuild into ``target`` (default ``<schema>_rebuild``); swap it in unless told not to."""
    target = target or f"{projection.schema}_rebuild"
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {target} CASCADE")
        await ensure_tables(conn, projection, target)
        await ensure_tables(conn, projection)
        async with conn.transaction():
            count, position = await _fill(conn, store, projection, target, 0, batch)
        if not swap:
            pupils = await conn.fetchval(f"SELECT count(*) FROM {target}.docs")
            return RebuildResult(count, pupils, position, False)
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {projection.schema}.docs IN EXCLUSIVE MODE")
            more, position = await _fill(conn, store, projection, target, position, batch)
            old = f"{projection.schema}_old"
            await conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE")
            await conn.execute(f"ALTER SCHEMA {projection.schema} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {target} RENAME TO {projection.schema}")
            await conn.execute(f"DROP SCHEMA {old} CASCADE")
            pupils = await conn.fetchval(f"SELECT count(*) FROM {projection.schema}.docs")
        log.info("projection_rebuilt", projection=projection.name, events=count + more)
        return RebuildResult(count + more, pupils, position, True)
