"""decide(state, command, now) -> the events to record, or a rejection. Pure: no I/O.

Each command has one small function. It checks the preconditions and the
statutory rules (a failed *must* rejects, naming rule, field and remedy) and
collects warnings for the *shoulds*. ``content_problems`` holds the rules that
depend on the event's content alone; corrections are held to them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from senflow.events import catalogue as ev
from senflow.events.codes import NeedType, SenProvision
from senflow.services.workflow.calendar import (
    academic_year_label,
    academic_year_start,
    add_months,
    school_day,
    terms_completed_since,
)
from senflow.services.workflow.commands import CommandBase
from senflow.services.workflow.rules import RULES, Rule
from senflow.services.workflow.state import Fact, PupilState

# Clocks drift; a few minutes ahead is not "in the future".
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Warning:
    rule: str
    field: str | None
    message: str
    paragraph: str

    @classmethod
    def of(cls, rule: str, field: str | None = None) -> Warning:
        r = RULES[rule]
        return cls(rule, field, f"{r.text} {r.remedy}", r.basis)


@dataclass(frozen=True)
class Rejection:
    rule: str
    field: str | None
    message: str
    remedy: str
    paragraph: str

    @classmethod
    def of(cls, rule: str, field: str | None = None, detail: str | None = None) -> Rejection:
        r: Rule = RULES[rule]
        message = f"{r.text} {detail}" if detail else r.text
        return cls(rule, field, message, r.remedy, r.basis)


@dataclass(frozen=True)
class Accepted:
    events: tuple[ev.EventData, ...]
    warnings: tuple[Warning, ...] = ()


class Rejected(Exception):
    """Raised inside deciders; ``decide`` turns it into a returned Rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def reject(rule: str, field: str | None = None, detail: str | None = None) -> Rejected:
    return Rejected(Rejection.of(rule, field, detail))


@dataclass
class _Ctx:
    state: PupilState
    day: date
    warnings: list[Warning] = field(default_factory=list)

    def warn(self, rule: str, field: str | None = None) -> None:
        self.warnings.append(Warning.of(rule, field))


# --- content rules (event data alone) ------------------------------------------------------


def _need_problems(needs: list[ev.RankedNeed], provision: SenProvision, field: str) -> None:
    if not needs:
        raise reject("need_type_required", field)
    ranks = sorted(n.rank for n in needs)
    if ranks not in ([1], [1, 2]) or len({n.type for n in needs}) != len(needs):
        raise reject("need_ranking", field, f"Got ranks {ranks}.")
    if provision is SenProvision.EHC_PLAN and any(n.type is NeedType.NSA for n in needs):
        raise reject("nsa_only_with_sen_support", field)


def content_problems(data: ev.EventData, day: date, provision: SenProvision) -> None:
    """Raise a rejection if the event's own content breaks a must."""
    match data:
        case ev.SenSupportStarted():
            if not data.parents_notified or data.parents_notified_on is None:
                raise reject("parents_notified_before_sen_support", "payload.parents_notified")
            if data.parents_notified_on > day:
                raise reject(
                    "parents_notified_before_sen_support",
                    "payload.parents_notified_on",
                    "The notification date is after the day SEN support starts.",
                )
            _need_problems(data.needs, SenProvision.SEN_SUPPORT, "payload.needs")
        case ev.NeedsReclassified():
            _need_problems(data.needs, provision, "payload.needs")
        case ev.EhcPlanIssued():
            _need_problems(data.needs, SenProvision.EHC_PLAN, "payload.needs")
            if not day < data.first_review_due <= add_months(day, 12):
                raise reject("ehc_review_within_12_months", "payload.first_review_due")
        case ev.EhcAnnualReviewHeld():
            if data.recommendation != "cease" and (
                data.next_review_due is None
                or not day < data.next_review_due <= add_months(day, 12)
            ):
                raise reject("ehc_review_within_12_months", "payload.next_review_due")
        case ev.PlanAgreed():
            if not data.outcomes:
                raise reject("plan_requires_outcomes", "payload.outcomes")
            if not data.provisions:
                raise reject("plan_requires_provision", "payload.provisions")
            if data.review_date <= day:
                raise reject("plan_requires_review_date", "payload.review_date")
            outcome_ids = [o.outcome_id for o in data.outcomes]
            provision_ids = [p.provision_id for p in data.provisions]
            if len(set(outcome_ids)) != len(outcome_ids):
                raise reject("plan_references_valid", "payload.outcomes", "Duplicate outcome id.")
            if len(set(provision_ids)) != len(provision_ids):
                raise reject(
                    "plan_references_valid", "payload.provisions", "Duplicate provision id."
                )
            for i, p in enumerate(data.provisions):
                unknown = set(p.outcome_ids) - set(outcome_ids)
                if unknown:
                    raise reject(
                        "plan_references_valid",
                        f"payload.provisions.{i}.outcome_ids",
                        f"Unknown outcomes: {sorted(unknown)}.",
                    )
        case ev.SpecialistInvolved():
            if not data.parental_consent or data.consent_given_on is None:
                raise reject("specialist_requires_parental_consent", "payload.parental_consent")
            if data.consent_given_on > day:
                raise reject(
                    "specialist_requires_parental_consent",
                    "payload.consent_given_on",
                    "Consent is dated after the specialist's involvement.",
                )
        case ev.TransitionInformationShared():
            if not data.parental_agreement:
                raise reject("transition_requires_parental_agreement", "payload.parental_agreement")
        case ev.ReviewHeld():
            ending = data.decision is ev.ReviewDecision.END_SEN_SUPPORT
            if not ending and (data.next_review_date is None or data.next_review_date <= day):
                raise reject("review_requires_next_date", "payload.next_review_date")
        case ev.PupilTransferred():
            if data.from_urn == data.to_urn:
                raise reject("transfer_within_trust", "payload.to_urn")
        case _:
            pass


# --- one decider per command ----------------------------------------------------------------

Decider = Callable[[_Ctx, ev.EventData], list[ev.EventData]]


def _requires_provision(state: PupilState) -> None:
    if not state.on_sen_register:
        raise reject("requires_sen_provision")


def _register(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    raise AssertionError("registration is decided before the registered check")


def _simple(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    return [data]


def _start_sen_support(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.SenSupportStarted)
    if ctx.state.on_sen_register:
        raise reject(
            "one_sen_provision_open", "command", f"Open provision: {ctx.state.provision.value}."
        )
    if not ctx.state.assessments:
        ctx.warn("assessment_before_sen_support")
    if not ctx.state.parent_views:
        ctx.warn("parents_involved_before_sen_support")
    return [data]


def _reclassify(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    if not ctx.state.on_sen_register:
        raise reject("no_sen_detail_without_provision", "payload.needs")
    return [data]


def _agree_plan(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.PlanAgreed)
    _requires_provision(ctx.state)
    if ev.Participant.PARENT not in data.agreed_by or ev.Participant.PUPIL not in data.agreed_by:
        ctx.warn("plan_agreed_with_parents_and_pupil", "payload.agreed_by")
    if not data.staff_informed:
        ctx.warn("staff_informed_of_plan", "payload.staff_informed")
    return [data]


def _start_intervention(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.InterventionStarted)
    plan = ctx.state.plan
    if plan is None or plan.plan_id != data.plan_id:
        raise reject("intervention_requires_planned_provision", "payload.plan_id")
    if data.provision_id not in {p.provision_id for p in plan.provisions}:
        raise reject("intervention_requires_planned_provision", "payload.provision_id")
    if ctx.state.intervention(data.intervention_id) is not None:
        raise reject("intervention_must_be_new", "payload.intervention_id")
    if data.entry_measure is None:
        ctx.warn("entry_and_exit_measures", "payload.entry_measure")
    return [data]


def _running(ctx: _Ctx, intervention_id: object) -> None:
    found = next((i for i in ctx.state.interventions if i.intervention_id == intervention_id), None)
    if found is None or not found.running:
        raise reject("intervention_must_be_running", "payload.intervention_id")


def _record_session(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.InterventionSessionRecorded)
    _running(ctx, data.intervention_id)
    return [data]


def _end_intervention(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.InterventionEnded)
    _running(ctx, data.intervention_id)
    if data.exit_measure is None:
        ctx.warn("entry_and_exit_measures", "payload.exit_measure")
    return [data]


def _parent_meeting(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.ParentMeetingHeld)
    if not data.record_given_to_parents:
        ctx.warn("meeting_record_given_to_parents", "payload.record_given_to_parents")
    return [data]


def _meetings_behind(state: PupilState, day: date) -> bool:
    start = next((s.start for s in reversed(state.provision_history) if s.end is None), None)
    if start is None:
        return False
    # Meetings held before SEN support began are not the meetings 6.65 asks for.
    counted_from = max(academic_year_start(day), start)
    expected = terms_completed_since(start, day)
    held = sum(1 for m in state.parent_meetings if counted_from <= m <= day)
    return held < expected


def _hold_review(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.ReviewHeld)
    state, plan = ctx.state, ctx.state.plan
    if plan is None or plan.plan_id != data.plan_id:
        raise reject("review_requires_current_plan", "payload.plan_id")
    for i, p in enumerate(data.outcome_progress):
        if p.outcome_id not in plan.outcome_ids:
            raise reject("review_references_plan", f"payload.outcome_progress.{i}.outcome_id")
    delivered = {x.intervention_id for x in state.interventions if x.plan_id == plan.plan_id}
    for i, imp in enumerate(data.intervention_impact):
        if imp.intervention_id not in delivered:
            raise reject(
                "review_references_plan", f"payload.intervention_impact.{i}.intervention_id"
            )
    if state.next_review_due is not None and ctx.day > state.next_review_due:
        ctx.warn("review_on_agreed_date")
    if data.pupil_views is None:
        ctx.warn("review_with_pupil_views", "payload.pupil_views")
    if data.parent_views is None:
        ctx.warn("review_with_parent_views", "payload.parent_views")
    if _meetings_behind(state, ctx.day):
        ctx.warn("three_parent_meetings_a_year")
    events: list[ev.EventData] = [data]
    if data.decision is ev.ReviewDecision.END_SEN_SUPPORT:
        if state.provision is not SenProvision.SEN_SUPPORT:
            raise reject("requires_sen_support", "payload.decision")
        events.append(ev.SenSupportEnded(reason="needs_met"))
        events += _end_running(state, "sen_support_ended")
    return events


def _request_ehc(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    if ctx.state.ehc_request in ("requested", "agreed_to_assess") or (
        ctx.state.provision is SenProvision.EHC_PLAN
    ):
        raise reject("ehc_request_not_open")
    return [data]


def _decide_ehc(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    if ctx.state.ehc_request != "requested":
        raise reject("ehc_request_required")
    return [data]


def _issue_ehc_plan(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    if ctx.state.provision is SenProvision.EHC_PLAN:
        raise reject("one_sen_provision_open", "command", "The pupil already has an EHC plan.")
    if ctx.state.ehc_request != "agreed_to_assess":
        raise reject("ehc_plan_requires_assessment")
    return [data]


def _ehc_annual_review(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    state = ctx.state
    if state.provision is not SenProvision.EHC_PLAN:
        raise reject("requires_ehc_plan")
    last = state.ehc_last_review_on or state.ehc_plan_since
    if last is not None and ctx.day > add_months(last, 12):
        ctx.warn("ehc_annual_review_on_time")
    return [data]


def _end_sen_support(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    if ctx.state.provision is not SenProvision.SEN_SUPPORT:
        raise reject("requires_sen_support")
    return [data, *_end_running(ctx.state, "sen_support_ended")]


def _end_running(state: PupilState, reason: str) -> list[ev.EventData]:
    """Interventions still running end with the support (or the pupil) they belong to, so
    the provision map does not count them as running for ever."""
    return [
        ev.InterventionEnded(intervention_id=i.intervention_id, reason=reason)
        for i in state.running_interventions()
    ]


def _transfer(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.PupilTransferred)
    assert ctx.state.tenant is not None
    if data.from_urn != ctx.state.tenant.school_urn:
        raise reject("transfer_within_trust", "payload.from_urn")
    return [data]


def _left(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    return [data, *_end_running(ctx.state, "pupil_left")]


def _annual_report(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.AnnualReportShared)
    _requires_provision(ctx.state)
    if data.academic_year != academic_year_label(ctx.day):
        raise reject(
            "annual_report_year",
            "payload.academic_year",
            f"The report was given in {academic_year_label(ctx.day)}.",
        )
    return [data]


_IDENTITY_FIELDS = ("plan_id", "intervention_id", "provision_id")


def _correct(ctx: _Ctx, data: ev.EventData) -> list[ev.EventData]:
    assert isinstance(data, ev.RecordCorrected)
    target_type = ctx.state.event_types.get(data.corrects_event_id)
    replacement = data.replacement
    if target_type is None or target_type in ("record_corrected", "personal_data_erased"):
        raise reject("correction_target", "payload.corrects_event_id")
    if replacement.event_type != target_type:
        raise reject(
            "correction_target",
            "payload.replacement.event_type",
            f"The corrected event is a {target_type}.",
        )
    return [data]


def _correction_keeps_identity(original: ev.EventData, replacement: ev.EventData) -> None:
    for name in _IDENTITY_FIELDS:
        if getattr(original, name, None) != getattr(replacement, name, None):
            raise reject("correction_target", f"payload.replacement.{name}", "Ids cannot change.")
    # Ending SEN support at a review recorded a second event; a correction cannot
    # add or take away that consequence, so the decision may not cross that line.
    if isinstance(original, ev.ReviewHeld) and isinstance(replacement, ev.ReviewHeld):
        end = ev.ReviewDecision.END_SEN_SUPPORT
        if (original.decision is end) != (replacement.decision is end):
            raise reject(
                "correction_target",
                "payload.replacement.decision",
                "Whether the review ended SEN support cannot be corrected; record what "
                "happened since instead.",
            )


DECIDERS: dict[str, Decider] = {
    "register_pupil": _register,
    "raise_concern": _simple,
    "record_parent_views": _simple,
    "record_pupil_views": _simple,
    "record_assessment": _simple,
    "involve_specialist": _simple,
    "start_sen_support": _start_sen_support,
    "reclassify_needs": _reclassify,
    "agree_plan": _agree_plan,
    "start_intervention": _start_intervention,
    "record_intervention_session": _record_session,
    "end_intervention": _end_intervention,
    "record_progress": _simple,
    "hold_parent_meeting": _parent_meeting,
    "hold_review": _hold_review,
    "request_ehc_needs_assessment": _request_ehc,
    "decide_ehc_needs_assessment": _decide_ehc,
    "issue_ehc_plan": _issue_ehc_plan,
    "hold_ehc_annual_review": _ehc_annual_review,
    "end_sen_support": _end_sen_support,
    "share_transition_information": _simple,
    "transfer_pupil": _transfer,
    "record_pupil_left": _left,
    "correct_record": _correct,
    "record_annual_report": _annual_report,
}

_AFTER_LEAVING = {"correct_record", "share_transition_information"}


def _guard(state: PupilState, command: CommandBase, now: datetime) -> None:
    if command.occurred_at > now + CLOCK_SKEW:
        raise reject("occurred_at_not_in_future", "occurred_at")
    if command.name == "register_pupil":
        if state.registered:
            raise reject("pupil_already_registered")
        if command.tenant is None:
            raise reject("tenant_matches_pupil", "tenant", "Registration names the school.")
        return
    if not state.registered:
        raise reject("pupil_must_be_registered", "pupil_id")
    if state.erased:
        raise reject("personal_data_erased")
    if state.left_on is not None and command.name not in _AFTER_LEAVING:
        raise reject("pupil_has_left")
    if command.tenant is not None and command.tenant != state.tenant:
        raise reject("tenant_matches_pupil", "tenant")


def decide(
    state: PupilState,
    command: CommandBase,
    now: datetime,
    original: Fact | None = None,
) -> Accepted | Rejection:
    """What ``command`` records given ``state``, judged at wall-clock ``now``.

    ``original`` is the event a correction points at (the caller reads it from
    the stream): the replacement keeps its ids and is judged as of its day.
    """
    try:
        _guard(state, command, now)
        ctx = _Ctx(state, school_day(command.occurred_at))
        data = command.event_data
        if command.name == "register_pupil":
            return Accepted((data,))
        events = DECIDERS[command.name](ctx, data)
        checked, day, provision = data, ctx.day, state.provision
        if isinstance(data, ev.RecordCorrected):
            if original is None or original.event_id != data.corrects_event_id:
                raise reject("correction_target", "payload.corrects_event_id")
            checked = data.replacement
            _correction_keeps_identity(original.data, checked)
            # judged as things stood on the corrected event's day
            day = school_day(original.occurred_at)
            provision = state.provision_on(day)
        content_problems(checked, day, provision)
        return Accepted(tuple(events), tuple(ctx.warnings))
    except Rejected as rejected:
        return rejected.rejection
