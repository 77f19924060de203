"""Row-level security for the API: a pool whose connections can only see one trust.

``TrustPool(pool, trust_id).acquire()`` hands out a connection switched to the
``senflow_api`` role with ``senflow.trust_id`` set; the policies of migration
0004 then hide every other trust's events, streams, vault keys, access log and
idempotency keys. It has the ``acquire()`` of an asyncpg pool, so an
``EventStore`` built on it works unchanged, behind a second wall.

``SET ROLE`` survives asyncpg's own reset (``RESET ALL`` leaves the role), so
pools that hand out trust connections must be created with ``reset=reset_role``,
and ``TrustPool`` resets on release itself on any other pool: a connection must
never go back to the pool still wearing another request's trust.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg

API_ROLE = "senflow_api"


async def reset_role(conn: asyncpg.Connection) -> None:
    """Pool ``reset`` hook: drop the API role and the trust, then asyncpg's usual reset
    (locks, cursors, listens, settings), in one round trip. The pool has already
    rolled back any open transaction before it calls the hook."""
    await conn.execute(f"RESET ROLE; RESET senflow.trust_id;\n{conn.get_reset_query()}")


class TrustPool:
    def __init__(self, pool: asyncpg.Pool, trust_id: str) -> None:
        if not trust_id:
            raise ValueError("a trust is required")
        self.pool = pool
        self.trust_id = trust_id

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "SELECT set_config('role', $1, false), set_config('senflow.trust_id', $2, false)",
                API_ROLE,
                self.trust_id,
            )
            try:
                yield conn
            finally:
                if not _pool_resets_role(self.pool):
                    try:
                        await conn.execute("RESET ROLE; RESET senflow.trust_id")
                    except Exception:
                        # The pool replaces a terminated connection: never reuse one
                        # half-reset.
                        conn.terminate()


def _pool_resets_role(pool: asyncpg.Pool) -> bool:
    """Whether the pool's own release hook is ``reset_role`` (the API's pool): a reset of
    ours would then be a second round trip for nothing. Read from asyncpg's private
    attribute; should it ever be renamed, the answer is False and we reset ourselves."""
    return getattr(pool, "_reset", None) is reset_role


async def stream_taken(pool: TrustPool | asyncpg.Pool, pupil_id: UUID) -> bool:
    """Whether a pupil id is in use in any trust (the answer names no trust)."""
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT senflow_stream_taken($1)", pupil_id))


async def school_in_trust(pool: TrustPool | asyncpg.Pool, trust_id: str, school_urn: str) -> bool:
    """Whether any event of ``trust_id`` was recorded at ``school_urn``."""
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE trust_id = $1 AND school_urn = $2)",
                trust_id,
                school_urn,
            )
        )
