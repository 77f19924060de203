"""How far a projection has applied the log: what read-your-writes waits for.

Consumers are partitioned by pupil, so the highest position a projection has
applied says nothing about the positions below it. What counts is the first
event not yet applied: every document row holds the stream version it has
applied, so for each pupil whose stream is ahead of its document the next
event to apply is at version ``doc.version + 1``, and the lowest position among
those is the first gap. Positions increase with versions within a stream, so
the projection holds everything below that gap.
"""

from __future__ import annotations

import asyncpg

from senflow.projections.base import Projection


class ProjectionMissing(LookupError):
    """The projection's tables do not exist yet: its service has never run."""


async def first_unapplied(
    conn: asyncpg.Connection, projection: Projection, trust_id: str
) -> int | None:
    """Position of the first event of ``trust_id`` the projection has not applied, or None."""
    if await conn.fetchval("SELECT to_regclass($1)", f"{projection.schema}.docs") is None:
        raise ProjectionMissing(projection.name)
    # Transfers stay within a trust, so a stream's trust never changes.
    value = await conn.fetchval(
        f"""SELECT min(e.position)
              FROM streams s
              LEFT JOIN {projection.schema}.docs d ON d.stream_id = s.stream_id
              JOIN events e ON e.stream_id = s.stream_id
                           AND e.version = coalesce(d.version, 0) + 1
             WHERE s.trust_id = $1 AND s.version > coalesce(d.version, 0)""",
        trust_id,
    )
    return int(value) if value is not None else None


async def holds(
    conn: asyncpg.Connection, projection: Projection, trust_id: str, position: int
) -> bool:
    """True if the projection has applied every event of the trust up to ``position``."""
    gap = await first_unapplied(conn, projection, trust_id)
    return gap is None or gap > position
