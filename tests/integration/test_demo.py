"""The demo trust goes through the real command path, is realistic, and is deterministic."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date

import pytest

from senflow.projections import register
from senflow.projections.base import fold
from senflow.services.application import SenflowService
from senflow.services.demo import DemoSpec, generate, pupil_commands, school_urns
from senflow.services.store.eventstore import EventStore

pytestmark = pytest.mark.integration

TODAY = date(2026, 11, 20)


def test_same_seed_same_trust_and_other_seed_other_trust():
    spec = DemoSpec(schools=2, pupils_per_school=30, seed=4)
    first = [pupil_commands(spec, 0, "123456", n, date(2025, 9, 2), TODAY) for n in range(30)]
    again = [pupil_commands(spec, 0, "123456", n, date(2025, 9, 2), TODAY) for n in range(30)]
    assert first == again
    other = DemoSpec(schools=2, pupils_per_school=30, seed=5)
    assert [
        pupil_commands(other, 0, "123456", n, date(2025, 9, 2), TODAY) for n in range(30)
    ] != first
    assert school_urns(spec) == school_urns(spec) and len(school_urns(spec)) == 2


def test_the_national_shape_over_many_pupils():
    spec = DemoSpec(schools=1, pupils_per_school=2000, seed=9)
    kinds = Counter(
        pupil_commands(spec, 0, "123456", n, date(2024, 9, 2), TODAY)[1].split("+")[0]
        for n in range(2000)
    )
    assert 0.09 < kinds["support"] / 2000 < 0.15  # ~12% on SEN support
    assert 0.025 < kinds["ehc"] / 2000 < 0.055  # ~4% with EHC plans


async def test_demo_is_recorded_through_the_workflow_and_is_idempotent(store: EventStore):
    spec = DemoSpec(
        schools=1, pupils_per_school=60, years=1, seed=11, trust_id=f"trust-d{uuid.uuid4().hex[:6]}"
    )
    svc = SenflowService(store)
    first = await generate(svc, spec, TODAY)
    assert first.pupils == 60 and first.events >= first.commands > 60
    again = await generate(svc, spec, TODAY)
    assert again.events == 0 and again.already == first.commands

    async with store.pool.acquire() as conn:
        streams = [
            r["stream_id"]
            for r in await conn.fetch(
                "SELECT stream_id FROM streams WHERE trust_id = $1", spec.trust_id
            )
        ]
    assert len(streams) == 60
    docs = [fold(register.PROJECTION, await store.read_stream(s, personal=False)) for s in streams]
    rows = register.register_rows(docs, None, TODAY)
    assert rows and all(r["primary_need"] for r in rows)
    assert {r["provision"] for r in rows} <= {"K", "E"}
