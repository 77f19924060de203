"""Builders for the pure workflow tests: a pupil whose facts live in a list, no database.

``Pupil.run(command, payload, day)`` parses a command, decides it against the
replayed state at a fixed ``now`` and, when it is accepted, appends the events
as facts the way the service does (uuid4 event ids, the command's tenant or the
pupil's, a transfer moving what follows it in the same command to the new
school). ``story_until(step)`` walks a pupil through the graduated approach up
to a named step so rule tests only add the command under test.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from senflow.events import catalogue as ev
from senflow.events.envelope import Actor, NewEvent, Tenant
from senflow.services.workflow.commands import CommandBase, parse_command
from senflow.services.workflow.decide import Accepted, Rejection, decide
from senflow.services.workflow.rules import RULES
from senflow.services.workflow.state import PupilState, evolve, replay

NOW = datetime(2027, 1, 1, tzinfo=UTC)
TENANT = {"trust_id": "trust-7", "school_urn": "123456"}
OTHER_SCHOOL = {"trust_id": "trust-7", "school_urn": "654321"}
UPN = "B801200005001"

_AUTO: Any = object()  # "work it out": the default tenant / the original of a correction
ANY: Any = object()  # in assertions: do not check this


def as_day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def iso(value: date | str) -> str:
    return as_day(value).isoformat()


def measure(value: float = 85, instrument: str = "WellComm") -> dict[str, Any]:
    return {"instrument": instrument, "value": value, "unit": "standardised_score"}


def needs(*types: str) -> list[dict[str, Any]]:
    """Ranked needs, primary first: needs("SLCN", "SEMH")."""
    return [{"type": t, "rank": rank} for rank, t in enumerate(types, start=1)]


def provision(provision_id: str, *outcome_ids: str, name: str = "Talk Boost") -> dict[str, Any]:
    return {
        "provision_id": provision_id,
        "name": name,
        "delivery": "small_group",
        "staff_role": "teaching_assistant",
        "sessions_per_week": 3,
        "minutes_per_session": 30,
        "weeks": 10,
        "group_size": 4,
        "cost_pence": 12_000,
        "outcome_ids": list(outcome_ids),
    }


def outcome(outcome_id: str) -> dict[str, Any]:
    return {"outcome_id": outcome_id, "description": f"Outcome {outcome_id}"}


# --- default payloads: valid, complete, "good practice" content ------------------------------


def default_payload(name: str, day: date, state: PupilState) -> dict[str, Any]:
    """A valid payload for ``name`` on ``day`` given the pupil's current ``state``."""
    plan = state.plan
    plan_id = str(plan.plan_id) if plan else str(uuid4())
    running = state.running_interventions()
    intervention_id = str(running[-1].intervention_id) if running else str(uuid4())
    d = day.isoformat()
    payloads: dict[str, dict[str, Any]] = {
        "register_pupil": {
            "upn": UPN,
            "forename": "Amy",
            "surname": "Jones",
            "date_of_birth": "2016-04-02",
            "year_group": "4",
            "on_roll_from": d,
        },
        "raise_concern": {
            "source": "class_teacher",
            "area": "communication_and_interaction",
            "description": "Finds it hard to follow spoken instructions",
        },
        "record_parent_views": {"context": "assessment", "views": "Parents see the same at home"},
        "record_pupil_views": {
            "context": "assessment",
            "method": "conversation",
            "views": "I don't always know what to do",
        },
        "record_assessment": {
            "kind": "screener",
            "instrument": "WellComm",
            "area": "communication_and_interaction",
            "standardised_score": 78,
            "summary": "Receptive language well below age",
        },
        "involve_specialist": {
            "specialist": "speech_and_language_therapist",
            "parental_consent": True,
            "consent_given_on": d,
            "reason": "Persistent receptive language difficulty",
        },
        "start_sen_support": {
            "needs": needs("SLCN"),
            "parents_notified": True,
            "parents_notified_on": d,
            "notification_method": "meeting",
        },
        "reclassify_needs": {"needs": needs("SLCN", "SEMH"), "reason": "Anxiety noted"},
        "agree_plan": {
            "plan_id": str(uuid4()),
            "outcomes": [outcome("O1"), outcome("O2")],
            "provisions": [provision("P1", "O1"), provision("P2", "O2", name="Lego therapy")],
            "expected_impact": "Follows two-step instructions",
            "review_date": (day + timedelta(days=84)).isoformat(),
            "agreed_by": ["senco", "class_teacher", "parent", "pupil"],
            "staff_informed": True,
            "staff_informed_on": d,
        },
        "start_intervention": {
            "intervention_id": str(uuid4()),
            "plan_id": plan_id,
            "provision_id": plan.provisions[0].provision_id if plan else "P1",
            "entry_measure": measure(78),
        },
        "record_intervention_session": {"intervention_id": intervention_id, "minutes": 30},
        "end_intervention": {
            "intervention_id": intervention_id,
            "reason": "completed",
            "exit_measure": measure(88),
        },
        "record_progress": {"outcome_id": "O1", "note": "Better at following instructions"},
        "hold_parent_meeting": {
            "attendees": ["senco", "parent"],
            "summary": "Talked about progress",
            "record_given_to_parents": True,
        },
        "hold_review": {
            "plan_id": plan_id,
            "outcome_progress": [
                {"outcome_id": o, "rating": "partially_met"}
                for o in (plan.outcome_ids if plan else ())
            ],
            "pupil_views": "I like the group",
            "parent_views": "Happier at home",
            "decision": "continue",
            "next_review_date": (day + timedelta(days=84)).isoformat(),
        },
        "request_ehc_needs_assessment": {
            "requested_by": "school",
            "local_authority": "202",
            "evidence_summary": "Two cycles of SEN support with limited progress",
        },
        "decide_ehc_needs_assessment": {"decision": "agreed_to_assess", "la_reference": "LA-1"},
        "issue_ehc_plan": {
            "la_reference": "LA-1",
            "needs": needs("SLCN", "SEMH"),
            "first_review_due": (day + timedelta(days=300)).isoformat(),
        },
        "hold_ehc_annual_review": {
            "recommendation": "maintain",
            "next_review_due": (day + timedelta(days=300)).isoformat(),
            "pupil_views": "Fine",
            "parent_views": "Fine",
        },
        "end_sen_support": {"reason": "needs_met"},
        "share_transition_information": {
            "recipient": "next_school",
            "recipient_urn": "111111",
            "parental_agreement": True,
        },
        "transfer_pupil": {
            "from_urn": state.tenant.school_urn if state.tenant else "123456",
            "to_urn": "654321",
        },
        "record_pupil_left": {"destination": "moved_away"},
        "correct_record": {"reason": "Typing error"},
        "record_annual_report": {"academic_year": "2024/25"},
    }
    return copy.deepcopy(payloads[name])


# --- the pupil -------------------------------------------------------------------------------


class Pupil:
    """One pupil's stream as a list of facts, decided against at a fixed ``now``."""

    def __init__(self, now: datetime = NOW) -> None:
        self.pupil_id = uuid4()
        self.now = now
        self.facts: list[NewEvent] = []
        self.day = date(2024, 9, 2)  # the day of the last command, the default for the next
        self.last: Accepted | Rejection | None = None
        self._cached: tuple[int, UUID | None, PupilState] = (0, None, PupilState())

    @property
    def state(self) -> PupilState:
        """``replay(self.facts)``, remembered between calls.

        Facts appended since the last call are folded on with ``evolve`` while
        the stream holds no correction (then replay is exactly that fold);
        otherwise, or if the list was changed in place, it replays from scratch.
        """
        facts = self.facts
        count, last_id, state = self._cached
        same_prefix = count <= len(facts) and (
            facts[count - 1].event_id == last_id if count else last_id is None
        )
        if same_prefix and count == len(facts):
            return state
        if same_prefix and not any(isinstance(f.data, ev.RecordCorrected) for f in facts):
            for fact in facts[count:]:
                state = evolve(state, fact)
        else:
            state = replay(facts)
        self._cached = (len(facts), facts[-1].event_id if facts else None, state)
        return state

    def command(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        day: date | str | None = None,
        *,
        role: str = "senco",
        tenant: Mapping[str, str] | None = _AUTO,
        defaults: bool = True,
    ) -> CommandBase:
        when = as_day(day) if day is not None else self.day
        body = default_payload(name, when, self.state) if defaults else {}
        body.update(payload or {})
        raw: dict[str, Any] = {
            "command": name,
            "pupil_id": str(self.pupil_id),
            "occurred_at": when.isoformat(),
            "actor": {"user_id": f"{role}.1", "role": role},
            "payload": body,
        }
        if tenant is _AUTO:
            tenant = TENANT if name == "register_pupil" else None
        if tenant is not None:
            raw["tenant"] = dict(tenant)
        return parse_command(raw)

    def decide(
        self, command: CommandBase, original: NewEvent | None = _AUTO
    ) -> Accepted | Rejection:
        if original is _AUTO:
            original = None
            if isinstance(command.event_data, ev.RecordCorrected):
                target = command.event_data.corrects_event_id
                original = next((f for f in self.facts if f.event_id == target), None)
        return decide(self.state, command, self.now, original)

    def run(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        day: date | str | None = None,
        *,
        role: str = "senco",
        tenant: Mapping[str, str] | None = _AUTO,
        original: NewEvent | None = _AUTO,
        defaults: bool = True,
        occurred_at: str | None = None,
    ) -> Accepted | Rejection:
        """Decide one command; record its events if accepted; return the outcome."""
        if day is not None:
            self.day = as_day(day)
        command = self.command(name, payload, self.day, role=role, tenant=tenant, defaults=defaults)
        if occurred_at is not None:
            command = command.model_copy(
                update={"occurred_at": datetime.fromisoformat(occurred_at)}
            )
        outcome = self.decide(command, original)
        if isinstance(outcome, Accepted):
            self.record(command, outcome)
        self.last = outcome
        return outcome

    def ok(self, name: str, payload: Mapping[str, Any] | None = None, day: Any = None, **kw: Any):
        """Like run, but the command must be accepted."""
        return accepted(self.run(name, payload, day, **kw))

    def record(self, command: CommandBase, outcome: Accepted) -> list[NewEvent]:
        state = self.state
        tenant = Tenant.model_validate(command.tenant or state.tenant)
        new = []
        for data in outcome.events:
            new.append(
                NewEvent(
                    event_id=uuid4(),
                    data=data,  # type: ignore[arg-type]
                    occurred_at=command.occurred_at,
                    actor=command.actor,
                    tenant=tenant,
                    correlation_id=command.command_id,
                    causation_id=command.command_id,
                )
            )
            if isinstance(data, ev.PupilTransferred):
                tenant = Tenant(trust_id=tenant.trust_id, school_urn=data.to_urn)
        self.facts.extend(new)
        return new

    def append(self, data: ev.EventData, day: date | str | None = None) -> NewEvent:
        """Append a fact directly (what the vault or scheduler would record)."""
        when = as_day(day) if day is not None else self.day
        fact = NewEvent(
            event_id=uuid4(),
            data=data,  # type: ignore[arg-type]
            occurred_at=datetime(when.year, when.month, when.day, 12, tzinfo=UTC),
            actor=Actor(user_id="system", role="system"),
            tenant=Tenant.model_validate(self.state.tenant or TENANT),
            correlation_id=uuid4(),
        )
        self.facts.append(fact)
        return fact

    def fact(self, event_type: str, last: bool = True) -> NewEvent:
        """The last (or first) fact of ``event_type``."""
        found = [f for f in self.facts if f.data.event_type == event_type]
        assert found, f"no {event_type} among {[f.data.event_type for f in self.facts]}"
        return found[-1] if last else found[0]

    def correction(
        self, target: NewEvent | UUID, replacement: Mapping[str, Any] | ev.EventData
    ) -> dict[str, Any]:
        """A correct_record payload pointing at ``target``."""
        if isinstance(replacement, ev.EventData):
            replacement = replacement.model_dump(mode="json")
        target_id = target if isinstance(target, UUID) else target.event_id
        return {"corrects_event_id": str(target_id), "replacement": dict(replacement)}

    @property
    def plan_id(self) -> UUID:
        assert self.state.plan is not None, "the pupil has no plan"
        return self.state.plan.plan_id

    @property
    def intervention_id(self) -> UUID:
        running = self.state.running_interventions()
        assert running, "the pupil has no running intervention"
        return running[-1].intervention_id


# --- a pupil's story up to a step ----------------------------------------------------------

# (step, day, commands run on that day)
STORY: list[tuple[str, str, list[tuple[str, dict[str, Any]]]]] = [
    ("registered", "2024-09-02", [("register_pupil", {})]),
    (
        "assessed",
        "2024-09-09",
        [("raise_concern", {}), ("record_assessment", {}), ("record_parent_views", {})],
    ),
    ("sen_support", "2024-09-16", [("start_sen_support", {})]),
    ("plan", "2024-09-23", [("agree_plan", {"review_date": "2024-12-16"})]),
    ("intervention", "2024-09-30", [("start_intervention", {})]),
    ("ehc_requested", "2024-11-04", [("request_ehc_needs_assessment", {})]),
    ("ehc_agreed", "2024-12-02", [("decide_ehc_needs_assessment", {})]),
    ("ehc_plan", "2025-01-13", [("issue_ehc_plan", {"first_review_due": "2025-12-15"})]),
]
STEPS = [step for step, _, _ in STORY]


def story_until(step: str, now: datetime = NOW) -> Pupil:
    """A pupil walked through the story up to and including ``step`` (see STORY)."""
    assert step in STEPS, f"unknown step {step!r}; one of {STEPS}"
    pupil = Pupil(now)
    for name, day, commands in STORY:
        for command, payload in commands:
            pupil.ok(command, payload, day)
        if name == step:
            return pupil
    raise AssertionError("unreachable")


# --- assertions on outcomes ----------------------------------------------------------------


def accepted(outcome: Accepted | Rejection) -> Accepted:
    assert isinstance(outcome, Accepted), f"expected acceptance, got {outcome}"
    return outcome


def rejected(outcome: Accepted | Rejection, rule: str, field: str | None = ANY) -> Rejection:
    """The outcome is a rejection by ``rule`` (on ``field`` unless ANY), with the rule's text."""
    assert rule in RULES, f"{rule} is not a rule"
    assert isinstance(outcome, Rejection), f"expected rejection by {rule}, got {outcome}"
    assert outcome.rule == rule, f"expected {rule}, got {outcome}"
    if field is not ANY:
        assert outcome.field == field, f"expected field {field!r}, got {outcome.field!r}"
    assert outcome.paragraph == RULES[rule].basis
    assert outcome.remedy == RULES[rule].remedy
    return outcome


def warning_rules(outcome: Accepted | Rejection) -> list[str]:
    return [w.rule for w in accepted(outcome).warnings]


def warned(outcome: Accepted | Rejection, rule: str, field: str | None = ANY) -> Accepted:
    """The command was accepted with a warning by ``rule`` (on ``field`` unless ANY)."""
    assert rule in RULES, f"{rule} is not a rule"
    ok = accepted(outcome)
    matching = [w for w in ok.warnings if w.rule == rule]
    assert matching, f"expected warning {rule}, got {[w.rule for w in ok.warnings]}"
    if field is not ANY:
        assert field in [w.field for w in matching], f"{rule} warned on {matching}"
    assert all(w.paragraph == RULES[rule].basis for w in matching)
    return ok


def not_warned(outcome: Accepted | Rejection, rule: str) -> Accepted:
    ok = accepted(outcome)
    assert rule not in [w.rule for w in ok.warnings], f"unexpected warning {rule}"
    return ok
