"""A few dozen pupils of two schools with varied provision and needs, as commands.

Each pupil follows one of ``KINDS`` (no SEN, a concern only, SEN support with
one or two needs or NSA, needs reclassified, support ended, an EHC plan, moved
to the other school, left), so the census and CTF tests meet every case the
census rules care about. ``expected_on`` says what the census should show.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid5

from tests.integration.helpers import upn

KINDS = (
    "none",
    "concern_only",
    "k_one",
    "k_two",
    "k_nsa",
    "k_reclassified",
    "k_ended",
    "ehc",
    "k_transferred",
    "k_left",
)
FIRST_NEEDS = ("SLCN", "SEMH", "MLD", "SPLD", "ASD", "OTH", "PD", "HI")
AUTUMN = date(2025, 10, 2)
SPRING = date(2026, 1, 15)
LEFT_TO = "765432"


def pupil_id(trust: str, n: int) -> UUID:
    return uuid5(UUID("5b1f0e4c-2f7d-4c39-8a31-3c0e9d6a7b21"), f"{trust}:{n}")


def kind_of(n: int) -> str:
    return KINDS[n % len(KINDS)]


def school_of(n: int, schools: tuple[str, str]) -> str:
    return schools[(n // len(KINDS)) % 2]


def needs_of(n: int) -> list[dict[str, Any]]:
    kind, first = kind_of(n), FIRST_NEEDS[n % len(FIRST_NEEDS)]
    if kind == "k_nsa":
        return [{"type": "NSA", "rank": 1}]
    if kind == "k_two":
        second = "SEMH" if first != "SEMH" else "SLCN"
        return [{"type": first, "rank": 1}, {"type": second, "rank": 2}]
    return [{"type": first, "rank": 1}]


def commands(trust: str, schools: tuple[str, str], n: int) -> list[dict[str, Any]]:
    pid, kind, school = pupil_id(trust, n), kind_of(n), school_of(n, schools)
    other = schools[1] if school == schools[0] else schools[0]
    out: list[dict[str, Any]] = []

    def cmd(name: str, day: str, payload: dict[str, Any], role: str = "senco", **kw: Any) -> None:
        out.append(
            {
                "command": name,
                "command_id": str(uuid5(pid, f"{len(out)}")),
                "pupil_id": str(pid),
                "occurred_at": day,
                "actor": {"user_id": f"{role}.{n % 3}", "role": role},
                "payload": payload,
                **kw,
            }
        )

    cmd(
        "register_pupil",
        "2025-09-03",
        {
            "upn": upn(5000 + n),
            "forename": f"Pupil{n}",
            "surname": "Test",
            "date_of_birth": "2016-05-01",
            "year_group": str(3 + n % 4),
            "on_roll_from": "2022-09-01",
        },
        role="integration",
        tenant={"trust_id": trust, "school_urn": school},
    )
    if kind == "none":
        return out
    cmd("raise_concern", "2025-09-10", {"source": "class_teacher", "description": "Concern."})
    if kind == "concern_only":
        return out
    cmd("record_assessment", "2025-09-12", {"kind": "observation", "summary": "Observed."})
    cmd("record_parent_views", "2025-09-12", {"context": "assessment", "views": "Agree."})
    cmd(
        "record_pupil_views",
        "2025-09-12",
        {"context": "assessment", "method": "conversation", "views": "Fine."},
    )
    cmd(
        "start_sen_support",
        "2025-09-22",
        {"needs": needs_of(n), "parents_notified": True, "parents_notified_on": "2025-09-19"},
    )
    plan, intervention = str(uuid5(pid, "plan")), str(uuid5(pid, "intervention"))
    cmd(
        "agree_plan",
        "2025-09-24",
        {
            "plan_id": plan,
            "outcomes": [{"outcome_id": "O1", "description": "An outcome."}],
            "provisions": [
                {
                    "provision_id": "P1",
                    "name": ("Talk Boost", "Precision teaching", "Lego therapy")[n % 3],
                    "delivery": "small_group",
                    "staff_role": "teaching_assistant",
                    "sessions_per_week": 3,
                    "minutes_per_session": 30,
                    "weeks": 8,
                    "group_size": 4,
                    "cost_pence": 10000 + 100 * n,
                    "outcome_ids": ["O1"],
                }
            ],
            "expected_impact": "Progress.",
            "review_date": "2025-12-10",
            "agreed_by": ["senco", "parent", "pupil"],
            "staff_informed": True,
            "staff_informed_on": "2025-09-25",
        },
    )
    measure = {"instrument": "Score", "unit": "standardised_score"}
    cmd(
        "start_intervention",
        "2025-09-29",
        {
            "intervention_id": intervention,
            "plan_id": plan,
            "provision_id": "P1",
            "entry_measure": {**measure, "value": 80 + n % 5},
        },
    )
    if kind == "k_reclassified":
        cmd(
            "reclassify_needs",
            "2025-11-05",
            {"needs": [{"type": "MLD", "rank": 1}, {"type": "SEMH", "rank": 2}], "reason": "EP."},
        )
    if kind == "k_left":
        cmd(
            "record_pupil_left",
            "2025-11-25",
            {"destination": "school_outside_trust", "destination_urn": LEFT_TO},
            role="integration",
        )
        return out
    cmd(
        "end_intervention",
        "2025-11-28",
        {"intervention_id": intervention, "exit_measure": {**measure, "value": 84 + n % 7}},
    )
    if kind == "k_transferred":
        cmd("transfer_pupil", "2025-11-20", {"from_urn": school, "to_urn": other})
    cmd(
        "hold_review",
        "2025-12-10",
        {
            "plan_id": plan,
            "outcome_progress": [{"outcome_id": "O1", "rating": "met"}],
            "intervention_impact": [
                {
                    "intervention_id": intervention,
                    "impact": ("good", "limited")[n % 2],
                    "keep": True,
                }
            ],
            "pupil_views": "Good.",
            "parent_views": "Pleased.",
            "decision": "continue",
            "next_review_date": "2026-03-20",
        },
    )
    if kind == "k_ended":
        cmd("end_sen_support", "2025-12-15", {"reason": "needs_met"})
    if kind == "ehc":
        cmd(
            "request_ehc_needs_assessment",
            "2025-10-01",
            {"requested_by": "school", "local_authority": "886", "evidence_summary": "Slow."},
        )
        cmd("decide_ehc_needs_assessment", "2025-11-01", {"decision": "agreed_to_assess"})
        cmd(
            "issue_ehc_plan",
            "2025-12-01",
            {
                "la_reference": f"LA-{n}",
                "needs": [{"type": "ASD", "rank": 1}, {"type": "SLCN", "rank": 2}],
                "first_review_due": "2026-11-01",
            },
        )
    return sorted(out, key=lambda c: c["occurred_at"])


def expected_on(n: int, day: date, schools: tuple[str, str]) -> dict[str, Any] | None:
    """The census row (school, provision, need types by rank) of pupil ``n`` on ``day``."""
    kind, school = kind_of(n), school_of(n, schools)
    other = schools[1] if school == schools[0] else schools[0]
    if kind in ("none", "concern_only"):
        return {"school": school, "provision": "N", "needs": []}
    if kind == "k_left" and day >= date(2025, 11, 25):
        return None
    types = [x["type"] for x in needs_of(n)]
    if day >= date(2025, 11, 5) and kind == "k_reclassified":
        types = ["MLD", "SEMH"]
    if day >= date(2025, 12, 15) and kind == "k_ended":
        return {"school": school, "provision": "N", "needs": []}
    if day >= date(2025, 12, 1) and kind == "ehc":
        return {"school": school, "provision": "E", "needs": ["ASD", "SLCN"]}
    if day >= date(2025, 11, 20) and kind == "k_transferred":
        school = other
    return {"school": school, "provision": "K", "needs": types}
