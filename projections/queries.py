"""Reading the projections: fetch the documents in scope, then the pure query helpers."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from senflow.projections import audit, compliance, provision_map, register
from senflow.projections.base import Doc
from senflow.projections.tables import fetch_docs, read_doc


async def register_view(
    pool: asyncpg.Pool,
    trust_id: str | None,
    school_urn: str | None,
    as_of: date | None,
    today: date,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        docs = await fetch_docs(conn, register.PROJECTION, trust_id, school_urn)
    rows = register.register_rows(docs, as_of, today)
    if as_of is not None and school_urn is not None:
        # a pupil who has moved since belongs to the school they were at then
        rows = [r for r in rows if r["school_urn"] == school_urn]
    return {"as_of": as_of, "rows": rows, "counts": register.register_counts(rows)}


async def provision_view(
    pool: asyncpg.Pool, trust_id: str | None, school_urn: str | None, by: str
) -> dict[str, Any]:
    # A school's map is the provision it delivered: a pupil who moved on takes their
    # document to the new school, but the interventions stay where they were given.
    async with pool.acquire() as conn:
        docs = await fetch_docs(conn, provision_map.PROJECTION, trust_id, None)
    rows = provision_map.provision_rows(docs)
    if school_urn is not None:
        rows = [r for r in rows if r["school_urn"] == school_urn]
    return {
        "rows": rows,
        "totals": provision_map.provision_totals(rows, by),
        "impact": provision_map.intervention_impact(rows),
    }


async def audit_doc(pool: asyncpg.Pool, pupil_id: UUID) -> Doc | None:
    """A pupil's audit trail: the summary with every entry."""
    async with pool.acquire() as conn:
        row = await read_doc(conn, audit.PROJECTION, pupil_id)
    return None if row is None else row["doc"]


async def compliance_view(
    pool: asyncpg.Pool, trust_id: str | None, school_urn: str | None, today: date
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        docs = await fetch_docs(conn, compliance.PROJECTION, trust_id, school_urn)
    items = compliance.compliance_items(docs, today)
    if school_urn is not None:
        items = [i for i in items if i["school_urn"] == school_urn]
    return {"today": today, "items": items, "summary": compliance.compliance_summary(items)}
