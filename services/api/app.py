"""The API application: ``create_app(settings)``; ``senflow serve api`` runs it with uvicorn.

The pool is made in the lifespan with no connection up front, so the API starts
while PostgreSQL is down and says so at /health/ready instead of crashing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from senflow.services.api import (
    errors,
    routes_audit,
    routes_commands,
    routes_health,
    routes_queries,
)
from senflow.services.api.config import ApiSettings
from senflow.services.api.metrics import Metrics
from senflow.services.api.middleware import RequestContext
from senflow.services.store.db import create_pool
from senflow.services.store.tenancy import reset_role

log = structlog.get_logger(__name__)

DESCRIPTION = """Commands and queries of senflow for schools and multi-academy trusts.

Authenticate with `Authorization: Bearer <token>` (from `senflow token create`). The
actor of every command is the token's user and role; every read and write is limited to
the token's trust and, for a school token, its school. Send `Idempotency-Key` to make a
command safe to retry and `X-Correlation-ID` to follow a request through the logs.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url,
            min_size=0,
            max_size=settings.api_pool_size,
            timeout=settings.api_db_connect_timeout,
            command_timeout=settings.api_db_command_timeout,
            reset=reset_role,
        )
        app.state.pool = pool
        app.state.appenders = {}  # trust id -> group-commit appender (routes_commands)
        app.state.pupil_states = {}  # trust id -> pupils' kept states (routes_commands)
        log.info("api_started")
        try:
            yield
        finally:
            for appender in app.state.appenders.values():
                await appender.close()
            await pool.close()
            log.info("api_stopped")

    app = FastAPI(
        title="senflow",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    errors.install(app, settings.api_retry_after)
    for router in (
        routes_commands.router,
        routes_queries.router,
        routes_audit.router,
        routes_health.router,
        # the owner's compliance view: routes_compliance.router, when it exists
    ):
        app.include_router(router)
    app.add_middleware(RequestContext, metrics=metrics, retry_after=settings.api_retry_after)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # the command union's definitions, referred to by POST /v1/commands
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                routes_commands.COMMAND_DEFS
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
