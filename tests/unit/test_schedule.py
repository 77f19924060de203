"""The pure schedule: which notices a history calls for, up to a day."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from senflow.events.envelope import NewEvent
from senflow.services.workflow.commands import parse_command
from senflow.services.workflow.schedule import ScheduleConfig, occurrences
from tests.integration.story import EXAMPLE_PUPIL, ids, story

pytestmark = pytest.mark.unit

TENANT = {"trust_id": "trust-7", "school_urn": "123456"}


def facts(upto: int | None = None) -> list[NewEvent]:
    out = []
    for n, raw in enumerate(story(EXAMPLE_PUPIL)[:upto]):
        cmd = parse_command(raw)
        out.append(
            NewEvent(
                event_id=uuid.uuid5(EXAMPLE_PUPIL, str(n)),
                data=cmd.event_data,
                occurred_at=cmd.occurred_at,
                actor=cmd.actor,
                tenant=cmd.tenant or TENANT,
                correlation_id=uuid.uuid4(),
            )
        )
    return out


def keyed(until: str, **kw) -> dict[str, str]:
    return {o.key: o.day.isoformat() for o in occurrences(facts(), date.fromisoformat(until), **kw)}


def test_the_story_calls_for_these_notices():
    plan1, plan2 = ids(EXAMPLE_PUPIL)["plan1"], ids(EXAMPLE_PUPIL)["plan2"]
    assert keyed("2025-12-31") == {
        f"review_due:{plan1}:2025-01-20": "2025-01-06",
        f"review_due:{plan2}:2025-04-28": "2025-04-14",
        "annual_report_due:2024/25": "2025-06-01",
        f"review_due:{plan2}:2025-07-14": "2025-06-30",
        f"review_overdue:{plan2}:2025-07-14": "2025-07-15",
    }


def test_lead_time_and_retention_follow_the_configuration():
    plan1 = ids(EXAMPLE_PUPIL)["plan1"]
    config = ScheduleConfig(review_lead_days=7, retention_years=8)
    found = {
        o.key: o
        for o in occurrences(facts(), date(2025, 3, 1), config, date_of_birth=date(2017, 1, 15))
    }
    assert found[f"review_due:{plan1}:2025-01-20"].day == date(2025, 1, 13)
    assert found["retention_expired"].day == date(2025, 1, 15)


def test_event_ids_follow_the_occurrence_not_the_run():
    first = occurrences(facts(), date(2025, 12, 31))
    again = occurrences(facts(), date(2025, 12, 31))
    assert [o.event_id(EXAMPLE_PUPIL) for o in first] == [o.event_id(EXAMPLE_PUPIL) for o in again]
    assert len({o.event_id(EXAMPLE_PUPIL) for o in first}) == len(first)


def test_an_ehc_annual_review_moves_the_next_deadline():
    assert keyed("2027-10-01")["ehc_annual_review_due:2025-10-15"] == "2026-09-15"
    assert "ehc_annual_review_overdue:2025-10-15" not in keyed("2027-10-01")
    assert keyed("2027-10-01")["ehc_annual_review_overdue:2026-09-25"] == "2027-09-26"


@settings(max_examples=60, deadline=None)
@given(st.dates(date(2024, 9, 1), date(2027, 12, 31)), st.integers(0, 400))
def test_running_later_only_adds_notices_and_never_moves_them(day, more):
    """What is due by a day stays due, on the same day, whenever the scheduler runs."""
    early = keyed(day.isoformat())
    later = keyed((day + timedelta(days=more)).isoformat())
    assert all(later[k] == v for k, v in early.items())
    assert all(date.fromisoformat(v) <= day for v in early.values())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 26))
def test_a_notice_only_depends_on_what_had_happened_by_its_day(cut):
    """Catch-up equals running every day: events after a notice's day do not change it."""
    history = facts(cut)
    last_day = max(f.occurred_at.date() for f in history)
    everything = {o.key: o.day for o in occurrences(facts(), date(2027, 12, 31))}
    known_then = {o.key: o.day for o in occurrences(history, last_day)}
    assert all(everything.get(k) == d for k, d in known_then.items())
