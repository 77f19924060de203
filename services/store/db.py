"""Connections to PostgreSQL: pools with the settings the store relies on."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# A transaction left idle holds the append lock and stalls every writer and
# tailing reader; PostgreSQL ends such a session after this long.
SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "15000",
    "application_name": "senflow",
    "timezone": "UTC",
}


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """Nothing more to undo: asyncpg has rolled back any open transaction already."""


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, session_reset: bool = True, **kw: Any
) -> asyncpg.Pool:
    """A pool; ``session_reset=False`` for code that never changes session state.

    By default asyncpg resets a connection's session (settings, LISTENs, cursors,
    session advisory locks) as it goes back to the pool: a round trip per
    acquisition. The relay and the consumers only run statements, and at a light
    load that round trip was a third of theirs.
    """
    if not session_reset:
        kw["reset"] = _no_session_reset
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, server_settings=SERVER_SETTINGS, **kw
    )
    assert pool is not None
    return pool


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist; True if created."""
    name = database_name(dsn)
    try:
        conn = await asyncpg.connect(dsn)
        await conn.close()
        return False
    except asyncpg.InvalidCatalogNameError:
        pass
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        return True
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        return False  # another process created it first
    finally:
        await admin.close()
