"""Queries: a pupil (state, timeline, as of a date), the register and the provision map
per school and per trust, the event feed, and who the caller is.

A pupil's own record is read from the store (always current); the register and
the provision map come from their projections, and ``min_position`` makes a
query wait (bounded) until the projection holds the caller's own write. Every
answer that shows pupils' personal data is written to the access log first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from pydantic import TypeAdapter

from senflow.events.envelope import TrustId
from senflow.projections import compliance, provision_map, register
from senflow.projections.queries import compliance_view, provision_view, register_view
from senflow.services.api import access_log
from senflow.services.api.auth import Caller, require
from senflow.services.api.consistency import wait_for
from senflow.services.api.errors import forbidden, not_found
from senflow.services.api.tokens import Principal
from senflow.services.application import History, SenflowService
from senflow.services.store.eventstore import EventStore
from senflow.services.store.tenancy import TrustPool, school_in_trust
from senflow.services.workflow.calendar import school_day
from senflow.services.workflow.permissions import COMMANDS, READS, Read, may_read_trust

router = APIRouter(prefix="/v1", tags=["queries"])

_URN_PATTERN = r"^[0-9]{6}$"  # as events.codes.URN checks
_TRUST_PATTERN = TypeAdapter(TrustId).json_schema()["pattern"]
_FIRST_DAY, _LAST_DAY = date(1990, 1, 1), date(2999, 12, 31)

PupilId = Annotated[UUID, Path(description="The pupil (their stream id)")]
AsOf = Annotated[
    date | None,
    Query(
        ge=_FIRST_DAY, le=_LAST_DAY, description="YYYY-MM-DD: as it stood at the end of that day"
    ),
]
SchoolUrn = Annotated[str, Path(pattern=_URN_PATTERN, description="School URN")]
Trust = Annotated[str, Path(pattern=_TRUST_PATTERN, description="Trust id")]
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,
        description="Read-your-writes: wait (bounded) until the view holds this global position",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Need = Annotated[str | None, Query(max_length=8, description="Need type code, e.g. SLCN")]
YearGroup = Annotated[str | None, Query(max_length=4, description="Year group, e.g. 4 or R")]


def _today() -> date:
    return school_day(datetime.now(UTC))


def _page(rows: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    page = rows[offset : offset + limit]
    following = offset + len(page)
    return {
        "limit": limit,
        "offset": offset,
        "total": len(rows),
        "next_offset": following if following < len(rows) else None,
    }


# --- pupils -----------------------------------------------------------------------------------


async def _pupil(request: Request, caller: Caller, pupil_id: UUID, as_of: date | None) -> History:
    require(caller, Read.PUPIL)
    pool = TrustPool(request.app.state.pool, caller.scope.trust_id)
    service = SenflowService(EventStore(pool))
    try:
        now = await service.history(pupil_id)
    except LookupError as exc:
        raise not_found() from exc
    tenant = now.state.tenant
    # Access follows the school the pupil is at now, whatever the date asked about.
    if tenant is None or not caller.scope.covers(tenant.trust_id, tenant.school_urn):
        raise not_found()
    found = now if as_of is None else await service.history(pupil_id, as_of)
    await access_log.record(
        pool,
        caller,
        request.scope["route"].name,
        [pupil_id],
        tenant.school_urn,
        {"as_of": as_of},
        request.state.correlation_id,
    )
    return found


@router.get("/pupils/{pupil_id}", summary="A pupil's state, now or as of a date")
async def pupil_state(
    request: Request, caller: Caller, pupil_id: PupilId, as_of: AsOf = None
) -> dict[str, Any]:
    found = await _pupil(request, caller, pupil_id, as_of)
    doc = found.as_json()
    last = found.timeline[-1] if found.timeline else None
    return {
        "pupil_id": doc["pupil_id"],
        "as_of": doc["as_of"],
        "version": last.version if last else 0,
        "position": last.position if last else None,
        "state": doc["state"],
    }


@router.get("/pupils/{pupil_id}/timeline", summary="A pupil's events, now or as of a date")
async def pupil_timeline(
    request: Request, caller: Caller, pupil_id: PupilId, as_of: AsOf = None
) -> dict[str, Any]:
    doc = (await _pupil(request, caller, pupil_id, as_of)).as_json()
    return {"pupil_id": doc["pupil_id"], "as_of": doc["as_of"], "timeline": doc["timeline"]}


# --- register and provision map ----------------------------------------------------------------


async def _school_scope(request: Request, caller: Principal, school_urn: str) -> None:
    """404 unless the school is the token's, or a school of its trust for a trust-wide token."""
    scope = caller.scope
    if scope.school_urn is not None:
        if scope.school_urn != school_urn:
            raise not_found("school")
        return
    pool = TrustPool(request.app.state.pool, scope.trust_id)
    if not await school_in_trust(pool, scope.trust_id, school_urn):
        raise not_found("school")


def _trust_scope(caller: Principal, trust_id: str) -> None:
    if not may_read_trust(caller.role, caller.scope):
        raise forbidden("trust-wide reports need a trust-wide token of a role that runs them")
    if trust_id != caller.scope.trust_id:
        raise not_found("trust")


def _register_rows(
    rows: list[dict[str, Any]],
    need: str | None,
    year_group: str | None,
    provision: str | None,
    overdue: bool | None,
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if (need is None or need in (r["primary_need"], r["secondary_need"]))
        and (year_group is None or str(r["year_group"]) == year_group)
        and (provision is None or r["provision"] == provision)
        and (overdue is None or r["overdue"] is overdue)
    ]


async def _register(
    request: Request,
    caller: Principal,
    school_urn: str | None,
    as_of: date | None,
    filters: dict[str, Any],
    limit: int,
    offset: int,
    min_position: int | None,
) -> dict[str, Any]:
    trust_id = caller.scope.trust_id
    settings = request.app.state.settings
    await wait_for(
        request.app.state.pool,
        register.PROJECTION,
        trust_id,
        min_position,
        settings.api_max_consistency_wait,
    )
    view = await register_view(request.app.state.pool, trust_id, school_urn, as_of, _today())
    rows = _register_rows(view["rows"], **filters)
    page = rows[offset : offset + limit]
    await _log_view(request, caller, "register", page, school_urn)
    return {
        "trust_id": trust_id,
        "school_urn": school_urn,
        "as_of": as_of,
        "rows": page,
        "counts": register.register_counts(rows),
        "page": _page(rows, limit, offset),
    }


async def _log_view(
    request: Request,
    caller: Principal,
    action: str,
    rows: list[dict[str, Any]],
    school_urn: str | None,
) -> None:
    pool = TrustPool(request.app.state.pool, caller.scope.trust_id)
    await access_log.record(
        pool,
        caller,
        action,
        [r["pupil_id"] for r in rows],
        school_urn,
        dict(request.query_params),
        request.state.correlation_id,
    )


Provision = Annotated[Literal["K", "E"] | None, Query(description="K (SEN support) or E (EHCP)")]


@router.get("/schools/{school_urn}/register", summary="A school's SEN register")
async def school_register(
    request: Request,
    caller: Caller,
    school_urn: SchoolUrn,
    as_of: AsOf = None,
    need: Need = None,
    year_group: YearGroup = None,
    provision: Provision = None,
    overdue: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.REGISTER)
    await _school_scope(request, caller, school_urn)
    filters = dict(need=need, year_group=year_group, provision=provision, overdue=overdue)
    return await _register(request, caller, school_urn, as_of, filters, limit, offset, min_position)


@router.get("/trusts/{trust_id}/register", summary="The trust's SEN register, every school")
async def trust_register(
    request: Request,
    caller: Caller,
    trust_id: Trust,
    school: Annotated[str | None, Query(pattern=_URN_PATTERN)] = None,
    as_of: AsOf = None,
    need: Need = None,
    year_group: YearGroup = None,
    provision: Provision = None,
    overdue: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.REGISTER)
    _trust_scope(caller, trust_id)
    filters = dict(need=need, year_group=year_group, provision=provision, overdue=overdue)
    return await _register(request, caller, school, as_of, filters, limit, offset, min_position)


def _name(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def _provision_rows(
    rows: list[dict[str, Any]],
    need: str | None,
    year_group: str | None,
    provision: str | None,
    running: bool | None,
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if (need is None or r["need"] == need)
        and (year_group is None or str(r["year_group"]) == year_group)
        and (provision is None or _name(r["name"]) == _name(provision))
        and (running is None or (r["ended_on"] is None) is running)
    ]


async def _provision_map(
    request: Request,
    caller: Principal,
    school_urn: str | None,
    by: str,
    filters: dict[str, Any],
    limit: int,
    offset: int,
    min_position: int | None,
) -> dict[str, Any]:
    trust_id = caller.scope.trust_id
    await wait_for(
        request.app.state.pool,
        provision_map.PROJECTION,
        trust_id,
        min_position,
        request.app.state.settings.api_max_consistency_wait,
    )
    view = await provision_view(request.app.state.pool, trust_id, school_urn, by)
    rows = _provision_rows(view["rows"], **filters)
    page = rows[offset : offset + limit]
    await _log_view(request, caller, "provision_map", page, school_urn)
    return {
        "trust_id": trust_id,
        "school_urn": school_urn,
        "rows": page,
        "totals": provision_map.provision_totals(rows, by),
        "impact": provision_map.intervention_impact(rows),
        "page": _page(rows, limit, offset),
    }


By = Annotated[Literal["school", "year_group", "need"], Query(description="Group totals by")]
ProvisionName = Annotated[
    str | None, Query(max_length=200, description="Intervention (provision) name")
]


@router.get("/schools/{school_urn}/provision-map", summary="A school's provision map")
async def school_provision_map(
    request: Request,
    caller: Caller,
    school_urn: SchoolUrn,
    need: Need = None,
    year_group: YearGroup = None,
    provision: ProvisionName = None,
    running: bool | None = None,
    by: By = "need",
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.PROVISION_MAP)
    await _school_scope(request, caller, school_urn)
    filters = dict(need=need, year_group=year_group, provision=provision, running=running)
    return await _provision_map(
        request, caller, school_urn, by, filters, limit, offset, min_position
    )


@router.get("/trusts/{trust_id}/provision-map", summary="The trust's provision map")
async def trust_provision_map(
    request: Request,
    caller: Caller,
    trust_id: Trust,
    school: Annotated[str | None, Query(pattern=_URN_PATTERN)] = None,
    need: Need = None,
    year_group: YearGroup = None,
    provision: ProvisionName = None,
    running: bool | None = None,
    by: By = "school",
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.PROVISION_MAP)
    _trust_scope(caller, trust_id)
    filters = dict(need=need, year_group=year_group, provision=provision, running=running)
    return await _provision_map(request, caller, school, by, filters, limit, offset, min_position)


# --- the compliance view ------------------------------------------------------------------------

JudgedOn = Annotated[
    date | None,
    Query(
        alias="date", ge=date(1990, 1, 1), le=date(2999, 12, 31), description="Judge as of this day"
    ),
]
ComplianceRule = Annotated[
    Literal[tuple(compliance.RULES)] | None,  # type: ignore[valid-type]
    Query(description="Only findings of this rule"),
]


async def _compliance(
    request: Request,
    caller: Principal,
    school_urn: str | None,
    on: date | None,
    rule: str | None,
    limit: int,
    offset: int,
    min_position: int | None,
) -> dict[str, Any]:
    trust_id = caller.scope.trust_id
    await wait_for(
        request.app.state.pool,
        compliance.PROJECTION,
        trust_id,
        min_position,
        request.app.state.settings.api_max_consistency_wait,
    )
    view = await compliance_view(request.app.state.pool, trust_id, school_urn, on or _today())
    items = [i for i in view["items"] if rule is None or i["rule"] == rule]
    page = items[offset : offset + limit]
    await _log_view(request, caller, "compliance", page, school_urn)
    return {
        "trust_id": trust_id,
        "school_urn": school_urn,
        "date": on or _today(),
        "items": page,
        "summary": compliance.compliance_summary(items),
        "page": _page(items, limit, offset),
    }


@router.get("/schools/{school_urn}/compliance", summary="A school's Code of Practice findings")
async def school_compliance(
    request: Request,
    caller: Caller,
    school_urn: SchoolUrn,
    on: JudgedOn = None,
    rule: ComplianceRule = None,
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.COMPLIANCE)
    await _school_scope(request, caller, school_urn)
    return await _compliance(request, caller, school_urn, on, rule, limit, offset, min_position)


@router.get("/trusts/{trust_id}/compliance", summary="The trust's Code of Practice findings")
async def trust_compliance(
    request: Request,
    caller: Caller,
    trust_id: Trust,
    school: Annotated[str | None, Query(pattern=_URN_PATTERN)] = None,
    on: JudgedOn = None,
    rule: ComplianceRule = None,
    limit: Limit = 100,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    require(caller, Read.COMPLIANCE)
    _trust_scope(caller, trust_id)
    return await _compliance(request, caller, school, on, rule, limit, offset, min_position)


# --- events and the caller ------------------------------------------------------------------------


@router.get("/events", summary="The event feed of the token's trust (or school), in order")
async def events_feed(
    request: Request,
    caller: Caller,
    after: Annotated[int, Query(ge=0, le=2**62, description="Global position to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Personal fields are withheld, as on the bus. ``next_after`` is where to continue; a
    school token skips other schools' events, so a page may hold fewer than ``limit``."""
    require(caller, Read.EVENTS)
    scope = caller.scope
    store = EventStore(TrustPool(request.app.state.pool, scope.trust_id))  # RLS: this trust
    scanned = await store.read_all(after, limit)
    # and the application wall too: trust and school checked here as well
    mine = [e for e in scanned if scope.covers(e.tenant.trust_id, e.tenant.school_urn)]
    await _log_view(
        request,
        caller,
        "events",
        [{"pupil_id": e.stream_id} for e in mine],
        scope.school_urn,
    )
    return {
        "events": [e.model_dump(mode="json") for e in mine],
        "next_after": scanned[-1].position if scanned else after,
    }


@router.get("/me", summary="Who the token belongs to and what it may do")
async def me(caller: Caller) -> dict[str, Any]:
    return {
        "token_id": str(caller.token_id),
        "user_id": caller.user_id,
        "role": caller.role.value,
        "trust_id": caller.scope.trust_id,
        "school_urn": caller.scope.school_urn,
        "expires_at": caller.expires_at.isoformat(),
        "commands": sorted(COMMANDS[caller.role]),
        "reads": sorted(r.value for r in READS[caller.role]),
    }
