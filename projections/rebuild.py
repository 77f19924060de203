"""Rebuild a projection from the store into fresh tables, then swap them in atomically.

The live consumer keeps serving from the old tables while the rebuild reads
the whole log into ``<schema>_rebuild``: it folds every pupil's document in
memory (the log in position order holds each pupil's events in version order,
so no row is read back) and writes them all with one COPY into the fresh
schema, which nothing else uses yet. With several workers, the log up to a
fixed position is split by pupil (ranges of stream ids): each worker process
reads its pupils' events in version order on its own connection, folds them
with the same code and COPYs its documents into the fresh schema; documents
are per pupil, so workers never share one. The swap takes an exclusive lock on
the live table (the consumer's next write waits), applies whatever was
appended since, renames the schemas and drops the old one, all in one
transaction. The live consumer then carries on against the new tables, whose
per-pupil versions tell it what is already applied.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Projection
from senflow.projections.tables import (
    ENTRY_COLUMNS,
    ROW_COLUMNS,
    Current,
    EntryRow,
    apply_events,
    ensure_tables,
    entry_row,
)
from senflow.services.store.eventstore import _SCAN, EventStore, _Decoder, no_cycle_collector

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RebuildResult:
    events: int
    pupils: int
    position: int
    swapped: bool


async def _pages(store: EventStore, batch: int) -> AsyncIterator[list[RecordedEvent]]:
    """The whole log, page by page, each next page asked for before this one is folded,
    so the database finds and sends it meanwhile (on another core)."""
    ahead = asyncio.create_task(store.scan_withheld(0, batch))
    try:
        while events := await ahead:
            ahead = asyncio.create_task(store.scan_withheld(events[-1].position, batch))
            await asyncio.sleep(0)  # the task sends its query before the fold holds the loop
            yield events
    finally:
        ahead.cancel()


@dataclass
class _Folded:
    docs: dict[UUID, Current]
    entries: list[EntryRow]  # of a projection with entries
    count: int = 0  # events
    position: int = 0  # the last event's

    async def copy_to(self, conn: asyncpg.Connection, schema: str) -> None:
        await conn.copy_records_to_table(
            "docs",
            schema_name=schema,
            columns=ROW_COLUMNS,
            records=[cur.row(sid) for sid, cur in self.docs.items()],
        )
        if self.entries:
            await conn.copy_records_to_table(
                "entries", schema_name=schema, columns=ENTRY_COLUMNS, records=self.entries
            )


async def _fold(pages: AsyncIterator[list[RecordedEvent]], projection: Projection) -> _Folded:
    """Every pupil's document and checkpoint (and entries) from pages holding each pupil's
    events in version order."""
    docs: dict[UUID, Current] = {}
    entries: list[EntryRow] = []
    with_entries = projection.entry is not None
    count = position = 0
    # The fold keeps millions of objects alive until the COPY, with no cycles among them:
    # the collector would scan them again and again (it was a third of a rebuild's time).
    with no_cycle_collector():
        async for events in pages:
            for e in events:
                cur = docs.get(e.stream_id)
                if cur is None:
                    cur = docs[e.stream_id] = Current(0, None)
                if e.version != cur.version + 1:
                    # Cannot happen in position or version order: never fold past a hole.
                    raise LookupError(
                        f"the log has version {e.version} of {e.stream_id} after {cur.version}"
                    )
                cur.advance(projection, e)
                if with_entries:
                    entries.append(entry_row(projection, e))
            count += len(events)
            position = events[-1].position
    return _Folded(docs, entries, count, position)


async def _fill_fresh(
    conn: asyncpg.Connection, store: EventStore, projection: Projection, schema: str, batch: int
) -> tuple[int, int]:
    """Fill the empty ``schema`` from the whole log; the count of events and the last position."""
    folded = await _fold(_pages(store, batch), projection)
    await folded.copy_to(conn, schema)
    return folded.count, folded.position


# --- several workers ----------------------------------------------------------------------------

# A share's events in (stream_id, version) order through the events' unique index on those
# columns: a worker reads only its pupils' rows, where filtering the log in position order
# would make every worker read every row. Positions grow with versions within a stream, so
# "position <= $4" keeps a prefix of each pupil's events.
_SHARE_PAGE = (
    f"{_SCAN} WHERE (stream_id, version) > ($1, $2) AND stream_id <= $3 AND position <= $4"
    " ORDER BY stream_id, version LIMIT $5"
)


def _shares(workers: int) -> list[tuple[UUID, UUID]]:
    """The stream ids split into ``workers`` inclusive ranges of equal width: random (v4)
    ids fall evenly into them, and PostgreSQL orders uuids as these integers."""
    span = 1 << 128
    return [
        (UUID(int=k * span // workers), UUID(int=(k + 1) * span // workers - 1))
        for k in range(workers)
    ]


async def _share_pages(
    conn: asyncpg.Connection, first: UUID, last: UUID, up_to: int, batch: int
) -> AsyncIterator[list[RecordedEvent]]:
    """A share's events up to position ``up_to``, personal data withheld, page by page, the
    next page asked for before this one is folded (one query in flight: one connection)."""

    async def page(after: tuple[UUID, int]) -> list[RecordedEvent]:
        rows = await conn.fetch(_SHARE_PAGE, *after, last, up_to, batch)
        return _Decoder(withhold=True).decode(rows)

    ahead = asyncio.create_task(page((first, 0)))  # versions start at 1
    try:
        while events := await ahead:
            ahead = asyncio.create_task(page((events[-1].stream_id, events[-1].version)))
            await asyncio.sleep(0)  # the task sends its query before the fold holds the loop
            yield events
    finally:
        ahead.cancel()


async def _fill_share(
    connect: tuple[tuple[Any, ...], dict[str, Any]],
    projection: Projection,
    schema: str,
    share: tuple[UUID, UUID],
    up_to: int,
    batch: int,
) -> int:
    conn = await asyncpg.connect(*connect[0], **connect[1])
    try:
        folded = await _fold(_share_pages(conn, *share, up_to, batch), projection)
        await folded.copy_to(conn, schema)
    finally:
        await conn.close()
    return folded.count


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported this module (and the main one,
    which each worker would import otherwise): they start clean (a child forked from this
    process would inherit its running event loop and open sockets) and at once (a spawned
    one imports senflow first, longer than folding a small log). The server starts with
    the first rebuild and serves every later one."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__, "senflow.projections.catalogue"])
    return context


def _fill_share_in_worker(*args: Any) -> int:
    """A worker process's whole job: its share folded and written; the count of events."""
    return asyncio.run(_fill_share(*args))


async def _fill_fresh_in_workers(
    pool: asyncpg.Pool,
    store: EventStore,
    projection: Projection,
    schema: str,
    batch: int,
    workers: int,
) -> tuple[int, int]:
    """``_fill_fresh`` across ``workers`` processes, up to the log's head when it starts."""
    up_to = await store.head_position()
    # Each worker opens its own connection with the pool's arguments (connections cannot
    # cross processes; asyncpg keeps those arguments only on the pool).
    connect = (tuple(pool._connect_args), dict(pool._connect_kwargs))
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers, mp_context=_worker_context()) as ex:
        counts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    ex, _fill_share_in_worker, connect, projection, schema, share, up_to, batch
                )
                for share in _shares(workers)
            )
        )
    return sum(counts), up_to


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
    batch: int = 10_000,
    workers: int | None = None,
) -> RebuildResult:
    """Rebuild into ``target`` (default ``<schema>_rebuild``); swap it in unless told not to.

    ``workers`` processes fold the log (default: one per CPU); 1 folds it in this process.
    """
    target = target or f"{projection.schema}_rebuild"
    workers = workers or os.cpu_count() or 1
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {target} CASCADE")
        await ensure_tables(conn, projection, target)
        await ensure_tables(conn, projection)
        # No transaction is held open while folding (an idle one would be ended by
        # the server); the COPY is one statement into a schema nothing else uses.
        if workers > 1:
            count, position = await _fill_fresh_in_workers(
                pool, store, projection, target, batch, workers
            )
        else:
            count, position = await _fill_fresh(conn, store, projection, target, batch)
        if not swap:
            # Workers stop at the head they started from: what came since, as at the swap.
            async with conn.transaction():
                more, position = await _fill(conn, store, projection, target, position, batch)
            pupils = await conn.fetchval(f"SELECT count(*) FROM {target}.docs")
            return RebuildResult(count + more, pupils, position, False)
        async with conn.transaction():
            # In the order a consumer's write takes them (its entries, then its
            # documents), so the two cannot deadlock.
            tables = ("entries", "docs") if projection.entry is not None else ("docs",)
            await conn.execute(
                f"LOCK TABLE {', '.join(f'{projection.schema}.{t}' for t in tables)}"
                " IN EXCLUSIVE MODE"
            )
            more, position = await _fill(conn, store, projection, target, position, batch)
            old = f"{projection.schema}_old"
            await conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE")
            await conn.execute(f"ALTER SCHEMA {projection.schema} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {target} RENAME TO {projection.schema}")
            await conn.execute(f"DROP SCHEMA {old} CASCADE")
            pupils = await conn.fetchval(f"SELECT count(*) FROM {projection.schema}.docs")
        log.info("projection_rebuilt", projection=projection.name, events=count + more)
        return RebuildResult(count + more, pupils, position, True)
