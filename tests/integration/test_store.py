"""The event store's guarantees, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from senflow.events import catalogue as ev
from senflow.events.personal import Redacted
from senflow.services.store.db import with_database
from senflow.services.store.eventstore import (
    _WRITE_KNOWN,
    AppendRequest,
    ConcurrencyConflict,
    EventIdConflict,
    EventStore,
    StreamErased,
    _Head,
)
from senflow.services.store.migrate import available, migrate
from senflow.services.store.verify import VerifyReport, read_verified, verify
from tests.conftest import BASE_URL
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration


async def test_append_and_read_back_with_personal_data_sealed_at_rest(store: EventStore, pool):
    pupil = uuid.uuid4()
    result = await store.append(pupil, [new_event(registered()), new_event(concern())], 0)
    assert (result.first_version, result.last_version) == (1, 2)
    assert result.positions[0] < result.positions[1]

    events = await store.read_stream(pupil)
    assert [e.version for e in events] == [1, 2]
    assert events[0].data.forename == "Amy"
    assert events[1].data.description.startswith("Finds it hard")

    async with pool.acquire() as conn:
        raw = await conn.fetchval(
            "SELECT string_agg(data::text, ' ') FROM events WHERE stream_id = $1", pupil
        )
    assert "Amy" not in raw and "Finds it hard" not in raw and "$sealed" in raw
    assert "B80120000" in raw or events[0].data.upn in raw  # identifiers stay in clear


async def test_stale_expected_version_is_a_conflict_naming_the_current_version(
    store: EventStore, pool
):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], expected_version=0)
    with pytest.raises(ConcurrencyConflict) as err:
        await store.append(pupil, [new_event(concern())], expected_version=0)
    assert err.value.current == 1 and err.value.expected == 0
    assert "version 1" in str(err.value)
    assert await store.stream_version(pupil) == 1
    assert len(await store.read_stream(pupil)) == 1


async def test_concurrent_appends_at_the_same_version_one_wins(store: EventStore):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    attempts = [store.append(pupil, [new_event(concern(f"c{i}"))], 1) for i in range(8)]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, ConcurrencyConflict) for o in outcomes if isinstance(o, Exception))
    assert await store.stream_version(pupil) == 2


async def test_retrying_an_append_returns_the_original_result_and_stores_nothing(
    store: EventStore, pool
):
    pupil = uuid.uuid4()
    batch = [new_event(registered()), new_event(concern())]
    first = await store.append(pupil, batch, 0)
    again = await store.append(pupil, batch, 0)  # stale version: a retry is still recognised
    assert again.duplicate and not first.duplicate
    assert again.positions == first.positions and again.event_ids == first.event_ids
    assert await store.stream_version(pupil) == 2


async def _until_someone_waits_for(pool, holder: asyncpg.Connection) -> None:
    """Until another backend is blocked by ``holder``'s locks (or fail after 5 s)."""
    pid = holder.get_server_pid()
    async with pool.acquire() as watcher:
        for _ in range(500):
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                pid,
            ):
                return
            await asyncio.sleep(0.01)
    raise AssertionError("nothing waited for the transaction's locks")


async def _while_held(pool, hold, then):
    """``hold(conn)`` in a transaction; ``then()`` starts meanwhile, and once it waits for
    the locks ``hold`` took the transaction commits. Returns both outcomes."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            held = await hold(conn)
            task = asyncio.create_task(then())
            try:
                await _until_someone_waits_for(pool, conn)
            except BaseException:
                task.cancel()
                raise
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    return held, outcome


async def test_a_retry_waiting_on_its_original_is_answered_as_a_duplicate(store: EventStore, pool):
    """Stored events are looked up once the heads are locked: a retry that waited for its
    original's transaction sees what that transaction committed, instead of inserting
    the same events again."""
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    batch = [new_event(concern())]
    [first], again = await _while_held(
        pool,
        lambda conn: store.append_many([AppendRequest(pupil, batch, 1)], conn=conn),
        lambda: store.append(pupil, batch),  # any version
    )
    assert not isinstance(first, Exception) and not isinstance(again, Exception)
    assert again.duplicate and again.positions == first.positions
    assert await store.stream_version(pupil) == 2


async def test_an_append_waiting_on_an_erasure_finds_the_key_destroyed(store: EventStore, pool):
    """The keys are read once the heads are locked: an append that waited for an
    erasure's transaction is refused, not sealed with the destroyed key."""
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    erased = new_event(ev.PersonalDataErased(reason_code="erasure_request", reason="SAR-9"))
    _, late = await _while_held(
        pool,
        lambda conn: store.erase(pupil, erased, conn=conn),
        lambda: store.append(pupil, [new_event(concern())]),  # any version
    )
    assert isinstance(late, StreamErased)
    assert await store.stream_version(pupil) == 2


async def test_same_event_id_with_other_content_is_an_error(store: EventStore):
    pupil = uuid.uuid4()
    original = new_event(registered())
    await store.append(pupil, [original], 0)
    tampered = original.model_copy(update={"data": registered(serial=2)})
    with pytest.raises(EventIdConflict, match="different content"):
        await store.append(pupil, [tampered], 1)
    with pytest.raises(EventIdConflict, match="another stream"):
        await store.append(uuid.uuid4(), [original], 0)
    partial = [original, new_event(concern())]
    with pytest.raises(EventIdConflict, match="different batch"):
        await store.append(pupil, partial, 1)
    assert await store.stream_version(pupil) == 1


async def test_a_batch_of_appends_fails_only_the_conflicting_request(store: EventStore):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.append(b, [new_event(registered())], 0)
    outcomes = await store.append_many(
        [
            AppendRequest(a, [new_event(registered())], 0),
            AppendRequest(b, [new_event(concern())], 0),  # stale
            AppendRequest(c, [new_event(registered())], 0),
            AppendRequest(a, [new_event(concern())], 1),  # same stream, later in the batch
        ]
    )
    assert isinstance(outcomes[1], ConcurrencyConflict)
    assert [o.last_version for o in (outcomes[0], outcomes[2], outcomes[3])] == [1, 1, 2]
    assert outcomes[0].positions[0] < outcomes[3].positions[0]
    assert await store.stream_version(b) == 1


async def test_read_stream_by_version_and_by_time(store: EventStore):
    pupil = uuid.uuid4()
    t0 = datetime(2025, 9, 1, 9, tzinfo=UTC)
    events = [new_event(registered(), t0)] + [
        new_event(concern(f"note {i}"), t0 + timedelta(days=i)) for i in range(1, 5)
    ]
    await store.append(pupil, events, 0)
    assert [e.version for e in await store.read_stream(pupil, from_version=2, to_version=3)] == [
        2,
        3,
    ]
    before = await store.read_stream(pupil, occurred_before=t0 + timedelta(days=2))
    assert [e.version for e in before] == [1, 2]
    late = datetime.now(UTC) + timedelta(seconds=1)
    assert len(await store.read_stream(pupil, recorded_before=late)) == 5
    assert await store.read_stream(pupil, recorded_before=t0) == []


async def test_read_all_withholds_personal_data_unless_asked(store: EventStore):
    pupil = uuid.uuid4()
    result = await store.append(pupil, [new_event(registered())], 0)
    [tailed] = await store.read_all(result.positions[0] - 1, limit=1)
    assert tailed.event_id == result.event_ids[0]
    assert isinstance(tailed.data.forename, Redacted)
    assert tailed.data.upn == registered().upn
    [full] = await store.read_all(result.positions[0] - 1, limit=1, personal=True)
    assert full.data.forename == "Amy"


async def test_events_table_refuses_update_delete_and_truncate(store: EventStore, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    async with pool.acquire() as conn:
        for sql in (
            "UPDATE events SET event_type = 'x' WHERE stream_id = $1",
            "DELETE FROM events WHERE stream_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql, pupil)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE events CASCADE")
    assert len(await store.read_stream(pupil)) == 1


async def _behind_the_databases_back(pool, sql: str, *args) -> None:
    """Change rows the way an attacker with superuser rights could: triggers off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def _remove_streams(pool, *stream_ids) -> None:
    """Take a tampered pupil out again, so later tests that fold the whole log are not
    handed a broken stream (some rebuild projections from everything stored)."""
    for sql in (
        "DELETE FROM events WHERE stream_id = ANY($1::uuid[])",
        "DELETE FROM streams WHERE stream_id = ANY($1::uuid[])",
        "DELETE FROM vault_keys WHERE stream_id = ANY($1::uuid[])",
    ):
        await _behind_the_databases_back(pool, sql, list(stream_ids))


async def _checked(store: EventStore, pool, pupil: uuid.UUID) -> VerifyReport:
    """``verify``'s report, held equal to ``read_verified``'s (whose events are held equal
    to ``read_stream``'s): the one-pass read must find every break ``verify`` finds."""
    report = await verify(pool, pupil)
    events, together = await read_verified(pool, pupil)
    assert events == await store.read_stream(pupil)
    assert (together.streams, together.events, together.breaks) == (
        report.streams,
        report.events,
        report.breaks,
    )
    return report


async def test_verify_names_the_first_event_changed_behind_the_databases_back(
    store: EventStore, pool
):
    pupil, other = uuid.uuid4(), uuid.uuid4()
    result = await store.append(
        pupil, [new_event(registered()), new_event(concern()), new_event(concern("b"))], 0
    )
    await store.append(other, [new_event(registered())], 0)
    assert (await _checked(store, pool, pupil)).ok

    # Re-date the second event: the kind of quiet edit an audit trail must catch.
    await _behind_the_databases_back(
        pool,
        "UPDATE events SET occurred_at = occurred_at - interval '30 days' WHERE event_id = $1",
        result.event_ids[1],
    )
    report = await _checked(store, pool, pupil)
    assert not report.ok
    assert report.breaks[0].event_id == result.event_ids[1]
    assert report.breaks[0].version == 2
    assert "changed" in report.breaks[0].reason
    assert (await _checked(store, pool, other)).ok
    await _remove_streams(pool, pupil)


async def test_a_row_changed_until_it_no_longer_decodes_is_reported_not_raised(
    store: EventStore, pool
):
    """An evidence pack of a pupil whose row was mangled must still be made, and say so."""
    pupil = uuid.uuid4()
    result = await store.append(
        pupil, [new_event(registered()), new_event(concern()), new_event(concern("b"))], 0
    )
    await _behind_the_databases_back(
        pool,
        """UPDATE events SET data = '{"event_type": "concern_raised"}'::jsonb
            WHERE event_id = $1""",
        result.event_ids[1],
    )
    with pytest.raises(Exception):  # noqa: B017 - the plain read cannot decode it
        await store.read_stream(pupil)
    events, report = await read_verified(pool, pupil)
    assert not report.ok and report.breaks[0].event_id == result.event_ids[1]
    assert [e.event_id for e in events] == [result.event_ids[0], result.event_ids[2]]
    assert (await verify(pool, pupil)).breaks == report.breaks
    await _remove_streams(pool, pupil)


async def test_verify_detects_removed_events(store: EventStore, pool):
    middle, tail = uuid.uuid4(), uuid.uuid4()
    m = await store.append(
        middle, [new_event(registered()), new_event(concern()), new_event(concern("z"))], 0
    )
    t = await store.append(tail, [new_event(registered()), new_event(concern())], 0)
    await _behind_the_databases_back(pool, "DELETE FROM events WHERE event_id = $1", m.event_ids[1])
    await _behind_the_databases_back(pool, "DELETE FROM events WHERE event_id = $1", t.event_ids[1])
    assert "version 2 is missing" in (await _checked(store, pool, middle)).breaks[0].reason
    assert "events removed" in (await _checked(store, pool, tail)).breaks[0].reason
    await _remove_streams(pool, middle, tail)


async def test_verify_detects_a_data_edit_inside_sealed_content(store: EventStore, pool):
    pupil = uuid.uuid4()
    r = await store.append(pupil, [new_event(registered())], 0)
    await _behind_the_databases_back(
        pool,
        """UPDATE events SET data = jsonb_set(data, '{year_group}', '"6"')
            WHERE event_id = $1""",
        r.event_ids[0],
    )
    assert (await _checked(store, pool, pupil)).breaks[0].event_id == r.event_ids[0]
    await _remove_streams(pool, pupil)


async def test_forget_destroys_the_key_keeps_the_skeleton_and_the_chain(store: EventStore, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered()), new_event(concern())], 0)
    erased = new_event(ev.PersonalDataErased(reason_code="erasure_request", reason="SAR-114"))
    result = await store.erase(pupil, erased)
    assert result.last_version == 3

    events = await store.read_stream(pupil)
    assert isinstance(events[0].data.forename, Redacted)
    assert isinstance(events[0].data.date_of_birth, Redacted)
    assert "redacted" in str(events[1].data.description)
    assert events[0].data.upn == registered().upn and events[0].data.year_group == "4"
    assert events[2].data.event_type == "personal_data_erased"
    assert (await _checked(store, pool, pupil)).ok

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT key, destroyed_at FROM vault_keys WHERE stream_id=$1", pupil
        )
    assert row["key"] is None and row["destroyed_at"] is not None
    with pytest.raises(StreamErased):
        await store.append(pupil, [new_event(concern())], 3)


async def test_tailing_reader_sees_every_committed_event_once_in_one_order(store: EventStore):
    """Writers hold their transactions open for random times after inserting (and some
    roll back): a reader following the log from its checkpoint must never skip an event
    that commits later with a lower position, nor see one twice."""
    writers, appends_each = 10, 15
    committed: set[uuid.UUID] = set()
    rng = random.Random(7)
    start = await store.head_position()
    done = asyncio.Event()

    async def writer(w: int) -> None:
        pupil = uuid.uuid4()
        version = 0
        for i in range(appends_each):
            if version == 0:
                batch = [new_event(registered(w))]
            else:
                batch = [new_event(concern(f"{w}-{i}-{j}")) for j in range(rng.randint(1, 3))]
            abort = version > 0 and rng.random() < 0.15
            async with store.pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                [outcome] = await store.append_many([AppendRequest(pupil, batch, version)], conn)
                await asyncio.sleep(rng.uniform(0, 0.02))
                if abort:
                    await tx.rollback()
                    continue
                await tx.commit()
            assert not isinstance(outcome, Exception)
            version = outcome.last_version
            committed.update(outcome.event_ids)

    seen: list = []

    async def reader() -> None:
        checkpoint = start
        while True:
            finished = done.is_set()
            batch = await store.read_all(checkpoint, limit=50)
            seen.extend(batch)
            if batch:
                checkpoint = batch[-1].position
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    await reading

    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == committed, "the reader missed committed events"
    positions = [e.position for e in seen]
    assert positions == sorted(positions)
    by_stream: dict = {}
    for e in seen:
        by_stream.setdefault(e.stream_id, []).append(e.version)
    assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())


async def test_migrations_are_safe_twice_and_concurrently():
    url = with_database(BASE_URL, f"senflow_test_mig_{uuid.uuid4().hex[:10]}")
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        everything = len(available())
        assert sorted(len(r) for r in results) == [0, 0, 0, everything]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == everything
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()


async def test_after_a_transfer_the_stream_belongs_to_the_new_school(store: EventStore, pool):
    from senflow.events import catalogue as ev

    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    await store.append(
        pupil, [new_event(ev.PupilTransferred(from_urn="123456", to_urn="654321"))], 1
    )
    async with pool.acquire() as conn:
        school = await conn.fetchval("SELECT school_urn FROM streams WHERE stream_id = $1", pupil)
    assert school == "654321"


async def test_verify_holds_for_awkward_numbers_after_the_jsonb_round_trip(store: EventStore, pool):
    from senflow.events import catalogue as ev

    pupil = uuid.uuid4()
    values = [0.1 + 0.2, 1e-7, 999999.999, 85.0, -3.0, 123456.7890123]
    events = [new_event(registered())] + [
        new_event(ev.ProgressRecorded(note="n", measure=ev.Measure(instrument="x", value=v)))
        for v in values
    ]
    await store.append(pupil, events, 0)
    assert (await _checked(store, pool, pupil)).ok


async def test_read_verified_of_an_unknown_pupil_is_empty(pool):
    events, report = await read_verified(pool, uuid.uuid4())
    assert events == [] and report.ok and (report.streams, report.events) == (0, 0)


async def test_read_verified_withholds_personal_data_when_asked(store: EventStore, pool):
    pupil = uuid.uuid4()
    await store.append(pupil, [new_event(registered())], 0)
    events, report = await read_verified(pool, pupil, personal=False)
    assert report.ok and report.head_hash == bytes.fromhex(events[-1].hash or "")
    assert events == await store.read_stream(pupil, personal=False)
    assert isinstance(events[0].data.forename, Redacted)


def test_huge_or_non_finite_measures_are_refused():
    import pydantic

    from senflow.events import catalogue as ev

    for bad in (1e23, float("nan"), float("inf")):
        with pytest.raises(pydantic.ValidationError):
            ev.Measure(instrument="x", value=bad)


async def test_an_append_reaches_heads_and_events_by_index_whatever_their_size(
    store: EventStore, pool
):
    """A session keeps its plans: made while the tables were small, a sequential scan looked
    cheapest and stayed, and an append then cost time in proportion to the store. Every
    table an append (and a command's read) reads is read by index (counted by PostgreSQL
    for this transaction)."""
    known = uuid.uuid4()
    await store.append(known, [new_event(registered())], 0)
    async with pool.acquire() as conn:
        for _ in range(8):  # past the custom plans: what a long-lived session runs
            await _scans_nothing_whole(store, conn, known)


async def _scans_nothing_whole(store: EventStore, conn: asyncpg.Connection, known) -> None:
    async with conn.transaction():  # the head, as a process keeps it (read by index too)
        await conn.execute("SET LOCAL enable_seqscan = off")
        head = await conn.fetchrow(
            "SELECT s.version, s.last_hash, s.trust_id, s.school_urn, k.key FROM streams s "
            "JOIN vault_keys k USING (stream_id) WHERE stream_id = $1",
            known,
        )
    kept = {known: _Head(head[0], head[1], head[4], (head[2], head[3]))}
    async with conn.transaction():
        # an append from a kept head (one call, migration 0008), made here in the
        # transaction so that its scans are counted with the rest
        request = AppendRequest(known, [new_event(concern("from a kept head"))], head[0])
        _, _, args = store.known_write([request], kept, datetime.now(UTC))
        assert len(await conn.fetch(_WRITE_KNOWN, *args)) == 1
        fresh = uuid.uuid4()
        outcomes = await store.append_many(
            [
                AppendRequest(known, [new_event(concern())]),
                AppendRequest(fresh, [new_event(registered())], 0),
            ],
            conn=conn,
        )
        assert not any(isinstance(o, Exception) for o in outcomes)
        # and what a command reads before deciding (EventStore.read_for_command)
        await conn.fetch("SELECT * FROM senflow_read_for_command($1, 1, $2)", known, fresh)
        scans = await conn.fetch(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables "
            "WHERE relname IN ('streams', 'vault_keys', 'events') AND seq_scan > 0"
        )
        assert not scans, scans


async def test_a_sessions_plans_from_an_empty_store_still_read_by_index_once_it_is_big():
    """The case the functions of migration 0007 are for: a long-lived session planned its
    statements on an empty store (statistics say so until the next ANALYZE), then the
    store grew by a bulk import. Its appends and its commands' reads stay on the indexes."""
    url = with_database(BASE_URL, f"senflow_test_plans_{uuid.uuid4().hex[:10]}")
    await migrate(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        store = EventStore(pool)
        known = uuid.uuid4()
        await store.append(known, [new_event(registered())], 0)
        async with pool.acquire() as conn:
            for table in ("events", "streams", "vault_keys"):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                await conn.execute(f"ANALYZE {table}")
            for _ in range(8):  # the session's plans, made on a one-pupil store
                await _scans_nothing_whole(store, conn, known)
            streams = [
                (uuid.uuid4(), [new_event(registered())] + [new_event(concern()) for _ in range(9)])
                for _ in range(600)
            ]
            await store.import_new_streams(streams, conn=conn)
            await _scans_nothing_whole(store, conn, known)
    finally:
        await pool.close()
        admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()
