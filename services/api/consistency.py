"""Read-your-writes: wait, bounded, until a projection holds a given global position.

A command's answer carries the ``position`` of its last event; a query with
``min_position`` set to it waits until the projection has applied everything
of the caller's trust up to there (see ``projections/watermark.py``), so the
client sees its own write. The wait is short and bounded: if the projection
does not get there in time the answer is a 503 with Retry-After, never stale
data passed off as current.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from senflow.projections.base import Projection
from senflow.projections.watermark import ProjectionMissing, holds
from senflow.services.api.errors import ApiError, invalid


async def wait_for(
    pool: asyncpg.Pool,
    projection: Projection,
    trust_id: str,
    position: int | None,
    max_wait: float,
) -> None:
    try:
        if position is None:
            async with pool.acquire() as conn:
                built = await conn.fetchval("SELECT to_regclass($1)", f"{projection.schema}.docs")
            if built is None:
                raise ProjectionMissing(projection.name)
            return
        async with pool.acquire() as conn:
            head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        if position > head:
            raise invalid(
                "min_position",
                "beyond_head",
                f"no event has been recorded at position {position} yet",
            )
        deadline = time.monotonic() + max_wait
        pause = 0.02
        while True:
            # a connection per look, not held while sleeping: waiters must not drain the pool
            async with pool.acquire() as conn:
                if await holds(conn, projection, trust_id, position):
                    return
            if time.monotonic() >= deadline:
                raise ApiError(
                    503,
                    "projection_behind",
                    f"the {projection.name} view has not reached position {position} "
                    f"within {max_wait:g}s; retry shortly",
                    headers={"Retry-After": "1"},
                    min_position=position,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)
    except ProjectionMissing as exc:
        raise ApiError(
            503,
            "projection_unavailable",
            f"the {exc} view has not been built yet: is `senflow serve "
            f"{str(exc).replace('_', '-')}` running?",
            headers={"Retry-After": "30"},
        ) from exc
