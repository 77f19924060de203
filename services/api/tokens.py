"""Bearer tokens: issue, look up, revoke, list. Only a token's SHA-256 is stored.

A token is ``sft_`` and 256 random bits, shown once when it is created. A
secret that random cannot be guessed from its hash, so a plain SHA-256 is
enough (a slow password hash protects low-entropy secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from pydantic import TypeAdapter

from senflow.events.codes import URN
from senflow.events.envelope import Actor, Role, TrustId
from senflow.services.workflow.permissions import Scope, lifetime_for, token_problem

PREFIX = "sft_"
_TRUST = TypeAdapter(TrustId)
_URN = TypeAdapter(URN)


@dataclass(frozen=True)
class Principal:
    """Who is calling, from their token: the actor of their commands and their scope."""

    token_id: UUID
    user_id: str
    role: Role
    scope: Scope
    expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, role=self.role)


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the secret: shown once, never stored
    principal: Principal


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(
        token_id=row["token_id"],
        user_id=row["user_id"],
        role=Role(row["role"]),
        scope=Scope(row["trust_id"], row["school_urn"]),
        expires_at=row["expires_at"],
    )


async def create_token(
    pool: asyncpg.Pool,
    role: Role,
    trust_id: str,
    school_urn: str | None = None,
    user_id: str | None = None,
    lifetime: timedelta | None = None,
    note: str | None = None,
) -> IssuedToken:
    """Issue a token; raises ValueError naming what is wrong with the request."""
    trust_id = _TRUST.validate_python(trust_id)
    if school_urn is not None:
        school_urn = _URN.validate_python(school_urn)
    scope = Scope(trust_id, school_urn)
    problem = token_problem(role, scope, lifetime)
    if problem:
        raise ValueError(problem)
    token_id = uuid4()
    user_id = user_id or f"{role.value}.{token_id.hex[:8]}"
    Actor(user_id=user_id, role=role)  # the user id must be one an event can carry
    token = PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires_at = now + lifetime_for(lifetime)
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO api_tokens (token_id, token_hash, user_id, role, trust_id,
                                       school_urn, note, created_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            token_id,
            token_hash(token),
            user_id,
            role.value,
            trust_id,
            school_urn,
            note,
            now,
            expires_at,
        )
    return IssuedToken(token, Principal(token_id, user_id, role, scope, expires_at))


async def authenticate(pool: asyncpg.Pool, token: str) -> tuple[Principal | None, str]:
    """The token's principal, or None and why ("unknown", "revoked", "expired")."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT token_id, user_id, role, trust_id, school_urn, expires_at, revoked_at,
                      expires_at <= now() AS expired
                 FROM api_tokens WHERE token_hash = $1""",
            token_hash(token),
        )
    if row is None:
        return None, "unknown"
    if row["revoked_at"] is not None:
        return None, "revoked"
    if row["expired"]:
        return None, "expired"
    return _principal(row), "ok"


async def revoke_token(pool: asyncpg.Pool, token_id: UUID) -> bool:
    """Revoke a token by id; False if there is no such active token."""
    async with pool.acquire() as conn:
        done = await conn.fetchval(
            """UPDATE api_tokens SET revoked_at = now()
                WHERE token_id = $1 AND revoked_at IS NULL RETURNING token_id""",
            token_id,
        )
    return done is not None


async def list_tokens(
    pool: asyncpg.Pool, trust_id: str | None = None, all_: bool = False
) -> list[dict[str, Any]]:
    """Tokens (never their secrets): active ones, or every one with ``all_``."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT token_id, user_id, role, trust_id, school_urn, note, created_at,
                      expires_at, revoked_at
                 FROM api_tokens
                WHERE ($1::text IS NULL OR trust_id = $1)
                  AND ($2 OR (revoked_at IS NULL AND expires_at > now()))
                ORDER BY created_at""",
            trust_id,
            all_,
        )
    return [dict(r) for r in rows]
