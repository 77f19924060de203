"""Versioned SQL migrations: create the database if needed, apply what is pending.

Safe to run twice (applied versions are recorded with a checksum) and
concurrently (a session advisory lock lets one runner at a time in).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from senflow.services.store.db import ensure_database

log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x5E4F10  # any constant shared by all senflow processes
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationDrift(RuntimeError):
    """An applied migration's file changed afterwards: never edit an applied migration."""


def available() -> list[Migration]:
    folder = resources.files("senflow.services.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(dsn: str) -> list[Migration]:
    """Bring the database at ``dsn`` up to date; returns the migrations applied now."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            return await _apply_pending(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection) -> list[Migration]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {
        r["version"]: r["checksum"]
        for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }
    done = []
    for m in available():
        if m.version in applied:
            if applied[m.version] != m.checksum:
                raise MigrationDrift(f"migration {m.version:04d}_{m.name} changed after it ran")
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
        log.info("migration_applied", version=m.version, name=m.name)
        done.append(m)
    return done
