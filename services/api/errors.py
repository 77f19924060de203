"""Every error the API returns, as JSON with an ``error`` code a client can branch on.

| status | error | when |
|---|---|---|
| 401 | ``unauthorized`` | no bearer token, or unknown, revoked or expired |
| 403 | ``forbidden`` | the role may not do this, or the target lies outside a token's scope
  where nothing is revealed by saying so (registering at another school) |
| 404 | ``not_found`` | no such pupil or school *that the token may see*: another school's
  pupil looks exactly like one that does not exist |
| 409 | ``concurrency_conflict`` | ``expected_version`` is stale: ``current_version`` says what is |
| 409 | ``command_id_conflict`` | the command id was already used for something else |
| 422 | ``invalid`` | malformed input: ``errors`` lists field, rule and message |
| 422 | ``rejected`` | the workflow refused: rule, field, message, remedy, paragraph |
| 422 | ``idempotency_key_reused`` | the same Idempotency-Key with a different request |
| 503 | ``database_unavailable`` | PostgreSQL unreachable; ``Retry-After`` says when to retry |
| 503 | ``projection_behind`` | a read-your-writes wait ran out; ``Retry-After`` too |
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from senflow.services.workflow.commands import error_fields

log = structlog.get_logger(__name__)

# Errors that mean "the database is not there right now", not "this request is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, "message": self.message, **self.extra}


def not_found(what: str = "pupil") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def invalid(field: str, rule: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid",
        "the request is not valid",
        errors=[{"field": field, "rule": rule, "message": message}],
    )


def field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic or FastAPI errors as {field, rule, message} (a body's fields without "body")."""
    return error_fields(
        {**err, "loc": tuple(err.get("loc", ()))[1:]}
        if tuple(err.get("loc", ()))[:1] == ("body",)
        else err
        for err in errors
    )


def validation_error(exc: ValidationError) -> ApiError:
    return ApiError(
        422,
        "invalid",
        "the request is not valid",
        errors=field_errors(exc.errors(include_url=False, include_input=False)),
    )


def unavailable_response(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {
            "ok": False,
            "error": "database_unavailable",
            "message": "the database cannot be reached; nothing was recorded by this request "
            "unless a retry shows it was",
        },
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


def install(app: FastAPI, retry_after: int) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def request_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        body = {
            "ok": False,
            "error": "invalid",
            "message": "the request is not valid",
            "errors": field_errors(list(exc.errors())),
        }
        return JSONResponse(body, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"ok": False, "error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def db_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
        return unavailable_response(retry_after)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for cls in UNAVAILABLE:
        app.add_exception_handler(cls, db_unavailable)
