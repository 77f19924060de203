"""Bulk import gives the store the command path gives, at COPY speed."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from senflow.services.application import SenflowService
from senflow.services.demo import DemoSpec, pupil_commands
from senflow.services.importer import bulk_import, decide_history
from senflow.services.store.db import create_pool, with_database
from senflow.services.store.eventstore import EventStore
from senflow.services.store.migrate import migrate
from senflow.services.store.verify import verify
from senflow.services.workflow.commands import parse_command
from tests.conftest import BASE_URL
from tests.integration.helpers import upn
from tests.integration.story import story

pytestmark = pytest.mark.integration


def _content(events) -> list[tuple]:
    return [
        (
            e.event_id,
            e.version,
            e.event_type,
            e.data.model_dump(mode="json"),
            e.occurred_at,
            e.actor,
            e.tenant,
            e.correlation_id,
            e.causation_id,
        )
        for e in events
    ]


@pytest.fixture
async def second_store():
    url = with_database(BASE_URL, f"senflow_test_imp_{uuid.uuid4().hex[:10]}")
    await migrate(url)
    pool = await create_pool(url)
    yield EventStore(pool)
    await pool.close()
    admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await admin.close()


async def _head(store: EventStore, pupil: uuid.UUID) -> tuple:
    async with store.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT version, trust_id, school_urn FROM streams WHERE stream_id = $1", pupil
        )
    return tuple(row)


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "worker-processes"])
async def test_import_equals_the_command_path_and_verifies(store, second_store, workers):
    spec = DemoSpec(
        schools=1,
        pupils_per_school=40,
        seed=21 + workers,
        trust_id=f"trust-i{uuid.uuid4().hex[:6]}",
    )
    raw = [
        c
        for n in range(40)
        for c in pupil_commands(spec, 0, "131313", n, date(2025, 9, 2), date(2026, 11, 20))[0]
    ]
    raw += story(uuid.uuid4(), upn(4242))
    commands = [parse_command(r) for r in raw]

    by_command = SenflowService(store)
    for c in commands:
        assert (await by_command.handle(c)).accepted

    report = await bulk_import(
        SenflowService(second_store), commands, batch_pupils=16, workers=workers
    )
    assert report.refused == [] and report.pupils == 41
    pupils = {c.pupil_id for c in commands}
    assert report.events == sum([len(await store.read_stream(p)) for p in pupils])
    for pupil in pupils:
        assert _content(await second_store.read_stream(pupil)) == _content(
            await store.read_stream(pupil)
        )
        assert await _head(second_store, pupil) == await _head(store, pupil)
    assert (await verify(second_store.pool)).ok

    again = await bulk_import(SenflowService(second_store), commands)
    assert again.skipped_existing == 41 and again.events == 0


async def test_a_history_that_breaks_a_rule_is_refused_whole(second_store):
    pupil = uuid.uuid4()
    raw = story(pupil, upn(4343))
    raw[5] = dict(raw[5], payload={**raw[5]["payload"], "parents_notified": False})
    report = await bulk_import(SenflowService(second_store), [parse_command(r) for r in raw])
    assert report.pupils == 0 and len(report.refused) == 1
    assert report.refused[0]["rejection"]["rule"] == "parents_notified_before_sen_support"
    assert await second_store.read_stream(pupil) == []


async def test_the_store_path_equals_the_command_path(store, second_store):
    """``import_new_streams`` from decided events: the path bench/rebuild.py fills with."""
    spec = DemoSpec(
        schools=1, pupils_per_school=6, seed=23, trust_id=f"trust-s{uuid.uuid4().hex[:6]}"
    )
    service = SenflowService(store)
    histories = []
    for n in range(6):
        commands = [
            parse_command(r)
            for r in pupil_commands(spec, 0, "131313", n, date(2025, 9, 2), date(2026, 11, 20))[0]
        ]
        for c in commands:
            assert (await service.handle(c)).accepted
        events = decide_history(commands, service)
        assert isinstance(events, list)
        histories.append((commands[0].pupil_id, events))
    assert await second_store.import_new_streams(
        histories[:4]
    ) + await second_store.import_new_streams(histories[4:]) == sum(
        len(events) for _, events in histories
    )
    for pupil, _ in histories:
        assert _content(await second_store.read_stream(pupil)) == _content(
            await store.read_stream(pupil)
        )
        assert await _head(second_store, pupil) == await _head(store, pupil)
    assert (await verify(second_store.pool)).ok
    with pytest.raises(asyncpg.UniqueViolationError):  # import is for new pupils only
        await second_store.import_new_streams(histories[:1])


async def test_a_refusal_among_chunks_built_by_workers(second_store):
    good, bad = uuid.uuid4(), uuid.uuid4()
    raw = story(good, upn(4444)) + story(bad, upn(4545))
    spoiled = next(i for i, r in enumerate(raw) if r["pupil_id"] == str(bad)) + 5
    raw[spoiled] = dict(
        raw[spoiled], payload={**raw[spoiled]["payload"], "parents_notified": False}
    )
    report = await bulk_import(
        SenflowService(second_store), [parse_command(r) for r in raw], batch_pupils=1, workers=2
    )
    assert report.pupils == 1 and [r["pupil_id"] for r in report.refused] == [str(bad)]
    assert report.refused[0]["command"] == 5
    assert report.refused[0]["rejection"]["rule"] == "parents_notified_before_sen_support"
    assert await second_store.read_stream(bad) == []
    assert len(await second_store.read_stream(good)) == report.events
