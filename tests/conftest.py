"""Shared fixtures: a fresh PostgreSQL database per test run, migrated.

Every run makes its own database (senflow_test_<random>), so parallel runs
and earlier leftovers never collide; it is dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from senflow.services.store.db import create_pool, with_database
from senflow.services.store.eventstore import EventStore
from senflow.services.store.migrate import migrate

BASE_URL = os.environ.get(
    "SENFLOW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def database_url() -> str:
    return with_database(BASE_URL, f"senflow_test_{uuid.uuid4().hex[:12]}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def migrated(database_url: str) -> AsyncIterator[str]:
    await migrate(database_url)
    yield database_url
    admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
    try:
        name = database_url.rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(migrated: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(migrated, min_size=2, max_size=20)
    yield p
    await p.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)
