"""Pools (``store.db``): what going back to the pool resets."""

from __future__ import annotations

import pytest

from senflow.services.store.db import create_pool

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
