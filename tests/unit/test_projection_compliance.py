"""The compliance read model: findings by Code of Practice paragraph, judged on a day."""

from __future__ import annotations

from datetime import date

import pytest

from senflow.projections import compliance
from senflow.projections.base import fold
from tests.unit.test_projection_register import Stream, story_stream

pytestmark = pytest.mark.unit


def rules(stream: Stream, on: str) -> dict[str, list]:
    doc = fold(compliance.PROJECTION, stream.events)
    assert doc is not None
    found: dict[str, list] = {}
    for f in compliance.findings(doc, date.fromisoformat(on)):
        found.setdefault(f["rule"], []).append(f)
    return found


def test_the_story_is_compliant_while_it_runs_well():
    stream = story_stream()
    # 2 December 2024: plan in force, review not yet due, one meeting in the autumn term
    assert rules(stream, "2024-12-02") == {}


def test_a_missed_review_date_is_overdue_under_6_53():
    stream = story_stream()
    # the second review set 2025-07-14; nothing was held by then
    found = rules(stream, "2025-07-20")
    assert found["review_overdue"][0]["paragraph"] == "6.53"
    assert found["review_overdue"][0]["review_date"] == "2025-07-14"


def test_ehc_plan_not_reviewed_within_twelve_months_under_6_56():
    stream = story_stream()
    # plan issued 2025-10-15, first annual review held 2026-09-25: on time
    assert "ehc_annual_review_overdue" not in rules(stream, "2026-10-01")
    # from the last review, 2026-09-25, the next is due by 2027-09-25
    overdue = rules(stream, "2027-10-01")["ehc_annual_review_overdue"][0]
    assert overdue["paragraph"] == "6.56" and overdue["last_reviewed_on"] == "2026-09-25"


def test_parent_meetings_behind_and_missing_annual_report():
    stream = story_stream()
    found = rules(stream, "2026-01-05")  # no meeting in the 2025/26 autumn term
    behind = found["parent_meetings_behind"][0]
    assert (behind["expected"], behind["held"], behind["paragraph"]) == (1, 0, "6.65")
    # no annual report was recorded for 2024/25 or 2025/26
    assert found["annual_report_missing"][0]["academic_year"] == "2024/25"
    assert found["annual_report_missing"][0]["paragraph"] == "6.64"


def test_recording_the_annual_report_clears_it():
    stream = story_stream()
    stream.add("annual_report_shared", {"academic_year": "2024/25"}, "2025-07-01")
    assert "annual_report_missing" not in rules(stream, "2025-08-01")


def test_review_without_views_and_support_without_assessment():
    stream = Stream()
    stream.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "A",
            "surname": "B",
            "date_of_birth": "2016-01-01",
            "year_group": "4",
            "on_roll_from": "2021-09-01",
        },
        "2024-09-02",
        tenant={"trust_id": "trust-7", "school_urn": "123456"},
    )
    stream.add(
        "sen_support_started",
        {
            "needs": [{"type": "MLD", "rank": 1}],
            "parents_notified": True,
            "parents_notified_on": "2024-09-10",
        },
        "2024-09-10",
    )
    plan = stream.add(
        "plan_agreed",
        {
            "outcomes": [{"outcome_id": "O1", "description": "x"}],
            "provisions": [
                {
                    "provision_id": "P1",
                    "name": "Maths catch-up",
                    "delivery": "small_group",
                    "staff_role": "teaching_assistant",
                    "sessions_per_week": 2,
                    "minutes_per_session": 30,
                    "weeks": 6,
                    "cost_pence": 0,
                }
            ],
            "expected_impact": "x",
            "review_date": "2024-11-01",
            "agreed_by": ["senco"],
            "staff_informed": True,
        },
        "2024-09-12",
    )
    stream.add(
        "review_held",
        {
            "plan_id": str(plan.data.plan_id),
            "outcome_progress": [],
            "decision": "continue",
            "next_review_date": "2025-02-01",
            "parent_views": "fine",
        },
        "2024-11-01",
    )
    found = rules(stream, "2024-11-05")
    assert set(found) == {"review_without_pupil_views", "support_without_assessment"}
    assert found["review_without_pupil_views"][0]["paragraph"] == "6.54"
    assert found["support_without_assessment"][0]["paragraph"] == "6.45"


def test_a_correction_that_adds_the_views_clears_the_finding():
    stream = story_stream()
    review = next(e for e in stream.events if e.event_type == "review_held")
    stream.correct(review, "2025-02-01", pupil_views=None)
    assert "review_without_pupil_views" in rules(stream, "2025-02-02")
    stream.correct(review, "2025-02-03", pupil_views="Talk Boost is fun.")
    assert "review_without_pupil_views" not in rules(stream, "2025-02-04")


def test_pupils_off_the_register_have_no_findings():
    stream = story_stream()
    stream.add("pupil_left", {"destination": "moved_away"}, "2027-01-10")
    assert rules(stream, "2027-10-01") == {}
