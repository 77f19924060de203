"""A whole school year with a moving clock: every notice once, on its day.

Pupils live through the year day by day (their commands run on their days);
two schedulers tick every day, except for three weeks of downtime after which
a freshly started scheduler catches up. Each pupil's notices must be exactly
those its story calls for, dated the day they fell due.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from senflow.events.catalogue import NOTICE_TYPES
from senflow.services.application import SenflowService
from senflow.services.scheduler import SCHEDULER, FutureTick, Scheduler
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.calendar import SCHOOL_TZ, school_day
from senflow.services.workflow.commands import parse_command
from senflow.services.workflow.schedule import occurrences
from tests.integration.helpers import upn

pytestmark = pytest.mark.integration

START, END = date(2024, 9, 1), date(2025, 9, 30)
DOWN_FROM, DOWN_TO = date(2024, 11, 25), date(2024, 12, 15)  # no scheduler running


class Year:
    """Commands by day for pupils of one trust."""

    def __init__(self) -> None:
        self.trust = f"trust-s{uuid.uuid4().hex[:8]}"
        self.by_day: dict[date, list[dict[str, Any]]] = {}
        self.serial = 0

    def pupil(self, on: str, dob: str = "2015-05-05", year_group: str = "4") -> uuid.UUID:
        pupil = uuid.uuid4()
        self.serial += 1
        self.add(
            pupil,
            "register_pupil",
            on,
            {
                "upn": upn(5000 + self.serial),
                "forename": "Sam",
                "surname": "Lee",
                "date_of_birth": dob,
                "year_group": year_group,
                "on_roll_from": on,
            },
            role="integration",
            tenant={"trust_id": self.trust, "school_urn": "123456"},
        )
        return pupil

    def add(
        self,
        pupil: uuid.UUID,
        command: str,
        on: str,
        payload: dict[str, Any],
        role: str = "senco",
        **kw: Any,
    ) -> None:
        self.by_day.setdefault(date.fromisoformat(on), []).append(
            {
                "command": command,
                "pupil_id": str(pupil),
                "occurred_at": on,
                "actor": {"user_id": f"{role}.1", "role": role},
                "payload": payload,
                **kw,
            }
        )

    def support(self, pupil: uuid.UUID, on: str) -> None:
        self.add(
            pupil,
            "start_sen_support",
            on,
            {
                "needs": [{"type": "SLCN", "rank": 1}],
                "parents_notified": True,
                "parents_notified_on": on,
            },
        )

    def plan(self, pupil: uuid.UUID, on: str, review: str) -> str:
        plan_id = str(uuid.uuid4())
        self.add(
            pupil,
            "agree_plan",
            on,
            {
                "plan_id": plan_id,
                "outcomes": [{"outcome_id": "O1", "description": "Talk more"}],
                "provisions": [
                    {
                        "provision_id": "P1",
                        "name": "Talk Boost",
                        "delivery": "small_group",
                        "staff_role": "teaching_assistant",
                        "sessions_per_week": 3,
                        "minutes_per_session": 30,
                        "weeks": 10,
                        "cost_pence": 100,
                    }
                ],
                "expected_impact": "More talk",
                "review_date": review,
                "agreed_by": ["senco", "parent", "pupil"],
                "staff_informed": True,
            },
        )
        return plan_id

    def review(
        self,
        pupil: uuid.UUID,
        plan_id: str,
        on: str,
        next_date: str | None,
        decision: str = "continue",
    ) -> None:
        self.add(
            pupil,
            "hold_review",
            on,
            {
                "plan_id": plan_id,
                "outcome_progress": [{"outcome_id": "O1", "rating": "met"}],
                "pupil_views": "ok",
                "parent_views": "ok",
                "decision": decision,
                "next_review_date": next_date,
            },
        )

    def meeting(self, pupil: uuid.UUID, on: str) -> None:
        self.add(
            pupil,
            "hold_parent_meeting",
            on,
            {"attendees": ["parent", "senco"], "summary": "met", "record_given_to_parents": True},
        )


def notices(events) -> list[tuple[str, str]]:
    return [
        (e.event_type, school_day(e.occurred_at).isoformat())
        for e in events
        if e.event_type in NOTICE_TYPES
    ]


async def test_a_school_year_of_notices_each_once_on_its_day(store: EventStore):
    year = Year()
    expected: dict[uuid.UUID, list[tuple[str, str]]] = {}

    on_time = year.pupil("2024-09-02")
    year.support(on_time, "2024-09-10")
    p = year.plan(on_time, "2024-09-12", "2024-12-02")
    year.meeting(on_time, "2024-10-15")
    year.review(on_time, p, "2024-11-28", "2025-03-10")
    year.meeting(on_time, "2025-01-20")
    year.review(on_time, p, "2025-03-06", "2025-06-30")
    year.meeting(on_time, "2025-04-28")
    year.add(on_time, "record_annual_report", "2025-05-20", {"academic_year": "2024/25"})
    year.review(on_time, p, "2025-06-25", "2025-10-13")
    expected[on_time] = [
        ("review_due", "2024-11-18"),
        ("review_due", "2025-02-24"),
        ("review_due", "2025-06-16"),
        ("review_due", "2025-09-29"),
    ]

    late = year.pupil("2024-09-02")
    year.support(late, "2024-09-10")
    p = year.plan(late, "2024-09-12", "2024-12-02")
    year.review(late, p, "2024-12-09", "2025-03-10")  # a week late, during the downtime
    expected[late] = [
        ("review_due", "2024-11-18"),
        ("review_overdue", "2024-12-03"),
        ("parent_meetings_behind", "2025-01-01"),
        ("review_due", "2025-02-24"),
        ("review_overdue", "2025-03-11"),
        ("parent_meetings_behind", "2025-04-15"),
        ("annual_report_due", "2025-06-01"),
        ("parent_meetings_behind", "2025-09-01"),
    ]

    short = year.pupil("2024-09-02")
    year.support(short, "2024-10-01")
    p = year.plan(short, "2024-10-01", "2024-10-08")  # due at once: less than the lead time
    year.review(short, p, "2024-10-08", None, decision="end_sen_support")
    expected[short] = [("review_due", "2024-10-01")]

    moved = year.pupil("2024-09-02")
    year.support(moved, "2024-09-10")
    year.plan(moved, "2024-09-12", "2024-12-02")
    p = year.plan(moved, "2024-11-01", "2025-01-27")  # rescheduled before it fell due
    year.review(moved, p, "2025-01-27", None, decision="end_sen_support")
    expected[moved] = [("parent_meetings_behind", "2025-01-01"), ("review_due", "2025-01-13")]

    ehc = year.pupil("2024-09-02")
    year.support(ehc, "2024-09-03")
    year.add(
        ehc,
        "request_ehc_needs_assessment",
        "2024-09-04",
        {"requested_by": "school", "local_authority": "886", "evidence_summary": "x"},
    )
    year.add(ehc, "decide_ehc_needs_assessment", "2024-09-05", {"decision": "agreed_to_assess"})
    year.add(
        ehc,
        "issue_ehc_plan",
        "2024-09-16",
        {
            "la_reference": "LA-1",
            "needs": [{"type": "ASD", "rank": 1}],
            "first_review_due": "2025-09-01",
        },
    )
    expected[ehc] = [
        ("parent_meetings_behind", "2025-01-01"),
        ("parent_meetings_behind", "2025-04-15"),
        ("annual_report_due", "2025-06-01"),
        ("ehc_annual_review_due", "2025-08-16"),
        ("parent_meetings_behind", "2025-09-01"),
        ("ehc_annual_review_overdue", "2025-09-17"),
    ]

    expiring = year.pupil("2024-09-02", dob="1993-10-15", year_group="14")
    expected[expiring] = [("retention_expired", "2024-10-15")]

    now = {"at": datetime.combine(START, time(18), SCHOOL_TZ)}
    svc = SenflowService(store, clock=lambda: now["at"])
    first, second = Scheduler(store, svc), Scheduler(store, svc)
    day = START
    while day <= END:
        now["at"] = datetime.combine(day, time(18), SCHOOL_TZ)
        for raw in year.by_day.get(day, []):
            result = await svc.handle(parse_command(raw))
            assert result.accepted, (raw["command"], day, result.rejection)
        if not DOWN_FROM <= day <= DOWN_TO:
            if day == DOWN_TO + timedelta(days=1):
                first, second = Scheduler(store, svc), Scheduler(store, svc)  # restarted
            await asyncio.gather(first.tick(day, year.trust), second.tick(day, year.trust))
        day += timedelta(days=1)

    for pupil, wanted in expected.items():
        events = await store.read_stream(pupil)
        got = notices(events)
        assert sorted(got, key=lambda n: (n[1], n[0])) == sorted(
            wanted, key=lambda n: (n[1], n[0])
        ), pupil
        ids = [e.event_id for e in events]
        assert len(ids) == len(set(ids))
        # what the pure schedule says of the final history, recorded exactly once each
        oracle = [
            (o.data.event_type, o.day.isoformat())
            for o in occurrences(events, END, date_of_birth=None)
        ]
        counted = Counter(got)
        assert all(counted[n] == 1 for n in oracle), (pupil, counted)

    erased = await store.read_stream(expiring)
    assert erased[-1].event_type == "personal_data_erased"
    assert str(erased[0].data.forename).startswith("[redacted")


async def test_a_tick_for_a_future_day_is_refused(store: EventStore):
    svc = SenflowService(store, clock=lambda: datetime(2025, 1, 1, 12, tzinfo=UTC))
    with pytest.raises(FutureTick):
        await Scheduler(store, svc).tick(date(2025, 1, 2))


async def test_an_erased_pupil_does_not_stop_the_others_notices(store: EventStore):
    year = Year()
    erased = year.pupil("2024-09-02")
    year.support(erased, "2024-09-10")
    year.plan(erased, "2024-09-12", "2024-10-01")  # overdue from 2 October
    other = year.pupil("2024-09-02")
    year.support(other, "2024-09-10")
    year.plan(other, "2024-09-12", "2024-10-01")
    now = datetime.combine(date(2024, 10, 20), time(18), SCHOOL_TZ)
    svc = SenflowService(store, clock=lambda: now)
    for day in sorted(year.by_day):
        for raw in year.by_day[day]:
            assert (await svc.handle(parse_command(raw))).accepted
    await svc.forget(erased, "SAR-9", SCHEDULER)
    report = await Scheduler(store, svc).tick(date(2024, 10, 20), year.trust)
    assert report.failed == 0
    assert notices(await store.read_stream(other)) == [
        ("review_due", "2024-09-17"),
        ("review_overdue", "2024-10-02"),
    ]
    assert notices(await store.read_stream(erased)) == []


async def test_a_retention_notice_without_its_erasure_is_finished_by_the_next_tick(
    store: EventStore,
):
    from senflow.events import catalogue as ev
    from senflow.events.envelope import NewEvent

    year = Year()
    pupil = year.pupil("2024-09-02", dob="1993-10-15", year_group="14")
    now = datetime.combine(date(2024, 10, 20), time(18), SCHOOL_TZ)
    svc = SenflowService(store, clock=lambda: now)
    for raw in year.by_day[date(2024, 9, 2)]:
        assert (await svc.handle(parse_command(raw))).accepted
    # as an older senflow, interrupted between the notice and the erasure, would leave it
    registered = (await store.read_stream(pupil))[0]
    await store.append(
        pupil,
        [
            NewEvent(
                event_id=uuid.uuid4(),
                data=ev.RetentionExpired(retention_years=31),
                occurred_at=now,
                actor=SCHEDULER,
                tenant=registered.tenant,
                correlation_id=uuid.uuid4(),
            )
        ],
        1,
    )
    await Scheduler(store, svc).tick(date(2024, 10, 20), year.trust)
    events = await store.read_stream(pupil)
    assert events[-1].event_type == "personal_data_erased"
    assert str(events[0].data.forename).startswith("[redacted")
