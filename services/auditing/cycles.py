"""Every assess-plan-do-review cycle of a pupil (Code of Practice 6.44-6.56), from their events.

Input: the pupil's *effective* events (corrections applied, see
:func:`.timeline.effective_events`), which may include personal data. Events
are placed by when they happened (``occurred_at``, then stream version), so an
entry recorded late still lands in the cycle in which it happened.

A cycle starts when a plan is agreed (6.48) and closes at its review (6.53). A
plan kept after a review (no new plan agreed) goes on in a *continuation*
cycle, opened when something uses it again (an intervention started under it,
or another review of it). What happened between a review and the next plan is
that next cycle's ``assess`` (6.45); what happened before the first plan is the
``identification``; what happened while a cycle was open is its ``during``.
Interventions belong to the cycle in which they started; a review's ratings
are written into the outcomes and interventions they rate. EHC milestones (6.56,
6.63) are listed apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.services.auditing.timeline import personal, recorded_late
from senflow.services.workflow.calendar import school_day

Doc = dict[str, Any]

# Event types that are neither the plan, its delivery, nor the EHC route: they are
# placed in the identification, a cycle's "assess" or "during", or after the last cycle.
_ITEM_TYPES = {
    "concern_raised",
    "parent_views_recorded",
    "pupil_views_recorded",
    "assessment_recorded",
    "specialist_involved",
    "sen_support_started",
    "needs_reclassified",
    "progress_recorded",
    "parent_meeting_held",
    "sen_support_ended",
    "transition_information_shared",
    "pupil_transferred",
    "pupil_left",
    "annual_report_shared",
}
_EHC_TYPES = {
    "ehc_needs_assessment_requested",
    "ehc_needs_assessment_decided",
    "ehc_plan_issued",
    "ehc_annual_review_held",
}


def plain(value: Any) -> Any:
    """JSON content with redaction markers reduced to their text."""
    if isinstance(value, dict):
        if value.get("redacted") is True and "marker" in value:
            return value["marker"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def content(data: ev.EventData) -> Doc:
    """An event's content as plain JSON (personal values as text), without its type."""
    return plain(data.model_dump(mode="json", exclude={"event_type"}))  # type: ignore[no-any-return]


def item(event: RecordedEvent) -> Doc:
    """An event as an evidence item: kind, day, ids, lateness and its content.

    A content field named like an envelope field is renamed: an assessment's
    own ``kind`` (screener, observation...) becomes ``assessment_kind``.
    """
    envelope = {
        "kind": event.event_type,
        "on": school_day(event.occurred_at).isoformat(),
        "event_id": str(event.event_id),
        "version": event.version,
        "recorded_at": event.recorded_at.isoformat(),
        "recorded_late": recorded_late(event),
        "recorded_by": f"{event.actor.role.value}:{event.actor.user_id}",
    }
    body = {
        (("assessment_kind" if k == "kind" else f"data_{k}") if k in envelope else k): v
        for k, v in content(event.data).items()
    }
    return {**envelope, **body}


def measure(m: ev.Measure | None) -> Doc | None:
    if m is None:
        return None
    return {
        "instrument": m.instrument,
        "value": float(m.value),
        "unit": str(m.unit),
        "higher_is_better": bool(m.higher_is_better),
    }


def measured_change(entry: Doc | None, exit_: Doc | None) -> float | None:
    """Exit minus entry, positive meaning progress; None unless both measure the same thing.

    The provision map's rule: same instrument (case and spaces aside), unit and
    direction; the sign flips when a lower score is better.
    """
    if not entry or not exit_:
        return None
    if (
        entry["instrument"].strip().casefold() != exit_["instrument"].strip().casefold()
        or entry["unit"] != exit_["unit"]
        or entry["higher_is_better"] != exit_["higher_is_better"]
    ):
        return None
    change = float(exit_["value"]) - float(entry["value"])
    return round(change if entry["higher_is_better"] else -change, 6)


class _Builder:
    def __init__(self, today: date) -> None:
        self.today = today
        self.cycles: list[Doc] = []
        self.open: Doc | None = None
        self.pending: list[Doc] = []
        self.identification: list[Doc] | None = None
        self.interventions: dict[str, Doc] = {}
        self.ehc: list[Doc] = []
        self.plans: dict[str, ev.PlanAgreed] = {}

    # --- cycles ---------------------------------------------------------------------------

    def _close(self, status: str) -> None:
        if self.open is not None:
            self.open["status"] = status
            self.open = None

    def _new_cycle(self, plan: ev.PlanAgreed, day: str, event: RecordedEvent | None) -> Doc:
        if not self.cycles:
            self.identification, assess = self.pending, []
        else:
            assess = self.pending
        self.pending = []
        continues = event is None
        cycle: Doc = {
            "number": len(self.cycles) + 1,
            "plan_id": str(plan.plan_id),
            "continues_plan": continues,
            "started_on": day,
            "agreed_on": None if continues else day,
            "plan_event_id": None if continues else str(event.event_id),  # type: ignore[union-attr]
            "agreed_by": [str(p.value) for p in plan.agreed_by],
            "staff_informed": plan.staff_informed,
            "staff_informed_on": plan.staff_informed_on.isoformat()
            if plan.staff_informed_on
            else None,
            "expected_impact": personal(plan.expected_impact),
            "review_date": plan.review_date.isoformat(),
            "outcomes": [
                {
                    "outcome_id": o.outcome_id,
                    "description": personal(o.description),
                    "target_date": o.target_date.isoformat() if o.target_date else None,
                    "rating": None,
                    "note": None,
                }
                for o in plan.outcomes
            ],
            "provisions": [
                {k: v for k, v in p.model_dump(mode="json").items()} for p in plan.provisions
            ],
            "assess": assess,
            "during": [],
            "interventions": [],
            "review": None,
            "status": "open",
        }
        self.cycles.append(cycle)
        self.open = cycle
        return cycle

    def _continue(self, plan_id: str, day: str) -> Doc | None:
        """The open cycle of ``plan_id``, opening a continuation if the plan was reviewed."""
        if self.open is not None and self.open["plan_id"] == plan_id:
            return self.open
        last = next((c for c in reversed(self.cycles) if c["plan_id"] == plan_id), None)
        plan = self.plans.get(plan_id)
        if last is None or plan is None or last["review"] is None or self.open is not None:
            return last
        cycle = self._new_cycle(plan, day, None)
        cycle["review_date"] = last["review"]["next_review_date"] or cycle["review_date"]
        return cycle

    # --- events ---------------------------------------------------------------------------

    def add(self, event: RecordedEvent) -> None:
        data, day = event.data, school_day(event.occurred_at).isoformat()
        match data:
            case ev.PlanAgreed():
                self._close("superseded")
                self.plans[str(data.plan_id)] = data
                self._new_cycle(data, day, event)
            case ev.ReviewHeld():
                self._review(event, data, day)
            case ev.InterventionStarted():
                self._start(event, data, day)
            case ev.InterventionSessionRecorded():
                i = self.interventions.get(str(data.intervention_id))
                if i is not None:
                    i["sessions_attended" if data.attended else "sessions_missed"] += 1
                    i["minutes_delivered"] += data.minutes
            case ev.InterventionEnded():
                i = self.interventions.get(str(data.intervention_id))
                if i is not None:
                    i.update(
                        ended_on=day,
                        end_reason=str(data.reason),
                        exit=measure(data.exit_measure),
                        exit_event_id=str(event.event_id),
                    )
                    i["change"] = measured_change(i["entry"], i["exit"])
            case _ if event.event_type in _EHC_TYPES:
                self.ehc.append(item(event))
            case _ if event.event_type in _ITEM_TYPES:
                (self.open["during"] if self.open is not None else self.pending).append(item(event))
                if isinstance(data, ev.SenSupportEnded):
                    self._close("support_ended")
                elif isinstance(data, ev.PupilLeft):
                    self._close("pupil_left")

    def _review(self, event: RecordedEvent, data: ev.ReviewHeld, day: str) -> None:
        plan_id = str(data.plan_id)
        cycle = self._continue(plan_id, day)
        if cycle is None:
            return
        if cycle is not self.open and cycle["review"] is not None:
            return  # a review of a plan that is not current: the write side refuses these
        agreed = cycle["review_date"]
        late_by = (date.fromisoformat(day) - date.fromisoformat(agreed)).days
        by_id = {o["outcome_id"]: o for o in cycle["outcomes"]}
        for p in data.outcome_progress:
            if p.outcome_id in by_id:
                by_id[p.outcome_id].update(rating=str(p.rating.value), note=personal(p.note))
        impacts = []
        for imp in data.intervention_impact:
            iid = str(imp.intervention_id)
            i = self.interventions.get(iid)
            if i is not None:
                i.update(impact=str(imp.impact.value), keep=imp.keep, rated_on=day)
            impacts.append(
                {
                    "intervention_id": iid,
                    "name": i["name"] if i else None,
                    "impact": str(imp.impact.value),
                    "keep": imp.keep,
                }
            )
        cycle["review"] = {
            "event_id": str(event.event_id),
            "held_on": day,
            "agreed_date": agreed,
            "on_time": late_by <= 0,
            "days_late": max(0, late_by),
            "decision": str(data.decision.value),
            "next_review_date": data.next_review_date.isoformat()
            if data.next_review_date
            else None,
            "pupil_views": personal(data.pupil_views),
            "parent_views": personal(data.parent_views),
            "outcome_progress": [
                {
                    "outcome_id": p.outcome_id,
                    "rating": str(p.rating.value),
                    "note": personal(p.note),
                }
                for p in data.outcome_progress
            ],
            "intervention_impact": impacts,
            "recorded_late": recorded_late(event),
        }
        if cycle is self.open:
            self._close("reviewed")
        else:
            cycle["status"] = "reviewed"

    def _start(self, event: RecordedEvent, data: ev.InterventionStarted, day: str) -> None:
        plan_id = str(data.plan_id)
        cycle = self._continue(plan_id, day)
        plan = self.plans.get(plan_id)
        line = next(
            (p for p in (plan.provisions if plan else ()) if p.provision_id == data.provision_id),
            None,
        )
        doc: Doc = {
            "intervention_id": str(data.intervention_id),
            "cycle": cycle["number"] if cycle else None,
            "plan_id": plan_id,
            "provision_id": data.provision_id,
            "name": line.name if line else data.provision_id,
            "delivery": str(line.delivery.value) if line else None,
            "staff_role": str(line.staff_role.value) if line else None,
            "sessions_per_week": line.sessions_per_week if line else None,
            "minutes_per_session": line.minutes_per_session if line else None,
            "weeks": line.weeks if line else None,
            "group_size": line.group_size if line else None,
            "cost_pence": line.cost_pence if line else None,
            "outcome_ids": list(line.outcome_ids) if line else [],
            "started_on": day,
            "start_event_id": str(event.event_id),
            "ended_on": None,
            "end_reason": None,
            "exit_event_id": None,
            "entry": measure(data.entry_measure),
            "exit": None,
            "change": None,
            "sessions_attended": 0,
            "sessions_missed": 0,
            "minutes_delivered": 0,
            "impact": None,
            "keep": None,
            "rated_on": None,
        }
        self.interventions[doc["intervention_id"]] = doc
        if cycle is not None:
            cycle["interventions"].append(doc)

    def result(self) -> Doc:
        if self.open is not None:
            overdue = self.open["review_date"] < self.today.isoformat()
            self.open["status"] = "review_overdue" if overdue else "open"
        if self.identification is None:
            identification, after = self.pending, []
        else:
            identification, after = self.identification, self.pending
        return {
            "identification": identification,
            "cycles": self.cycles,
            "after_last_cycle": after,
            "interventions": list(self.interventions.values()),
            "ehc": self.ehc,
        }


def _order(event: RecordedEvent) -> tuple[Any, int]:
    return (event.occurred_at, event.version)


def build(events: Sequence[RecordedEvent], today: date) -> Doc:
    """Identification, cycles, interventions and EHC milestones; ``today`` judges open cycles."""
    builder = _Builder(today)
    for event in sorted(events, key=_order):
        builder.add(event)
    return builder.result()


def measure_series(events: Sequence[RecordedEvent]) -> list[Doc]:
    """Every measure taken (entry, exit, progress), one series per instrument, unit and direction.

    Points are in date order and name the intervention they belong to, so a
    chart can draw the measures against the interventions.
    """
    names: dict[str, str] = {}
    plans: dict[str, ev.PlanAgreed] = {}
    series: dict[tuple[str, str, bool], Doc] = {}

    def point(m: ev.Measure, day: str, source: str, intervention_id: str | None) -> None:
        key = (" ".join(m.instrument.split()).casefold(), str(m.unit), bool(m.higher_is_better))
        s = series.setdefault(
            key,
            {
                "instrument": " ".join(m.instrument.split()),
                "unit": str(m.unit),
                "higher_is_better": bool(m.higher_is_better),
                "points": [],
            },
        )
        s["points"].append(
            {
                "on": day,
                "value": float(m.value),
                "source": source,
                "intervention_id": intervention_id,
                "intervention": names.get(intervention_id or ""),
            }
        )

    for event in sorted(events, key=_order):
        data, day = event.data, school_day(event.occurred_at).isoformat()
        match data:
            case ev.PlanAgreed():
                plans[str(data.plan_id)] = data
            case ev.InterventionStarted():
                plan = plans.get(str(data.plan_id))
                line = next(
                    (
                        p
                        for p in (plan.provisions if plan else ())
                        if p.provision_id == data.provision_id
                    ),
                    None,
                )
                names[str(data.intervention_id)] = line.name if line else data.provision_id
                if data.entry_measure is not None:
                    point(data.entry_measure, day, "entry", str(data.intervention_id))
            case ev.InterventionEnded():
                if data.exit_measure is not None:
                    point(data.exit_measure, day, "exit", str(data.intervention_id))
            case ev.ProgressRecorded():
                if data.measure is not None:
                    point(data.measure, day, "progress", None)
    out = list(series.values())
    for s in out:
        s["points"].sort(key=lambda p: p["on"])
    out.sort(key=lambda s: (s["instrument"].casefold(), s["unit"]))
    return out
