"""The database edge of auditing: read what replays, packs and exports need, then call pure code.

Everything here takes an :class:`EventStore` and/or a pool. Any object with the
``acquire()`` of an asyncpg pool works, such as the API's ``TrustPool``, so
row-level security keeps applying. Streams are read from the store, the source
of truth, and the read models are folded from them with the projections' own
``evolve`` (what a rebuild computes): nothing here waits for, or trusts, a
projection service being up to date. The SAR alone also reads the projection
tables, because it must show what is *held*.

Logs carry pupil ids, counts and codes only; never content.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import structlog

from senflow.events.envelope import RecordedEvent
from senflow.projections import audit, compliance, provision_map, register
from senflow.projections.base import Doc, Projection, fold
from senflow.projections.tables import read_doc
from senflow.services.auditing import replay as replay_mod
from senflow.services.auditing.evidence import build_pack
from senflow.services.store.eventstore import EventStore
from senflow.services.store.verify import VerifyReport, read_verified, verify
from senflow.services.workflow.calendar import school_day

log = structlog.get_logger(__name__)

READ_MODELS: tuple[Projection, ...] = (
    register.PROJECTION,
    provision_map.PROJECTION,
    compliance.PROJECTION,
    audit.PROJECTION,
)
_CONCURRENCY = 8


def today() -> date:
    return school_day(datetime.now(UTC))


# --- one pupil ---------------------------------------------------------------------------------


async def pupil_events(
    store: EventStore, pupil_id: UUID, personal: bool = True
) -> list[RecordedEvent]:
    events = await store.read_stream(pupil_id, personal=personal)
    if not events:
        raise LookupError(f"no pupil {pupil_id}")
    return events


async def replay_pupil(
    store: EventStore,
    pupil_id: UUID,
    as_of: date | None = None,
    as_known_at: datetime | None = None,
    *,
    personal: bool = True,
    on: date | None = None,
) -> Doc:
    """A pupil's state, cycles and timeline as of a day and/or as known at a moment.

    For the CLI and the HTTP API. ``personal=False`` withholds names and free
    text (as on the bus) for callers not entitled to them. ``on`` is the day
    open cycles are judged against when neither cut-off is given (default:
    today). Raises LookupError for an unknown pupil.
    """
    events = await pupil_events(store, pupil_id, personal)
    doc = replay_mod.build_replay(events, as_of, as_known_at, on or today())
    log.info(
        "pupil_replayed",
        pupil_id=str(pupil_id),
        as_of=doc["as_of"],
        as_known_at=doc["as_known_at"],
        events=doc["events_in_view"],
        recorded_later=len(doc["recorded_later"]),
    )
    return doc


def _chain_doc(report: VerifyReport, head_hash: bytes | None) -> Doc:
    return {
        "ok": report.ok,
        "events": report.events,
        "breaks": [b.describe() for b in report.breaks],
        "head_hash": bytes(head_hash).hex() if head_hash else None,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def verified_events(pool: Any, pupil_id: UUID) -> tuple[list[RecordedEvent], Doc]:
    """The pupil's events (personal data open) and their hash-chain result, from one read."""
    events, report = await read_verified(pool, pupil_id)
    if not events:
        raise LookupError(f"no pupil {pupil_id}")
    return events, _chain_doc(report, report.head_hash)


async def evidence_pack(
    pool: Any, pupil_id: UUID, on: date, generated_at: datetime | None = None
) -> Doc:
    events, checked = await verified_events(pool, pupil_id)
    pack = build_pack(events, checked, on, generated_at or datetime.now(UTC))
    log.info(
        "evidence_pack_built",
        pupil_id=str(pupil_id),
        events=len(events),
        chain_ok=checked["ok"],
        findings=pack["summary"]["findings"],
    )
    return pack


async def sar_material(pool: Any, pupil_id: UUID) -> Doc:
    """What a subject access export needs: events, held read models, vault status, chain."""
    events, checked = await verified_events(pool, pupil_id)
    held: dict[str, Doc] = {}
    async with pool.acquire() as conn:
        for projection in READ_MODELS:
            table = f"{projection.schema}.docs"
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                held[projection.name] = {"held": False, "note": "this read model is not built"}
                continue
            row = await read_doc(conn, projection, pupil_id)
            held[projection.name] = (
                {"held": False, "note": "no document for this pupil"}
                if row is None
                else {
                    "held": True,
                    "version": row["version"],
                    "updated_at": row["updated_at"].isoformat(),
                    "document": row["doc"],
                }
            )
        vault = await conn.fetchrow(
            "SELECT created_at, destroyed_at FROM vault_keys WHERE stream_id = $1", pupil_id
        )
    return {
        "events": events,
        "read_models": held,
        "vault": {
            "key_created_at": vault["created_at"].isoformat() if vault else None,
            "key_destroyed_at": vault["destroyed_at"].isoformat()
            if vault and vault["destroyed_at"]
            else None,
        },
        "verification": checked,
    }


# --- a school or a trust --------------------------------------------------------------------------


async def pupils_in_scope(
    pool: Any, trust_id: str | None = None, school_urn: str | None = None
) -> list[UUID]:
    """Pupils of a trust and/or school: those there now, and (for a school) those ever there.

    A pupil who moved to another school of the trust still counts for an
    earlier census day at the first school: callers filter by the school on
    the day they judge.
    """
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT stream_id FROM streams
                WHERE version > 0
                  AND ($1::text IS NULL OR trust_id = $1)
                  AND ($2::text IS NULL OR school_urn = $2)
               UNION
               SELECT DISTINCT stream_id FROM events
                WHERE $2::text IS NOT NULL AND school_urn = $2
                  AND ($1::text IS NULL OR trust_id = $1)
               ORDER BY 1""",
            trust_id,
            school_urn,
        )
    return [r["stream_id"] for r in rows]


async def fold_many(
    store: EventStore,
    pupil_ids: Iterable[UUID],
    projections: Iterable[Projection],
    personal: bool = False,
) -> dict[str, list[Doc]]:
    """Each projection's document for each pupil, folded from the store (no personal data)."""
    chosen = list(projections)
    semaphore = asyncio.Semaphore(_CONCURRENCY)

    async def one(pid: UUID) -> list[Doc | None]:
        async with semaphore:
            events = await store.read_stream(pid, personal=personal)
        return [fold(p, events) if events else None for p in chosen]

    folded = await asyncio.gather(*(one(pid) for pid in pupil_ids))
    return {
        p.name: [docs[i] for docs in folded if docs[i] is not None]  # type: ignore[misc]
        for i, p in enumerate(chosen)
    }


async def scope_docs(
    store: EventStore,
    pool: Any,
    trust_id: str | None,
    school_urn: str | None,
    projections: Iterable[Projection] = (register.PROJECTION, provision_map.PROJECTION),
) -> dict[str, list[Doc]]:
    pupils = await pupils_in_scope(pool, trust_id, school_urn)
    docs = await fold_many(store, pupils, projections)
    log.info("scope_folded", trust_id=trust_id, school_urn=school_urn, pupils=len(pupils))
    return docs


async def verify_scope(
    pool: Any,
    pupil_id: UUID | None = None,
    trust_id: str | None = None,
    school_urn: str | None = None,
) -> Doc:
    """Hash chains of a pupil, a school, a trust or everything, with a summary per school."""
    async with pool.acquire() as conn:
        schools = await conn.fetch(
            """SELECT trust_id, school_urn, count(*) AS streams FROM streams
                WHERE version > 0
                  AND ($1::uuid IS NULL OR stream_id = $1)
                  AND ($2::text IS NULL OR trust_id = $2)
                  AND ($3::text IS NULL OR school_urn = $3)
                GROUP BY trust_id, school_urn ORDER BY trust_id, school_urn""",
            pupil_id,
            trust_id,
            school_urn,
        )
    per_school: list[Doc] = []
    for s in schools:
        report = await verify(pool, pupil_id, s["trust_id"], s["school_urn"])
        per_school.append(
            {
                "trust_id": s["trust_id"],
                "school_urn": s["school_urn"],
                "ok": report.ok,
                "streams": report.streams,
                "events": report.events,
                "broken_streams": len({b.stream_id for b in report.breaks}),
                "breaks": [b.describe() for b in report.breaks],
            }
        )
    breaks = [b for s in per_school for b in s["breaks"]]
    return {
        "ok": not breaks,
        "scope": {
            "pupil": str(pupil_id) if pupil_id else None,
            "trust": trust_id,
            "school": school_urn,
        },
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "found": bool(per_school),
        "streams": sum(s["streams"] for s in per_school),
        "events": sum(s["events"] for s in per_school),
        "breaks": breaks,
        "schools": per_school,
    }
