"""Shared by the API tests: the real app on the per-run database, tokens, a projector.

The app runs in-process (httpx ASGITransport) with its own pool and lifespan, against
the same migrated database as every other test. Each test module works in trusts and
schools of its own, so the shared database never mixes their data.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import FastAPI

from senflow.events.envelope import Role
from senflow.projections import compliance, provision_map, register
from senflow.projections.tables import apply_events, ensure_tables
from senflow.services.api.app import create_app
from senflow.services.api.config import ApiSettings
from senflow.services.api.tokens import create_token
from senflow.services.store.eventstore import EventStore
from tests.integration.helpers import upn
from tests.integration.story import story

VIEWS = (register.PROJECTION, provision_map.PROJECTION, compliance.PROJECTION)


def new_trust() -> str:
    return f"trust-api-{uuid.uuid4().hex[:8]}"


def new_school() -> str:
    return f"{random.randrange(100000, 999999)}"


@asynccontextmanager
async def running_app(dsn: str, **settings: Any) -> AsyncIterator[FastAPI]:
    app = create_app(ApiSettings(database_url=dsn, log_json=True, **settings))
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://senflow.test", timeout=30
    )


async def bearer(
    pool: asyncpg.Pool,
    role: Role | str,
    trust: str,
    school: str | None = None,
    user: str | None = None,
    **kw: Any,
) -> dict[str, str]:
    role = Role(role)
    if role is Role.AUDITOR and "lifetime" not in kw:
        from datetime import timedelta

        kw["lifetime"] = timedelta(hours=8)
    issued = await create_token(pool, role, trust, school, user, **kw)
    return {"Authorization": f"Bearer {issued.token}"}


class Projector:
    """Applies the store's events to the register and provision map, as their consumers do
    (the same apply_events), without the bus: the API tests are about the API."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.store = EventStore(pool)
        self.after = 0

    async def prepare(self) -> None:
        async with self.pool.acquire() as conn:
            for view in VIEWS:
                await ensure_tables(conn, view)

    async def catch_up(self) -> None:
        async def missing(stream: UUID, first: int, last: int) -> list[Any]:
            return await self.store.read_stream(stream, first, last, personal=False)

        async for batch in self.store.iter_all(self.after):
            async with self.pool.acquire() as conn, conn.transaction():
                for view in VIEWS:
                    await apply_events(conn, view, batch, missing)
            self.after = batch[-1].position


def story_commands(pupil: UUID, serial: int, trust: str, school: str) -> list[dict[str, Any]]:
    """The example story for one pupil at our school, with the actor left to the token."""
    commands = []
    for raw in story(pupil, upn(serial)):
        raw = {k: v for k, v in raw.items() if k != "actor"}
        if raw["command"] == "register_pupil":
            raw["tenant"] = {"trust_id": trust, "school_urn": school}
        commands.append(raw)
    return commands


def register_body(pupil: UUID, serial: int, **kw: Any) -> dict[str, Any]:
    return {
        "command": "register_pupil",
        "pupil_id": str(pupil),
        "occurred_at": "2025-09-03",
        "payload": {
            "upn": upn(serial),
            "forename": "Sam",
            "surname": "Patel",
            "date_of_birth": "2016-05-01",
            "year_group": "4",
            "on_roll_from": "2021-09-01",
        },
        **kw,
    }


def progress_body(pupil: UUID, **kw: Any) -> dict[str, Any]:
    return {
        "command": "record_progress",
        "pupil_id": str(pupil),
        "occurred_at": "2025-10-01",
        "payload": {"note": "Reads two-syllable words with support."},
        **kw,
    }
