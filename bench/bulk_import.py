"""Bulk import: events/s through the import path, against a bare COPY of the same rows.

- import (commands): ``services.importer.bulk_import`` from parsed commands: each
  new pupil's history decided by the workflow, sealed, hash-chained and
  written with COPY, 500 pupils per transaction;
- import (store): the store's part alone, from decided events, run as ``bulk_import``
  runs it: each chunk sealed, hashed and encoded (``bulk.Chunk``) in forked worker
  processes, written with ``EventStore.import_prepared`` (stream heads, vault keys,
  COPY), two chunks in flight;
- ceiling: the same rows, sealed and hashed beforehand (outside the timing),
  written by a bare asyncpg COPY into a table like ``events`` (no trigger, no
  foreign key, no lock, no stream heads), in the same transactions.

Each case writes into a fresh database after a checkpoint, so each starts from the
same empty table; the cases' order turns from round to round.

Pupils are the demo trust's natural mix (most pupils have only their
registration; those on SEN support have dozens of events).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from bench import data
from bench.common import Config, Row, Timer, bench_database, median, pool_for
from senflow.services import forked
from senflow.services.application import SenflowService
from senflow.services.importer import bulk_import
from senflow.services.store import bulk, vault
from senflow.services.store.eventstore import _COLUMNS, EventStore, _row
from senflow.services.workflow.commands import parse_command

COLUMNS = [c.strip() for c in _COLUMNS.split(",")]
BATCH = 500


async def run(config: Config) -> list[Row]:
    count = 1500 if config.quick else 10000
    rounds = 1 if config.quick else 3  # each case first once
    results: dict[str, list[float]] = {}
    with Timer() as prep:
        templates = data.pupils(count, seed=4)
    events_total = sum(len(p.events) for p in templates)

    async def from_commands(pool: Any, r: int) -> float:
        # fresh pupils each round: the ids come from the seed
        raw = [c for p in data.raw_pupils(count, seed=100 + r) for c in p]
        commands = [parse_command(c) for c in raw]
        await _checkpoint(pool)
        with Timer() as t:
            report = await bulk_import(
                SenflowService(EventStore(pool)), commands, batch_pupils=BATCH
            )
        return report.events / t.seconds

    async def store_path(pool: Any, r: int) -> float:
        streams = [data.clone(p.events) for p in templates]
        chunks = [streams[i : i + BATCH] for i in range(0, len(streams), BATCH)]
        await _checkpoint(pool)
        with Timer() as t:
            n = await _import_two_in_flight(EventStore(pool), chunks)
        return n / t.seconds

    async def ceiling(pool: Any, r: int) -> float:
        # the same rows, bare COPY, same transactions
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE ceiling_events (LIKE events INCLUDING ALL)")
        batches = _rows([data.clone(p.events) for p in templates])
        await _checkpoint(pool)
        with Timer() as t:
            n = 0
            for rows in batches:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.copy_records_to_table(
                        "ceiling_events", records=rows, columns=COLUMNS
                    )
                n += len(rows)
        return n / t.seconds

    cases = [
        ("import (commands)", from_commands),
        ("import (store)", store_path),
        ("ceiling (COPY)", ceiling),
    ]
    for r in range(rounds):
        # Each case writes into a database of its own, empty as the others' are: a
        # table that already holds a case's rows makes the next case's inserts dearer
        # (~10% here). The order turns each round, so no case always goes first.
        for name, case in cases[r % len(cases) :] + cases[: r % len(cases)]:
            async with bench_database() as url, pool_for(url, size=4) as pool:
                results.setdefault(name, []).append(await case(pool, r))
    rate = {k: median(v) for k, v in results.items()}
    out = [
        Row(
            "import",
            k,
            v,
            "events/s",
            extra={"rounds": [round(x, 1) for x in results[k]]},
        )
        for k, v in rate.items()
    ]
    for case in ("import (commands)", "import (store)"):
        ratio = rate[case] / rate["ceiling (COPY)"]
        out.append(
            Row(
                "import",
                f"ratio {case} / ceiling",
                ratio,
                "x",
                target=">= 0.7x",
                met=ratio >= 0.7,
            )
        )
    out[0].extra.update(pupils=count, events=events_total, data_prep_s=round(prep.seconds, 1))
    return out


async def _checkpoint(pool: Any) -> None:
    """Flush what earlier cases wrote, so no case pays for another's checkpoint."""
    async with pool.acquire() as conn:
        await conn.execute("CHECKPOINT")


def _rows(streams: list[tuple[Any, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    now = datetime.now(UTC)
    batches = []
    for i in range(0, len(streams), BATCH):
        rows = []
        for sid, events in streams[i : i + BATCH]:
            key, last = vault.new_key(), None
            for version, e in enumerate(events, start=1):
                row = _row(sid, version, e, now, key, last)
                last = row[-1]
                rows.append(row)
        batches.append(rows)
    return batches


async def _import_two_in_flight(store: EventStore, chunks: list[Any]) -> int:
    """As ``bulk_import`` does: chunks built in worker processes (in this one where
    processes cannot fork), two written at once."""

    def build(index: int) -> bulk.Prepared:
        chunk = bulk.Chunk()
        for stream_id, events in chunks[index]:
            chunk.add(stream_id, events)
        return chunk.finish()

    gate = asyncio.Semaphore(2)

    async def write(prepared: bulk.Prepared) -> int:
        try:
            return await store.import_prepared(prepared)
        finally:
            gate.release()

    async def in_process() -> AsyncIterator[bulk.Prepared]:
        for i in range(len(chunks)):
            yield build(i)

    built = (
        forked.built_in_workers(build, len(chunks), os.cpu_count() or 1)
        if forked.can_fork()
        else in_process()
    )
    writing: list[asyncio.Task[int]] = []
    try:
        async with contextlib.aclosing(built):
            async for prepared in built:
                await gate.acquire()
                writing.append(asyncio.create_task(write(prepared)))
            return sum(await asyncio.gather(*writing))
    finally:
        for task in writing:
            task.cancel()  # after a failure: the other writes stop too (no-op when done)
