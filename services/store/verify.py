"""Check every pupil's hash chain against the rows as they are now.

A row changed behind the database's back (the append-only trigger disabled,
a restore from a doctored dump) no longer matches its hash; a row removed
leaves a gap in the versions or a head that points past the last event.

``read_verified`` is for readers that want a pupil's history and its check
together (an evidence pack): both come from one fetch of the rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from senflow.events.envelope import RecordedEvent
from senflow.services.store import hashchain
from senflow.services.store.eventstore import STREAM_ROWS, decode_stream

_VERSION, _PREV_HASH, _HASH = 3, 15, 16  # STREAM_ROWS's, read in each row's loop


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
    head_hash: bytes | None = None  # the pupil's head, from ``read_verified``

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
            # One pupil's rows (a few thousand at most) in one fetch: a cursor costs
            # far more per row.
            _check(head, await conn.fetch(STREAM_ROWS, head["stream_id"]), report)
    return report


async def read_verified(
    pool: asyncpg.Pool, stream_id: UUID, personal: bool = True
) -> tuple[list[RecordedEvent], VerifyReport]:
    """The pupil's whole history as ``EventStore.read_stream`` gives it, and its chain
    checked as ``verify(pool, stream_id)`` checks it, from the same rows."""
    report = VerifyReport()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        head = await conn.fetchrow(
            """SELECT s.stream_id, s.version, s.last_hash, k.key
                 FROM streams s LEFT JOIN vault_keys k USING (stream_id)
                WHERE s.stream_id = $1""",
            stream_id,
        )
        if head is None or head["version"] == 0:
            return [], report
        rows = await conn.fetch(STREAM_ROWS, stream_id)
    _check(head, rows, report)
    report.head_hash = head["last_hash"]
    try:
        return decode_stream(stream_id, rows, head["key"], personal), report
    except Exception:
        if report.ok:
            raise  # rows that hash true and do not decode: a bug, not tampering
    # A row changed so far that it no longer decodes: the report names the break, and
    # the reader (an evidence pack, an export) still gets every event that can be read.
    events: list[RecordedEvent] = []
    for row in rows:
        with contextlib.suppress(Exception):
            events.extend(decode_stream(stream_id, [row], head["key"], personal))
    return events, report


def _check(head: asyncpg.Record, rows: list[asyncpg.Record], report: VerifyReport) -> None:
    """Check one pupil's ``STREAM_ROWS`` against each other and their head."""
    sid = head["stream_id"]
    report.streams += 1
    report.events += len(rows)
    text_sid = str(sid)
    prev: bytes | None = None
    for expected_version, r in enumerate(rows, start=1):
        reason = _broken(r, expected_version, prev, text_sid)
        if reason:  # the first break is what matters; later rows chain from it
            report.breaks.append(Break(sid, r["version"], r["event_id"], r["position"], reason))
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


def _broken(r: asyncpg.Record, expected_version: int, prev: bytes | None, sid: str) -> str | None:
    """Why row ``r`` breaks the chain, or None if it holds."""
    if r[_VERSION] != expected_version:
        return f"version {expected_version} is missing"
    if r[_PREV_HASH] != prev:
        return "previous-hash link does not match the preceding event"
    if hashchain.chain(prev, _content(r, sid)) != r[_HASH]:
        return "content does not match its hash (changed after it was written)"
    return None


def _content(r: asyncpg.Record, sid: str) -> bytes:
    # STREAM_ROWS's columns, unpacked at once (cheaper than a lookup by name each)
    (
        _,
        event_id,
        _,
        version,
        event_type,
        schema_version,
        occurred_at,
        recorded_at,
        actor_id,
        actor_role,
        trust_id,
        school_urn,
        correlation_id,
        causation_id,
        data,
    ) = r[:15]
    return hashchain.stored_content(
        str(event_id),
        sid,
        version,
        event_type,
        schema_version,
        occurred_at,
        recorded_at,
        actor_id,
        actor_role,
        trust_id,
        school_urn,
        str(correlation_id),
        str(causation_id) if causation_id else None,
        data,
    )
