"""Which dated notices a pupil's history calls for up to a day: pure, no clock, no I/O.

Each notice is an *occurrence*: a kind, the day it happens and a key naming
exactly what it is about (which plan and review date, which EHC anchor, which
term). The scheduler turns an occurrence into an event whose id is derived
from the pupil and the key, so running twice, running two schedulers, or
catching up after downtime records it once.

Occurrences are judged on the facts as they had happened by their day (by
``occurred_at``), so catching up after a month's downtime gives the notices a
scheduler running every day would have given: a review that was overdue for a
week and then held late is still announced as overdue on the day after it was
due. A new review date means new occurrences; a review held (or support
ended, or the pupil leaving) before a date means its occurrence never comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID, uuid5

from senflow.events import catalogue as ev
from senflow.events.codes import SenProvision
from senflow.services.workflow.calendar import (
    academic_year_label,
    academic_year_start,
    add_months,
    school_day,
    term_ends,
)
from senflow.services.workflow.state import Fact, PupilState, effective, evolve


@dataclass(frozen=True)
class ScheduleConfig:
    review_lead_days: int = 14
    ehc_due_months: int = 11
    ehc_overdue_months: int = 12
    annual_report_reminder: tuple[int, int] = (6, 1)  # 1 June: month, day
    annual_report_due_by: tuple[int, int] = (7, 20)  # before the summer holiday
    retention_years: int = 31


@dataclass(frozen=True)
class Occurrence:
    key: str
    day: date
    data: ev.EventData

    def event_id(self, pupil_id: UUID) -> UUID:
        return uuid5(pupil_id, f"notice:{self.key}")


class _Timeline:
    """The pupil's state at the end of any day, by what had happened by then."""

    def __init__(self, facts: Sequence[Fact]) -> None:
        self.facts = sorted(
            effective(facts), key=lambda f: (school_day(f.occurred_at), f.occurred_at)
        )
        self._cache: dict[date, PupilState] = {}

    def at_end_of(self, day: date) -> PupilState:
        if day not in self._cache:
            state = PupilState()
            for f in self.facts:
                if school_day(f.occurred_at) > day:
                    break
                state = evolve(state, f)
            self._cache[day] = state
        return self._cache[day]


def _on_register(state: PupilState) -> bool:
    return state.on_sen_register and state.left_on is None and not state.erased


def _target_in_force(state: PupilState, plan_id: UUID, review_date: date) -> bool:
    return (
        _on_register(state)
        and state.plan is not None
        and state.plan.plan_id == plan_id
        and state.next_review_due == review_date
    )


def _review_targets(facts: Sequence[Fact]) -> list[tuple[UUID, date, date]]:
    """(plan, review date, day it was set) for every review date ever set."""
    targets = []
    for f in effective(facts):
        data, day = f.data, school_day(f.occurred_at)
        if isinstance(data, ev.PlanAgreed):
            targets.append((data.plan_id, data.review_date, day))
        elif isinstance(data, ev.ReviewHeld) and data.next_review_date is not None:
            targets.append((data.plan_id, data.next_review_date, day))
    return targets


def occurrences(
    facts: Sequence[Fact],
    until: date,
    config: ScheduleConfig = ScheduleConfig(),
    date_of_birth: date | None = None,
) -> list[Occurrence]:
    """Every notice due on or before ``until``, in day order (already recorded ones too)."""
    if not facts:
        return []
    timeline = _Timeline(facts)
    found: list[Occurrence] = []
    found += _reviews(facts, timeline, until, config)
    found += _ehc_reviews(timeline, until, config)
    found += _parent_meetings(timeline, until)
    found += _annual_reports(timeline, until, config)
    if date_of_birth is not None:
        expires = add_months(date_of_birth, 12 * config.retention_years)
        if expires <= until and not timeline.at_end_of(until).erased:
            found.append(
                Occurrence(
                    "retention_expired",
                    expires,
                    ev.RetentionExpired(retention_years=config.retention_years),
                )
            )
    unique = {o.key: o for o in found}
    return sorted(unique.values(), key=lambda o: (o.day, o.key))


def _reviews(
    facts: Sequence[Fact], timeline: _Timeline, until: date, config: ScheduleConfig
) -> list[Occurrence]:
    found = []
    for plan_id, review_date, set_on in _review_targets(facts):
        due_on = max(review_date - timedelta(days=config.review_lead_days), set_on)
        if due_on <= until and due_on < review_date:
            state = timeline.at_end_of(due_on)
            if _target_in_force(state, plan_id, review_date):
                found.append(
                    Occurrence(
                        f"review_due:{plan_id}:{review_date}",
                        due_on,
                        ev.ReviewDue(
                            plan_id=plan_id,
                            review_date=review_date,
                            lead_days=(review_date - due_on).days,
                        ),
                    )
                )
        overdue_on = review_date + timedelta(days=1)
        if overdue_on <= until:
            state = timeline.at_end_of(review_date)
            if _target_in_force(state, plan_id, review_date):
                found.append(
                    Occurrence(
                        f"review_overdue:{plan_id}:{review_date}",
                        overdue_on,
                        ev.ReviewOverdue(plan_id=plan_id, review_date=review_date),
                    )
                )
    return found


def _ehc_anchors(timeline: _Timeline) -> list[date]:
    anchors = []
    for f in timeline.facts:
        if isinstance(f.data, ev.EhcPlanIssued | ev.EhcAnnualReviewHeld):
            anchors.append(school_day(f.occurred_at))
    return anchors


def _ehc_anchor(state: PupilState) -> date | None:
    if state.provision is not SenProvision.EHC_PLAN:
        return None
    return state.ehc_last_review_on or state.ehc_plan_since


def _ehc_reviews(timeline: _Timeline, until: date, config: ScheduleConfig) -> list[Occurrence]:
    found = []
    for anchor in _ehc_anchors(timeline):
        due_by = add_months(anchor, config.ehc_overdue_months)
        due_on = add_months(anchor, config.ehc_due_months)
        if due_on <= until:
            state = timeline.at_end_of(due_on)
            if _on_register(state) and _ehc_anchor(state) == anchor:
                found.append(
                    Occurrence(
                        f"ehc_annual_review_due:{anchor}",
                        due_on,
                        ev.EhcAnnualReviewDue(last_reviewed_on=anchor, due_by=due_by),
                    )
                )
        overdue_on = due_by + timedelta(days=1)
        if overdue_on <= until:
            state = timeline.at_end_of(due_by)
            if _on_register(state) and _ehc_anchor(state) == anchor:
                found.append(
                    Occurrence(
                        f"ehc_annual_review_overdue:{anchor}",
                        overdue_on,
                        ev.EhcAnnualReviewOverdue(last_reviewed_on=anchor, due_by=due_by),
                    )
                )
    return found


_TERMS = ("autumn", "spring", "summer")


def _register_start(state: PupilState) -> date | None:
    """When the pupil's current, unbroken time on the register began (K then E is one)."""
    history = state.provision_history
    if not history or history[-1].end is not None:
        return None
    start = history[-1].start
    for spell in reversed(history[:-1]):
        if spell.end != start:
            break
        start = spell.start
    return start


def _parent_meetings(timeline: _Timeline, until: date) -> list[Occurrence]:
    found: list[Occurrence] = []
    if not timeline.facts:
        return found
    first = school_day(timeline.facts[0].occurred_at)
    year = academic_year_start(first)
    while year <= until:
        for term, end in zip(_TERMS, term_ends(year), strict=True):
            judged_on = end + timedelta(days=1)
            if judged_on > until or end < first:
                continue
            state = timeline.at_end_of(end)
            start = _register_start(state)
            if not _on_register(state) or start is None:
                continue
            expected = sum(1 for e in term_ends(year) if start <= e <= end)
            counted_from = max(year, start)
            held = sum(1 for m in state.parent_meetings if counted_from <= m <= end)
            if expected and held < expected:
                label = academic_year_label(end)
                found.append(
                    Occurrence(
                        f"parent_meetings_behind:{label}:{term}",
                        judged_on,
                        ev.ParentMeetingsBehind(
                            academic_year=label, term=term, expected=expected, held=held
                        ),
                    )
                )
        year = date(year.year + 1, 9, 1)
    return found


def _annual_reports(timeline: _Timeline, until: date, config: ScheduleConfig) -> list[Occurrence]:
    found: list[Occurrence] = []
    if not timeline.facts:
        return found
    first = school_day(timeline.facts[0].occurred_at)
    year = academic_year_start(first)
    while year <= until:
        remind_on = date(year.year + 1, *config.annual_report_reminder)
        label = academic_year_label(remind_on)
        if first <= remind_on <= until:
            state = timeline.at_end_of(remind_on)
            if _on_register(state) and label not in state.annual_reports:
                found.append(
                    Occurrence(
                        f"annual_report_due:{label}",
                        remind_on,
                        ev.AnnualReportDue(
                            academic_year=label,
                            due_by=date(year.year + 1, *config.annual_report_due_by),
                        ),
                    )
                )
        year = date(year.year + 1, 9, 1)
    return found
