"""GET /v1/access-log: who read which pupils' data, for an auditor of the trust (or school)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from senflow.services.api import access_log
from senflow.services.api.auth import Caller, require
from senflow.services.store.tenancy import TrustPool
from senflow.services.workflow.permissions import Read

router = APIRouter(prefix="/v1", tags=["audit"])
# timestamptz's range is far wider, but a zone offset at its edges overflows it
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_LATEST = datetime(2999, 12, 31, tzinfo=UTC)


@router.get("/access-log", summary="Reads of pupils' personal data: who, whom, when")
async def read_access_log(
    request: Request,
    caller: Caller,
    pupil_id: Annotated[UUID | None, Query(description="Only reads that showed this pupil")] = None,
    user_id: Annotated[
        str | None, Query(pattern=r"^[A-Za-z0-9._@:-]{1,120}$", description="Only this reader")
    ] = None,
    since: Annotated[
        datetime | None,
        Query(ge=_EARLIEST, le=_LATEST, description="From (inclusive), with a zone"),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(ge=_EARLIEST, le=_LATEST, description="Until (exclusive), with a zone"),
    ] = None,
    after_id: Annotated[int, Query(ge=0, le=2**62, description="Page on from this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    require(caller, Read.ACCESS_LOG)
    scope = caller.scope
    pool = TrustPool(request.app.state.pool, scope.trust_id)
    entries = await access_log.entries(
        pool,
        scope.trust_id,
        scope.school_urn,
        pupil_id,
        user_id,
        since,
        until,
        after_id,
        limit,
    )
    # Looking at the log is itself a look at who was looked at.
    await access_log.record(
        pool,
        caller,
        "access_log",
        [pupil_id] if pupil_id else [],
        scope.school_urn,
        dict(request.query_params),
        request.state.correlation_id,
    )
    return {
        "entries": entries,
        "next_after_id": entries[-1]["id"] if len(entries) == limit else None,
    }
