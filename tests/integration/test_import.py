"""Bulk import gives the store the command path gives, at COPY speed."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from senflow.services.application import SenflowService
from senflow.services.demo import DemoSpec, pupil_commands
from senflow.services.importer import bulk_import
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


async def test_import_equals_the_command_path_and_verifies(store, second_store):
    spec = DemoSpec(
        schools=1, pupils_per_school=40, seed=21, trust_id=f"trust-i{uuid.uuid4().hex[:6]}"
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

    report = await bulk_import(SenflowService(second_store), commands, batch_pupils=16)
    assert report.refused == [] and report.pupils == 41
    for pupil in {c.pupil_id for c in commands}:
        assert _content(await second_store.read_stream(pupil)) == _content(
            await store.read_stream(pupil)
        )
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
