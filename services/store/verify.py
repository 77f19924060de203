"""Check every pupil's hash chain against the rows as they are now.

A row changed behind the database's back (the append-only trigger disabled,
a restore from a doctored dump) no longer matches its hash; a row removed
leaves a gap in the versions or a head that points past the last event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from senflow.services.store import hashchain

# Moments as the hash has them (hashchain.ts), formatted by the server: cheaper than
# building a datetime per row only to print it again.
_UTC_TEXT = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


@dataclass(frozen=True)
class Break:
    stream_id: UUID
    version: int | None
    event_id: UUID | None
    position: int | None
    reason: str

    def describe(self) -> str:
        where = f"event {self.event_id} (stream {self.stream_id} v{self.version}, position "
        where += f"{self.position})" if self.event_id else f"stream {self.stream_id}"
        return f"{where}: {self.reason}"


@dataclass
class VerifyReport:
    streams: int = 0
    events: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


async def verify(
    pool: asyncpg.Pool,
    stream_id: UUID | None = None,
    trust_id: str | None = None,
    school_urn: str | None = None,
) -> VerifyReport:
    """Verify one pupil, a school, a trust, or everything (all filters None)."""
    report = VerifyReport()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        heads = await conn.fetch(
            """SELECT stream_id, version, last_hash FROM streams
                WHERE ($1::uuid IS NULL OR stream_id = $1)
                  AND ($2::text IS NULL OR trust_id = $2)
                  AND ($3::text IS NULL OR school_urn = $3)
                  AND version > 0
                ORDER BY stream_id""",
            stream_id,
            trust_id,
            school_urn,
        )
        for head in heads:
            report.streams += 1
            await _verify_stream(conn, head, report)
    return report


# The first 14 columns are ``hashchain.stored_content``'s arguments, in its order (ids as
# text: a UUID object is only needed for a break).
_ROWS = f"""SELECT event_id::text, stream_id::text, version, event_type, schema_version,
                  {_UTC_TEXT.format("occurred_at")}, {_UTC_TEXT.format("recorded_at")},
                  actor_id, actor_role, trust_id, school_urn, correlation_id::text,
                  causation_id::text, data, prev_hash, hash, position
             FROM events WHERE stream_id = $1 ORDER BY version"""
_CONTENT, _VERSION, _PREV_HASH, _HASH, _POSITION = 14, 2, 14, 15, 16


async def _verify_stream(
    conn: asyncpg.Connection, head: asyncpg.Record, report: VerifyReport
) -> None:
    sid = head["stream_id"]
    # One pupil's rows (a few thousand at most) in one fetch: a cursor costs far more per row.
    rows = await conn.fetch(_ROWS, sid)
    report.events += len(rows)
    prev: bytes | None = None
    for expected_version, r in enumerate(rows, start=1):
        reason = _break(r, expected_version, prev)
        if reason:  # the first break is what matters; later rows chain from it
            report.breaks.append(Break(sid, r[_VERSION], UUID(r[0]), r[_POSITION], reason))
            return
        prev = r[_HASH]
    if len(rows) != head["version"] or prev != head["last_hash"]:
        report.breaks.append(
            Break(
                sid,
                None,
                None,
                None,
                f"stream head says version {head['version']} but "
                f"{len(rows)} events chain (events removed from the end?)",
            )
        )


def _break(r: asyncpg.Record, expected_version: int, prev: bytes | None) -> str | None:
    """Why row ``r`` breaks the chain, or None if it holds."""
    if r[_VERSION] != expected_version:
        return f"version {expected_version} is missing"
    if r[_PREV_HASH] != prev:
        return "previous-hash link does not match the preceding event"
    if hashchain.chain(prev, hashchain.stored_content(*r[:_CONTENT])) != r[_HASH]:
        return "content does not match its hash (changed after it was written)"
    return None
