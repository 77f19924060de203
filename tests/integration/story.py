"""One pupil's whole graduated-approach story, as commands (also examples/one_pupil.jsonl).

Year 3 pupil; a teacher's concern in September 2024, SEN support for speech
and language from October, two plan-do-review cycles, a speech and language
therapist, an EHC needs assessment, an EHC plan in October 2025 and its first
annual review in September 2026.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

TENANT = {"trust_id": "trust-7", "school_urn": "123456"}
EXAMPLE_PUPIL = UUID("7b0c1a8e-3b9d-4f47-9d3f-0a4b1f1f8c11")


def ids(pupil: UUID) -> dict[str, str]:
    return {name: str(uuid5(pupil, name)) for name in ("plan1", "plan2", "i1", "i2", "i3")}


def _cmd(
    pupil: UUID, n: int, name: str, day: str, role: str, payload: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    return {
        "command": name,
        "command_id": str(uuid5(pupil, f"command-{n}")),
        "pupil_id": str(pupil),
        "occurred_at": day,
        "actor": {"user_id": f"{role}.1", "role": role},
        "payload": payload,
        **kw,
    }


def _provision(
    pid: str, name: str, delivery: str, per_week: int, minutes: int, cost: int, outcomes: list[str]
) -> dict[str, Any]:
    return {
        "provision_id": pid,
        "name": name,
        "delivery": delivery,
        "staff_role": "teaching_assistant",
        "sessions_per_week": per_week,
        "minutes_per_session": minutes,
        "weeks": 10,
        "group_size": 1 if delivery == "one_to_one" else 4,
        "cost_pence": cost,
        "outcome_ids": outcomes,
    }


def _measure(instrument: str, value: float, unit: str = "standardised_score") -> dict[str, Any]:
    return {"instrument": instrument, "value": value, "unit": unit}


def story(pupil: UUID, upn: str = "B801200005001") -> list[dict[str, Any]]:
    """The commands in order; each has a stable command_id so re-running is a no-op."""
    i = ids(pupil)
    steps: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
        (
            "register_pupil",
            "2024-09-05",
            "integration",
            {
                "upn": upn,
                "forename": "Amy",
                "surname": "Jones",
                "date_of_birth": "2017-03-14",
                "year_group": "3",
                "on_roll_from": "2021-09-01",
                "mis_id": "SIMS-4411",
            },
            {"tenant": TENANT},
        ),
        (
            "raise_concern",
            "2024-09-20",
            "class_teacher",
            {
                "source": "class_teacher",
                "area": "communication_and_interaction",
                "description": "Amy struggles to follow two-step instructions and rarely speaks "
                "in group work.",
            },
            {},
        ),
        (
            "record_parent_views",
            "2024-09-25",
            "senco",
            {
                "context": "assessment",
                "views": "Mum has noticed Amy finds it hard to explain her day.",
            },
            {},
        ),
        (
            "record_pupil_views",
            "2024-09-26",
            "class_teacher",
            {
                "context": "assessment",
                "method": "conversation",
                "views": "Amy says words get stuck when everyone is listening.",
            },
            {},
        ),
        (
            "record_assessment",
            "2024-10-01",
            "senco",
            {
                "kind": "screener",
                "instrument": "WellComm",
                "area": "communication_and_interaction",
                "standardised_score": 78,
                "summary": "Receptive language well below age-related expectations.",
            },
            {},
        ),
        (
            "start_sen_support",
            "2024-10-08",
            "senco",
            {
                "needs": [{"type": "SLCN", "rank": 1}],
                "parents_notified": True,
                "parents_notified_on": "2024-10-07",
                "notification_method": "meeting",
            },
            {},
        ),
        (
            "agree_plan",
            "2024-10-10",
            "senco",
            {
                "plan_id": i["plan1"],
                "outcomes": [
                    {"outcome_id": "O1", "description": "Follows two-step instructions in class"},
                    {"outcome_id": "O2", "description": "Speaks in a small group at least once"},
                ],
                "provisions": [
                    _provision("P1", "Talk Boost", "small_group", 3, 30, 12000, ["O1", "O2"]),
                    _provision("P2", "Colourful semantics", "one_to_one", 2, 20, 20000, ["O1"]),
                ],
                "expected_impact": "WellComm score up by 6 points; joins group talk.",
                "review_date": "2025-01-20",
                "agreed_by": ["senco", "class_teacher", "parent", "pupil"],
                "staff_informed": True,
                "staff_informed_on": "2024-10-11",
            },
            {},
        ),
        (
            "start_intervention",
            "2024-10-14",
            "teaching_assistant",
            {
                "intervention_id": i["i1"],
                "plan_id": i["plan1"],
                "provision_id": "P1",
                "entry_measure": _measure("WellComm", 78),
            },
            {},
        ),
        (
            "start_intervention",
            "2024-10-14",
            "teaching_assistant",
            {
                "intervention_id": i["i2"],
                "plan_id": i["plan1"],
                "provision_id": "P2",
                "entry_measure": _measure("Sentence length", 4, "raw_score"),
            },
            {},
        ),
        (
            "record_intervention_session",
            "2024-10-15",
            "teaching_assistant",
            {"intervention_id": i["i1"], "minutes": 30},
            {},
        ),
        (
            "record_intervention_session",
            "2024-10-16",
            "teaching_assistant",
            {"intervention_id": i["i2"], "minutes": 20},
            {},
        ),
        (
            "hold_parent_meeting",
            "2024-11-05",
            "class_teacher",
            {
                "attendees": ["class_teacher", "parent", "senco"],
                "summary": "Talked through the plan; mum will practise instructions at home.",
                "record_given_to_parents": True,
            },
            {},
        ),
        (
            "end_intervention",
            "2024-12-16",
            "teaching_assistant",
            {"intervention_id": i["i1"], "exit_measure": _measure("WellComm", 86)},
            {},
        ),
        (
            "end_intervention",
            "2024-12-16",
            "teaching_assistant",
            {
                "intervention_id": i["i2"],
                "exit_measure": _measure("Sentence length", 5, "raw_score"),
            },
            {},
        ),
        (
            "hold_parent_meeting",
            "2025-01-13",
            "senco",
            {
                "attendees": ["senco", "parent"],
                "summary": "Shared exit measures.",
                "record_given_to_parents": True,
            },
            {},
        ),
        (
            "hold_review",
            "2025-01-20",
            "senco",
            {
                "plan_id": i["plan1"],
                "outcome_progress": [
                    {"outcome_id": "O1", "rating": "met"},
                    {"outcome_id": "O2", "rating": "partially_met"},
                ],
                "intervention_impact": [
                    {"intervention_id": i["i1"], "impact": "good", "keep": True},
                    {"intervention_id": i["i2"], "impact": "limited", "keep": False},
                ],
                "pupil_views": "Talk Boost is fun.",
                "parent_views": "Happier about school.",
                "decision": "revise_plan",
                "next_review_date": "2025-04-28",
            },
            {},
        ),
        (
            "agree_plan",
            "2025-01-22",
            "senco",
            {
                "plan_id": i["plan2"],
                "outcomes": [
                    {"outcome_id": "O2", "description": "Speaks in a small group weekly"},
                    {"outcome_id": "O3", "description": "Retells a short story in order"},
                ],
                "provisions": [
                    _provision("P3", "Language Link", "one_to_one", 3, 20, 25000, ["O2", "O3"])
                ],
                "expected_impact": "Narrative score up by 2 points.",
                "review_date": "2025-04-28",
                "agreed_by": ["senco", "class_teacher", "parent", "pupil"],
                "staff_informed": True,
                "staff_informed_on": "2025-01-23",
            },
            {},
        ),
        (
            "start_intervention",
            "2025-01-27",
            "teaching_assistant",
            {
                "intervention_id": i["i3"],
                "plan_id": i["plan2"],
                "provision_id": "P3",
                "entry_measure": _measure("Narrative score", 3, "raw_score"),
            },
            {},
        ),
        (
            "involve_specialist",
            "2025-02-03",
            "senco",
            {
                "specialist": "speech_and_language_therapist",
                "parental_consent": True,
                "consent_given_on": "2025-01-30",
                "reason": "Progress on O2 is slow.",
            },
            {},
        ),
        (
            "hold_parent_meeting",
            "2025-03-24",
            "class_teacher",
            {
                "attendees": ["class_teacher", "parent", "specialist"],
                "summary": "SALT advice shared.",
                "record_given_to_parents": True,
            },
            {},
        ),
        (
            "end_intervention",
            "2025-04-07",
            "teaching_assistant",
            {
                "intervention_id": i["i3"],
                "exit_measure": _measure("Narrative score", 4, "raw_score"),
            },
            {},
        ),
        (
            "hold_review",
            "2025-04-28",
            "senco",
            {
                "plan_id": i["plan2"],
                "outcome_progress": [
                    {"outcome_id": "O2", "rating": "not_met"},
                    {"outcome_id": "O3", "rating": "partially_met"},
                ],
                "intervention_impact": [
                    {"intervention_id": i["i3"], "impact": "limited", "keep": True}
                ],
                "pupil_views": "Still hard to talk in groups.",
                "parent_views": "We would like more help.",
                "decision": "request_ehc_needs_assessment",
                "next_review_date": "2025-07-14",
            },
            {},
        ),
        (
            "request_ehc_needs_assessment",
            "2025-05-06",
            "senco",
            {
                "requested_by": "school",
                "local_authority": "886",
                "evidence_summary": "Two cycles of SEN support with limited progress.",
            },
            {},
        ),
        (
            "decide_ehc_needs_assessment",
            "2025-06-20",
            "senco",
            {"decision": "agreed_to_assess", "la_reference": "KCC-2025-0113"},
            {},
        ),
        (
            "issue_ehc_plan",
            "2025-10-15",
            "senco",
            {
                "la_reference": "KCC-2025-0113",
                "needs": [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}],
                "first_review_due": "2026-10-01",
            },
            {},
        ),
        (
            "hold_ehc_annual_review",
            "2026-09-25",
            "senco",
            {
                "recommendation": "maintain",
                "next_review_due": "2027-09-01",
                "pupil_views": "I like my new group.",
                "parent_views": "Good year.",
            },
            {},
        ),
    ]
    return [
        _cmd(pupil, n, name, day, role, payload, **kw)
        for n, (name, day, role, payload, kw) in enumerate(steps)
    ]


def secondary_need_correction(pupil: UUID, started: Any) -> dict[str, Any]:
    """A SENCO's late correction of ``started`` (the sen_support_started event, SLCN only):
    the secondary need SEMH was left off the form."""
    return {
        "command": "correct_record",
        "pupil_id": str(pupil),
        "occurred_at": "2025-01-05",
        "actor": {"user_id": "senco.1", "role": "senco"},
        "payload": {
            "corrects_event_id": str(started.event_id),
            "reason": "Secondary need was left off the form.",
            "replacement": {
                **started.data.model_dump(mode="json"),
                "needs": [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}],
            },
        },
    }
