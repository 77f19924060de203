"""Properties of the pure workflow over random, mostly valid, command sequences.

A script is a list of (action, days later, seed). ``play`` registers a pupil,
then turns each step into a command built from the current state (the seed
picks the details, now and then something invalid), decides it and records
what is accepted. Whatever the script, every state reached must make sense,
and replay must be deterministic and a plain fold.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from senflow.events import catalogue as ev
from senflow.events.codes import NeedType, SenProvision
from senflow.events.envelope import NewEvent
from senflow.services.workflow.calendar import add_months, school_day
from senflow.services.workflow.decide import Accepted
from senflow.services.workflow.state import PupilState, effective, evolve, replay, resumable
from tests.unit.helpers import Pupil, measure, needs, outcome, provision

pytestmark = pytest.mark.unit

START = date(2023, 9, 4)
FAR_FUTURE = datetime(2040, 1, 1, tzinfo=UTC)  # scripts never run into the future
OTHER_URNS = ["100001", "100002", "123456", "654321"]

# Weighted by repetition: the plan-do-review cycle comes up most often, leaving rarely.
_CYCLE = [
    "concern",
    "parent_views",
    "pupil_views",
    "assessment",
    "specialist",
    "start_support",
    "start_support",
    "reclassify",
    "agree_plan",
    "agree_plan",
    "start_intervention",
    "start_intervention",
    "session",
    "session",
    "end_intervention",
    "progress",
    "parent_meeting",
    "review",
    "review",
    "ehc_request",
    "ehc_decide",
    "ehc_plan",
    "ehc_annual_review",
    "end_support",
    "transition",
    "transfer",
    "correction",
    "correction",
]
ACTIONS = [*_CYCLE, *_CYCLE, *_CYCLE, "left"]
NO_CORRECTIONS = [a for a in ACTIONS if a != "correction"]

Script = list[tuple[str, int, int]]


def scripts(actions: list[str] = ACTIONS, max_size: int = 30) -> st.SearchStrategy[Script]:
    step = st.tuples(st.sampled_from(actions), st.integers(0, 45), st.integers(0, 2**32 - 1))
    return st.lists(step, max_size=max_size)


# --- turning a step into a command -----------------------------------------------------------


def uuid(rng: random.Random) -> str:
    return str(UUID(int=rng.getrandbits(128), version=4))


def chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def ranked_needs(rng: random.Random, nsa: bool = True) -> list[dict[str, Any]]:
    r = rng.random()
    if r < 0.03:
        return []
    if r < 0.06:
        return [{"type": "SLCN", "rank": 1}, {"type": "SLCN", "rank": 2}]
    if r < 0.09:
        return [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 1}]
    types = [t.value for t in NeedType if nsa or t is not NeedType.NSA]
    return needs(*rng.sample(types, rng.choice([1, 2])))


def days(day: date, rng: random.Random, low: int, high: int) -> str:
    return (day + timedelta(days=rng.randint(low, high))).isoformat()


def replacement_for(fact: NewEvent, rng: random.Random) -> dict[str, Any]:
    """Content to correct ``fact`` with: mostly a plausible fix, now and then a broken one."""
    data = fact.data
    raw = data.model_dump(mode="json")
    day = school_day(fact.occurred_at)
    match data:
        case ev.SenSupportStarted() | ev.NeedsReclassified():
            raw["needs"] = ranked_needs(rng)
        case ev.EhcPlanIssued():
            raw["needs"] = ranked_needs(rng, nsa=chance(rng, 0.1))
            raw["first_review_due"] = days(day, rng, 1, 365)
        case ev.EhcAnnualReviewHeld() if data.next_review_due is not None:
            raw["next_review_due"] = days(day, rng, 1, 365)
        case ev.PlanAgreed():
            raw["review_date"] = days(day, rng, 1, 120)
        case ev.ReviewHeld() if data.next_review_date is not None:
            raw["next_review_date"] = days(day, rng, 1, 120)
        case ev.ConcernRaised():
            raw["description"] = "Corrected description"
        case ev.InterventionSessionRecorded():
            raw["minutes"] = rng.randint(0, 60)
        case _:
            pass
    if chance(rng, 0.05) and "plan_id" in raw:
        raw["plan_id"] = uuid(rng)  # ids cannot change: rejected
    return raw


def command_for(
    action: str, p: Pupil, state: PupilState, day: date, rng: random.Random
) -> tuple[str, dict[str, Any]]:
    """The command name and payload overrides (on top of the helpers' defaults) for a step."""
    plan = state.plan
    plan_interventions = [i for i in state.interventions if plan and i.plan_id == plan.plan_id]

    def some_intervention() -> str:
        running = state.running_interventions()
        if running and chance(rng, 0.8):
            return str(rng.choice(running).intervention_id)
        if state.interventions and chance(rng, 0.5):
            return str(rng.choice(state.interventions).intervention_id)
        return uuid(rng)

    match action:
        case "concern":
            return "raise_concern", {"source": rng.choice(list(ev.ConcernSource)).value}
        case "parent_views":
            return "record_parent_views", {"context": rng.choice(list(ev.ViewsContext)).value}
        case "pupil_views":
            return "record_pupil_views", {"context": rng.choice(list(ev.ViewsContext)).value}
        case "assessment":
            return "record_assessment", {"standardised_score": rng.randint(40, 160)}
        case "specialist":
            consent = chance(rng, 0.9)
            return "involve_specialist", {
                "parental_consent": consent,
                "consent_given_on": days(day, rng, -30, 0) if consent else None,
            }
        case "start_support":
            return "start_sen_support", {
                "needs": ranked_needs(rng),
                "parents_notified": chance(rng, 0.95),
                "parents_notified_on": days(day, rng, -14, 0 if chance(rng, 0.95) else 3),
            }
        case "reclassify":
            return "reclassify_needs", {"needs": ranked_needs(rng, nsa=chance(rng, 0.5))}
        case "agree_plan":
            outcome_ids = [f"O{i}" for i in range(1, rng.choice([0, 1, 2, 2, 3, 3]) + 1)]
            provisions = [
                provision(f"P{i}", *rng.sample(outcome_ids, min(len(outcome_ids), 1)))
                for i in range(1, rng.randint(1, 3) + 1)
            ]
            return "agree_plan", {
                "plan_id": uuid(rng),
                "outcomes": [outcome(o) for o in outcome_ids],
                "provisions": provisions,
                "review_date": days(day, rng, -2 if chance(rng, 0.05) else 1, 120),
                "agreed_by": rng.sample(["senco", "parent", "pupil", "class_teacher"], 2),
                "staff_informed": chance(rng, 0.8),
            }
        case "start_intervention":
            if plan and chance(rng, 0.9):
                plan_id = str(plan.plan_id)
                provision_id = rng.choice(plan.provisions).provision_id
            else:
                plan_id, provision_id = uuid(rng), "P1"
            reuse = state.interventions and chance(rng, 0.05)
            return "start_intervention", {
                "plan_id": plan_id,
                "provision_id": provision_id,
                "intervention_id": some_intervention() if reuse else uuid(rng),
                "entry_measure": measure(rng.randint(60, 100)) if chance(rng, 0.8) else None,
            }
        case "session":
            return "record_intervention_session", {
                "intervention_id": some_intervention(),
                "minutes": rng.choice([0, 20, 30, 45]),
                "attended": chance(rng, 0.85),
            }
        case "end_intervention":
            return "end_intervention", {
                "intervention_id": some_intervention(),
                "reason": rng.choice(["completed", "stopped_early", "replaced"]),
                "exit_measure": measure(rng.randint(60, 110)) if chance(rng, 0.8) else None,
            }
        case "progress":
            return "record_progress", {"outcome_id": None}
        case "parent_meeting":
            return "hold_parent_meeting", {"record_given_to_parents": chance(rng, 0.8)}
        case "review":
            decision = rng.choice(list(ev.ReviewDecision)).value
            ending = decision == "end_sen_support"
            outcome_ids = list(plan.outcome_ids) if plan else ["O1"]
            return "hold_review", {
                "plan_id": str(plan.plan_id) if plan and chance(rng, 0.95) else uuid(rng),
                "outcome_progress": [
                    {"outcome_id": o, "rating": rng.choice(list(ev.OutcomeRating)).value}
                    for o in rng.sample(outcome_ids, rng.randint(0, len(outcome_ids)))
                ],
                "intervention_impact": [
                    {"intervention_id": str(i.intervention_id), "impact": "good", "keep": True}
                    for i in plan_interventions
                    if chance(rng, 0.5)
                ],
                "decision": decision,
                "next_review_date": None
                if ending and chance(rng, 0.7)
                else days(day, rng, 0 if chance(rng, 0.05) else 1, 120),
                "pupil_views": "Fine" if chance(rng, 0.8) else None,
            }
        case "ehc_request":
            return "request_ehc_needs_assessment", {}
        case "ehc_decide":
            decision = "agreed_to_assess" if chance(rng, 0.75) else "declined"
            return "decide_ehc_needs_assessment", {"decision": decision}
        case "ehc_plan":
            return "issue_ehc_plan", {
                "needs": ranked_needs(rng, nsa=chance(rng, 0.1)),
                "first_review_due": days(day, rng, 1, 365 if chance(rng, 0.95) else 420),
            }
        case "ehc_annual_review":
            recommendation = rng.choice(["maintain", "amend", "cease"])
            due = None if recommendation == "cease" and chance(rng, 0.7) else days(day, rng, 1, 365)
            return "hold_ehc_annual_review", {
                "recommendation": recommendation,
                "next_review_due": due,
            }
        case "end_support":
            return "end_sen_support", {"reason": rng.choice(["needs_met", "no_longer_sen"])}
        case "transition":
            return "share_transition_information", {"parental_agreement": chance(rng, 0.9)}
        case "transfer":
            current = state.tenant.school_urn if state.tenant else "123456"
            return "transfer_pupil", {
                "from_urn": current if chance(rng, 0.9) else rng.choice(OTHER_URNS),
                "to_urn": rng.choice(OTHER_URNS),
            }
        case "correction":
            targets = [
                f
                for f in p.facts
                if f.data.event_type not in ("record_corrected", "personal_data_erased")
            ]
            target = rng.choice(targets)
            return "correct_record", {
                "corrects_event_id": str(target.event_id),
                "replacement": replacement_for(target, rng),
            }
        case "left":
            return "record_pupil_left", {}
    raise AssertionError(action)


def prerequisite(action: str, state: PupilState) -> str | None:
    """What has to happen first for ``action`` to make sense, or None if it can happen now."""
    on_register = state.on_sen_register
    ehc = state.provision is SenProvision.EHC_PLAN
    match action:
        case "session" | "end_intervention" if not state.running_interventions():
            return "start_intervention"
        case "start_intervention" | "review" if state.plan is None:
            return "agree_plan"
        case "agree_plan" | "reclassify" if not on_register:
            return "start_support"
        case "start_support" if on_register:
            return "agree_plan" if state.plan is None else "review"
        case "end_support" if ehc:
            return "ehc_annual_review"
        case "end_support" if not on_register:
            return "start_support"
        case "ehc_request" if ehc:
            return "ehc_annual_review"
        case "ehc_request" if state.ehc_request in ("requested", "agreed_to_assess"):
            return "ehc_decide" if state.ehc_request == "requested" else "ehc_plan"
        case "ehc_decide" if state.ehc_request != "requested":
            return "ehc_request"
        case "ehc_plan" if not ehc and state.ehc_request != "agreed_to_assess":
            return "ehc_decide"
        case "ehc_annual_review" if not ehc:
            return "ehc_plan"
    return None


def play(script: Script, check: bool = True) -> tuple[Pupil, list[tuple[str, str]]]:
    """Run ``script``; check the invariants after every command. Returns the pupil and a log."""
    p = Pupil(now=FAR_FUTURE)
    day = START
    p.ok("register_pupil", {}, day)
    log: list[tuple[str, str]] = []
    for action, gap, seed in script:
        day += timedelta(days=gap)
        rng = random.Random(seed)
        if chance(rng, 0.85):  # mostly do first what has to come first
            for _ in range(4):
                action = prerequisite(action, p.state) or action
        name, payload = command_for(action, p, p.state, day, rng)
        outcome = p.run(name, payload, day)
        log.append((name, "accepted" if isinstance(outcome, Accepted) else outcome.rule))
        if check:
            check_invariants(p.state, p.facts)
    return p, log


# --- invariants ----------------------------------------------------------------------------


def check_invariants(state: PupilState, facts: list[NewEvent]) -> None:
    assert state.version == len(facts)
    assert state.registered

    # census: provision and need types
    assert state.provision in (SenProvision.NO_SEN, SenProvision.SEN_SUPPORT, SenProvision.EHC_PLAN)
    if state.provision is SenProvision.NO_SEN:
        assert state.needs == ()
    else:
        assert 1 <= len(state.needs) <= 2
        assert sorted(n.rank for n in state.needs) in ([1], [1, 2])
        assert [n.rank for n in state.needs].count(1) == 1
        assert len({n.type for n in state.needs}) == len(state.needs)
    if state.provision is SenProvision.EHC_PLAN:
        assert NeedType.NSA not in {n.type for n in state.needs}

    # provision spells: at most one open, the last, and it is the current provision
    spells = state.provision_history
    open_spells = [s for s in spells if s.end is None]
    assert len(open_spells) <= 1
    if open_spells:
        assert spells[-1] is open_spells[0]
        assert open_spells[0].provision == state.provision
        assert open_spells[0].provision is not SenProvision.NO_SEN
    if state.on_roll and state.provision is not SenProvision.NO_SEN:
        assert open_spells, "on the SEN register without an open spell"
    for spell in spells:
        assert spell.end is None or spell.start <= spell.end

    # interventions belong to a plan agreed for this pupil; leaving ends them all
    agreed = {f.data.plan_id for f in effective(facts) if isinstance(f.data, ev.PlanAgreed)}
    for intervention in state.running_interventions():
        assert intervention.plan_id in agreed
    assert len({i.intervention_id for i in state.interventions}) == len(state.interventions)
    if state.left_on is not None:
        assert not state.on_roll
        assert state.running_interventions() == ()

    # a plan belongs to an SEN provision; on SEN support it always has a review date
    if state.plan is not None:
        assert state.on_sen_register
        if state.on_roll and state.provision is SenProvision.SEN_SUPPORT:
            assert state.next_review_due is not None

    # EHC plans are reviewed at least every 12 months
    if state.provision is SenProvision.EHC_PLAN:
        assert state.ehc_plan_since is not None
        due = state.ehc_next_review_due
        if due is not None:
            last = state.ehc_last_review_on or state.ehc_plan_since
            assert last < due <= add_months(last, 12), (last, due)
    if state.ehc_request is not None:
        assert state.ehc_request in ("requested", "agreed_to_assess", "declined")

    # every event of the stream is known by id, with its type
    assert set(state.event_types) == {f.event_id for f in facts}


# --- the properties -----------------------------------------------------------------------

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(scripts())
def test_every_reachable_state_is_valid(script: Script) -> None:
    play(script)  # checks the invariants after each command


@PROPERTY
@given(scripts())
def test_replay_is_deterministic(script: Script) -> None:
    p, _ = play(script, check=False)
    assert replay(p.facts) == replay(p.facts)
    assert replay(p.facts) == p.state
    # and so is a replay of the same facts read back from their JSON
    again = [NewEvent.model_validate_json(f.model_dump_json()) for f in p.facts]
    assert replay(again) == replay(p.facts)


@PROPERTY
@given(scripts(NO_CORRECTIONS))
def test_replay_of_a_prefix_then_evolve_equals_replay(script: Script) -> None:
    p, _ = play(script, check=False)
    facts = p.facts
    whole = replay(facts)
    for cut in range(len(facts) + 1):
        state = replay(facts[:cut])
        for fact in facts[cut:]:
            state = evolve(state, fact)
        assert state == whole


@PROPERTY
@given(scripts())
def test_a_replay_resumed_from_a_state_equals_a_whole_replay(script: Script) -> None:
    """How a kept state is brought up to date: fold only what came after it, when allowed."""
    p, _ = play(script, check=False)
    facts = p.facts
    whole = replay(facts)
    resumed = 0
    for cut in range(len(facts) + 1):
        start = replay(facts[:cut])
        if resumable(start, facts[cut:]):
            assert replay(facts[cut:], start=start) == whole
            assert start == replay(facts[:cut])  # the fold changes its own copy, not start
            resumed += 1
        else:  # only a correction of an already-folded event (or an erasure) forbids it
            assert any(
                isinstance(f.data, ev.RecordCorrected)
                and f.data.corrects_event_id in {g.event_id for g in facts[:cut]}
                for f in facts[cut:]
            )
    assert resumed >= 2  # at least from nothing and from everything


@PROPERTY
@given(scripts())
def test_corrections_only_replace_content(script: Script) -> None:
    """Replay with corrections is replay of the corrected stream (plus the correction count)."""
    p, _ = play(script, check=False)
    facts = p.facts
    corrections = [f for f in facts if isinstance(f.data, ev.RecordCorrected)]
    state = replay(facts)
    assert state.corrections == len(corrections)
    assert state.version == len(facts)
    # a correction is never the target of another, and the original stays in the stream
    for c in corrections:
        assert isinstance(c.data, ev.RecordCorrected)
        target = next(f for f in facts if f.event_id == c.data.corrects_event_id)
        assert target.data.event_type == c.data.replacement.event_type
        assert facts.index(target) < facts.index(c)


def test_the_scripts_are_mostly_valid() -> None:
    """Guard for the generator: most commands are accepted, and every kind at least once."""
    rng = random.Random(20270101)
    log: list[tuple[str, str]] = []
    for _ in range(150):
        script = [(rng.choice(ACTIONS), rng.randint(0, 45), rng.getrandbits(32)) for _ in range(30)]
        log += play(script)[1]
    outcomes = Counter(result for _, result in log)
    assert outcomes["accepted"] / len(log) > 0.5, outcomes.most_common()
    accepted_names = {name for name, result in log if result == "accepted"}
    assert accepted_names == {command_for(a, *_probe())[0] for a in ACTIONS}
    # and the rejections seen are named rules, a good spread of them
    assert len(set(outcomes) - {"accepted"}) >= 15, outcomes


def _probe() -> tuple[Pupil, PupilState, date, random.Random]:
    p = Pupil()
    p.ok("register_pupil", {}, START)
    return p, p.state, START, random.Random(0)
