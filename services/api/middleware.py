"""Around every request: a correlation id, one JSON log line, metrics, and a last-resort 500.

The correlation id comes from ``X-Correlation-ID`` when the client sends one
(so a school's system can follow its own requests) and is generated otherwise;
it is bound into structlog's context for every line logged while the request
runs, returned in the response, and becomes the ``correlation_id`` of any
command the request runs.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from senflow.services.api.errors import UNAVAILABLE, unavailable_response
from senflow.services.api.metrics import Metrics

log = structlog.get_logger(__name__)

HEADER = "x-correlation-id"
# Accepted as given when it is short and printable; anything else is replaced.
_SAFE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def correlation_uuid(value: str) -> uuid.UUID:
    """The command's correlation id (a UUID) for a header value that may not be one."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"senflow:correlation:{value}")


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics, retry_after: int) -> None:
        self.app, self.metrics, self.retry_after = app, metrics, retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, HEADER)
        correlation = given if given and _SAFE.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation
        structlog.contextvars.bind_contextvars(correlation_id=correlation)
        started = time.perf_counter()
        status = 500
        sent = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-correlation-id", correlation.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if sent:
                raise
            if isinstance(exc, UNAVAILABLE):
                response: Any = unavailable_response(self.retry_after)
                log.warning("database_unavailable", error=type(exc).__name__)
            else:
                log.exception("request_failed")
                response = _internal_error(correlation)
            await response(scope, receive, send_wrapper)
        finally:
            route = _route(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            log.info(
                "http_request",
                correlation_id=correlation,  # a command's handling unbinds it from the context
                method=scope["method"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("correlation_id", "user_id", "role")


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _internal_error(correlation: str) -> Any:
    from starlette.responses import Response

    body = {
        "ok": False,
        "error": "internal",
        "message": "unexpected error; quote the correlation id",
        "correlation_id": correlation,
    }
    return Response(json.dumps(body), status_code=500, media_type="application/json")
