"""A projection's tables, and applying events to them exactly once, in order.

Everything a projection owns lives in its own PostgreSQL schema, so a rebuild
can fill a fresh schema and swap it in with two renames in one transaction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import orjson

from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection

if TYPE_CHECKING:
    from senflow.projections.kept_docs import KeptDocs

# Reads a pupil's events [from_version, to_version] from the store, personal data withheld.
FetchMissing = Callable[[UUID, int, int], Awaitable[list[RecordedEvent]]]

_SCHEMA_LOCK = 0x5E4F3E


def _ddl(schema: str, projection: Projection) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"""CREATE TABLE IF NOT EXISTS {schema}.docs (
                stream_id   uuid PRIMARY KEY,
                trust_id    text NOT NULL,
                school_urn  text NOT NULL,
                version     integer NOT NULL,
                position    bigint NOT NULL,
                doc         jsonb NOT NULL,
                updated_at  timestamptz NOT NULL DEFAULT now())""",
        # Documents are rewritten whole on every batch, and a pupil's audit trail or
        # provision map runs to tens of KB: lz4 compresses one a third faster than the
        # default pglz (measured: an upsert of a 74 KB document 1.0 ms against 1.5).
        # Where the server was built without lz4, the default stays.
        f"""DO $$ BEGIN
                IF (SELECT attcompression FROM pg_attribute
                     WHERE attrelid = '{schema}.docs'::regclass AND attname = 'doc') <> 'l'
                THEN
                    ALTER TABLE {schema}.docs ALTER COLUMN doc SET COMPRESSION lz4;
                END IF;
            EXCEPTION WHEN feature_not_supported OR invalid_parameter_value
                        OR undefined_column THEN NULL;  -- no lz4, or PostgreSQL 13
            END $$""",
        f"CREATE INDEX IF NOT EXISTS docs_school ON {schema}.docs (trust_id, school_urn)",
        f"CREATE INDEX IF NOT EXISTS docs_position ON {schema}.docs (position)",
        *(ix.format(schema=schema) for ix in projection.indexes),
        *(
            [
                f"""CREATE TABLE IF NOT EXISTS {schema}.entries (
                        stream_id   uuid NOT NULL,
                        version     integer NOT NULL,
                        position    bigint NOT NULL,
                        entry       jsonb NOT NULL,
                        PRIMARY KEY (stream_id, version))"""
            ]
            if projection.entry is not None
            else []
        ),
    ]


async def ensure_tables(
    conn: asyncpg.Connection, projection: Projection, schema: str | None = None
) -> None:
    """Create the projection's schema and tables if missing (safe from many processes).

    The projection's ``upgrades`` run once, when its ``entries`` table is created
    beside documents that may hold what now belongs there; the documents are
    locked against writers meanwhile.
    """
    schema = schema or projection.schema
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        fresh = projection.entry is not None and (
            await conn.fetchval("SELECT to_regclass($1)", f"{schema}.entries") is None
        )
        for statement in _ddl(schema, projection):
            await conn.execute(statement)
        if fresh and projection.upgrades:
            await conn.execute(f"LOCK TABLE {schema}.docs IN SHARE ROW EXCLUSIVE MODE")
            for statement in projection.upgrades:
                await conn.execute(statement.format(schema=schema))


@dataclass
class ApplyStats:
    applied: int = 0
    duplicates: int = 0
    filled: int = 0  # events read from the store to close a version gap


@dataclass
class Current:
    """A pupil's document with its checkpoint: what one row of ``docs`` holds."""

    version: int
    doc: Doc | None
    position: int = 0
    trust_id: str = ""
    school_urn: str = ""

    def advance(self, projection: Projection, event: RecordedEvent) -> None:
        """Apply the pupil's next event (live, in a gap fill or in a rebuild: one code path)."""
        self.doc = projection.evolve(self.doc, event)
        self.version, self.position = event.version, event.position
        self.trust_id = str(self.doc.get("trust_id") or event.tenant.trust_id)
        self.school_urn = str(self.doc.get("school_urn") or event.tenant.school_urn)

    def row(self, stream_id: UUID) -> tuple[UUID, str, str, int, int, str]:
        """The values of its ``docs`` row, in ``ROW_COLUMNS`` order."""
        return (
            stream_id,
            self.trust_id,
            self.school_urn,
            self.version,
            self.position,
            _json(self.doc),
        )


def _json(doc: Doc) -> str:
    """A document as JSON text for ``jsonb``: orjson, several times faster than ``json``
    (a rebuild writes every document at once); ``json`` for the integers beyond 64 bits
    orjson refuses. Keys are coerced to text as ``json`` does."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(doc)


# Every ASCII digit to "0", every other byte to " ": a run of 19 zeros then marks a
# number as long as 2**63, which orjson would read as a float if it is an integer.
# (A regular expression for the run cost ten times orjson's parse of a whole document.)
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def _load(text: str) -> Doc:
    """A stored document: orjson, several times faster than ``json`` (every batch reads its
    pupils' documents); ``json`` where a number may be an integer beyond 64 bits, which
    orjson would turn into a float."""
    long_number = _LONG_RUN in text.encode().translate(_DIGITS)
    doc: Doc = json.loads(text) if long_number else orjson.loads(text)
    return doc


ROW_COLUMNS = ("stream_id", "trust_id", "school_urn", "version", "position", "doc")
_DOC = ROW_COLUMNS.index("doc")
ENTRY_COLUMNS = ("stream_id", "version", "position", "entry")
EntryRow = tuple[UUID, int, int, str]


def entry_row(projection: Projection, event: RecordedEvent) -> EntryRow:
    """An event's row in ``entries``, in ``ENTRY_COLUMNS`` order (the projection has entries)."""
    assert projection.entry is not None
    return (event.stream_id, event.version, event.position, _json(projection.entry(event)))


async def apply_events(
    conn: asyncpg.Connection,
    projection: Projection,
    events: Sequence[RecordedEvent],
    fetch_missing: FetchMissing,
    schema: str | None = None,
    lock: bool = True,
    kept: KeptDocs | None = None,
) -> ApplyStats:
    """Apply events; each pupil's document row is its checkpoint.

    With ``lock`` (inside the caller's transaction) the documents are read FOR
    UPDATE. Without it there is no transaction to hold a lock (see the consumer):
    a pupil's document at version N is the fold of the same N immutable events
    whoever computes it, and a write only replaces an older version, so two
    writers of one pupil can only ever leave the newer of two correct documents.

    Duplicates (version already applied) are skipped; a version gap is filled
    from the store first, so a lost or reordered message never corrupts a
    document. With ``kept`` (no lock) the documents kept there are not read
    again, and what was read or written is kept (see ``kept_docs``).
    """
    schema = schema or projection.schema
    assert not (lock and kept), "kept documents are for writers without a transaction"
    stats = ApplyStats()
    ids = sorted({e.stream_id for e in events})
    current = kept.take(ids) if kept is not None else {}
    sizes: dict[UUID, int] = {}  # of the documents read, to keep them
    if len(current) < len(ids):
        rows = await conn.fetch(
            f"""SELECT stream_id, version, position, trust_id, school_urn, doc
                  FROM {schema}.docs WHERE stream_id = ANY($1::uuid[])
                 ORDER BY stream_id{" FOR UPDATE" if lock else ""}""",
            [i for i in ids if i not in current],
        )
        for r in rows:
            text = r["doc"]
            current[r["stream_id"]] = Current(
                r["version"], _load(text), r["position"], r["trust_id"], r["school_urn"]
            )
            sizes[r["stream_id"]] = len(text)
    changed: set[UUID] = set()
    entries: list[EntryRow] = []
    for e in events:
        cur = current.setdefault(e.stream_id, Current(0, None))
        if e.version <= cur.version:
            stats.duplicates += 1
            continue
        pending = [e]
        if e.version > cur.version + 1:
            missing = await fetch_missing(e.stream_id, cur.version + 1, e.version - 1)
            if [m.version for m in missing] != list(range(cur.version + 1, e.version)):
                raise LookupError(
                    f"store lacks versions {cur.version + 1}-{e.version - 1} of {e.stream_id}"
                )
            stats.filled += len(missing)
            pending = [*missing, e]
        for p in pending:
            cur.advance(projection, p)
        if projection.entry is not None:
            entries.extend(entry_row(projection, p) for p in pending)
        stats.applied += 1
        changed.add(e.stream_id)
    written = [current[sid].row(sid) for sid in sorted(changed)]
    if kept is not None:
        if kept.table is None:
            kept.table = await _table(conn, schema)
        table = await _write(conn, projection, schema, written, entries, kept.table)
        if table != kept.table:
            # The table is not the one the kept documents came from (a rebuild swapped
            # in another, perhaps folded by newer code): nothing was written; forget
            # them all and apply the events again from the table as it is.
            kept.clear(table)
            return await apply_events(conn, projection, events, fetch_missing, schema, lock, kept)
        # only now: a failed write must leave nothing kept ahead of it
        sizes.update((row[0], len(row[_DOC])) for row in written)
        for sid, size in sizes.items():
            kept.put(sid, current[sid], size)
    elif written:
        await _write(conn, projection, schema, written, entries, None)
    return stats


async def _table(conn: asyncpg.Connection, schema: str) -> int | None:
    oid = await conn.fetchval("SELECT to_regclass($1)::oid", f"{schema}.docs")
    return None if oid is None else int(oid)


async def _write(
    conn: asyncpg.Connection,
    projection: Projection,
    schema: str,
    written: list[tuple[UUID, str, str, int, int, str]],
    entries: list[EntryRow],
    table: int | None,
) -> int | None:
    """Write the documents (each only over an older version) and their new entries in one
    statement; with ``table``, only if ``docs`` is still that table. Its table now."""
    columns = [list(c) for c in zip(*written, strict=True)] if written else [[]] * 6
    args: list[Any] = [f"{schema}.docs", table, *columns]
    with_entries = ""
    if projection.entry is not None:
        args += [list(c) for c in zip(*entries, strict=True)] if entries else [[]] * 4
        # Each pupil's new entries go in with their document (no moment when one is
        # written and not the other).
        with_entries = f"""
            new_entries AS (
                INSERT INTO {schema}.entries (stream_id, version, position, entry)
                SELECT s, v, p, e::jsonb
                  FROM same, unnest($9::uuid[], $10::int[], $11::bigint[], $12::text[])
                       AS t(s, v, p, e)
                ON CONFLICT (stream_id, version) DO NOTHING),"""
    oid = await conn.fetchval(
        f"""WITH here AS (SELECT to_regclass($1)::oid AS oid),
                 same AS (SELECT 1 FROM here WHERE $2::oid IS NULL OR here.oid = $2::oid),
                 {with_entries}
                 new_docs AS (
                    INSERT INTO {schema}.docs
                        (stream_id, trust_id, school_urn, version, position, doc, updated_at)
                    SELECT s, t, u, v, p, d::jsonb, now()
                      FROM same, unnest($3::uuid[], $4::text[], $5::text[], $6::int[],
                                        $7::bigint[], $8::text[]) AS w(s, t, u, v, p, d)
                    ON CONFLICT (stream_id) DO UPDATE SET
                        trust_id = EXCLUDED.trust_id, school_urn = EXCLUDED.school_urn,
                        version = EXCLUDED.version, position = EXCLUDED.position,
                        doc = EXCLUDED.doc, updated_at = now()
                    WHERE {schema}.docs.version < EXCLUDED.version)
            SELECT oid FROM here""",
        *args,
    )
    return None if oid is None else int(oid)


async def fetch_docs(
    conn: asyncpg.Connection,
    projection: Projection,
    trust_id: str | None = None,
    school_urn: str | None = None,
    schema: str | None = None,
) -> list[Doc]:
    rows = await conn.fetch(
        f"""SELECT doc FROM {schema or projection.schema}.docs
             WHERE ($1::text IS NULL OR trust_id = $1)
               AND ($2::text IS NULL OR school_urn = $2)
             ORDER BY stream_id""",
        trust_id,
        school_urn,
    )
    return [json.loads(r["doc"]) for r in rows]


async def snapshot(
    conn: asyncpg.Connection, projection: Projection, schema: str | None = None
) -> dict[UUID, tuple[int, int, Any]]:
    """Every document as readers see it, with its version and position: what "equal read
    models" compares."""
    schema = schema or projection.schema
    async with _one_snapshot(conn):
        rows = await conn.fetch(f"SELECT stream_id, version, position, doc FROM {schema}.docs")
        entries = await _entries(conn, projection, schema, None)
    return {
        r["stream_id"]: (
            r["version"],
            r["position"],
            _assembled(projection, json.loads(r["doc"]), entries.get(r["stream_id"], [])),
        )
        for r in rows
    }


async def read_doc(
    conn: asyncpg.Connection, projection: Projection, stream_id: UUID, schema: str | None = None
) -> dict[str, Any] | None:
    """A pupil's row (``version``, ``updated_at``, ``doc``), its document as readers see it
    (the document and its entries from one snapshot)."""
    schema = schema or projection.schema
    async with _one_snapshot(conn):
        row = await conn.fetchrow(
            f"SELECT version, updated_at, doc FROM {schema}.docs WHERE stream_id = $1", stream_id
        )
        if row is None:
            return None
        entries = await _entries(conn, projection, schema, stream_id)
    doc = _assembled(projection, json.loads(row["doc"]), entries.get(stream_id, []))
    return {"version": row["version"], "updated_at": row["updated_at"], "doc": doc}


async def _entries(
    conn: asyncpg.Connection, projection: Projection, schema: str, stream_id: UUID | None
) -> dict[UUID, list[Doc]]:
    """Entries by pupil (one pupil's, or all). None before the table exists: documents of
    an earlier release hold their entries themselves."""
    if projection.entry is None:
        return {}
    if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.entries") is None:
        return {}
    select = f"SELECT stream_id, entry FROM {schema}.entries"
    if stream_id is None:
        rows = await conn.fetch(f"{select} ORDER BY stream_id, version")
    else:
        rows = await conn.fetch(f"{select} WHERE stream_id = $1 ORDER BY version", stream_id)
    out: dict[UUID, list[Doc]] = {}
    for r in rows:
        out.setdefault(r["stream_id"], []).append(json.loads(r["entry"]))
    return out


def _one_snapshot(conn: asyncpg.Connection) -> contextlib.AbstractAsyncContextManager[Any]:
    """Reads that must agree (documents and their entries) in one snapshot; inside a
    caller's transaction, the caller's."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction(isolation="repeatable_read", readonly=True)


def _assembled(projection: Projection, doc: Doc, entries: list[Doc]) -> Doc:
    if projection.assemble is None or (not entries and "entries" in doc):
        return doc  # no entries of their own, or a document of an earlier release
    return projection.assemble(doc, entries)
