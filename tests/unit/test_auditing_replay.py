"""Replay on two time axes, and the assess-plan-do-review cycles, without a database.

The story pupil gets two late records, in recording order right after the
second review (28 April 2025): a correction made on 1 May adding a secondary
need to the start of SEN support (v6), and a parent meeting held on 10 March
but only recorded on 2 May.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from senflow.services.auditing import cycles
from senflow.services.auditing.replay import build_replay, describe
from senflow.services.auditing.timeline import parse_moment, select
from senflow.services.workflow.calendar import SCHOOL_TZ
from tests.integration.story import EXAMPLE_PUPIL, ids, story
from tests.unit.auditing_helpers import Pupil, story_pupil

pytestmark = pytest.mark.unit

TODAY = date(2026, 11, 22)
CORRECTED_ON = datetime(2025, 5, 1, 12, 5, tzinfo=SCHOOL_TZ)
MEETING_RECORDED = datetime(2025, 5, 2, 10, 0, tzinfo=SCHOOL_TZ)


def late_story() -> Pupil:
    p = Pupil()
    for n, cmd in enumerate(story(EXAMPLE_PUPIL)):
        p.command(cmd)
        if cmd["command"] == "hold_review" and cmd["occurred_at"] == "2025-04-28":
            started = next(e for e in p.events if e.event_type == "sen_support_started")
            p.correct(
                started,
                "2025-05-01",
                reason="Secondary need was left off the form.",
                needs=[{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}],
            )
            p.add(
                "parent_meeting_held",
                {
                    "attendees": ["senco", "parent"],
                    "summary": "Extra meeting about the SALT referral.",
                    "record_given_to_parents": True,
                },
                "2025-03-10",
                recorded_at=MEETING_RECORDED,
            )
        assert n < 40
    return p


def needs(doc: dict) -> list[str]:
    return [n["type"] for n in sorted(doc["state"]["needs"], key=lambda n: n["rank"])]


def test_as_of_applies_a_correction_made_later_and_shows_a_late_entry_that_had_happened():
    events = late_story().events
    doc = build_replay(events, date(2025, 3, 31), None, TODAY)
    assert needs(doc) == ["SLCN", "SEMH"]  # corrected on 1 May, applied to March
    # the state keeps meetings in recording order: the late one comes last
    assert sorted(doc["state"]["parent_meetings"]) == [
        "2024-11-05",
        "2025-01-13",
        "2025-03-10",
        "2025-03-24",
    ]
    [correction] = doc["corrections"]
    assert correction["made_after_as_of"] is True
    assert correction["reason"] == "Secondary need was left off the form."
    assert all(e["on"] <= "2025-03-31" for e in doc["timeline"])
    late = next(e for e in doc["timeline"] if e["on"] == "2025-03-10")
    assert late["recorded_late"] is True and late["delay_days"] == 52
    started = next(e for e in doc["timeline"] if e["event_type"] == "sen_support_started")
    assert started["corrected_by"] == [correction["event_id"]]
    # the timeline keeps what was recorded; the state and cycles use the correction
    assert [n["type"] for n in started["data"]["needs"]] == ["SLCN"]
    assert doc["recorded_later"] == []  # nothing is unknown when asking with today's knowledge


def test_as_known_at_shows_what_the_system_had_recorded_and_lists_late_entries_apart():
    events = late_story().events
    before = build_replay(events, None, datetime(2025, 4, 30, tzinfo=UTC), TODAY)
    assert needs(before) == ["SLCN"]
    assert before["state"]["parent_meetings"] == ["2024-11-05", "2025-01-13", "2025-03-24"]
    assert before["corrections"] == []
    started = next(e for e in before["timeline"] if e["event_type"] == "sen_support_started")
    assert started["corrected_by"] == []
    [later] = before["recorded_later"]  # the meeting of 10 March: happened, not yet known
    assert later["event_type"] == "parent_meeting_held" and later["on"] == "2025-03-10"
    assert later["recorded_at"] == MEETING_RECORDED.isoformat()
    assert before["judged_on"] == "2025-04-30"

    between = build_replay(events, None, CORRECTED_ON + timedelta(hours=1), TODAY)
    assert needs(between) == ["SLCN", "SEMH"]
    assert [e["on"] for e in between["recorded_later"]] == ["2025-03-10"]
    after = build_replay(events, None, MEETING_RECORDED + timedelta(seconds=1), TODAY)
    assert after["recorded_later"] == [] and len(after["state"]["parent_meetings"]) == 4


def test_both_axes_together():
    events = late_story().events
    doc = build_replay(events, date(2025, 3, 31), datetime(2025, 4, 30, tzinfo=UTC), TODAY)
    assert needs(doc) == ["SLCN"]
    assert len(doc["state"]["parent_meetings"]) == 3
    assert [e["on"] for e in doc["recorded_later"]] == ["2025-03-10"]
    assert doc["judged_on"] == "2025-03-31"
    lines = describe(doc)
    assert any("not yet known" in line and "2025-03-10" in line for line in lines)


def test_the_late_meeting_lands_in_the_cycle_in_which_it_happened():
    events = late_story().events
    now = build_replay(events, None, None, TODAY)["cycles"]
    cycle2 = now["cycles"][1]
    meetings = [i["on"] for i in cycle2["during"] if i["kind"] == "parent_meeting_held"]
    assert meetings == ["2025-03-10", "2025-03-24"]
    known_then = build_replay(events, None, datetime(2025, 4, 30, tzinfo=UTC), TODAY)["cycles"]
    assert [
        i["on"] for i in known_then["cycles"][1]["during"] if i["kind"] == "parent_meeting_held"
    ] == ["2025-03-24"]


def test_before_registration_and_unknown_pupils():
    events = story_pupil().events
    empty = build_replay(events, date(2024, 9, 1), None, TODAY)
    assert empty["events_in_view"] == 0 and empty["state"]["registered"] is False
    assert empty["cycles"]["cycles"] == []
    with pytest.raises(LookupError):
        build_replay([], None, None, TODAY)


def test_parse_moment():
    assert parse_moment("2025-05-01") == datetime.combine(date(2025, 5, 2), time(0), SCHOOL_TZ)
    assert parse_moment("2025-05-01T10:00:00Z") == datetime(2025, 5, 1, 10, tzinfo=UTC)
    naive = parse_moment("2025-05-01T10:00:00")
    assert naive == datetime(2025, 5, 1, 10, tzinfo=SCHOOL_TZ)


def test_select_keeps_stream_order_and_counts_the_whole_stream():
    events = late_story().events
    view = select(events, date(2025, 3, 31))
    assert [e.version for e in view.events] == sorted(e.version for e in view.events)
    assert view.stream_length == len(events)


# --- cycles ------------------------------------------------------------------------------------


def test_the_story_has_two_reviewed_cycles_with_their_interventions_and_views():
    doc = cycles.build(story_pupil().events, TODAY)
    i = ids(EXAMPLE_PUPIL)
    assert [k["kind"] for k in doc["identification"]] == [
        "concern_raised",
        "parent_views_recorded",
        "pupil_views_recorded",
        "assessment_recorded",
        "sen_support_started",
    ]
    one, two = doc["cycles"]
    assert (one["plan_id"], two["plan_id"]) == (i["plan1"], i["plan2"])
    assert one["status"] == two["status"] == "reviewed"
    assert [(o["outcome_id"], o["rating"]) for o in one["outcomes"]] == [
        ("O1", "met"),
        ("O2", "partially_met"),
    ]
    talk, colour = one["interventions"]
    assert (talk["name"], talk["change"], talk["impact"], talk["keep"]) == (
        "Talk Boost",
        8.0,
        "good",
        True,
    )
    assert (colour["change"], colour["impact"], colour["keep"]) == (1.0, "limited", False)
    assert talk["sessions_attended"] == 1 and talk["minutes_delivered"] == 30
    assert one["review"]["on_time"] and one["review"]["pupil_views"] == "Talk Boost is fun."
    assert one["review"]["decision"] == "revise_plan"
    assert [k["kind"] for k in two["during"]] == ["specialist_involved", "parent_meeting_held"]
    assert two["review"]["parent_views"] == "We would like more help."
    assert [k["kind"] for k in doc["ehc"]] == [
        "ehc_needs_assessment_requested",
        "ehc_needs_assessment_decided",
        "ehc_plan_issued",
        "ehc_annual_review_held",
    ]
    assert len(doc["interventions"]) == 3


def _plan(plan_id: str, review: str) -> dict:
    return {
        "plan_id": plan_id,
        "outcomes": [{"outcome_id": "O1", "description": "Reads a page aloud"}],
        "provisions": [
            {
                "provision_id": "P1",
                "name": "Precision teaching",
                "delivery": "one_to_one",
                "staff_role": "teaching_assistant",
                "sessions_per_week": 5,
                "minutes_per_session": 10,
                "weeks": 6,
                "cost_pence": 9000,
                "outcome_ids": ["O1"],
            }
        ],
        "expected_impact": "Reading age up six months.",
        "review_date": review,
        "agreed_by": ["senco", "parent"],
        "staff_informed": False,
    }


def test_a_plan_kept_after_review_goes_on_in_a_continuation_and_an_unreviewed_one_is_overdue():
    p = Pupil()
    plan = "6f2b3c1e-0a4d-4a8e-9a53-6f1b2c3d4e5f"
    p.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "Sam",
            "surname": "Lee",
            "date_of_birth": "2016-01-02",
            "year_group": "4",
            "on_roll_from": "2020-09-01",
        },
        "2025-09-03",
    )
    p.add(
        "sen_support_started",
        {
            "needs": [{"type": "SPLD", "rank": 1}],
            "parents_notified": True,
            "parents_notified_on": "2025-09-10",
        },
        "2025-09-10",
    )
    p.add("plan_agreed", _plan(plan, "2025-10-20"), "2025-09-12")
    first = "0e0e0e0e-0000-4000-8000-000000000001"
    second = "0e0e0e0e-0000-4000-8000-000000000002"
    p.add(
        "intervention_started",
        {
            "intervention_id": first,
            "plan_id": plan,
            "provision_id": "P1",
            "entry_measure": {
                "instrument": "Errors per page",
                "value": 12,
                "unit": "raw_score",
                "higher_is_better": False,
            },
        },
        "2025-09-15",
    )
    p.add(
        "intervention_ended",
        {
            "intervention_id": first,
            "exit_measure": {
                "instrument": "errors per page ",
                "value": 7,
                "unit": "raw_score",
                "higher_is_better": False,
            },
        },
        "2025-10-17",
    )
    p.add(
        "review_held",
        {
            "plan_id": plan,
            "outcome_progress": [{"outcome_id": "O1", "rating": "partially_met"}],
            "intervention_impact": [{"intervention_id": first, "impact": "good", "keep": True}],
            "decision": "continue",
            "next_review_date": "2025-12-15",
        },
        "2025-10-20",
    )
    p.add(
        "intervention_started",
        {"intervention_id": second, "plan_id": plan, "provision_id": "P1"},
        "2025-11-03",
    )
    doc = cycles.build(p.events, date(2026, 1, 10))
    one, two = doc["cycles"]
    assert one["status"] == "reviewed" and one["review"]["on_time"]
    assert one["interventions"][0]["change"] == 5.0  # fewer errors is progress
    assert two["continues_plan"] and two["plan_id"] == plan
    assert two["review_date"] == "2025-12-15" and two["status"] == "review_overdue"
    assert [i["intervention_id"] for i in two["interventions"]] == [second]
    assert cycles.build(p.events, date(2025, 12, 1))["cycles"][1]["status"] == "open"
    [series] = cycles.measure_series(p.events)
    assert series["instrument"] == "Errors per page" and [x["value"] for x in series["points"]] == [
        12,
        7,
    ]


def test_measured_change_needs_the_same_measure():
    entry = {
        "instrument": "WellComm",
        "value": 78.0,
        "unit": "standardised_score",
        "higher_is_better": True,
    }
    assert cycles.measured_change(entry, {**entry, "value": 86.0}) == 8.0
    assert cycles.measured_change(entry, {**entry, "instrument": "YARC"}) is None
    assert cycles.measured_change(entry, {**entry, "unit": "raw_score"}) is None
    assert cycles.measured_change(entry, None) is None
    lower = {**entry, "higher_is_better": False}
    assert cycles.measured_change(lower, {**lower, "value": 70.0}) == 8.0
