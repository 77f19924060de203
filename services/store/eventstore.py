"""The PostgreSQL event store: append to a pupil's stream, read it back, tail the log.

Ordering. ``position`` comes from a sequence, and a sequence value is taken at
insert, not at commit: with concurrent writers a reader could see 11 before 10
commits and move its checkpoint past 10 for ever. senflow takes a
transaction-scoped advisory lock (``_APPEND_LOCK``) just before inserting and
holds it to commit, so positions are handed out in commit order and a reader
that has seen position N has seen everything below it. Only the write (heads
moved on, events inserted) and the commit run under the lock; stream locking,
idempotency checks, sealing and hashing happen before it. Many appends may
share one transaction (``append_many``) so the cost of the lock is paid once
per batch, not per command.

Round trips. The locked path is four: begin, lock the heads (``senflow_lock_heads``,
which also creates new streams' heads and finds stored event ids), write, and
commit; a retry whose events are stored makes a fifth, to read them. At a light
load each command is its own transaction, and every round trip is a wake-up of
this process and of its PostgreSQL backend. So the store keeps the heads its own
appends left (``_KeptHeads``), and an append to kept heads is one round trip
(``senflow_append_known``, migration 0008): the rows are built from the kept heads
and the server checks, under the heads' locks, that they have not moved. If one
has (another process appended), or an event id is already stored, nothing is
written and the append takes the locked path, the authority on conflicts, retries,
erasures and new pupils.

Concurrency. Each stream has a head row (``streams``) locked ``FOR UPDATE``
(in stream-id order, so batches cannot deadlock) while its expected version is
checked: a stale expected version raises :class:`ConcurrencyConflict` with the
current version. No event is ever inserted with ``ON CONFLICT DO NOTHING``.

Idempotency. Appending events whose ids are already stored returns the
original result if the content is the same, and raises
:class:`EventIdConflict` if it is not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import weakref
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from senflow.events.catalogue import EVENT_TYPES, PupilTransferred
from senflow.events.envelope import Actor, NewEvent, RecordedEvent, Role, Tenant, trusted
from senflow.events.personal import SEALED_KEY
from senflow.events.upcasting import upcast
from senflow.services.store import bulk, vault
from senflow.services.store.rows import StreamRows

log = structlog.get_logger(__name__)

_APPEND_LOCK = 0x5E4F1E  # advisory lock key that orders all appends
NOTIFY_CHANNEL = "senflow_events"


class StoreError(Exception):
    pass


class ConcurrencyConflict(StoreError):
    def __init__(self, stream_id: UUID, expected: int | None, current: int) -> None:
        super().__init__(f"stream {stream_id} is at version {current}, not the expected {expected}")
        self.stream_id, self.expected, self.current = stream_id, expected, current


class EventIdConflict(StoreError):
    """An event id was reused for different content, or with a different batch."""

    def __init__(self, event_id: UUID, why: str) -> None:
        super().__init__(f"event {event_id}: {why}")
        self.event_id = event_id


class StreamErased(StoreError):
    def __init__(self, stream_id: UUID) -> None:
        super().__init__(f"pupil {stream_id}'s personal data was erased; nothing can be added")
        self.stream_id = stream_id


@dataclass(frozen=True)
class AppendRequest:
    stream_id: UUID
    events: Sequence[NewEvent]
    expected_version: int | None = None  # None: append at whatever the version is


@dataclass(frozen=True)
class AppendResult:
    stream_id: UUID
    first_version: int
    last_version: int
    positions: tuple[int, ...]
    event_ids: tuple[UUID, ...]
    recorded_at: datetime
    duplicate: bool = False  # True when this was a retry of an append already stored

    @property
    def last_position(self) -> int:
        return self.positions[-1]


@dataclass
class _Head:
    version: int
    last_hash: bytes | None
    key: bytes | None
    tenant: tuple[str | None, str | None]


@dataclass
class _Batch:
    """Rows to insert for one transaction, in order."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    heads: dict[UUID, _Head] = field(default_factory=dict)


KEPT_HEADS = 10_000  # ~0.5 KB each: a few MB at most


class _KeptHeads:
    """The heads this store's committed appends left, least recently used first out.

    Only ever a guess: an append from them is checked by the server under the heads'
    locks (``senflow_append_known``) and takes the locked path if one moved. They hold
    the pupils' keys, as the process holds them while it seals anyway. An erasure in
    this process leaves a keyless head in every store's (``erased``), which a later
    keep of an older head cannot overwrite; one in another process moves the head, so
    the server refuses the kept one, and the key goes when the head is next used or
    falls out.
    """

    def __init__(self, capacity: int = KEPT_HEADS) -> None:
        self.capacity = capacity
        self._heads: OrderedDict[UUID, _Head] = OrderedDict()
        _EVERY_KEPT.add(self)

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, stream_id: UUID) -> _Head | None:
        head = self._heads.get(stream_id)
        if head is not None:
            self._heads.move_to_end(stream_id)
        return head

    def keep(self, heads: dict[UUID, _Head]) -> None:
        """Keep committed heads; one kept at a later version stays (a slower task's older
        head must not replace it, nor an erasure's keyless one)."""
        for sid, head in heads.items():
            kept = self._heads.get(sid)
            if kept is None or kept.version <= head.version:
                self._heads[sid] = dataclasses.replace(head)  # a copy: batches move theirs
            self._heads.move_to_end(sid)
        while len(self._heads) > self.capacity:
            self._heads.popitem(last=False)

    def forget(self, stream_ids: Iterable[UUID]) -> None:
        for sid in stream_ids:
            self._heads.pop(sid, None)

    @staticmethod
    def erased(stream_id: UUID, version: int) -> None:
        """A pupil's key destroyed at ``version``: in every store of this process, the
        head keeps no key (appends take the locked path, which refuses them). Should the
        erasure roll back after all, that pupil's appends take the locked path here until
        the head falls out: slower, never wrong."""
        for kept in list(_EVERY_KEPT):
            kept.keep({stream_id: _Head(version, None, None, (None, None))})


_EVERY_KEPT: weakref.WeakSet[_KeptHeads] = weakref.WeakSet()
_HEAD_MOVED = "SF001"  # senflow_append_known: a kept head is no longer the stream's


_COLUMNS = (
    "event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, "
    "actor_id, actor_role, trust_id, school_urn, correlation_id, causation_id, data, "
    "prev_hash, hash"
)
# The write, in one statement: the append lock, the heads moved on (by
# ``senflow_move_heads``, migration 0007), the events inserted, and the wake-up for
# tailing readers (delivered at commit, never the data path). The insert reads its rows
# through the lock's CTE, so the lock is held (and the heads moved) before the first
# position is drawn from the sequence.
_WRITE = f"""
    WITH appending AS MATERIALIZED (
        SELECT pg_advisory_xact_lock($18),
               senflow_move_heads($19::uuid[], $20::int[], $21::bytea[], $22::text[],
                                  $23::text[])
    ), inserted AS (
        INSERT INTO events ({_COLUMNS})
        SELECT e.* FROM appending, unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[],
            $5::smallint[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[],
            $10::text[], $11::text[], $12::uuid[], $13::uuid[], $14::jsonb[], $15::bytea[],
            $16::bytea[]) AS e
        RETURNING event_id, position
    ), woken AS MATERIALIZED (
        SELECT pg_notify($17, max(position)::text) AS sent FROM inserted
    )
    SELECT inserted.event_id, inserted.position, woken.sent FROM inserted, woken
"""
# The same write from kept heads, checked under the heads' locks, in one autocommit call
# (migration 0008): ``_WRITE``'s parameters, then the heads as kept and their keys.
_WRITE_KNOWN = "SELECT * FROM senflow_append_known({})".format(
    ", ".join(f"${i}" for i in range(1, 27))
)
_COLUMN_NAMES = [c.strip() for c in _COLUMNS.split(",")]
_SELECT = f"SELECT position, {_COLUMNS} FROM events"


class EventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Imports build one chunk at a time: the first is ready (and its COPY
        # overlaps the next build) in half the time two interleaved builds take.
        self._building = asyncio.Lock()
        self.heads = _KeptHeads()
        # Appends by path: "known" (one round trip), "moved" (a kept head had moved or
        # an id was stored: the locked path took over), "locked".
        self.paths: Counter[str] = Counter()

    # --- writing ---------------------------------------------------------------------------

    async def append(
        self, stream_id: UUID, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> AppendResult:
        [outcome] = await self.append_many([AppendRequest(stream_id, events, expected_version)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def append_many(
        self, requests: Sequence[AppendRequest], conn: asyncpg.Connection | None = None
    ) -> list[AppendResult | StoreError]:
        """Append several requests in one transaction; each succeeds or fails on its own.

        A request that conflicts gets its error back and writes nothing; the
        others commit together. Pass ``conn`` to append inside a transaction
        the caller already holds (the caller then commits).
        """
        if not requests:
            return []
        for r in requests:
            if not r.events:
                raise ValueError("an append needs at least one event")
        if conn is not None:
            # The caller commits (or not): what these heads will be is unknown till then.
            self.heads.forget(r.stream_id for r in requests)
            outcomes, _ = await self._append_in(conn, requests)
            return outcomes
        known = self._known_heads(requests)
        if known is not None:
            done = await self._append_known(requests, known)
            if done is not None:
                self.paths["known"] += 1
                return done
            self.paths["moved"] += 1
        self.paths["locked"] += 1
        async with self.pool.acquire() as own:
            async with own.transaction():
                outcomes, heads = await self._append_in(own, requests)
            self.heads.keep(heads)  # committed: the heads now (kept before the release)
        return outcomes

    def _known_heads(self, requests: Sequence[AppendRequest]) -> dict[UUID, _Head] | None:
        """The requests' kept heads, if every request can be written from them: each
        stream's head is kept, with its key, every expected version is the one the
        kept heads give, and no event id comes twice. Else None: the locked path."""
        heads: dict[UUID, _Head] = {}
        versions: dict[UUID, int] = {}
        ids: set[UUID] = set()
        for r in requests:
            head = heads.get(r.stream_id) or self.heads.get(r.stream_id)
            if head is None or head.key is None:
                return None
            heads[r.stream_id] = head
            version = versions.get(r.stream_id, head.version)
            if r.expected_version is not None and r.expected_version != version:
                return None  # stale, or kept stale: the locked path gives the answer
            versions[r.stream_id] = version + len(r.events)
            before = len(ids)
            ids.update(e.event_id for e in r.events)
            if len(ids) != before + len(r.events):
                return None
        return heads

    async def _append_known(
        self, requests: Sequence[AppendRequest], known: dict[UUID, _Head]
    ) -> list[AppendResult | StoreError] | None:
        """Append from kept heads in one round trip; None if a head moved or an event id
        is stored already (nothing was written: the locked path takes over)."""
        recorded_at = datetime.now(UTC)
        batch, planned, args = self.known_write(requests, known, recorded_at)
        try:
            async with self.pool.acquire() as conn:
                inserted = await conn.fetch(_WRITE_KNOWN, *args)
                self.heads.keep(batch.heads)  # committed (kept before the release)
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != _HEAD_MOVED and not isinstance(exc, asyncpg.UniqueViolationError):
                raise
            self.heads.forget(known)
            return None
        outcomes: list[AppendResult | StoreError | None] = [None] * len(requests)
        _settle_written(outcomes, planned, batch, inserted, recorded_at)
        return [o for o in outcomes if o is not None]

    def known_write(
        self, requests: Sequence[AppendRequest], known: dict[UUID, _Head], recorded_at: datetime
    ) -> tuple[_Batch, list[tuple[int, AppendRequest, int]], list[Any]]:
        """The rows of ``requests`` from the heads ``known``, and ``_WRITE_KNOWN``'s
        arguments: the rows, then the heads as they move and as they were known."""
        batch = _Batch(heads={sid: dataclasses.replace(h) for sid, h in known.items()})
        planned = []
        for i, request in enumerate(requests):
            planned.append((i, request, len(batch.rows)))
            self._plan(request, batch, recorded_at)
        order = sorted(known)
        moved = [batch.heads[sid] for sid in order]
        was = [known[sid] for sid in order]
        args = [
            *zip(*batch.rows, strict=True),
            NOTIFY_CHANNEL,
            _APPEND_LOCK,
            order,
            [h.version for h in moved],
            [h.last_hash for h in moved],
            [h.tenant[0] for h in moved],
            [h.tenant[1] for h in moved],
            [h.version for h in was],
            [h.last_hash for h in was],
            [h.key for h in was],
        ]
        return batch, planned, args

    async def _append_in(
        self, conn: asyncpg.Connection, requests: Sequence[AppendRequest]
    ) -> tuple[list[AppendResult | StoreError], dict[UUID, _Head]]:
        """The locked path: the outcomes, and the heads as this transaction leaves them."""
        heads, existing = await self._lock_heads(conn, requests)
        recorded_at = datetime.now(UTC)
        batch = _Batch(heads=heads)
        planned: list[tuple[int, AppendRequest, int]] = []  # (index, request, first row)
        outcomes: list[AppendResult | StoreError | None] = [None] * len(requests)
        in_batch: dict[UUID, int] = {}  # event id -> the request of this batch that holds it
        echoes: dict[int, int] = {}  # a request repeating an earlier one of this batch
        for i, request in enumerate(requests):
            try:
                found = [existing[e.event_id] for e in request.events if e.event_id in existing]
                if found:
                    outcomes[i] = self._replayed(request, found, heads[request.stream_id])
                    continue
                earlier = {in_batch.get(e.event_id) for e in request.events} - {None}
                if earlier:
                    j = earlier.pop()
                    if earlier or requests[j] != request:
                        raise EventIdConflict(request.events[0].event_id, "reused in this batch")
                    echoes[i] = j  # a retry that arrived with its original: same outcome
                    continue
                first_row = len(batch.rows)
                self._plan(request, batch, recorded_at)
                planned.append((i, request, first_row))
                in_batch.update((e.event_id, i) for e in request.events)
            except StoreError as err:
                outcomes[i] = err
        if batch.rows:
            moved = {r.stream_id for _, r, _ in planned}
            heads_moved = [
                (sid, h.version, h.last_hash, h.tenant[0], h.tenant[1])
                for sid, h in batch.heads.items()
                if sid in moved
            ]
            inserted = await conn.fetch(
                _WRITE,
                *zip(*batch.rows, strict=True),
                NOTIFY_CHANNEL,
                _APPEND_LOCK,
                *zip(*heads_moved, strict=True),
            )
            _settle_written(outcomes, planned, batch, inserted, recorded_at)
        for i, j in echoes.items():
            original = outcomes[j]
            outcomes[i] = (
                dataclasses.replace(original, duplicate=True)
                if isinstance(original, AppendResult)
                else original
            )
        return [o for o in outcomes if o is not None], batch.heads

    async def _lock_heads(
        self, conn: asyncpg.Connection, requests: Sequence[AppendRequest]
    ) -> tuple[dict[UUID, _Head], dict[UUID, asyncpg.Record]]:
        """The requests' heads, locked (new streams' created), and those of their events
        already stored, by id."""
        ids = sorted({r.stream_id for r in requests})
        rows = await conn.fetch(
            "SELECT * FROM senflow_lock_heads($1::uuid[], $2::bytea[], $3::uuid[])",
            ids,
            [vault.new_key() for _ in ids],
            [e.event_id for r in requests for e in r.events],
        )
        heads = {
            r[0]: _Head(r[1], r[2], r[5], (r[3], r[4]))
            for r in rows[:-1]  # the last row: the stored event ids
        }
        stored = rows[-1][6]
        return heads, (await self._existing(conn, stored) if stored else {})

    async def _existing(
        self, conn: asyncpg.Connection, event_ids: list[UUID]
    ) -> dict[UUID, asyncpg.Record]:
        rows = await conn.fetch(f"{_SELECT} WHERE event_id = ANY($1::uuid[])", event_ids)
        return {r["event_id"]: r for r in rows}

    def _plan(self, request: AppendRequest, batch: _Batch, recorded_at: datetime) -> None:
        head = batch.heads[request.stream_id]
        if request.expected_version is not None and request.expected_version != head.version:
            raise ConcurrencyConflict(request.stream_id, request.expected_version, head.version)
        if head.key is None:
            raise StreamErased(request.stream_id)
        version, last_hash = head.version, head.last_hash
        rows = []
        stream = StreamRows(request.stream_id, head.key, recorded_at)
        for e in request.events:
            version += 1
            row = stream.row(version, e, last_hash)
            last_hash = row[-1]
            rows.append(row)
        batch.rows.extend(rows)
        head.version, head.last_hash = version, last_hash
        last = request.events[-1]
        # A transfer is recorded at the old school; the pupil now belongs to the new one.
        school = (
            last.data.to_urn if isinstance(last.data, PupilTransferred) else last.tenant.school_urn
        )
        head.tenant = (last.tenant.trust_id, school)

    def _replayed(
        self, request: AppendRequest, found: list[asyncpg.Record], head: _Head
    ) -> AppendResult:
        if len(found) != len(request.events):
            raise EventIdConflict(found[0]["event_id"], "already stored with a different batch")
        by_id = {r["event_id"]: r for r in found}
        if any(r["stream_id"] != request.stream_id for r in found):
            raise EventIdConflict(found[0]["event_id"], "already stored in another stream")
        for e in request.events:
            stored = _to_recorded(by_id[e.event_id], head.key)
            if not _same_event(stored, e):
                raise EventIdConflict(e.event_id, "already stored with different content")
        ordered = [by_id[e.event_id] for e in request.events]
        return AppendResult(
            stream_id=request.stream_id,
            first_version=ordered[0]["version"],
            last_version=ordered[-1]["version"],
            positions=tuple(r["position"] for r in ordered),
            event_ids=tuple(r["event_id"] for r in ordered),
            recorded_at=ordered[0]["recorded_at"],
            duplicate=True,
        )

    async def erase(
        self,
        stream_id: UUID,
        events: NewEvent | Sequence[NewEvent],
        conn: asyncpg.Connection | None = None,
        expected_version: int | None = None,
    ) -> AppendResult:
        """Record ``events`` (ending with personal_data_erased) and destroy the pupil's key,
        all in one transaction: the record of the erasure and the erasure go together."""
        events = [events] if isinstance(events, NewEvent) else list(events)
        if not events or events[-1].event_type != "personal_data_erased":
            raise ValueError("erase records events ending with personal_data_erased")

        async def run(c: asyncpg.Connection) -> AppendResult:
            [outcome], _ = await self._append_in(
                c, [AppendRequest(stream_id, events, expected_version)]
            )
            if isinstance(outcome, Exception):
                raise outcome
            await c.execute(
                "UPDATE vault_keys SET key = NULL, destroyed_at = now() "
                "WHERE stream_id = $1 AND key IS NOT NULL",
                stream_id,
            )
            # Keyless from here in every store of this process, at the erased version: a
            # slower append's keep of the head before it cannot bring the key back.
            _KeptHeads.erased(stream_id, outcome.last_version)
            return outcome

        if conn is not None:
            return await run(conn)
        async with self.pool.acquire() as own, own.transaction():
            return await run(own)

    async def import_new_streams(
        self,
        streams: Sequence[tuple[UUID, Sequence[NewEvent]]],
        conn: asyncpg.Connection | None = None,
    ) -> int:
        """Write whole histories of pupils new to the store with COPY, in one transaction.

        The same rows as appending them one by one (sealed, hash-chained, positions
        in commit order under the append lock), at bulk speed. A pupil already in
        the store makes the whole call fail: import is for new pupils only.
        """
        if not streams:
            return 0
        async with self._building:
            chunk = bulk.Chunk()
            for n, (stream_id, events) in enumerate(streams, start=1):
                chunk.add(stream_id, events)
                if n % 4 == 0:
                    # With several calls in flight, another chunk's COPY is being sent:
                    # let the loop feed the server while this one is sealed and hashed.
                    await asyncio.sleep(0)
            prepared = chunk.finish()
        return await self.import_prepared(prepared, conn)

    async def import_prepared(
        self, prepared: bulk.Prepared, conn: asyncpg.Connection | None = None
    ) -> int:
        """Write a ``bulk.Chunk`` (maybe built in another process), in one transaction."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self.import_prepared(prepared, own)
        p = prepared
        # A plain INSERT: an existing stream is a unique violation, never skipped.
        # The heads go in at their final version: nobody sees them before commit.
        await conn.execute(
            """INSERT INTO streams (stream_id, version, last_hash, trust_id, school_urn)
               SELECT * FROM unnest($1::uuid[], $2::int[], $3::bytea[], $4::text[], $5::text[])""",
            p.stream_ids,
            p.versions,
            p.last_hashes,
            p.trust_ids,
            p.school_urns,
        )
        await conn.execute(
            "INSERT INTO vault_keys (stream_id, key) SELECT * FROM unnest($1::uuid[], $2::bytea[])",
            p.stream_ids,
            p.keys,
        )
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
        await conn.copy_to_table(
            "events", source=_pieces(p.copy), columns=_COLUMN_NAMES, format="binary"
        )
        await conn.execute("SELECT pg_notify($1, 'import')", NOTIFY_CHANNEL)
        return p.events

    # --- reading ---------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: UUID,
        from_version: int = 1,
        to_version: int | None = None,
        recorded_before: datetime | None = None,
        occurred_before: datetime | None = None,
        personal: bool = True,
    ) -> list[RecordedEvent]:
        """A pupil's events in version order, decrypted (or redacted after an erasure).

        With ``personal=False`` personal fields are withheld, as on the bus.
        """
        async with self.pool.acquire() as conn:
            key = None
            if personal:  # withheld needs no key
                key = await conn.fetchval(
                    "SELECT key FROM vault_keys WHERE stream_id = $1", stream_id
                )
            rows = await conn.fetch(
                f"""{_SCAN} WHERE stream_id = $1 AND version >= $2
                     AND ($3::int IS NULL OR version <= $3)
                     AND ($4::timestamptz IS NULL OR recorded_at < $4)
                     AND ($5::timestamptz IS NULL OR occurred_at < $5)
                   ORDER BY version""",
                stream_id,
                from_version,
                to_version,
                recorded_before,
                occurred_before,
            )
        return _Decoder(not personal, {stream_id: key}).decode(rows)

    async def stream_version(self, stream_id: UUID) -> int:
        async with self.pool.acquire() as conn:
            version = await conn.fetchval(
                "SELECT version FROM streams WHERE stream_id = $1", stream_id
            )
        return int(version or 0)

    async def read_for_command(
        self, stream_id: UUID, after_version: int, command_id: UUID
    ) -> tuple[list[RecordedEvent], list[RecordedEvent]]:
        """What a command needs, in one round trip: the stream's events after
        ``after_version`` (decrypted), and the events ``command_id`` already caused,
        in any stream (a retry's, to be answered as it was the first time)."""
        async with self.pool.acquire() as conn:
            # By index whatever the store's size when this session planned it (0007).
            rows = await conn.fetch(
                "SELECT * FROM senflow_read_for_command($1::uuid, $2::int, $3::uuid)",
                stream_id,
                after_version,
                command_id,
            )
        tail, caused = [], []
        decoder = _Decoder(False, {r["stream_id"]: r["key"] for r in rows})
        for r in rows:
            event = decoder.event(r)
            if r["causation_id"] == command_id:
                caused.append(event)
            if r["stream_id"] == stream_id and r["version"] > after_version:
                tail.append(event)
        return tail, caused

    async def caused_by(self, causation_id: UUID) -> list[RecordedEvent]:
        """The events a command (by its id) already recorded: how retries are recognised."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"{_SELECT} WHERE causation_id = $1 ORDER BY position", causation_id
            )
            if not rows:
                return []
            key = await conn.fetchval(
                "SELECT key FROM vault_keys WHERE stream_id = $1", rows[0]["stream_id"]
            )
        return _Decoder(False, {rows[0]["stream_id"]: key}).decode(rows)

    async def read_all(
        self, after_position: int = 0, limit: int = 1000, personal: bool = False
    ) -> list[RecordedEvent]:
        """Events after ``after_position`` in global order, up to ``limit``.

        Personal fields are withheld unless ``personal`` is set: tailing
        readers (relay, projections) need codes and dates, not names.
        """
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
            keys: dict[UUID, bytes | None] = {}
            if personal and rows:
                keys = {
                    r["stream_id"]: r["key"]
                    for r in await conn.fetch(
                        "SELECT stream_id, key FROM vault_keys WHERE stream_id = ANY($1::uuid[])",
                        list({r["stream_id"] for r in rows}),
                    )
                }
        if personal:
            return _Decoder(False, keys).decode(rows)
        return _Decoder(True).decode(rows)

    async def scan_withheld(
        self, after_position: int = 0, limit: int = 10_000
    ) -> list[RecordedEvent]:
        """What ``read_all(after_position, limit)`` returns (personal fields withheld), for
        readers of the whole log (rebuilds): the same events, decoded on a cheaper path."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"{_SCAN} WHERE position > $1 ORDER BY position LIMIT $2", after_position, limit
            )
        return _Decoder(withhold=True).decode(rows)

    async def iter_all(
        self, after_position: int = 0, batch: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        while True:
            events = await self.read_all(after_position, batch)
            if not events:
                return
            yield events
            after_position = events[-1].position

    async def head_position(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))


def _settle_written(
    outcomes: list[AppendResult | StoreError | None],
    planned: list[tuple[int, AppendRequest, int]],
    batch: _Batch,
    inserted: list[asyncpg.Record],
    recorded_at: datetime,
) -> None:
    """The written requests' results, from the positions the insert returned."""
    position_of = {r["event_id"]: r["position"] for r in inserted}
    for i, request, first in planned:
        rows = batch.rows[first : first + len(request.events)]
        outcomes[i] = AppendResult(
            stream_id=request.stream_id,
            first_version=rows[0][2],
            last_version=rows[-1][2],
            positions=tuple(position_of[row[0]] for row in rows),
            event_ids=tuple(row[0] for row in rows),
            recorded_at=recorded_at,
        )


async def _pieces(data: bytes, size: int = 1 << 16) -> AsyncIterator[memoryview]:
    """COPY data in small messages: the server parses a message only once it has all of it,
    so one message per chunk would leave it idle until the whole chunk had been sent."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start : start + size]


# --- rows <-> events -------------------------------------------------------------------------


def _row(
    stream_id: UUID,
    version: int,
    e: NewEvent,
    recorded_at: datetime,
    key: bytes,
    prev_hash: bytes | None,
) -> tuple[Any, ...]:
    """One row on its own (a stream's many rows are cheaper through one ``StreamRows``)."""
    return StreamRows(stream_id, key, recorded_at).row(version, e, prev_hash)


# What decoding reads, in ``_COLUMNS``' order up to the data. The data come as text:
# the same characters as jsonb's binary form, received more cheaply.
_DECODED = f"position, {_COLUMNS.removesuffix(', data, prev_hash, hash')}, data::text"
# Moments as a hash covers them (``hashchain.ts``: ISO text in UTC), written by the server.
_UTC_TEXT = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
# A pupil's whole stream for readers that check its chain too (``verify``): the columns
# decoding reads, the moments as that text (a datetime is made from it more cheaply than
# a timestamptz is received), then prev_hash and hash.
STREAM_ROWS = f"""
    SELECT position, event_id, stream_id, version, event_type, schema_version,
           {_UTC_TEXT.format("occurred_at")}, {_UTC_TEXT.format("recorded_at")},
           actor_id, actor_role, trust_id, school_urn, correlation_id, causation_id,
           data::text, prev_hash, hash
      FROM events WHERE stream_id = $1 ORDER BY version"""


def decode_stream(
    stream_id: UUID, rows: Sequence[asyncpg.Record], key: bytes | None, personal: bool = True
) -> list[RecordedEvent]:
    """One pupil's ``STREAM_ROWS`` as ``read_stream`` gives them, for readers that fetched
    them themselves."""
    return _Decoder(not personal, {stream_id: key}, moments_as_text=True).decode(rows)


def _to_recorded(r: asyncpg.Record, key: bytes | None, withhold: bool = False) -> RecordedEvent:
    """One row as an event (many rows are cheaper through one ``_Decoder``)."""
    return _Decoder(withhold, {r["stream_id"]: key}).event(r)


# Reads that only decode leave out prev_hash: a RecordedEvent does not carry it.
_SCAN = f"SELECT {_DECODED}, hash FROM events"
# One marker serves for every withheld value (it is frozen, and equal to a fresh one).
_WITHHELD_VALUE = vault.withheld({})
_WITHHELD = {"open": lambda _token: _WITHHELD_VALUE}
_SEALED = f'"{SEALED_KEY}"'
_NOTHING_SEALED: dict[str, Any] = {}  # no sealed value in the data: nothing to open


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    """Pause Python's cycle collector while many objects that hold no cycles are made.

    Decoding a history makes some ten objects an event; the collector, started every
    few hundred allocations, would scan them (and older objects) again and again with
    nothing to find: reference counting frees events. Measured: ~7% of a pupil's read.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Decoder:
    """Rows into events, decrypted with the pupils' keys or with personal data withheld.

    The envelope columns were validated on the way in and are typed by the table,
    so they are taken as they are; the data are validated (that is where sealed
    values open and old schema versions are brought up to date). Reading a
    history or the whole log decodes many rows, and the envelope is most of the
    cost after the data: the few actors and tenants repeat, so each distinct one
    is built once and shared (they are frozen), as is each pupil's cipher; data
    with no sealed value need no opener at all.
    """

    def __init__(
        self,
        withhold: bool,
        keys: dict[UUID, bytes | None] | None = None,
        moments_as_text: bool = False,
    ) -> None:
        self.withhold, self.keys = withhold, keys or {}
        self.moments_as_text = moments_as_text
        self.actors: dict[tuple[str, str], Actor] = {}
        self.tenants: dict[tuple[str, str], Tenant] = {}
        self.ciphers: dict[UUID, Any] = {}

    def decode(self, rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
        with no_cycle_collector():
            return [self.event(r) for r in rows]

    def _context(self, stream_id: UUID, event_id: UUID, data: str) -> dict[str, Any]:
        if self.withhold:
            return _WITHHELD
        if _SEALED not in data:
            return _NOTHING_SEALED
        if stream_id not in self.ciphers:
            self.ciphers[stream_id] = vault.stream_opener(self.keys.get(stream_id), stream_id)
        return {"open": self.ciphers[stream_id](event_id)}

    def event(self, r: asyncpg.Record) -> RecordedEvent:
        # Every query decoded here starts with ``position, {_COLUMNS}`` (STREAM_ROWS has
        # the moments as text): unpacked at once, cheaper than a lookup by name each.
        (
            position,
            event_id,
            stream_id,
            version,
            event_type,
            stored_version,
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
        if self.moments_as_text:
            occurred_at = datetime.fromisoformat(occurred_at)
            recorded_at = datetime.fromisoformat(recorded_at)
        model = EVENT_TYPES[event_type]
        context = self._context(stream_id, event_id, data)
        if stored_version == model.schema_version:
            # the validator itself: model_validate_json is a Python wrapper around it
            payload = model.__pydantic_validator__.validate_json(data, context=context)
        else:
            upcasted = upcast(event_type, stored_version, json.loads(data))
            payload = model.model_validate(upcasted, context=context)
        actor = self.actors.get((actor_id, actor_role))
        if actor is None:
            actor = trusted(Actor, {"user_id": actor_id, "role": Role(actor_role)})
            self.actors[actor_id, actor_role] = actor
        tenant = self.tenants.get((trust_id, school_urn))
        if tenant is None:
            tenant = trusted(Tenant, {"trust_id": trust_id, "school_urn": school_urn})
            self.tenants[trust_id, school_urn] = tenant
        return trusted(
            RecordedEvent,
            {
                "event_id": event_id,
                "stream_id": stream_id,
                "version": version,
                "position": position,
                "schema_version": model.schema_version,
                "occurred_at": occurred_at,
                "recorded_at": recorded_at,
                "actor": actor,
                "tenant": tenant,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "data": payload,
                "hash": r["hash"].hex(),
            },
        )


def _same_event(stored: RecordedEvent, new: NewEvent) -> bool:
    return (
        stored.data == new.data
        and stored.occurred_at == new.occurred_at
        and stored.actor == new.actor
        and stored.tenant == new.tenant
        and stored.correlation_id == new.correlation_id
        and stored.causation_id == new.causation_id
    )
