"""POST /v1/commands: the commands of `senflow submit`, with the actor and tenant from the token.

Order of checks, each before anything is written: the token (401), a stored
answer for the Idempotency-Key (replayed, or 422 if the request differs), the
command's shape (422), the role (403), the pupil within the token's scope (404,
so another school's pupil looks like none at all), then the workflow (422
rejection) and the store (409 on a stale expected version).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from senflow.services.api import idempotency
from senflow.services.api.auth import Caller
from senflow.services.api.errors import (
    ApiError,
    forbidden,
    invalid,
    not_found,
    validation_error,
)
from senflow.services.api.middleware import correlation_uuid
from senflow.services.api.tokens import Principal
from senflow.services.application import SenflowService
from senflow.services.pupil_states import PupilStates
from senflow.services.store.coalescing import CoalescingAppender
from senflow.services.store.eventstore import (
    ConcurrencyConflict,
    EventIdConflict,
    EventStore,
    StreamErased,
)
from senflow.services.store.tenancy import TrustPool, stream_taken
from senflow.services.workflow.commands import (
    COMMAND_ADAPTER,
    COMMAND_MODELS,
    CommandBase,
    parse_command,
)
from senflow.services.workflow.permissions import may_run

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["commands"])

# Nothing a school records today happened before this.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


def command_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body's JSON Schema (the command union) and the definitions it refers to.

    It is the schema of `senflow submit` lines, except that ``actor`` may be left
    out: it comes from the token.
    """
    schema = COMMAND_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    for model in COMMAND_MODELS.values():
        definition = defs.get(model.__name__)
        if definition and "actor" in definition.get("required", []):
            definition["required"] = [f for f in definition["required"] if f != "actor"]
    return schema, defs


_BODY_SCHEMA, COMMAND_DEFS = command_body_schema()

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Accepted: the events appended, stream version and global position"},
    401: {"description": "No valid token"},
    403: {"description": "The role may not run this command, or not for that school"},
    404: {"description": "No such pupil within the token's scope"},
    409: {"description": "Stale expected_version (current_version given), or id reused"},
    422: {"description": "Invalid (field and rule) or rejected by the workflow (rule, remedy)"},
    503: {"description": "Database unavailable; Retry-After"},
}


@router.post(
    "/commands",
    summary="Run one command",
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA}},
        }
    },
)
async def run_command(
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=idempotency.MAX_KEY_LENGTH,
            description="Makes retries safe: the same key and body get the same answer",
        ),
    ] = None,
) -> JSONResponse:
    metrics = request.app.state.metrics
    raw = await _json_object(request)
    trusted = TrustPool(request.app.state.pool, caller.scope.trust_id)
    name = str(raw.get("command", ""))
    try:
        command = _command(raw, caller, idempotency_key, request.state.correlation_id)
    except ApiError:
        metrics.command(name if name in COMMAND_MODELS else "unknown", "invalid")
        raise
    # Role and scope first, stored answers after: an Idempotency-Key must never let a
    # token see the answer to a command it may not run itself.
    if not may_run(caller.role, command.name):
        metrics.command(command.name, "forbidden")
        raise forbidden(f"the {caller.role.value} role may not run {command.name}")
    states = _states(request, trusted)
    try:
        await _within_scope(trusted, caller, command, states)
    except ApiError as err:
        metrics.command(command.name, err.error)
        raise
    hashed = b""
    if idempotency_key is not None:
        hashed = idempotency.request_hash("POST", request.url.path, raw)
        stored = await idempotency.lookup(trusted, caller, idempotency_key)
        if stored is not None:
            return _replay(stored, hashed)
    status, body = await _handle(trusted, command, metrics, _appender(request, trusted), states)
    if idempotency_key is not None:
        stored = await idempotency.save(trusted, caller, idempotency_key, hashed, status, body)
        if stored.request_hash != hashed:  # a concurrent request with another body won
            raise _key_reused()
        status, body = stored.status, stored.response
    return JSONResponse(body, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid(
            "body", "json_invalid", "the body is not JSON (or is nested too deep)"
        ) from exc
    if not isinstance(raw, dict):
        raise invalid("body", "model_type", "a command is a JSON object")
    return raw


def _key_reused() -> ApiError:
    return ApiError(
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request; use a new key for a new request",
    )


def _replay(stored: idempotency.Stored, hashed: bytes) -> JSONResponse:
    if stored.request_hash != hashed:
        raise _key_reused()
    return JSONResponse(
        stored.response, status_code=stored.status, headers={"Idempotent-Replayed": "true"}
    )


def _command(
    raw: dict[str, Any], caller: Principal, key: str | None, correlation: str
) -> CommandBase:
    """Validate the body as a command, with the actor, tenant and ids the API supplies."""
    body = dict(raw)
    actor = caller.actor.model_dump(mode="json")
    if "actor" in body and body["actor"] != actor:
        # The actor is who holds the token: a body naming someone else is refused, not fixed.
        raise invalid(
            "actor",
            "actor_from_token",
            f"the actor is the token's user and role ({actor['user_id']}, {actor['role']}); "
            "leave it out",
        )
    body["actor"] = actor
    school = caller.scope.school_urn
    if body.get("command") == "register_pupil" and body.get("tenant") is None and school:
        body["tenant"] = {"trust_id": caller.scope.trust_id, "school_urn": school}
    if body.get("command_id") is None and key is not None:
        body["command_id"] = str(idempotency.command_id_for(caller, key))
    if body.get("correlation_id") is None:
        body["correlation_id"] = str(correlation_uuid(correlation))
    try:
        command = parse_command(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if command.occurred_at < EARLIEST:
        # the workflow's calendar cannot place year-1 instants in England (OverflowError)
        raise invalid(
            "occurred_at", "occurred_at_too_early", f"must be after {EARLIEST.date().isoformat()}"
        )
    return command


async def _within_scope(
    pool: TrustPool, caller: Principal, command: CommandBase, states: PupilStates
) -> None:
    """404 unless the pupil is within the token's scope; registration must target it."""
    state = (await states.load(EventStore(pool), command.pupil_id)).state  # type: ignore[arg-type]
    stored = state.version > 0
    scope = caller.scope
    if command.name == "register_pupil":
        tenant = command.tenant
        if tenant is not None and not scope.covers(tenant.trust_id, tenant.school_urn):
            raise forbidden("a pupil can only be registered at a school within the token's scope")
        unavailable = (
            state.registered
            and state.tenant is not None
            and not scope.covers(state.tenant.trust_id, state.tenant.school_urn)
        ) or (not stored and await stream_taken(pool, command.pupil_id))
        if unavailable:
            raise ApiError(
                409, "pupil_id_unavailable", "this pupil id cannot be used; pick another"
            )
        return
    if (
        not state.registered
        or state.tenant is None
        or not scope.covers(state.tenant.trust_id, state.tenant.school_urn)
    ):
        raise not_found()


def _states(request: Request, trusted: TrustPool) -> PupilStates:
    """The trust's kept pupil states: each trust's, read under its role, used for it alone."""
    kept: dict[str, PupilStates] = request.app.state.pupil_states
    if trusted.trust_id not in kept:
        kept[trusted.trust_id] = PupilStates()
    return kept[trusted.trust_id]


def _appender(request: Request, trusted: TrustPool) -> CoalescingAppender:
    """The trust's group-commit appender: concurrent commands of one trust share
    transactions (each still checked and answered alone), under the trust's own role."""
    appenders: dict[str, CoalescingAppender] = request.app.state.appenders
    if trusted.trust_id not in appenders:
        appenders[trusted.trust_id] = CoalescingAppender(EventStore(trusted))  # type: ignore[arg-type]
    return appenders[trusted.trust_id]


async def _handle(
    pool: TrustPool,
    command: CommandBase,
    metrics: Any,
    appender: CoalescingAppender,
    states: PupilStates,
) -> tuple[int, dict[str, Any]]:
    service = SenflowService(EventStore(pool), appender=appender, states=states)  # type: ignore[arg-type]
    try:
        try:
            result = await service.handle(command)
        except EventIdConflict:
            # A concurrent twin (same command id, e.g. one Idempotency-Key sent twice) was
            # stored first, differing only in its correlation id: asked again, the service
            # finds the twin's events and returns them. A real reuse fails again below.
            result = await service.handle(command)
    except ConcurrencyConflict as exc:
        metrics.command(command.name, "conflict")
        raise ApiError(
            409,
            "concurrency_conflict",
            str(exc),
            expected_version=exc.expected,
            current_version=exc.current,
        ) from exc
    except (EventIdConflict, asyncpg.UniqueViolationError) as exc:
        metrics.command(command.name, "conflict")
        raise _id_conflict(command.command_id) from exc
    except ValueError as exc:
        # the service's word for a command id already used for another pupil
        if "already used" not in str(exc):
            raise
        metrics.command(command.name, "conflict")
        raise _id_conflict(command.command_id) from exc
    except StreamErased as exc:
        metrics.command(command.name, "rejected", "personal_data_erased")
        raise ApiError(409, "pupil_erased", str(exc)) from exc
    body = result.as_json()
    if result.rejection is not None:
        metrics.command(command.name, "rejected", result.rejection.rule)
        return 422, {
            **body,
            "error": "rejected",
            "message": result.rejection.message,
        }
    metrics.command(command.name, "replayed" if result.duplicate else "accepted")
    for warning in result.warnings:
        metrics.warnings.labels(command.name, warning.rule).inc()
    return 200, body


def _id_conflict(command_id: UUID) -> ApiError:
    return ApiError(
        409,
        "command_id_conflict",
        f"command id {command_id} was already used for another command; use a new id",
    )
