"""One pupil walked through the whole graduated approach on the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from senflow.services.application import SenflowService
from senflow.services.store.eventstore import ConcurrencyConflict, EventStore
from senflow.services.store.verify import verify
from senflow.services.workflow.commands import parse_command
from tests.integration.helpers import upn
from tests.integration.story import EXAMPLE_PUPIL, ids, secondary_need_correction, story

pytestmark = pytest.mark.integration

EXAMPLE_FILE = Path(__file__).parents[2] / "examples" / "one_pupil.jsonl"


async def _walk(svc: SenflowService, pupil: uuid.UUID) -> list:
    results = []
    for raw in story(pupil, upn(int(pupil.int % 9000))):
        result = await svc.handle(parse_command(raw))
        assert result.accepted, (raw["command"], result.rejection)
        results.append(result)
    return results


async def test_whole_story_is_accepted_without_warnings_and_chains(store: EventStore, pool):
    svc, pupil = SenflowService(store), uuid.uuid4()
    results = await _walk(svc, pupil)
    assert [w.rule for r in results for w in r.warnings] == []
    assert results[-1].stream_version == len(results)
    assert (await verify(pool, pupil)).ok


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2024-09-30", {"provision": "N", "needs": [], "concerns_raised": 1, "plan": None}),
        ("2024-10-09", {"provision": "K", "needs": ["SLCN"], "plan": None}),
        (
            "2024-12-01",
            {
                "provision": "K",
                "plan": "plan1",
                "running": 2,
                "next_review_due": "2025-01-20",
                "parent_meetings": 1,
            },
        ),
        (
            "2025-02-10",
            {
                "plan": "plan2",
                "reviews": 1,
                "running": 1,
                "specialists": ["speech_and_language_therapist"],
                "next_review_due": "2025-04-28",
                "parent_meetings": 2,
            },
        ),
        ("2025-07-01", {"provision": "K", "ehc_request": "agreed_to_assess", "reviews": 2}),
        (
            "2025-11-01",
            {
                "provision": "E",
                "needs": ["SLCN", "SEMH"],
                "ehc_next_review_due": "2026-10-01",
                "ehc_last_review_on": None,
            },
        ),
        (
            None,
            {
                "provision": "E",
                "ehc_last_review_on": "2026-09-25",
                "ehc_next_review_due": "2027-09-01",
            },
        ),
    ],
)
async def test_history_as_of_gives_the_state_of_that_day(store: EventStore, day, expected):
    svc, pupil = SenflowService(store), uuid.uuid4()
    await _walk(svc, pupil)
    history = await svc.history(pupil, date.fromisoformat(day) if day else None)
    state, named = history.state, {v: k for k, v in ids(pupil).items()}
    actual = {
        "provision": state.provision.value,
        "needs": [n.type.value for n in sorted(state.needs, key=lambda n: n.rank)],
        "concerns_raised": state.concerns_raised,
        "plan": named.get(str(state.plan.plan_id)) if state.plan else None,
        "running": len(state.running_interventions()),
        "next_review_due": str(state.next_review_due) if state.next_review_due else None,
        "parent_meetings": len(state.parent_meetings),
        "reviews": len(state.reviews),
        "specialists": list(state.specialists),
        "ehc_request": state.ehc_request,
        "ehc_next_review_due": str(state.ehc_next_review_due)
        if state.ehc_next_review_due
        else None,
        "ehc_last_review_on": str(state.ehc_last_review_on) if state.ehc_last_review_on else None,
    }
    assert {k: actual[k] for k in expected} == expected
    if day:
        cutoff = date.fromisoformat(day)
        assert all(e.occurred_at.date() <= cutoff for e in history.timeline)
    if day is None:
        spells = [
            (s.provision.value, str(s.start), str(s.end) if s.end else None)
            for s in state.provision_history
        ]
        assert spells == [("K", "2024-10-08", "2025-10-15"), ("E", "2025-10-15", None)]


async def test_running_the_story_again_records_nothing_new(store: EventStore):
    svc, pupil = SenflowService(store), uuid.uuid4()
    first = await _walk(svc, pupil)
    again = await _walk(svc, pupil)
    assert all(r.duplicate for r in again)
    assert [r.last_position for r in again] == [r.last_position for r in first]
    assert await store.stream_version(pupil) == len(first)


async def test_a_rejected_command_writes_nothing(store: EventStore):
    svc, pupil = SenflowService(store), uuid.uuid4()
    commands = story(pupil, upn(77))
    for raw in commands[:5]:
        await svc.handle(parse_command(raw))
    bad = dict(commands[5], payload={**commands[5]["payload"], "parents_notified": False})
    result = await svc.handle(parse_command(bad))
    assert not result.accepted and result.rejection.rule == "parents_notified_before_sen_support"
    assert result.rejection.field == "payload.parents_notified"
    assert await store.stream_version(pupil) == 5


async def test_explicit_stale_expected_version_is_a_conflict(store: EventStore):
    svc, pupil = SenflowService(store), uuid.uuid4()
    commands = story(pupil, upn(78))
    await svc.handle(parse_command(commands[0]))
    await svc.handle(parse_command(commands[1]))
    stale = dict(commands[2], expected_version=1)
    with pytest.raises(ConcurrencyConflict) as err:
        await svc.handle(parse_command(stale))
    assert err.value.current == 2


async def test_a_late_correction_fixes_history_and_keeps_the_original(store: EventStore):
    svc, pupil = SenflowService(store), uuid.uuid4()
    results = await _walk(svc, pupil)
    started = results[5].events[0]  # sen_support_started: SLCN only
    correction = secondary_need_correction(pupil, started)
    result = await svc.handle(parse_command(correction))
    assert result.accepted, result.rejection
    as_then = await svc.history(pupil, date(2024, 10, 9))
    assert [n.type.value for n in as_then.state.needs] == ["SLCN", "SEMH"]
    timeline = (await svc.history(pupil)).timeline
    assert timeline[5].data.needs[0].type.value == "SLCN" and len(timeline[5].data.needs) == 1
    assert timeline[-1].data.corrects_event_id == started.event_id


def test_example_file_is_the_story():
    lines = [json.loads(line) for line in EXAMPLE_FILE.read_text().splitlines() if line.strip()]
    assert lines == story(EXAMPLE_PUPIL)


async def test_a_used_command_id_with_another_command_is_refused(store: EventStore):
    from senflow.services.store.eventstore import EventIdConflict

    svc, pupil = SenflowService(store), uuid.uuid4()
    commands = story(pupil, upn(79))
    await svc.handle(parse_command(commands[0]))
    first = await svc.handle(parse_command(commands[1]))
    assert (await svc.handle(parse_command(commands[1]))).duplicate  # a true retry
    other = dict(commands[1], payload={**commands[1]["payload"], "description": "Another"})
    with pytest.raises(EventIdConflict, match="different command"):
        await svc.handle(parse_command(other))
    assert await store.stream_version(pupil) == first.stream_version


async def test_a_schools_provision_map_is_what_it_delivered(store: EventStore, pool):
    from senflow.projections import provision_map
    from senflow.projections.queries import provision_view
    from senflow.projections.tables import apply_events, ensure_tables

    svc, pupil = SenflowService(store), uuid.uuid4()
    trust = f"trust-pm{uuid.uuid4().hex[:6]}"
    commands = [
        dict(c, tenant={"trust_id": trust, "school_urn": "123456"})
        if c["command"] == "register_pupil"
        else c
        for c in story(pupil, upn(81))[:14]
    ]
    for raw in commands:
        assert (await svc.handle(parse_command(raw))).accepted
    moved = {
        "command": "transfer_pupil",
        "pupil_id": str(pupil),
        "occurred_at": "2025-01-06",
        "actor": {"user_id": "senco.1", "role": "senco"},
        "payload": {"from_urn": "123456", "to_urn": "654321"},
    }
    assert (await svc.handle(parse_command(moved))).accepted

    async def missing(stream, first, last):
        return await store.read_stream(stream, first, last, personal=False)

    async with pool.acquire() as conn:
        await ensure_tables(conn, provision_map.PROJECTION)
        async with conn.transaction():
            await apply_events(
                conn,
                provision_map.PROJECTION,
                await store.read_stream(pupil, personal=False),
                missing,
            )
    delivered = await provision_view(pool, trust, "123456", "school")
    assert {r["pupil_id"] for r in delivered["rows"]} == {str(pupil)}
    assert len(delivered["rows"]) == 2
    assert (await provision_view(pool, trust, "654321", "school"))["rows"] == []
