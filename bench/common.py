"""What every benchmark shares: a throwaway database, timing, percentiles, results."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from senflow.services.store.db import create_pool, with_database
from senflow.services.store.migrate import migrate

BASE_URL = os.environ.get(
    "SENFLOW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("SENFLOW_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Config:
    quick: bool = False


@dataclass
class Row:
    """One line of the results table."""

    bench: str
    case: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
    try:
        name = url.rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def bench_database(migrated: bool = True) -> AsyncIterator[str]:
    """A fresh database ``senflow_bench_<random>`` (migrated), dropped afterwards."""
    url = with_database(BASE_URL, unique("senflow_bench"))
    try:
        if migrated:
            await migrate(url)
        else:
            admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
            try:
                await admin.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
            finally:
                await admin.close()
        yield url
    finally:
        await drop_database(url)


@asynccontextmanager
async def pool_for(url: str, size: int = 20) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(url, min_size=min(size, 4), max_size=size)
    try:
        yield pool
    finally:
        await pool.close()


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)
