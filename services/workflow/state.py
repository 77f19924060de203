"""A pupil's SEN state, folded from their events: ``state = replay(events)``.

``evolve`` is total: it never rejects, because a stored event is a fact. The
rules live in ``decide``. The same fold serves the write side, "as of" history
and replay for auditors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from senflow.events import catalogue as ev
from senflow.events.codes import SenProvision
from senflow.events.envelope import Tenant
from senflow.services.workflow.calendar import school_day


class Fact(Protocol):
    """What evolve needs of an event: NewEvent and RecordedEvent both qualify."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def tenant(self) -> Tenant: ...
    @property
    def data(self) -> ev.EventData: ...


@dataclass(frozen=True)
class Intervention:
    intervention_id: UUID
    plan_id: UUID
    provision_id: str
    name: str
    started_on: date
    entry_measure: ev.Measure | None
    sessions: int = 0
    minutes_delivered: int = 0
    ended_on: date | None = None
    exit_measure: ev.Measure | None = None

    @property
    def running(self) -> bool:
        return self.ended_on is None


@dataclass(frozen=True)
class Plan:
    plan_id: UUID
    agreed_on: date
    outcome_ids: tuple[str, ...]
    provisions: tuple[ev.Provision, ...]
    review_date: date
    reviewed_on: date | None = None


@dataclass(frozen=True)
class ProvisionSpell:
    """A period on one census SEN provision, for the register and the CTF history."""

    provision: SenProvision
    start: date
    end: date | None = None


@dataclass(frozen=True)
class PupilState:
    version: int = 0
    registered: bool = False
    upn: str | None = None
    year_group: str | None = None
    tenant: Tenant | None = None
    on_roll: bool = False
    left_on: date | None = None
    erased: bool = False
    provision: SenProvision = SenProvision.NO_SEN
    provision_history: tuple[ProvisionSpell, ...] = ()
    needs: tuple[ev.RankedNeed, ...] = ()
    concerns_raised: int = 0
    assessments: tuple[date, ...] = ()
    parent_views: tuple[date, ...] = ()
    pupil_views: tuple[date, ...] = ()
    specialists: tuple[str, ...] = ()
    plan: Plan | None = None
    plans_agreed: int = 0
    interventions: tuple[Intervention, ...] = ()
    parent_meetings: tuple[date, ...] = ()
    reviews: tuple[date, ...] = ()
    next_review_due: date | None = None
    ehc_request: str | None = None  # None, "requested", "agreed_to_assess", "declined"
    ehc_plan_since: date | None = None
    ehc_last_review_on: date | None = None
    ehc_next_review_due: date | None = None
    transitions_shared: int = 0
    annual_reports: tuple[str, ...] = ()
    corrections: int = 0
    event_types: dict[UUID, str] = field(default_factory=dict, compare=True)

    @property
    def on_sen_register(self) -> bool:
        return self.provision in (SenProvision.SEN_SUPPORT, SenProvision.EHC_PLAN)

    def intervention(self, intervention_id: UUID) -> Intervention | None:
        return next((i for i in self.interventions if i.intervention_id == intervention_id), None)

    def running_interventions(self) -> tuple[Intervention, ...]:
        return tuple(i for i in self.interventions if i.running)

    def provision_on(self, day: date) -> SenProvision:
        """The census SEN provision the pupil had on ``day``."""
        for spell in reversed(self.provision_history):
            if spell.start <= day and (spell.end is None or day < spell.end):
                return spell.provision
        return SenProvision.NO_SEN


_FIELDS = frozenset(f.name for f in fields(PupilState))


def _open_spell(state: PupilState, provision: SenProvision, day: date) -> dict[str, Any]:
    history = _close_spell(state.provision_history, day)
    if provision is not SenProvision.NO_SEN:
        history = (*history, ProvisionSpell(provision, day))
    return {"provision": provision, "provision_history": history}


def _close_spell(history: tuple[ProvisionSpell, ...], day: date) -> tuple[ProvisionSpell, ...]:
    if history and history[-1].end is None:
        return (*history[:-1], replace(history[-1], end=day))
    return history


def _find(interventions: tuple[Intervention, ...], intervention_id: UUID) -> int | None:
    # from the end: sessions and endings are of the latest interventions
    for i in range(len(interventions) - 1, -1, -1):
        if interventions[i].intervention_id == intervention_id:
            return i
    return None


def evolve(state: PupilState, fact: Fact) -> PupilState:
    """The state after one more event."""
    types = {**state.event_types, fact.event_id: fact.data.event_type}  # type: ignore[attr-defined]
    # one copy of the state per event, with the common changes and this event's
    new = _with(state, {"event_types": types})
    _fold(new.__dict__, state, fact)
    return _checked(new)


def _fold(fields: dict[str, Any], state: PupilState, fact: Fact) -> None:
    """Fold ``fact`` into ``fields``: ``state``'s own (a replay's private copy) or a copy's."""
    changes = _changes(state, fact, fact.data, school_day(fact.occurred_at))
    fields["version"] += 1
    fields["tenant"] = fact.tenant
    fields.update(changes)


def _checked(state: PupilState) -> PupilState:
    # _changes names fields by hand: a misspelt one would otherwise pass silently
    if not state.__dict__.keys() <= _FIELDS:
        raise TypeError(f"not fields of PupilState: {sorted(state.__dict__.keys() - _FIELDS)}")
    return state


_T = TypeVar("_T")


def _with(frozen: _T, changes: dict[str, Any]) -> _T:
    new = object.__new__(type(frozen))
    new.__dict__.update(frozen.__dict__)
    new.__dict__.update(changes)
    return new


def _changes(state: PupilState, fact: Fact, data: ev.EventData, day: date) -> dict[str, Any]:
    """What ``data`` changes in ``state`` (the fields, with their new values)."""
    match data:
        # Most of a long history is sessions: their case is tried first.
        case ev.InterventionSessionRecorded() | ev.InterventionEnded():
            at = _find(state.interventions, data.intervention_id)
            if at is None:
                return {}
            running = state.interventions[at]
            if isinstance(data, ev.InterventionSessionRecorded):
                updated = _with(
                    running,
                    {
                        "sessions": running.sessions + (1 if data.attended else 0),
                        "minutes_delivered": running.minutes_delivered + data.minutes,
                    },
                )
            else:
                updated = _with(running, {"ended_on": day, "exit_measure": data.exit_measure})
            return {
                "interventions": (
                    *state.interventions[:at],
                    updated,
                    *state.interventions[at + 1 :],
                )
            }
        case ev.PupilRegistered():
            return dict(registered=True, on_roll=True, upn=data.upn, year_group=data.year_group)
        case ev.ConcernRaised():
            return dict(concerns_raised=state.concerns_raised + 1)
        case ev.ParentViewsRecorded():
            return dict(parent_views=(*state.parent_views, day))
        case ev.PupilViewsRecorded():
            return dict(pupil_views=(*state.pupil_views, day))
        case ev.AssessmentRecorded():
            return dict(assessments=(*state.assessments, day))
        case ev.SpecialistInvolved():
            return dict(specialists=(*state.specialists, data.specialist.value))
        case ev.SenSupportStarted():
            return {**_open_spell(state, SenProvision.SEN_SUPPORT, day), "needs": tuple(data.needs)}
        case ev.NeedsReclassified():
            return dict(needs=tuple(data.needs))
        case ev.PlanAgreed():
            plan = Plan(
                plan_id=data.plan_id,
                agreed_on=day,
                outcome_ids=tuple(o.outcome_id for o in data.outcomes),
                provisions=tuple(data.provisions),
                review_date=data.review_date,
            )
            return dict(
                plan=plan,
                plans_agreed=state.plans_agreed + 1,
                next_review_due=data.review_date,
            )
        case ev.InterventionStarted():
            provision = (
                next(
                    (p for p in state.plan.provisions if p.provision_id == data.provision_id), None
                )
                if state.plan
                else None
            )
            started = Intervention(
                intervention_id=data.intervention_id,
                plan_id=data.plan_id,
                provision_id=data.provision_id,
                name=provision.name if provision else data.provision_id,
                started_on=day,
                entry_measure=data.entry_measure,
            )
            return dict(interventions=(*state.interventions, started))
        case ev.ProgressRecorded():
            return {}
        case ev.ParentMeetingHeld():
            return dict(parent_meetings=(*state.parent_meetings, day))
        case ev.ReviewHeld():
            reviewed = replace(state.plan, reviewed_on=day) if state.plan else None
            return dict(
                reviews=(*state.reviews, day),
                plan=reviewed,
                next_review_due=data.next_review_date,
            )
        case ev.EhcNeedsAssessmentRequested():
            return dict(ehc_request="requested")
        case ev.EhcNeedsAssessmentDecided():
            return dict(ehc_request=data.decision)
        case ev.EhcPlanIssued():
            # From now on the statutory date is the EHC annual review; a plan-do-review
            # cycle may still set its own review date with a new plan.
            return dict(
                **_open_spell(state, SenProvision.EHC_PLAN, day),
                needs=tuple(data.needs),
                ehc_request=None,
                ehc_plan_since=day,
                next_review_due=None,
                ehc_next_review_due=data.first_review_due,
            )
        case ev.EhcAnnualReviewHeld():
            return dict(ehc_last_review_on=day, ehc_next_review_due=data.next_review_due)
        case ev.SenSupportEnded():
            return dict(
                **_open_spell(state, SenProvision.NO_SEN, day),
                needs=(),
                plan=None,
                next_review_due=None,
            )
        case ev.TransitionInformationShared():
            return dict(transitions_shared=state.transitions_shared + 1)
        case ev.PupilTransferred():
            # The transfer is recorded at the old school; from now on the pupil is the
            # new school's (the trust stays the same).
            moved = Tenant(trust_id=fact.tenant.trust_id, school_urn=data.to_urn)
            return dict(tenant=moved)
        case ev.PupilLeft():
            history = _close_spell(state.provision_history, day)
            return dict(
                on_roll=False,
                left_on=day,
                provision_history=history,
                next_review_due=None,
                ehc_next_review_due=None,
            )
        case ev.RecordCorrected():
            return dict(corrections=state.corrections + 1)
        case ev.PersonalDataErased():
            return dict(erased=True)
        case ev.AnnualReportShared():
            return dict(annual_reports=(*state.annual_reports, data.academic_year))
        case (
            ev.ReviewDue()
            | ev.ReviewOverdue()
            | ev.EhcAnnualReviewDue()
            | ev.EhcAnnualReviewOverdue()
            | ev.ParentMeetingsBehind()
            | ev.AnnualReportDue()
            | ev.RetentionExpired()
        ):
            return {}  # notices change nothing; they say what the dates mean
    raise TypeError(f"no evolve for {type(data).__name__}")


@dataclass(frozen=True)
class _Corrected:
    """A fact seen through its latest correction: same envelope, replaced content."""

    event_id: UUID
    occurred_at: datetime
    tenant: Tenant
    data: ev.EventData


def effective(facts: Iterable[Fact]) -> list[Fact]:
    """The facts with each corrected event's content replaced by its latest correction."""
    facts = list(facts)
    replacements = {
        f.data.corrects_event_id: f.data.replacement
        for f in facts
        if isinstance(f.data, ev.RecordCorrected)
    }
    if not replacements:
        return facts
    return [
        _Corrected(f.event_id, f.occurred_at, f.tenant, replacements[f.event_id])
        if f.event_id in replacements
        else f
        for f in facts
    ]


def replay(facts: Iterable[Fact], start: PupilState | None = None) -> PupilState:
    """Fold a whole stream, from its first event, corrections applied, into the state.

    From ``start`` (a state of this stream's first events), fold the events that
    follow it; they must not correct an event folded into ``start`` (see ``resumable``).
    """
    # The intermediate states are never seen, so the fold changes one private copy in
    # place (a state is frozen only to its readers) and keeps one event-type map (evolve's
    # copy per event makes a long history quadratic).
    types = dict(start.event_types) if start else {}
    state = _with(start or PupilState(), {"event_types": types})
    for fact in effective(facts):
        types[fact.event_id] = fact.data.event_type  # type: ignore[attr-defined]
        _fold(state.__dict__, state, fact)
    return _checked(state)


def resumable(state: PupilState, tail: Iterable[Fact]) -> bool:
    """Whether ``replay(tail, start=state)`` equals a replay from the first event.

    Not when the tail corrects an event already folded (a correction changes how
    that earlier event folds), nor when it erases personal data (the state must be
    rebuilt from the redacted history).
    """
    for fact in tail:
        data = fact.data
        if isinstance(data, ev.PersonalDataErased):
            return False
        if isinstance(data, ev.RecordCorrected) and data.corrects_event_id in state.event_types:
            return False
    return True
