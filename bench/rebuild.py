"""Rebuild: events/s for each projection rebuilt from a store of a million events.

The store is filled through the import path (``EventStore.import_new_streams``:
sealed, hash-chained, COPY) with the demo trust's natural mix of pupils, then
each projection is rebuilt with ``projections.rebuild.rebuild`` (read the
whole log in position order, fold each pupil's document, write it, swap the
schema in) and timed on its own, with the default number of worker processes
(one per CPU, each folding its share of the pupils).
"""

from __future__ import annotations

import asyncio
import os

from bench import data
from bench.common import Config, Row, Timer, bench_database, pool_for
from senflow.projections.catalogue import PROJECTIONS
from senflow.projections.rebuild import rebuild
from senflow.services.store.eventstore import EventStore

TARGET = 30_000.0
BATCH = 500


async def fill(store: EventStore, templates: list[data.Pupil], events_wanted: int) -> int:
    """Import clones of the templates until the store holds ``events_wanted`` events.

    Two imports run at once, so one seals and hashes while the other's COPY runs.
    """
    queue: asyncio.Queue[list | None] = asyncio.Queue(maxsize=2)
    total = 0

    async def produce() -> None:
        nonlocal total
        i = 0
        while total < events_wanted:
            chunk = []
            for _ in range(BATCH):
                p = templates[i % len(templates)]
                i += 1
                chunk.append(data.clone(p.events))
                total += len(p.events)
            await queue.put(chunk)
            await asyncio.sleep(0)
        for _ in range(2):
            await queue.put(None)

    async def consume() -> None:
        while (chunk := await queue.get()) is not None:
            await store.import_new_streams(chunk)

    await asyncio.gather(produce(), consume(), consume())
    return total


async def run(config: Config) -> list[Row]:
    wanted = 50_000 if config.quick else 1_000_000
    templates = data.pupils(400 if config.quick else 3000, seed=6)
    out: list[Row] = []
    async with bench_database() as url, pool_for(url, size=4) as pool:
        store = EventStore(pool)
        with Timer() as t:
            n = await fill(store, templates, wanted)
        async with pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE events")
            pupils = await conn.fetchval("SELECT count(*) FROM streams")
        out.append(
            Row(
                "rebuild",
                f"fill the store (import path, {n:,} events, {pupils:,} pupils)",
                n / t.seconds,
                "events/s",
                extra={"seconds": round(t.seconds, 1)},
            )
        )
        for name, projection in PROJECTIONS.items():
            with Timer() as t:
                result = await rebuild(pool, store, projection)
            rate = result.events / t.seconds
            out.append(
                Row(
                    "rebuild",
                    f"{name} ({result.events:,} events)",
                    rate,
                    "events/s",
                    target=f">= {TARGET:,.0f}",
                    met=rate >= TARGET,
                    extra={
                        "seconds": round(t.seconds, 1),
                        "pupils": result.pupils,
                        "workers": os.cpu_count() or 1,  # rebuild's default
                    },
                )
            )
    return out
