"""Idempotency-Key: the same key and request give the same answer, once recorded.

Keys belong to the caller (trust and user). What is stored is the hash of the
request (method, path, canonical JSON body) and the answer. A retry with the
same request gets the stored answer; the same key with a different request is
refused (422), as the IETF Idempotency-Key draft recommends.

The answer is stored after the command ran, in its own statement, so a crash
in between loses the answer but not the guarantee: a command without an id of
its own gets one derived from the key (``command_id_for``), and the store
recognises a command id it has seen and returns the events it recorded.
Concurrent requests with one key both run; the store appends once and the
first stored answer is the one every later retry gets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

import asyncpg

from senflow.services.api.tokens import Principal
from senflow.services.store.tenancy import TrustPool

_NAMESPACE = UUID("1f0d9f4e-6a43-4c55-9c66-3f1d2a7b9e10")
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    request_hash: bytes
    status: int
    response: dict[str, Any]


def request_hash(method: str, path: str, body: Any) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).digest()


def command_id_for(who: Principal, key: str) -> UUID:
    """A stable command id for a keyed request whose body names none."""
    return uuid5(_NAMESPACE, f"{who.scope.trust_id}/{who.user_id}/{key}")


async def lookup(pool: TrustPool | asyncpg.Pool, who: Principal, key: str) -> Stored | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT request_hash, status, response FROM api_idempotency
                WHERE trust_id = $1 AND user_id = $2 AND key = $3""",
            who.scope.trust_id,
            who.user_id,
            key,
        )
    if row is None:
        return None
    return Stored(bytes(row["request_hash"]), row["status"], json.loads(row["response"]))


async def save(
    pool: TrustPool | asyncpg.Pool,
    who: Principal,
    key: str,
    hashed: bytes,
    status: int,
    response: dict[str, Any],
) -> Stored:
    """Store the answer unless one is stored already; return the one that is."""
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO api_idempotency (trust_id, user_id, key, request_hash, status, response)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb)
               ON CONFLICT (trust_id, user_id, key) DO NOTHING""",
            who.scope.trust_id,
            who.user_id,
            key,
            hashed,
            status,
            json.dumps(response, default=str),
        )
    stored = await lookup(pool, who, key)
    assert stored is not None
    return stored
