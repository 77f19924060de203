"""Who is calling: the bearer token, looked up by its hash, as a request dependency."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from senflow.services.api.errors import forbidden, unauthorized
from senflow.services.api.tokens import Principal, authenticate
from senflow.services.workflow.permissions import Read, may_read

log = structlog.get_logger(__name__)

_bearer = HTTPBearer(auto_error=False, description="A token from `senflow token create`")


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("send Authorization: Bearer <token>")
    found, why = await authenticate(request.app.state.pool, credentials.credentials)
    if found is None:
        log.info("token_refused", reason=why)
        raise unauthorized("the token is unknown, revoked or expired")
    structlog.contextvars.bind_contextvars(user_id=found.user_id, role=found.role.value)
    return found


Caller = Annotated[Principal, Depends(principal)]


def require(caller: Principal, read: Read) -> None:
    if not may_read(caller.role, read):
        raise forbidden(f"the {caller.role.value} role may not {read.value.replace('_', ' ')}")
