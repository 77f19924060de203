"""Append: events/s into the store with everything on, against the peer and the bare-COPY ceiling.

Workload: 1 or 16 concurrent writers, each on its own pupils, appending real
pupils' histories (decided by the workflow) in consecutive commands of 1-3
events, each with its expected version. Every system gets the same events:

- ours, plain: ``EventStore.append`` per command (one transaction each), with
  the expected-version check, idempotency, sealing (vault) and the hash chain;
- ours, coalesced: the same appends through ``CoalescingAppender`` (concurrent
  commands share transactions; each keeps its own checks and outcome);
- peer: the ``eventsourcing`` library's PostgreSQL recorder (see bench/peer.py);
- ceiling: the same rows as ours (sealed and hashed beforehand, outside the
  timing) written with a bare asyncpg COPY, one transaction per command, into
  a table like ``events`` (same columns and indexes, no trigger, no foreign
  key, no lock, no check).

Each case runs for a fixed time; cases are interleaved in rounds and the
median round is reported, so background load hits every system alike.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from bench import data, peer
from bench.common import Config, Row, bench_database, median, pool_for
from senflow.events.envelope import NewEvent
from senflow.services.store import vault
from senflow.services.store.coalescing import CoalescingAppender
from senflow.services.store.eventstore import _COLUMNS, EventStore, _row

COLUMNS = [c.strip() for c in _COLUMNS.split(",")]
Plan = list[tuple[UUID, int, list[NewEvent]]]  # (pupil, expected version, events)


def make_plan(templates: list[data.Pupil], events_wanted: int, rng: random.Random) -> Plan:
    """One writer's appends: fresh pupils cloned from real histories, cut into 1-3 events."""
    plan: Plan = []
    total = 0
    while total < events_wanted:
        template = rng.choice(templates)
        pupil, events = data.clone(template.events)
        version = 0
        for command in data.commands_of_1_to_3(events, rng):
            plan.append((pupil, version, command))
            version += len(command)
            total += len(command)
    return plan


async def _run_tasks(plans: list[Any], seconds: float, one: Any) -> tuple[int, int, float]:
    counts = [[0, 0] for _ in plans]
    deadline = time.perf_counter() + seconds

    async def writer(i: int) -> None:
        for item in plans[i]:
            if time.perf_counter() >= deadline:
                return
            n = await one(item)
            counts[i][0] += n
            counts[i][1] += 1

    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(writer(i) for i in range(len(plans))))
    elapsed = time.perf_counter() - start
    return sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed


async def ours_plain(
    store: EventStore, plans: list[Plan], seconds: float
) -> tuple[int, int, float]:
    async def one(item: tuple[UUID, int, list[NewEvent]]) -> int:
        pupil, expected, events = item
        await store.append(pupil, events, expected)
        return len(events)

    return await _run_tasks(plans, seconds, one)


async def ours_coalesced(
    store: EventStore, plans: list[Plan], seconds: float
) -> tuple[int, int, float, float]:
    appender = CoalescingAppender(store)

    async def one(item: tuple[UUID, int, list[NewEvent]]) -> int:
        pupil, expected, events = item
        await appender.append(pupil, events, expected)
        return len(events)

    try:
        events, commands, elapsed = await _run_tasks(plans, seconds, one)
    finally:
        await appender.close()
    per_tx = appender.requests / max(1, appender.transactions)
    return events, commands, elapsed, per_tx


def ceiling_rows(plans: list[Plan]) -> list[list[list[tuple[Any, ...]]]]:
    """Our rows for the same appends, sealed and hash-chained here, outside any timing."""
    now = datetime.now(UTC)
    out = []
    for plan in plans:
        keys: dict[UUID, bytes] = {}
        last: dict[UUID, bytes | None] = {}
        rows_plan = []
        for pupil, expected, events in plan:
            key = keys.setdefault(pupil, vault.new_key())
            rows = []
            for i, e in enumerate(events):
                row = _row(pupil, expected + i + 1, e, now, key, last.get(pupil))
                last[pupil] = row[-1]
                rows.append(row)
            rows_plan.append(rows)
        out.append(rows_plan)
    return out


async def ceiling(
    pool: asyncpg.Pool, rows: list[list[list[tuple[Any, ...]]]], seconds: float
) -> tuple[int, int, float]:
    async def one(command_rows: list[tuple[Any, ...]]) -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "ceiling_events", records=command_rows, columns=COLUMNS
            )
        return len(command_rows)

    return await _run_tasks(rows, seconds, one)


def peer_plans(plans: list[Plan]) -> list[list[list[peer.PupilEvent]]]:
    now = datetime.now(UTC)
    return [
        [peer.domain_events(pupil, expected + 1, events, now) for pupil, expected, events in plan]
        for plan in plans
    ]


async def run(config: Config) -> list[Row]:
    seconds = 2.0 if config.quick else 8.0
    rounds = 1 if config.quick else 3
    rng = random.Random(8)
    templates = data.pupils(60, seed=8, min_events=10)
    # generous caps (events per writer) so no writer runs dry before its time is up
    caps = {1: int(4000 * seconds), 16: int(20000 * seconds / 16)}
    results: dict[str, list[tuple[int, int, float]]] = {}
    per_tx: list[float] = []

    async with bench_database() as url, pool_for(url, size=20) as pool:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE ceiling_events (LIKE events INCLUDING ALL)")
        store = EventStore(pool)
        the_peer = await asyncio.to_thread(peer.Peer, url, 16)
        try:
            for _ in range(rounds):
                for writers in (1, 16):
                    plans = [make_plan(templates, caps[writers], rng) for _ in range(writers)]
                    results.setdefault(f"ours plain/{writers}", []).append(
                        await ours_plain(store, plans, seconds)
                    )
                    if writers == 16:
                        plans = [make_plan(templates, caps[writers], rng) for _ in range(writers)]
                        e, c, t, k = await ours_coalesced(store, plans, seconds)
                        results.setdefault(f"ours coalesced/{writers}", []).append((e, c, t))
                        per_tx.append(k)
                    plans = [make_plan(templates, caps[writers], rng) for _ in range(writers)]
                    pp = peer_plans(plans)
                    results.setdefault(f"peer/{writers}", []).append(
                        await asyncio.to_thread(peer.run_writers, the_peer, pp, seconds)
                    )
                    rows = ceiling_rows(plans)
                    results.setdefault(f"ceiling/{writers}", []).append(
                        await ceiling(pool, rows, seconds)
                    )
        finally:
            await asyncio.to_thread(the_peer.close)

    def rate(case: str) -> float:
        return median([e / t for e, _, t in results[case]])

    def commits(case: str) -> float:
        return median([c / t for _, c, t in results[case]])

    out: list[Row] = []
    for case in results:
        system, writers = case.split("/")
        out.append(
            Row(
                "append",
                f"{system}, {writers} writer{'s' if writers != '1' else ''}",
                rate(case),
                "events/s",
                extra={
                    "commands_per_s": round(commits(case), 1),
                    "rounds": [round(e / t, 1) for e, _, t in results[case]],
                },
            )
        )
    for writers in (1, 16):
        best = "ours coalesced/16" if writers == 16 else "ours plain/1"
        vs_peer = rate(best) / rate(f"peer/{writers}")
        vs_ceiling = rate(best) / rate(f"ceiling/{writers}")
        label = "coalesced" if writers == 16 else "plain"
        out.append(
            Row(
                "append",
                f"ratio ours ({label}) / peer, {writers} writer(s)",
                vs_peer,
                "x",
                target=">= 3x" if writers == 16 else "",
                met=vs_peer >= 3 if writers == 16 else None,
            )
        )
        out.append(
            Row(
                "append",
                f"ratio ours ({label}) / ceiling, {writers} writer(s)",
                vs_ceiling,
                "x",
                target=">= 0.8x" if writers == 16 else "",
                met=vs_ceiling >= 0.8 if writers == 16 else None,
            )
        )
    plain16 = rate("ours plain/16")
    out.append(
        Row("append", "ratio ours (plain) / peer, 16 writers", plain16 / rate("peer/16"), "x")
    )
    out.append(
        Row(
            "append",
            "ratio ours (plain) / ceiling, 16 writers",
            plain16 / rate("ceiling/16"),
            "x",
        )
    )
    out.append(
        Row(
            "append",
            "coalesced: commands per transaction",
            median(per_tx),
            "cmds/tx",
            extra={"event_data": data.size_summary(templates)},
        )
    )
    return out
