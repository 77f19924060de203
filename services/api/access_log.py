"""The access log: who read which pupils' personal data, when, through which view.

A read is recorded before its answer leaves: if the record cannot be written
the reader gets a 503, not the data. ``school_urn`` is the school whose data
was read (None for a trust-wide view), so a school-scoped auditor sees the
reads of their own school.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from senflow.services.api.tokens import Principal
from senflow.services.store.tenancy import TrustPool


async def record(
    pool: TrustPool | asyncpg.Pool,
    who: Principal,
    action: str,
    pupil_ids: Sequence[UUID | str],
    school_urn: str | None,
    query: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                """INSERT INTO access_log (token_id, user_id, role, trust_id, school_urn, action,
                                           pupil_ids, query, correlation_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::uuid[], $8::jsonb, $9) RETURNING id""",
                who.token_id,
                who.user_id,
                who.role.value,
                who.scope.trust_id,
                school_urn,
                action,
                sorted({UUID(str(p)) for p in pupil_ids}),
                json.dumps(_without_nul(query or {}), default=str),
                correlation_id,
            )
        )


async def entries(
    pool: TrustPool | asyncpg.Pool,
    trust_id: str | None,
    school_urn: str | None = None,
    pupil_id: UUID | None = None,
    user_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Entries in order of id, filtered; page on with ``after_id`` = the last id seen."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, at, token_id, user_id, role, trust_id, school_urn, action,
                      pupil_ids, query, correlation_id
                 FROM access_log
                WHERE ($1::text IS NULL OR trust_id = $1)
                  AND ($2::text IS NULL OR school_urn = $2)
                  AND ($3::uuid IS NULL OR pupil_ids @> ARRAY[$3::uuid])
                  AND ($4::text IS NULL OR user_id = $4)
                  AND ($5::timestamptz IS NULL OR at >= $5)
                  AND ($6::timestamptz IS NULL OR at < $6)
                  AND id > $7
                ORDER BY id LIMIT $8""",
            trust_id,
            school_urn,
            pupil_id,
            user_id,
            since,
            until,
            after_id,
            limit,
        )
    return [
        {
            **dict(r),
            "at": r["at"].isoformat(),
            "token_id": str(r["token_id"]) if r["token_id"] else None,
            "pupil_ids": [str(p) for p in r["pupil_ids"]],
            "query": json.loads(r["query"]),
        }
        for r in rows
    ]


def _without_nul(value: Any) -> Any:
    """jsonb cannot hold NUL: what was asked is kept, readable, without it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value
