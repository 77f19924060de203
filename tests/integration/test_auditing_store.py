"""Auditing against the real store: replay on two time axes, evidence packs, verification.

The story pupil is recorded through the service up to the second review; then,
after the moment ``known_then``, a correction of the start of SEN support and
a parent meeting held weeks earlier are recorded, and the rest of the story.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from senflow.services.application import SenflowService
from senflow.services.auditing import gather
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.commands import parse_command
from tests.integration.helpers import command, upn
from tests.integration.story import story

pytestmark = pytest.mark.integration

TODAY = date(2026, 11, 22)


async def _late_story(store: EventStore) -> tuple[uuid.UUID, datetime, dict]:
    svc, pupil = SenflowService(store), uuid.uuid4()
    commands = story(pupil, upn(int(pupil.int % 9000)))
    results = [await svc.handle(parse_command(raw)) for raw in commands[:22]]
    assert all(r.accepted for r in results)
    known_then = datetime.now(UTC)
    started = results[5].events[0]
    correction = await svc.handle(
        parse_command(
            command(
                "correct_record",
                pupil,
                "2025-05-01",
                {
                    "corrects_event_id": str(started.event_id),
                    "reason": "Secondary need was left off the form.",
                    "replacement": {
                        **started.data.model_dump(mode="json"),
                        "needs": [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}],
                    },
                },
            )
        )
    )
    meeting = await svc.handle(
        parse_command(
            command(
                "hold_parent_meeting",
                pupil,
                "2025-03-10",
                {
                    "attendees": ["senco", "parent"],
                    "summary": "Extra meeting about the SALT referral.",
                    "record_given_to_parents": True,
                },
            )
        )
    )
    assert correction.accepted and meeting.accepted
    late = {"correction": correction.events[0], "meeting": meeting.events[0]}
    for raw in commands[22:]:
        assert (await svc.handle(parse_command(raw))).accepted
    return pupil, known_then, late


def _needs(doc: dict) -> list[str]:
    return [n["type"] for n in sorted(doc["state"]["needs"], key=lambda n: n["rank"])]


async def test_replay_as_of_and_as_known_at_with_a_late_correction_and_a_late_entry(
    store: EventStore,
):
    pupil, known_then, late = await _late_story(store)
    meeting_id = str(late["meeting"].event_id)
    correction_id = str(late["correction"].event_id)

    # as of 31 March 2025, with what is known today: the correction applies, the meeting is there
    as_of = await gather.replay_pupil(store, pupil, date(2025, 3, 31), on=TODAY)
    assert _needs(as_of) == ["SLCN", "SEMH"]
    assert "2025-03-10" in as_of["state"]["parent_meetings"]
    assert [c["event_id"] for c in as_of["corrections"]] == [correction_id]
    assert as_of["corrections"][0]["made_after_as_of"] is True
    meeting_entry = next(e for e in as_of["timeline"] if e["event_id"] == meeting_id)
    assert meeting_entry["recorded_late"] is True
    assert meeting_entry["data"]["summary"] == "Extra meeting about the SALT referral."
    cycle2 = as_of["cycles"]["cycles"][1]
    assert "2025-03-10" in [i["on"] for i in cycle2["during"] if i["kind"] == "parent_meeting_held"]
    assert cycle2["status"] == "open"  # reviewed on 28 April, after the as-of day

    # as known at the moment before the late records: no correction, no meeting, listed as later
    then = await gather.replay_pupil(store, pupil, None, known_then, on=TODAY)
    assert _needs(then) == ["SLCN"]
    assert "2025-03-10" not in then["state"]["parent_meetings"]
    assert then["corrections"] == []
    assert meeting_id not in [e["event_id"] for e in then["timeline"]]
    later = {e["event_id"]: e for e in then["recorded_later"]}
    assert {meeting_id, correction_id} <= set(later)
    assert later[meeting_id]["on"] == "2025-03-10" and later[meeting_id]["recorded_late"]
    assert then["events_in_view"] == 22 and then["stream_events"] == 28

    # both: what had happened by 31 March, as known then
    both = await gather.replay_pupil(store, pupil, date(2025, 3, 31), known_then, on=TODAY)
    assert _needs(both) == ["SLCN"]
    assert [e["event_id"] for e in both["recorded_later"]] == [meeting_id]

    # now: everything, the correction applied
    now = await gather.replay_pupil(store, pupil, on=TODAY)
    assert now["events_in_view"] == 28 and now["state"]["provision"] == "E"
    started = next(e for e in now["timeline"] if e["event_type"] == "sen_support_started")
    assert started["corrected_by"] == [correction_id]

    # without personal data, for callers not entitled to it
    withheld = await gather.replay_pupil(store, pupil, personal=False, on=TODAY)
    assert withheld["timeline"][0]["data"]["forename"]["redacted"] is True
    with pytest.raises(LookupError):
        await gather.replay_pupil(store, uuid.uuid4())


async def test_evidence_pack_from_the_store_matches_the_events(store: EventStore, pool):
    pupil, _, late = await _late_story(store)
    pack = await gather.evidence_pack(pool, pupil, TODAY)
    events = await store.read_stream(pupil)
    assert pack["record"]["events"] == len(events) == 28
    assert pack["verification"]["ok"] and pack["verification"]["head_hash"] == events[-1].hash
    assert pack["pupil"]["forename"] == "Amy"
    assert [m["on"] for m in pack["parent_meetings"]] == [
        "2024-11-05",
        "2025-01-13",
        "2025-03-10",
        "2025-03-24",
    ]
    late_meeting = next(m for m in pack["parent_meetings"] if m["on"] == "2025-03-10")
    assert late_meeting["recorded_late"] and late_meeting["event_id"] == str(
        late["meeting"].event_id
    )
    assert [c["event_id"] for c in pack["record"]["corrections"]] == [
        str(late["correction"].event_id)
    ]
    assert [(h["type"], h["rank"]) for h in pack["needs_and_provision"]["needs_history"]] == [
        ("SLCN", 1),
        ("SEMH", 2),
    ]
    reviews = [e.data for e in events if e.event_type == "review_held"]
    plan_reviews = [r for r in pack["reviews"] if r["kind"] == "plan_review"]
    assert [r["pupil_views"] for r in plan_reviews] == [r.pupil_views for r in reviews]
    entries = [e.data.entry_measure.value for e in events if e.event_type == "intervention_started"]
    assert [i["entry"]["value"] for i in pack["interventions"]] == entries
    by_para = {i["paragraph"]: i["status"] for i in pack["compliance"]["checklist"]}
    assert by_para["6.72"] == "met" and by_para["6.56"] == "met"


async def test_verify_reports_per_school_and_names_what_is_missing(store: EventStore, pool):
    svc = SenflowService(store)
    trust = f"trust-v{uuid.uuid4().hex[:8]}"
    pupils = []
    for n, urn in enumerate(("111111", "222222", "222222")):
        pid = uuid.uuid4()
        raw = story(pid, upn(7000 + n))[0]
        raw["tenant"] = {"trust_id": trust, "school_urn": urn}
        assert (await svc.handle(parse_command(raw))).accepted
        pupils.append(pid)
    report = await gather.verify_scope(pool, trust_id=trust)
    assert report["ok"] and report["found"] and report["streams"] == 3 and report["events"] == 3
    assert [(s["school_urn"], s["streams"], s["ok"]) for s in report["schools"]] == [
        ("111111", 1, True),
        ("222222", 2, True),
    ]
    one = await gather.verify_scope(pool, pupil_id=pupils[0])
    assert one["streams"] == 1 and one["schools"][0]["school_urn"] == "111111"
    nothing = await gather.verify_scope(pool, trust_id=trust, school_urn="999999")
    assert not nothing["found"] and nothing["ok"] and nothing["schools"] == []

    event_id = (await store.read_stream(pupils[1]))[0].event_id
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE events SET actor_id = 'someone.else' WHERE event_id = $1", event_id
        )
    try:
        broken = await gather.verify_scope(pool, trust_id=trust)
        assert not broken["ok"]
        by_school = {s["school_urn"]: s for s in broken["schools"]}
        assert by_school["111111"]["ok"] and not by_school["222222"]["ok"]
        assert by_school["222222"]["broken_streams"] == 1
        assert str(event_id) in broken["breaks"][0] and "changed" in broken["breaks"][0]
    finally:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE events SET actor_id = 'integration.1' WHERE event_id = $1", event_id
            )
    assert (await gather.verify_scope(pool, trust_id=trust))["ok"]
