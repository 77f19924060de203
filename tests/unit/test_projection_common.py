"""Helpers every projection shares."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from senflow.projections.common import day_of
from tests.integration.story import EXAMPLE_PUPIL, story
from tests.unit.test_projection_register import Stream


def test_an_events_day_is_its_day_in_england_whatever_zone_its_moment_is_in() -> None:
    event = Stream().command(story(EXAMPLE_PUPIL)[0])

    def day(moment: datetime) -> str:
        return day_of(event.model_copy(update={"occurred_at": moment}))

    late_evening = datetime(2024, 7, 1, 23, 30, tzinfo=UTC)  # 00:30 on the 2nd in London
    assert day(late_evening) == "2024-07-02"
    assert day(late_evening.astimezone(ZoneInfo("America/New_York"))) == "2024-07-02"
    assert day(datetime(2024, 7, 1, 22, 30, tzinfo=UTC)) == "2024-07-01"
    winter = datetime(2024, 1, 1, 23, 30, tzinfo=UTC)  # GMT: still the 1st
    assert day(winter) == "2024-01-01"
    assert day(winter.astimezone(ZoneInfo("Asia/Tokyo"))) == "2024-01-01"
