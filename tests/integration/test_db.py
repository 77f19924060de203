"""Pools (``store.db``): what going back to the pool resets."""

from __future__ import annotations

import asyncpg
import pytest

from senflow.services.store.db import create_pool
from senflow.services.store.tenancy import API_ROLE, TrustPool, reset_role

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("session_reset", [True, False])
async def test_a_pool_without_session_reset_still_ends_an_open_transaction(migrated, session_reset):
    pool = await create_pool(migrated, min_size=1, max_size=1, session_reset=session_reset)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'changed'")
            await conn.execute("BEGIN")  # left open, as a cancelled task might
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            name = await conn.fetchval("SHOW application_name")
        # The default reset undoes session settings (a round trip per release); the
        # relay and the consumers set none, so they skip it.
        assert name == ("senflow" if session_reset else "changed")
    finally:
        await pool.close()


async def test_the_api_pools_reset_drops_the_role_the_trust_and_the_session_state(migrated):
    pool = await create_pool(migrated, min_size=1, max_size=1, reset=reset_role)
    try:
        async with pool.acquire() as conn:
            login = await conn.fetchval("SELECT current_user")
            await conn.execute(
                "SELECT set_config('role', $1, false), set_config('senflow.trust_id', 'T1', false)",
                API_ROLE,
            )
            await conn.execute("SET application_name = 'changed'; LISTEN somewhere")
            await conn.execute("SELECT pg_advisory_lock(4242)")
            await conn.execute("BEGIN")  # and a transaction left open
            assert await conn.fetchval("SELECT current_user") == API_ROLE
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_user") == login
            assert not await conn.fetchval("SELECT current_setting('senflow.trust_id', true)")
            assert await conn.fetchval("SHOW application_name") == "senflow"
            assert not await conn.fetch("SELECT pg_listening_channels()")
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
    finally:
        await pool.close()


@pytest.mark.parametrize("api_pool", [True, False])
async def test_a_trust_pool_never_hands_a_connection_back_wearing_its_trust(migrated, api_pool):
    """On the API's pool the pool's own hook resets the role (one round trip, not two);
    on any other pool ``TrustPool`` resets it itself."""
    kw = {"reset": reset_role} if api_pool else {}
    pool = await create_pool(migrated, min_size=1, max_size=1, **kw)
    statements: list[str] = []
    try:
        async with pool.acquire() as conn:
            login = await conn.fetchval("SELECT current_user")

        def logged(query: asyncpg.connection.LoggedQuery) -> None:
            statements.append(query.query)

        async with TrustPool(pool, "T1").acquire() as conn:
            conn.add_query_logger(logged)
            assert await conn.fetchval("SELECT current_user") == API_ROLE
        async with pool.acquire() as conn:
            conn.remove_query_logger(logged)
            assert await conn.fetchval("SELECT current_user") == login
            assert not await conn.fetchval("SELECT current_setting('senflow.trust_id', true)")
        resets = [q for q in statements if q.startswith("RESET ROLE")]
        assert len(resets) == 1  # exactly one reset of the role on release, whichever did it
    finally:
        await pool.close()
