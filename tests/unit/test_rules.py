"""Every rule of the workflow: where it fires, and (for the musts) that it lets the right thing by.

Each test starts from ``story_until(step)`` (see helpers.STORY: registered
2024-09-02, assessed 09-09, SEN support 09-16, plan 09-23 with review on
12-16, intervention 09-30, EHC request 11-04, agreed 12-02, EHC plan
2025-01-13) and adds the command under test. ``now`` is 2027-01-01 UTC.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from senflow.events import catalogue as ev
from senflow.events.codes import NeedType, SenProvision
from senflow.services.workflow.decide import Rejection
from senflow.services.workflow.rules import RULES, Severity
from tests.unit.helpers import (
    OTHER_SCHOOL,
    TENANT,
    Pupil,
    accepted,
    measure,
    needs,
    not_warned,
    outcome,
    provision,
    rejected,
    story_until,
    warned,
    warning_rules,
)

pytestmark = pytest.mark.unit


# --- statutory duties and census rules -------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"parents_notified": False, "parents_notified_on": None}, "payload.parents_notified"),
        ({"parents_notified": False}, "payload.parents_notified"),
        ({"parents_notified": True, "parents_notified_on": None}, "payload.parents_notified"),
        ({"parents_notified_on": "2024-09-17"}, "payload.parents_notified_on"),
    ],
)
def test_parents_notified_before_sen_support(payload: dict[str, Any], field: str) -> None:
    p = story_until("assessed")
    rejected(
        p.run("start_sen_support", payload, "2024-09-16"),
        "parents_notified_before_sen_support",
        field,
    )
    assert p.state.provision is SenProvision.NO_SEN


@pytest.mark.parametrize("notified_on", ["2024-09-16", "2024-09-01"])
def test_parents_notified_on_or_before_the_start_passes(notified_on: str) -> None:
    p = story_until("assessed")
    p.ok("start_sen_support", {"parents_notified_on": notified_on}, "2024-09-16")
    assert p.state.provision is SenProvision.SEN_SUPPORT
    assert p.state.needs == (ev.RankedNeed(type=NeedType.SLCN, rank=1),)


def test_one_sen_provision_open_sen_support_twice() -> None:
    p = story_until("sen_support")
    rejected(p.run("start_sen_support", {}, "2024-10-01"), "one_sen_provision_open", "command")


def test_one_sen_provision_open_sen_support_with_ehc_plan() -> None:
    p = story_until("ehc_plan")
    rejected(p.run("start_sen_support", {}, "2025-02-01"), "one_sen_provision_open", "command")


def test_one_sen_provision_open_second_ehc_plan() -> None:
    p = story_until("ehc_plan")
    rejected(p.run("issue_ehc_plan", {}, "2025-02-01"), "one_sen_provision_open", "command")


def test_sen_support_can_start_again_after_it_ended() -> None:
    p = story_until("sen_support")
    p.ok("end_sen_support", {}, "2024-10-01")
    p.ok("start_sen_support", {"needs": needs("SEMH")}, "2024-11-01")
    spells = p.state.provision_history
    assert [(s.provision, s.start.isoformat()) for s in spells] == [
        (SenProvision.SEN_SUPPORT, "2024-09-16"),
        (SenProvision.SEN_SUPPORT, "2024-11-01"),
    ]
    assert spells[0].end is not None and spells[1].end is None


def test_ehc_plan_closes_the_sen_support_spell() -> None:
    p = story_until("ehc_plan")
    history = p.state.provision_history
    assert [s.provision for s in history] == [SenProvision.SEN_SUPPORT, SenProvision.EHC_PLAN]
    assert history[0].end == history[1].start
    assert history[1].end is None
    assert p.state.provision is SenProvision.EHC_PLAN


@pytest.mark.parametrize(
    ("command", "step"),
    [("start_sen_support", "assessed"), ("issue_ehc_plan", "ehc_agreed")],
)
def test_need_type_required(command: str, step: str) -> None:
    p = story_until(step)
    rejected(p.run(command, {"needs": []}, "2025-01-13"), "need_type_required", "payload.needs")


BAD_RANKINGS = {
    "two primaries": [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 1}],
    "duplicate type": [{"type": "SLCN", "rank": 1}, {"type": "SLCN", "rank": 2}],
    "rank 2 alone": [{"type": "SLCN", "rank": 2}],
    "two secondaries": [{"type": "SLCN", "rank": 2}, {"type": "SEMH", "rank": 2}],
}


@pytest.mark.parametrize("ranked", BAD_RANKINGS.values(), ids=BAD_RANKINGS.keys())
@pytest.mark.parametrize(
    ("command", "step"),
    [
        ("start_sen_support", "assessed"),
        ("reclassify_needs", "sen_support"),
        ("issue_ehc_plan", "ehc_agreed"),
    ],
)
def test_need_ranking(command: str, step: str, ranked: list[dict[str, Any]]) -> None:
    p = story_until(step)
    rejected(p.run(command, {"needs": ranked}, "2025-01-13"), "need_ranking", "payload.needs")


@pytest.mark.parametrize("ranked", [needs("SLCN"), needs("SEMH", "SLCN"), needs("NSA")])
def test_need_ranking_passes(ranked: list[dict[str, Any]]) -> None:
    p = story_until("assessed")
    p.ok("start_sen_support", {"needs": ranked}, "2024-09-16")
    assert [(n.type.value, n.rank) for n in p.state.needs] == [
        (n["type"], n["rank"]) for n in ranked
    ]


def test_more_than_two_needs_is_not_even_a_valid_command() -> None:
    p = story_until("assessed")
    with pytest.raises(ValueError, match="at most 2"):
        p.run("start_sen_support", {"needs": needs("SLCN", "SEMH", "ASD")}, "2024-09-16")


def test_nsa_only_with_sen_support_ehc_plan() -> None:
    p = story_until("ehc_agreed")
    rejected(
        p.run("issue_ehc_plan", {"needs": needs("NSA")}, "2025-01-13"),
        "nsa_only_with_sen_support",
        "payload.needs",
    )
    p.ok("issue_ehc_plan", {"needs": needs("SLCN", "SEMH")}, "2025-01-13")


def test_nsa_only_with_sen_support_reclassified_under_ehc_plan() -> None:
    p = story_until("ehc_plan")
    rejected(
        p.run("reclassify_needs", {"needs": needs("NSA")}, "2025-02-01"),
        "nsa_only_with_sen_support",
        "payload.needs",
    )
    p.ok("reclassify_needs", {"needs": needs("ASD")}, "2025-02-01")


def test_nsa_is_fine_with_sen_support() -> None:
    p = story_until("sen_support")
    p.ok("reclassify_needs", {"needs": needs("NSA")}, "2024-10-01")
    assert p.state.needs[0].type is NeedType.NSA


def test_no_sen_detail_without_provision() -> None:
    p = story_until("assessed")
    rejected(
        p.run("reclassify_needs", {}, "2024-09-16"),
        "no_sen_detail_without_provision",
        "payload.needs",
    )
    assert p.state.needs == ()


def test_no_sen_detail_after_sen_support_ended() -> None:
    p = story_until("sen_support")
    p.ok("end_sen_support", {}, "2024-10-01")
    assert p.state.needs == ()
    rejected(p.run("reclassify_needs", {}, "2024-10-02"), "no_sen_detail_without_provision")


def test_needs_can_be_reclassified_on_sen_support() -> None:
    p = story_until("sen_support")
    p.ok("reclassify_needs", {"needs": needs("ASD", "SLCN")}, "2024-10-01")
    assert [n.type for n in p.state.needs] == [NeedType.ASD, NeedType.SLCN]


@pytest.mark.parametrize(
    ("payload", "rule", "field"),
    [
        ({"outcomes": []}, "plan_requires_outcomes", "payload.outcomes"),
        (
            {"outcomes": [outcome("O1")], "provisions": []},
            "plan_requires_provision",
            "payload.provisions",
        ),
        ({"review_date": "2024-09-23"}, "plan_requires_review_date", "payload.review_date"),
        ({"review_date": "2024-09-01"}, "plan_requires_review_date", "payload.review_date"),
    ],
)
def test_plan_requirements(payload: dict[str, Any], rule: str, field: str) -> None:
    p = story_until("sen_support")
    rejected(p.run("agree_plan", payload, "2024-09-23"), rule, field)
    assert p.state.plan is None


def test_plan_with_outcomes_provision_and_a_later_review_date_passes() -> None:
    p = story_until("sen_support")
    p.ok(
        "agree_plan",
        {
            "outcomes": [outcome("O1")],
            "provisions": [provision("P1", "O1")],
            "review_date": "2024-09-24",
        },
        "2024-09-23",
    )
    plan = p.state.plan
    assert plan is not None and plan.outcome_ids == ("O1",)
    assert p.state.next_review_due is not None and p.state.next_review_due.isoformat() == (
        "2024-09-24"
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"parental_consent": False}, "payload.parental_consent"),
        ({"parental_consent": False, "consent_given_on": None}, "payload.parental_consent"),
        ({"parental_consent": True, "consent_given_on": None}, "payload.parental_consent"),
        ({"consent_given_on": "2024-10-02"}, "payload.consent_given_on"),
    ],
)
def test_specialist_requires_parental_consent(payload: dict[str, Any], field: str) -> None:
    p = story_until("sen_support")
    rejected(
        p.run("involve_specialist", payload, "2024-10-01"),
        "specialist_requires_parental_consent",
        field,
    )


def test_specialist_with_consent_passes() -> None:
    p = story_until("sen_support")
    p.ok("involve_specialist", {"consent_given_on": "2024-09-30"}, "2024-10-01")
    assert p.state.specialists == ("speech_and_language_therapist",)


@pytest.mark.parametrize(
    ("first_review_due", "ok"),
    [
        ("2026-02-13", False),  # 13 months out
        ("2026-01-14", False),  # 12 months and a day
        ("2025-01-13", False),  # the day itself is not "after"
        ("2025-01-12", False),
        ("2026-01-13", True),  # exactly 12 months
        ("2025-01-14", True),
    ],
)
def test_ehc_review_within_12_months_first_review(first_review_due: str, ok: bool) -> None:
    p = story_until("ehc_agreed")
    outcome_ = p.run("issue_ehc_plan", {"first_review_due": first_review_due}, "2025-01-13")
    if ok:
        accepted(outcome_)
        assert p.state.ehc_next_review_due is not None
        assert p.state.ehc_next_review_due.isoformat() == first_review_due
    else:
        rejected(outcome_, "ehc_review_within_12_months", "payload.first_review_due")


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        ({"next_review_due": "2026-12-01"}, False),  # 13 months out
        ({"next_review_due": None}, False),  # maintained plans need a next review
        ({"recommendation": "amend", "next_review_due": None}, False),
        ({"next_review_due": "2025-11-01"}, False),  # not after the review
        ({"next_review_due": "2026-11-01"}, True),  # exactly 12 months
        ({"recommendation": "cease", "next_review_due": None}, True),
    ],
)
def test_ehc_review_within_12_months_annual_review(payload: dict[str, Any], ok: bool) -> None:
    p = story_until("ehc_plan")
    outcome_ = p.run("hold_ehc_annual_review", payload, "2025-11-01")
    if ok:
        accepted(outcome_)
        assert p.state.ehc_last_review_on is not None
        assert p.state.ehc_last_review_on.isoformat() == "2025-11-01"
    else:
        rejected(outcome_, "ehc_review_within_12_months", "payload.next_review_due")


@pytest.mark.parametrize(("first_review_due", "ok"), [("2025-02-28", True), ("2025-03-01", False)])
def test_ehc_12_months_from_the_29th_of_february(first_review_due: str, ok: bool) -> None:
    p = Pupil()
    p.ok("register_pupil", {}, "2023-09-04")
    p.ok("request_ehc_needs_assessment", {}, "2023-10-02")
    p.ok("decide_ehc_needs_assessment", {}, "2023-11-06")
    outcome_ = p.run("issue_ehc_plan", {"first_review_due": first_review_due}, "2024-02-29")
    if ok:
        accepted(outcome_)
    else:
        rejected(outcome_, "ehc_review_within_12_months", "payload.first_review_due")


def test_transition_requires_parental_agreement() -> None:
    p = story_until("sen_support")
    rejected(
        p.run("share_transition_information", {"parental_agreement": False}, "2024-10-01"),
        "transition_requires_parental_agreement",
        "payload.parental_agreement",
    )
    assert p.state.transitions_shared == 0
    p.ok("share_transition_information", {"parental_agreement": True}, "2024-10-01")
    assert p.state.transitions_shared == 1


def test_annual_report_year_is_the_year_it_was_given() -> None:
    p = story_until("sen_support")
    rejected(
        p.run("record_annual_report", {"academic_year": "2023/24"}, "2024-10-01"),
        "annual_report_year",
        "payload.academic_year",
    )
    p.ok("record_annual_report", {"academic_year": "2024/25"}, "2024-10-01")
    assert p.state.annual_reports == ("2024/25",)


def test_annual_report_needs_a_pupil_on_the_register() -> None:
    p = story_until("registered")
    rejected(p.run("record_annual_report", {}, "2024-10-01"), "requires_sen_provision")


# --- preconditions -------------------------------------------------------------------------


def test_pupil_must_be_registered() -> None:
    p = Pupil()
    rejected(p.run("raise_concern", {}, "2024-09-02"), "pupil_must_be_registered", "pupil_id")
    assert p.facts == []
    p.ok("register_pupil", {}, "2024-09-02")
    p.ok("raise_concern", {}, "2024-09-02")


def test_pupil_must_be_registered_even_to_correct() -> None:
    p = Pupil()
    outcome_ = p.run(
        "correct_record",
        p.correction(
            uuid4(), {"event_type": "concern_raised", "source": "parent", "description": "x"}
        ),
        "2024-09-02",
    )
    rejected(outcome_, "pupil_must_be_registered")


def test_pupil_already_registered() -> None:
    p = story_until("registered")
    rejected(p.run("register_pupil", {}, "2024-09-03"), "pupil_already_registered", None)
    assert p.state.version == 1


def test_registration_names_the_school() -> None:
    p = Pupil()
    rejected(
        p.run("register_pupil", {}, "2024-09-02", tenant=None), "tenant_matches_pupil", "tenant"
    )
    p.ok("register_pupil", {}, "2024-09-02", tenant=TENANT)
    assert p.state.registered and p.state.on_roll
    assert p.state.tenant is not None and p.state.tenant.school_urn == "123456"


@pytest.mark.parametrize(
    "command",
    ["raise_concern", "start_sen_support", "record_pupil_left", "hold_parent_meeting"],
)
def test_pupil_has_left(command: str) -> None:
    p = story_until("assessed")
    accepted(p.decide(p.command(command, {}, "2024-09-30")))  # fine while on roll
    p.ok("record_pupil_left", {}, "2024-10-01")
    rejected(p.run(command, {}, "2024-10-02"), "pupil_has_left", None)


def test_after_leaving_transition_and_corrections_still_pass() -> None:
    p = story_until("assessed")
    p.ok("record_pupil_left", {}, "2024-10-01")
    p.ok("share_transition_information", {}, "2024-10-02")
    concern = p.fact("concern_raised")
    p.ok(
        "correct_record",
        p.correction(
            concern, {"event_type": "concern_raised", "source": "parent", "description": "x"}
        ),
        "2024-10-03",
    )
    assert p.state.left_on is not None and p.state.left_on.isoformat() == "2024-10-01"
    assert not p.state.on_roll


def test_leaving_closes_the_provision_spell() -> None:
    p = story_until("sen_support")
    p.ok("record_pupil_left", {}, "2024-10-01")
    (spell,) = p.state.provision_history
    assert spell.end is not None and spell.end.isoformat() == "2024-10-01"
    assert p.state.next_review_due is None


@pytest.mark.parametrize("command", ["raise_concern", "share_transition_information"])
def test_personal_data_erased(command: str) -> None:
    p = story_until("sen_support")
    accepted(p.decide(p.command(command, {}, "2024-10-01")))  # fine before the erasure
    p.append(ev.PersonalDataErased(reason_code="erasure_request", reason="Art. 17 request"))
    assert p.state.erased
    rejected(p.run(command, {}, "2024-10-01"), "personal_data_erased", None)


def test_personal_data_erased_blocks_corrections() -> None:
    p = story_until("assessed")
    concern = p.fact("concern_raised")
    p.append(ev.PersonalDataErased(reason_code="retention_expired", reason="Retention"))
    payload = p.correction(
        concern, {"event_type": "concern_raised", "source": "parent", "description": "x"}
    )
    rejected(p.run("correct_record", payload, "2024-10-01"), "personal_data_erased")


@pytest.mark.parametrize(
    ("occurred_at", "ok"),
    [
        ("2027-01-02T09:00:00+00:00", False),
        ("2027-01-01T00:06:00+00:00", False),  # beyond the five minutes of clock skew
        ("2027-01-01T00:04:00+00:00", True),  # within it
        ("2026-12-31T23:59:00+00:00", True),
    ],
)
def test_occurred_at_not_in_future(occurred_at: str, ok: bool) -> None:
    p = story_until("registered")
    outcome_ = p.run("raise_concern", {}, occurred_at=occurred_at)
    if ok:
        accepted(outcome_)
    else:
        rejected(outcome_, "occurred_at_not_in_future", "occurred_at")


def test_occurred_at_not_in_future_applies_to_registration() -> None:
    p = Pupil()
    rejected(p.run("register_pupil", {}, "2027-01-02"), "occurred_at_not_in_future", "occurred_at")


def test_a_plain_date_means_midday_in_england() -> None:
    p = story_until("registered")
    command = p.command("raise_concern", {}, "2026-07-01")
    assert command.occurred_at.isoformat() == "2026-07-01T12:00:00+01:00"
    command = p.command("raise_concern", {}, "2026-12-01")
    assert command.occurred_at.isoformat() == "2026-12-01T12:00:00+00:00"


def test_an_evening_in_summer_is_the_next_day_in_utc_but_not_in_school() -> None:
    p = story_until("sen_support")
    p.ok("hold_parent_meeting", {}, occurred_at="2025-06-30T23:30:00+00:00")
    assert p.state.parent_meetings[-1].isoformat() == "2025-07-01"


def test_tenant_matches_pupil() -> None:
    p = story_until("registered")
    rejected(
        p.run("raise_concern", {}, "2024-09-03", tenant=OTHER_SCHOOL),
        "tenant_matches_pupil",
        "tenant",
    )
    other_trust = {"trust_id": "trust-8", "school_urn": "123456"}
    rejected(p.run("raise_concern", {}, "2024-09-03", tenant=other_trust), "tenant_matches_pupil")
    p.ok("raise_concern", {}, "2024-09-03", tenant=TENANT)
    p.ok("raise_concern", {}, "2024-09-03", tenant=None)


@pytest.mark.parametrize("command", ["agree_plan", "end_sen_support"])
def test_requires_sen_provision_or_support(command: str) -> None:
    p = story_until("assessed")
    rule = "requires_sen_provision" if command == "agree_plan" else "requires_sen_support"
    rejected(p.run(command, {}, "2024-09-16"), rule, None)


def test_requires_sen_provision_passes_with_ehc_plan() -> None:
    p = story_until("ehc_plan")
    p.ok("agree_plan", {}, "2025-02-01")


def test_requires_sen_support_not_with_ehc_plan() -> None:
    p = story_until("ehc_plan")
    rejected(p.run("end_sen_support", {}, "2025-02-01"), "requires_sen_support", None)
    rejected(
        p.run("hold_review", {"decision": "end_sen_support"}, "2025-02-01"),
        "requires_sen_support",
        "payload.decision",
    )
    assert p.state.provision is SenProvision.EHC_PLAN


def test_end_sen_support_passes_on_sen_support() -> None:
    p = story_until("plan")
    p.ok("end_sen_support", {"reason": "needs_met"}, "2024-11-01")
    state = p.state
    assert state.provision is SenProvision.NO_SEN
    assert state.needs == () and state.plan is None and state.next_review_due is None


def test_requires_ehc_plan() -> None:
    p = story_until("ehc_agreed")
    rejected(p.run("hold_ehc_annual_review", {}, "2025-01-01"), "requires_ehc_plan", None)
    p = story_until("ehc_plan")
    p.ok("hold_ehc_annual_review", {}, "2025-11-01")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"outcomes": [outcome("O1"), outcome("O1")]}, "payload.outcomes"),
        (
            {"provisions": [provision("P1", "O1"), provision("P1", "O2")]},
            "payload.provisions",
        ),
        (
            {"provisions": [provision("P1", "O1"), provision("P2", "O3")]},
            "payload.provisions.1.outcome_ids",
        ),
    ],
    ids=["duplicate outcome", "duplicate provision", "unknown outcome"],
)
def test_plan_references_valid(payload: dict[str, Any], field: str) -> None:
    p = story_until("sen_support")
    rejected(p.run("agree_plan", payload, "2024-09-23"), "plan_references_valid", field)


def test_plan_provision_serving_no_outcome_passes() -> None:
    p = story_until("sen_support")
    p.ok("agree_plan", {"provisions": [provision("P1")]}, "2024-09-23")


@pytest.mark.parametrize(
    ("step", "payload", "field"),
    [
        ("sen_support", {}, "payload.plan_id"),  # no plan at all
        ("plan", {"plan_id": str(uuid4())}, "payload.plan_id"),  # not the current plan
        ("plan", {"provision_id": "P9"}, "payload.provision_id"),  # not in the plan
    ],
)
def test_intervention_requires_planned_provision(
    step: str, payload: dict[str, Any], field: str
) -> None:
    p = story_until(step)
    rejected(
        p.run("start_intervention", payload, "2024-09-30"),
        "intervention_requires_planned_provision",
        field,
    )


def test_intervention_of_a_superseded_plan_is_refused() -> None:
    p = story_until("plan")
    old = p.plan_id
    p.ok("agree_plan", {}, "2024-10-01")
    rejected(
        p.run("start_intervention", {"plan_id": str(old)}, "2024-10-02"),
        "intervention_requires_planned_provision",
        "payload.plan_id",
    )


def test_intervention_of_the_plan_passes() -> None:
    p = story_until("plan")
    p.ok("start_intervention", {"provision_id": "P2"}, "2024-09-30")
    (running,) = p.state.running_interventions()
    assert running.plan_id == p.plan_id and running.provision_id == "P2"
    assert running.name == "Lego therapy"


def test_intervention_must_be_new() -> None:
    p = story_until("intervention")
    again = {"intervention_id": str(p.intervention_id)}
    rejected(
        p.run("start_intervention", again, "2024-10-01"),
        "intervention_must_be_new",
        "payload.intervention_id",
    )
    p.ok("start_intervention", {"intervention_id": str(uuid4())}, "2024-10-01")
    assert len(p.state.running_interventions()) == 2


@pytest.mark.parametrize("command", ["record_intervention_session", "end_intervention"])
def test_intervention_must_be_running_unknown(command: str) -> None:
    p = story_until("intervention")
    rejected(
        p.run(command, {"intervention_id": str(uuid4())}, "2024-10-01"),
        "intervention_must_be_running",
        "payload.intervention_id",
    )


@pytest.mark.parametrize("command", ["record_intervention_session", "end_intervention"])
def test_intervention_must_be_running_ended(command: str) -> None:
    p = story_until("intervention")
    iid = str(p.intervention_id)
    p.ok("end_intervention", {"intervention_id": iid}, "2024-12-01")
    rejected(
        p.run(command, {"intervention_id": iid}, "2024-12-02"),
        "intervention_must_be_running",
        "payload.intervention_id",
    )


def test_sessions_of_a_running_intervention_pass() -> None:
    p = story_until("intervention")
    iid = str(p.intervention_id)
    p.ok("record_intervention_session", {"intervention_id": iid, "minutes": 30}, "2024-10-01")
    p.ok("record_intervention_session", {"intervention_id": iid, "minutes": 0, "attended": False})
    p.ok("end_intervention", {"intervention_id": iid}, "2024-12-01")
    (done,) = p.state.interventions
    assert (done.sessions, done.minutes_delivered) == (1, 30)
    assert done.ended_on is not None and not done.running


@pytest.mark.parametrize(
    ("step", "payload"),
    [("sen_support", {}), ("plan", {"plan_id": str(uuid4())})],
    ids=["no plan", "other plan"],
)
def test_review_requires_current_plan(step: str, payload: dict[str, Any]) -> None:
    p = story_until(step)
    rejected(
        p.run("hold_review", payload, "2024-12-10"),
        "review_requires_current_plan",
        "payload.plan_id",
    )


def test_review_requires_current_plan_after_support_ended() -> None:
    p = story_until("plan")
    plan_id = str(p.plan_id)
    p.ok("end_sen_support", {}, "2024-11-01")
    rejected(
        p.run("hold_review", {"plan_id": plan_id}, "2024-12-10"), "review_requires_current_plan"
    )


def test_review_references_plan_outcome() -> None:
    p = story_until("intervention")
    progress = [{"outcome_id": "O1", "rating": "met"}, {"outcome_id": "O7", "rating": "met"}]
    rejected(
        p.run("hold_review", {"outcome_progress": progress}, "2024-12-10"),
        "review_references_plan",
        "payload.outcome_progress.1.outcome_id",
    )


def test_review_references_plan_intervention() -> None:
    p = story_until("intervention")
    impact = [
        {"intervention_id": str(p.intervention_id), "impact": "good", "keep": True},
        {"intervention_id": str(uuid4()), "impact": "good", "keep": True},
    ]
    rejected(
        p.run("hold_review", {"intervention_impact": impact}, "2024-12-10"),
        "review_references_plan",
        "payload.intervention_impact.1.intervention_id",
    )


def test_review_of_an_earlier_plans_intervention_is_refused() -> None:
    p = story_until("intervention")
    old = str(p.intervention_id)
    p.ok("agree_plan", {}, "2024-11-01")
    impact = [{"intervention_id": old, "impact": "limited", "keep": False}]
    rejected(
        p.run("hold_review", {"intervention_impact": impact}, "2024-12-10"),
        "review_references_plan",
    )


def test_review_referencing_the_plan_passes() -> None:
    p = story_until("intervention")
    impact = [{"intervention_id": str(p.intervention_id), "impact": "good", "keep": True}]
    p.ok("hold_review", {"intervention_impact": impact}, "2024-12-10")
    state = p.state
    assert state.plan is not None and state.plan.reviewed_on is not None
    assert state.reviews[-1].isoformat() == "2024-12-10"
    assert state.next_review_due is not None and state.next_review_due.isoformat() == "2025-03-04"


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        ({"next_review_date": None}, False),
        ({"next_review_date": "2024-12-10"}, False),  # the review day itself
        ({"next_review_date": "2024-12-01"}, False),
        ({"decision": "revise_plan", "next_review_date": None}, False),
        ({"decision": "request_ehc_needs_assessment", "next_review_date": None}, False),
        ({"next_review_date": "2024-12-11"}, True),
        ({"decision": "end_sen_support", "next_review_date": None}, True),
    ],
)
def test_review_requires_next_date(payload: dict[str, Any], ok: bool) -> None:
    p = story_until("plan")
    outcome_ = p.run("hold_review", payload, "2024-12-10")
    if ok:
        accepted(outcome_)
    else:
        rejected(outcome_, "review_requires_next_date", "payload.next_review_date")


@pytest.mark.parametrize("step", ["ehc_requested", "ehc_agreed", "ehc_plan"])
def test_ehc_request_not_open(step: str) -> None:
    p = story_until(step)
    rejected(p.run("request_ehc_needs_assessment", {}, "2025-02-01"), "ehc_request_not_open", None)


def test_ehc_request_again_after_a_decline_passes() -> None:
    p = story_until("ehc_requested")
    p.ok("decide_ehc_needs_assessment", {"decision": "declined"}, "2024-12-02")
    assert p.state.ehc_request == "declined"
    p.ok("request_ehc_needs_assessment", {"requested_by": "parent"}, "2025-02-01")
    assert p.state.ehc_request == "requested"


@pytest.mark.parametrize("step", ["sen_support", "ehc_agreed", "ehc_plan"])
def test_ehc_request_required(step: str) -> None:
    p = story_until(step)
    rejected(p.run("decide_ehc_needs_assessment", {}, "2025-02-01"), "ehc_request_required", None)


@pytest.mark.parametrize("decision", ["agreed_to_assess", "declined"])
def test_ehc_request_decided_once(decision: str) -> None:
    p = story_until("ehc_requested")
    p.ok("decide_ehc_needs_assessment", {"decision": decision}, "2024-12-02")
    assert p.state.ehc_request == decision


def test_ehc_plan_requires_assessment() -> None:
    p = story_until("sen_support")
    rejected(p.run("issue_ehc_plan", {}, "2024-10-01"), "ehc_plan_requires_assessment", None)
    p.ok("request_ehc_needs_assessment", {}, "2024-10-01")
    rejected(p.run("issue_ehc_plan", {}, "2024-10-02"), "ehc_plan_requires_assessment")
    p.ok("decide_ehc_needs_assessment", {"decision": "declined"}, "2024-10-03")
    rejected(p.run("issue_ehc_plan", {}, "2024-10-04"), "ehc_plan_requires_assessment")
    p.ok("request_ehc_needs_assessment", {}, "2024-10-05")
    p.ok("decide_ehc_needs_assessment", {"decision": "agreed_to_assess"}, "2024-10-06")
    p.ok("issue_ehc_plan", {}, "2024-10-07")
    assert p.state.provision is SenProvision.EHC_PLAN
    assert p.state.ehc_request is None


def test_ehc_plan_without_sen_support_first() -> None:
    p = story_until("assessed")
    p.ok("request_ehc_needs_assessment", {"requested_by": "parent"}, "2024-10-01")
    p.ok("decide_ehc_needs_assessment", {}, "2024-11-01")
    p.ok("issue_ehc_plan", {}, "2025-03-01")
    assert [s.provision for s in p.state.provision_history] == [SenProvision.EHC_PLAN]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"from_urn": "123456", "to_urn": "123456"}, "payload.to_urn"),
        ({"from_urn": "999999", "to_urn": "654321"}, "payload.from_urn"),
    ],
)
def test_transfer_within_trust(payload: dict[str, str], field: str) -> None:
    p = story_until("registered")
    rejected(p.run("transfer_pupil", payload, "2024-10-01"), "transfer_within_trust", field)


def test_transfer_from_the_current_school_passes() -> None:
    p = story_until("sen_support")
    p.ok("transfer_pupil", {"from_urn": "123456", "to_urn": "654321"}, "2024-10-01")
    assert p.fact("pupil_transferred").tenant.school_urn == "123456"


def test_after_a_transfer_the_pupil_belongs_to_the_new_school() -> None:
    p = story_until("sen_support")
    p.ok("transfer_pupil", {"from_urn": "123456", "to_urn": "654321"}, "2024-10-01")
    assert p.state.tenant is not None and p.state.tenant.school_urn == "654321"
    p.ok("raise_concern", {}, "2024-10-02", tenant=OTHER_SCHOOL)
    rejected(p.run("raise_concern", {}, "2024-10-02", tenant=TENANT), "tenant_matches_pupil")
    p.ok("transfer_pupil", {"from_urn": "654321", "to_urn": "111111"}, "2024-10-03")


# --- corrections ---------------------------------------------------------------------------


def test_correction_target_unknown_event() -> None:
    p = story_until("assessed")
    payload = p.correction(
        uuid4(), {"event_type": "concern_raised", "source": "parent", "description": "x"}
    )
    rejected(
        p.run("correct_record", payload, "2024-09-10"),
        "correction_target",
        "payload.corrects_event_id",
    )


def test_correction_target_another_pupils_event() -> None:
    other = story_until("assessed")
    p = story_until("assessed")
    concern = other.fact("concern_raised")
    payload = p.correction(
        concern, {"event_type": "concern_raised", "source": "parent", "description": "x"}
    )
    rejected(p.run("correct_record", payload, "2024-09-10"), "correction_target")


def test_correction_target_type_mismatch() -> None:
    p = story_until("sen_support")
    payload = p.correction(
        p.fact("sen_support_started"),
        {"event_type": "concern_raised", "source": "parent", "description": "x"},
    )
    rejected(
        p.run("correct_record", payload, "2024-09-20"),
        "correction_target",
        "payload.replacement.event_type",
    )


def test_correction_target_cannot_be_a_correction() -> None:
    p = story_until("assessed")
    concern = p.fact("concern_raised")
    replacement = {"event_type": "concern_raised", "source": "parent", "description": "x"}
    p.ok("correct_record", p.correction(concern, replacement), "2024-09-10")
    correction = p.fact("record_corrected")
    payload = p.correction(correction, replacement)
    rejected(
        p.run("correct_record", payload, "2024-09-11"),
        "correction_target",
        "payload.corrects_event_id",
    )


def test_correction_target_cannot_change_the_plan_id() -> None:
    p = story_until("plan")
    original = p.fact("plan_agreed")
    replacement = original.data.model_dump(mode="json") | {"plan_id": str(uuid4())}
    rejected(
        p.run("correct_record", p.correction(original, replacement), "2024-09-24"),
        "correction_target",
        "payload.replacement.plan_id",
    )
    same_id = original.data.model_dump(mode="json") | {"review_date": "2024-12-20"}
    p.ok("correct_record", p.correction(original, same_id), "2024-09-24")
    assert p.state.plan is not None and p.state.plan.review_date.isoformat() == "2024-12-20"


def test_correction_target_cannot_change_the_intervention_id() -> None:
    p = story_until("intervention")
    original = p.fact("intervention_started")
    replacement = original.data.model_dump(mode="json") | {"intervention_id": str(uuid4())}
    rejected(
        p.run("correct_record", p.correction(original, replacement), "2024-10-01"),
        "correction_target",
        "payload.replacement.intervention_id",
    )


def test_correction_replaces_content_in_replay_and_keeps_the_original() -> None:
    p = story_until("plan")
    original = p.fact("sen_support_started")
    replacement = original.data.model_dump(mode="json") | {"needs": needs("ASD", "SLCN")}
    result = p.ok("correct_record", p.correction(original, replacement), "2024-10-01")
    (correction,) = result.events
    assert isinstance(correction, ev.RecordCorrected)
    assert correction.corrects_event_id == original.event_id

    state = p.state
    assert [n.type for n in state.needs] == [NeedType.ASD, NeedType.SLCN]
    assert state.corrections == 1
    assert state.version == len(p.facts) == 7
    # the original is untouched, still in its place in the stream
    assert p.facts[4] is original
    assert isinstance(original.data, ev.SenSupportStarted)
    assert [n.type for n in original.data.needs] == [NeedType.SLCN]
    # the corrected event keeps its place: the spell still starts on the original day
    assert state.provision_history[0].start.isoformat() == "2024-09-16"


def test_latest_correction_wins() -> None:
    p = story_until("sen_support")
    original = p.fact("sen_support_started")
    base = original.data.model_dump(mode="json")
    p.ok("correct_record", p.correction(original, base | {"needs": needs("ASD")}), "2024-10-01")
    p.ok("correct_record", p.correction(original, base | {"needs": needs("HI")}), "2024-10-02")
    assert [n.type for n in p.state.needs] == [NeedType.HI]


def test_correction_is_held_to_the_content_rules_as_of_the_original_day() -> None:
    p = story_until("sen_support")
    original = p.fact("sen_support_started")
    base = original.data.model_dump(mode="json")
    late = base | {"parents_notified_on": "2024-09-20"}  # after the original 09-16
    rejected(
        p.run("correct_record", p.correction(original, late), "2024-10-01"),
        "parents_notified_before_sen_support",
        "payload.parents_notified_on",
    )
    rejected(
        p.run("correct_record", p.correction(original, base | {"needs": []}), "2024-10-01"),
        "need_type_required",
    )


def test_correction_of_a_reclassification_is_judged_as_of_its_day() -> None:
    p = story_until("sen_support")
    p.ok("reclassify_needs", {"needs": needs("SLCN")}, "2024-10-01")
    original = p.fact("needs_reclassified")
    p.ok("request_ehc_needs_assessment", {}, "2024-10-02")
    p.ok("decide_ehc_needs_assessment", {}, "2024-10-03")
    p.ok("issue_ehc_plan", {}, "2024-11-01")
    # On 2024-10-01 the pupil was on SEN support (K), where NSA is a valid need type.
    replacement = original.data.model_dump(mode="json") | {"needs": needs("NSA")}
    accepted(p.run("correct_record", p.correction(original, replacement), "2024-11-02"))
    assert p.state.provision is SenProvision.EHC_PLAN
    assert [n.type for n in p.state.needs] == [NeedType.SLCN, NeedType.SEMH]  # from the plan


def test_correcting_a_review_cannot_leave_sen_support_without_a_review_date() -> None:
    p = story_until("plan")
    p.ok("hold_review", {}, "2024-12-10")
    review = p.fact("review_held")
    ending = review.data.model_dump(mode="json") | {
        "decision": "end_sen_support",
        "next_review_date": None,
    }
    outcome_ = p.run("correct_record", p.correction(review, ending), "2024-12-11")
    state = p.state
    # Either the correction is refused, or its consequence is recorded too.
    assert isinstance(outcome_, Rejection) or state.provision is SenProvision.NO_SEN
    assert state.provision is SenProvision.NO_SEN or state.next_review_due is not None


# --- the shoulds: warnings never reject ------------------------------------------------------


def test_assessment_and_parents_before_sen_support() -> None:
    p = story_until("registered")
    result = p.run("start_sen_support", {}, "2024-09-16")
    warned(result, "assessment_before_sen_support", None)
    warned(result, "parents_involved_before_sen_support", None)
    assert p.state.provision is SenProvision.SEN_SUPPORT


def test_no_warnings_with_assessment_and_parents_views() -> None:
    p = story_until("assessed")
    assert warning_rules(p.run("start_sen_support", {}, "2024-09-16")) == []


@pytest.mark.parametrize(
    "agreed_by", [["senco"], ["senco", "parent"], ["senco", "pupil"], ["class_teacher"]]
)
def test_plan_agreed_with_parents_and_pupil(agreed_by: list[str]) -> None:
    p = story_until("sen_support")
    warned(
        p.run("agree_plan", {"agreed_by": agreed_by}, "2024-09-23"),
        "plan_agreed_with_parents_and_pupil",
        "payload.agreed_by",
    )


def test_staff_informed_of_plan() -> None:
    p = story_until("sen_support")
    result = p.run("agree_plan", {"staff_informed": False, "staff_informed_on": None}, "2024-09-23")
    warned(result, "staff_informed_of_plan", "payload.staff_informed")
    assert p.state.plan is not None


def test_a_good_plan_has_no_warnings() -> None:
    p = story_until("sen_support")
    assert warning_rules(p.run("agree_plan", {}, "2024-09-23")) == []


def test_entry_and_exit_measures() -> None:
    p = story_until("plan")
    warned(
        p.run("start_intervention", {"entry_measure": None}, "2024-09-30"),
        "entry_and_exit_measures",
        "payload.entry_measure",
    )
    warned(
        p.run("end_intervention", {"exit_measure": None}, "2024-12-01"),
        "entry_and_exit_measures",
        "payload.exit_measure",
    )
    p.ok("start_intervention", {"entry_measure": measure(80)}, "2024-12-02")
    not_warned(
        p.run("end_intervention", {"exit_measure": measure(90)}, "2024-12-03"),
        "entry_and_exit_measures",
    )


@pytest.mark.parametrize(("day", "late"), [("2024-12-17", True), ("2024-12-16", False)])
def test_review_on_agreed_date(day: str, late: bool) -> None:
    p = story_until("plan")  # review_date 2024-12-16
    result = p.run("hold_review", {}, day)
    if late:
        warned(result, "review_on_agreed_date", None)
    else:
        not_warned(result, "review_on_agreed_date")


def test_review_with_pupil_and_parent_views() -> None:
    p = story_until("plan")
    result = p.run("hold_review", {"pupil_views": None, "parent_views": None}, "2024-12-10")
    warned(result, "review_with_pupil_views", "payload.pupil_views")
    warned(result, "review_with_parent_views", "payload.parent_views")
    assert warning_rules(p.run("hold_review", {}, "2024-12-11")) == []


def test_three_parent_meetings_a_year() -> None:
    # SEN support from 2024-09-16; the autumn term ends 12-31 with no meeting held.
    p = story_until("plan")
    warned(p.run("hold_review", {}, "2025-01-10"), "three_parent_meetings_a_year", None)


def test_three_parent_meetings_a_year_with_a_meeting_each_term() -> None:
    p = story_until("plan")
    p.ok("hold_parent_meeting", {}, "2024-11-20")
    not_warned(p.run("hold_review", {}, "2025-01-10"), "three_parent_meetings_a_year")
    # after the spring term (ends 04-14) a second meeting is expected
    warned(p.run("hold_review", {}, "2025-04-20"), "three_parent_meetings_a_year")
    p.ok("hold_parent_meeting", {}, "2025-03-20")
    not_warned(p.run("hold_review", {}, "2025-04-21"), "three_parent_meetings_a_year")


def test_no_parent_meeting_expected_in_the_first_term() -> None:
    p = story_until("plan")
    not_warned(p.run("hold_review", {}, "2024-12-10"), "three_parent_meetings_a_year")


def test_meeting_record_given_to_parents() -> None:
    p = story_until("sen_support")
    warned(
        p.run("hold_parent_meeting", {"record_given_to_parents": False}, "2024-10-01"),
        "meeting_record_given_to_parents",
        "payload.record_given_to_parents",
    )
    not_warned(p.run("hold_parent_meeting", {}, "2024-10-02"), "meeting_record_given_to_parents")
    assert len(p.state.parent_meetings) == 2


def test_ehc_annual_review_on_time() -> None:
    p = story_until("ehc_plan")  # plan since 2025-01-13
    warned(p.run("hold_ehc_annual_review", {}, "2026-01-14"), "ehc_annual_review_on_time", None)
    # measured from the last annual review from now on
    not_warned(p.run("hold_ehc_annual_review", {}, "2026-12-01"), "ehc_annual_review_on_time")


def test_ehc_annual_review_within_a_year_of_the_plan() -> None:
    p = story_until("ehc_plan")
    not_warned(p.run("hold_ehc_annual_review", {}, "2026-01-13"), "ehc_annual_review_on_time")


# --- what a decision records -----------------------------------------------------------------


def test_review_ending_sen_support_also_ends_the_provision() -> None:
    p = story_until("intervention")
    result = p.ok(
        "hold_review", {"decision": "end_sen_support", "next_review_date": None}, "2024-12-10"
    )
    # the running intervention ends with the support it belonged to
    assert [type(e) for e in result.events] == [
        ev.ReviewHeld,
        ev.SenSupportEnded,
        ev.InterventionEnded,
    ]
    assert isinstance(result.events[1], ev.SenSupportEnded)
    assert result.events[1].reason == "needs_met"
    assert result.events[2].reason == "sen_support_ended"
    state = p.state
    assert state.provision is SenProvision.NO_SEN
    assert state.needs == () and state.plan is None
    assert state.running_interventions() == ()
    assert state.reviews[-1].isoformat() == "2024-12-10"
    assert state.provision_history[-1].end is not None


def test_leaving_ends_running_interventions() -> None:
    p = story_until("intervention")
    first = p.intervention_id
    p.ok("start_intervention", {"provision_id": "P2"}, "2024-10-01")
    second = p.intervention_id
    p.ok("end_intervention", {"intervention_id": str(second)}, "2024-10-02")
    p.ok("start_intervention", {"provision_id": "P2"}, "2024-10-03")
    third = p.intervention_id

    result = p.ok("record_pupil_left", {"destination": "moved_away"}, "2024-11-01")
    assert isinstance(result.events[0], ev.PupilLeft)
    ended = result.events[1:]
    assert all(isinstance(e, ev.InterventionEnded) for e in ended)
    assert {e.intervention_id for e in ended} == {first, third}  # type: ignore[attr-defined]
    assert {e.reason for e in ended} == {"pupil_left"}  # type: ignore[attr-defined]
    state = p.state
    assert state.running_interventions() == ()
    assert all(
        i.ended_on is not None and i.ended_on.isoformat() == "2024-11-01"
        for i in state.interventions
        if i.intervention_id != second
    )


def test_leaving_without_interventions_records_only_the_leaving() -> None:
    p = story_until("plan")
    result = p.ok("record_pupil_left", {}, "2024-11-01")
    assert [type(e) for e in result.events] == [ev.PupilLeft]


def test_accepted_command_records_its_payload() -> None:
    p = story_until("registered")
    result = p.ok("raise_concern", {"source": "parent"}, "2024-09-03")
    (event,) = result.events
    assert isinstance(event, ev.ConcernRaised) and event.source == "parent"
    assert p.facts[-1].data == event
    assert p.state.concerns_raised == 1


def test_a_rejection_names_rule_paragraph_and_remedy() -> None:
    p = story_until("assessed")
    rejection = p.run("start_sen_support", {"parents_notified": False}, "2024-09-16")
    assert isinstance(rejection, Rejection)
    rule = RULES["parents_notified_before_sen_support"]
    assert rejection.rule == rule.name
    assert rejection.paragraph == "6.48" == rule.basis
    assert rejection.remedy == rule.remedy and rejection.remedy
    assert rejection.message.startswith(rule.text)
    assert rejection.field == "payload.parents_notified"
    assert len(p.facts) == 4  # nothing recorded


def test_a_rejection_message_carries_the_detail() -> None:
    p = story_until("sen_support")
    rejection = rejected(p.run("start_sen_support", {}, "2024-10-01"), "one_sen_provision_open")
    assert rejection.message == f"{RULES['one_sen_provision_open'].text} Open provision: K."


def test_a_warning_names_rule_paragraph_and_remedy() -> None:
    p = story_until("sen_support")
    result = p.run("hold_parent_meeting", {"record_given_to_parents": False}, "2024-10-01")
    (warning,) = accepted(result).warnings
    rule = RULES["meeting_record_given_to_parents"]
    assert (warning.rule, warning.paragraph) == (rule.name, "6.71")
    assert warning.message == f"{rule.text} {rule.remedy}"


def test_decide_is_pure() -> None:
    p = story_until("intervention")
    state_before, facts_before = p.state, list(p.facts)
    command = p.command("hold_review", {}, "2024-12-10")
    first = p.decide(command)
    assert p.decide(command) == first
    assert p.state == state_before and p.facts == facts_before


def test_the_rule_book() -> None:
    assert all(name == rule.name for name, rule in RULES.items())
    assert all(rule.text and rule.remedy and rule.basis for rule in RULES.values())
    shoulds = {n for n, r in RULES.items() if r.severity is Severity.SHOULD}
    assert shoulds == SHOULD_RULES


SHOULD_RULES = {
    "assessment_before_sen_support",
    "parents_involved_before_sen_support",
    "plan_agreed_with_parents_and_pupil",
    "staff_informed_of_plan",
    "entry_and_exit_measures",
    "review_on_agreed_date",
    "review_with_pupil_views",
    "review_with_parent_views",
    "three_parent_meetings_a_year",
    "meeting_record_given_to_parents",
    "ehc_annual_review_on_time",
}


# --- every rule is exercised --------------------------------------------------------------


def _rules_asserted_in_this_file() -> set[str]:
    """Rule names passed to rejected()/warned()/not_warned(), or to a parametrised test of them.

    A name counts when it appears as a string constant in a test function that
    calls rejected() or warned(), or in that test's parametrize decorator.
    """
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        calls = {
            n.func.id
            for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        if not calls & {"rejected", "warned"}:
            continue
        for n in ast.walk(node):  # the body and the decorators
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                found.add(n.value)
    return found & set(RULES)


def test_every_rule_is_exercised() -> None:
    missing = set(RULES) - _rules_asserted_in_this_file()
    assert not missing, f"rules with no test: {sorted(missing)}"


def test_every_must_has_a_rejection_test() -> None:
    musts = {n for n, r in RULES.items() if r.severity is Severity.MUST}
    assert musts <= _rules_asserted_in_this_file()
