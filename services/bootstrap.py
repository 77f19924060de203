"""The one place that wires senflow together: settings -> pool -> store -> service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from senflow.services import logging as senflow_logging
from senflow.services.application import SenflowService
from senflow.services.settings import Settings
from senflow.services.store.db import create_pool
from senflow.services.store.eventstore import EventStore


def configure_logging(settings: Settings) -> None:
    senflow_logging.configure(settings.log_level, settings.log_json)


@asynccontextmanager
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(settings.database_url)
    try:
        yield p
    finally:
        await p.close()


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[SenflowService]:
    async with pool(settings) as p:
        yield SenflowService(EventStore(p))
