"""A realistic demo multi-academy trust, generated through the real command path.

Every pupil's history is a list of ordinary commands run through
``SenflowService.handle``, so every rule of the workflow applies to the demo
exactly as to a school's own records. The shape follows England: about 12% of
pupils on SEN support and 4% with EHC plans, the national need mix (speech and
language most common on SEN support, autism on EHC plans), termly
plan-do-review cycles of six-week interventions with entry and exit measures,
a parent meeting a term, some reviews late, some pupils leaving during the
year and some joining. The same seed gives the same trust: ids are derived
from it, so running the demo twice records nothing new.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid5

import structlog

from senflow.events.codes import upn_check_letter
from senflow.services.application import SenflowService
from senflow.services.workflow.commands import parse_command

log = structlog.get_logger(__name__)

_NS = UUID("9a7c2f64-5b8e-4d1a-9c3e-2f0b7d6e4a11")

# Primary need on SEN support and on EHC plans, England (rounded percentages).
SUPPORT_NEEDS = {
    "SLCN": 25,
    "SEMH": 20,
    "MLD": 17,
    "SPLD": 13,
    "ASD": 8,
    "OTH": 4,
    "NSA": 4,
    "PD": 3,
    "HI": 2,
    "VI": 2,
    "SLD": 1,
    "MSI": 1,
}
EHC_NEEDS = {
    "ASD": 33,
    "SLCN": 22,
    "SEMH": 15,
    "SLD": 8,
    "MLD": 6,
    "PD": 5,
    "SPLD": 3,
    "PMLD": 2,
    "HI": 2,
    "OTH": 2,
    "VI": 1,
    "MSI": 1,
}

# name, delivery, staff, sessions/week, minutes, cost per pupil per 6-week block (pence),
# instrument, typical gain (weak interventions show up in the provision map)
INTERVENTIONS: dict[str, list[tuple[str, str, str, int, int, int, str, float]]] = {
    "SLCN": [
        ("Talk Boost", "small_group", "teaching_assistant", 3, 30, 9000, "WellComm", 6.0),
        ("Language Link", "one_to_one", "teaching_assistant", 3, 20, 18000, "WellComm", 4.0),
        ("NELI", "small_group", "teaching_assistant", 3, 30, 8000, "WellComm", 7.0),
    ],
    "SEMH": [
        ("ELSA", "one_to_one", "teaching_assistant", 1, 45, 15000, "Boxall profile", 5.0),
        ("Lego therapy", "small_group", "teaching_assistant", 1, 45, 6000, "Boxall profile", 1.0),
        ("Zones of Regulation", "small_group", "teaching", 2, 30, 5000, "SDQ", 3.0),
    ],
    "COGNITION": [
        (
            "Precision teaching",
            "one_to_one",
            "teaching_assistant",
            5,
            10,
            12000,
            "Standardised reading score",
            5.0,
        ),
        (
            "Toe by Toe",
            "one_to_one",
            "teaching_assistant",
            3,
            20,
            14000,
            "Standardised reading score",
            4.0,
        ),
        (
            "Numicon",
            "small_group",
            "teaching_assistant",
            3,
            30,
            7000,
            "Standardised maths score",
            3.0,
        ),
        (
            "Reading recovery lite",
            "one_to_one",
            "teacher",
            5,
            30,
            40000,
            "Standardised reading score",
            2.0,
        ),
    ],
    "SENSORY": [
        (
            "Fine motor skills group",
            "small_group",
            "teaching_assistant",
            2,
            20,
            4000,
            "Beery VMI",
            3.0,
        ),
        (
            "Specialist teacher support",
            "one_to_one",
            "specialist",
            1,
            60,
            30000,
            "Functional vision profile",
            2.0,
        ),
    ],
}
_FAMILY = {
    "SLCN": "SLCN",
    "ASD": "SLCN",
    "SEMH": "SEMH",
    "MLD": "COGNITION",
    "SPLD": "COGNITION",
    "SLD": "COGNITION",
    "PMLD": "COGNITION",
    "OTH": "COGNITION",
    "NSA": "COGNITION",
    "HI": "SENSORY",
    "VI": "SENSORY",
    "MSI": "SENSORY",
    "PD": "SENSORY",
}
_AREA = {
    "SLCN": "communication_and_interaction",
    "SEMH": "social_emotional_mental_health",
    "COGNITION": "cognition_and_learning",
    "SENSORY": "sensory_and_physical",
}
_STAFF = {
    "teaching": "teacher",
    "teacher": "teacher",
    "teaching_assistant": "teaching_assistant",
    "specialist": "specialist",
}

# (cycle start, review date) per term: plans are agreed early in a term and reviewed at its end
_TERMS = (((9, 29), (12, 12)), ((1, 12), (3, 27)), ((4, 26), (7, 15)))


@dataclass(frozen=True)
class DemoSpec:
    schools: int = 3
    pupils_per_school: int = 200
    years: int = 1
    seed: int = 1
    trust_id: str = "trust-demo"


@dataclass
class DemoReport:
    pupils: int = 0
    commands: int = 0
    events: int = 0
    already: int = 0
    sen_support: int = 0
    ehc_plans: int = 0
    leavers: int = 0
    warnings: dict[str, int] = field(default_factory=dict)


def _weighted(rng: random.Random, table: dict[str, int]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def school_urns(spec: DemoSpec) -> list[str]:
    rng = random.Random(f"{spec.seed}:schools")
    return sorted({f"{rng.randrange(100000, 150000):06d}" for _ in range(spec.schools * 3)})[
        : spec.schools
    ]


class _Pupil:
    """Builds one pupil's commands in date order."""

    def __init__(self, spec: DemoSpec, school: int, urn: str, n: int, today: date) -> None:
        self.rng = random.Random(f"{spec.seed}:{urn}:{n}")
        self.id = uuid5(_NS, f"{spec.seed}:{spec.trust_id}:{urn}:{n}")
        self.urn, self.trust, self.today = urn, spec.trust_id, today
        self.commands: list[dict[str, Any]] = []
        self.primary = school % 2 == 0  # alternate primary and secondary academies
        self.serial = n

    def add(self, name: str, day: date, role: str, payload: dict[str, Any], **kw: Any) -> bool:
        if day > self.today:
            return False
        self.commands.append(
            {
                "command": name,
                "command_id": str(uuid5(self.id, f"{len(self.commands)}:{name}")),
                "pupil_id": str(self.id),
                "occurred_at": day.isoformat(),
                "actor": {"user_id": f"{role}.{self.urn}", "role": role},
                "payload": payload,
                **kw,
            }
        )
        return True

    def upn(self) -> str:
        body = (
            f"{int(self.urn) % 900 + 100:03d}{int(self.urn) % 10000:04d}"
            f"{self.rng.randrange(10, 25):02d}{self.serial % 1000:03d}"
        )
        return upn_check_letter(body) + body


def _register(p: _Pupil, day: date) -> None:
    year = p.rng.randrange(1, 7) if p.primary else p.rng.randrange(7, 12)
    birth_year = day.year - year - 5 - (1 if day.month < 9 else 0)
    p.add(
        "register_pupil",
        day,
        "integration",
        {
            "upn": p.upn(),
            "forename": p.rng.choice(
                [
                    "Amy",
                    "Ben",
                    "Chloe",
                    "Dev",
                    "Ella",
                    "Finn",
                    "Grace",
                    "Hari",
                    "Isla",
                    "Jack",
                    "Kai",
                ]
            ),
            "surname": p.rng.choice(["Jones", "Khan", "Smith", "Patel", "Brown", "Nowak", "Evans"]),
            "date_of_birth": date(
                birth_year, p.rng.randrange(1, 13), p.rng.randrange(1, 28)
            ).isoformat(),
            "year_group": str(year),
            "on_roll_from": day.isoformat(),
            "mis_id": f"MIS-{p.urn}-{p.serial:05d}",
        },
        tenant={"trust_id": p.trust, "school_urn": p.urn},
    )


def _identify(p: _Pupil, day: date, need: str) -> date:
    family = _FAMILY[need]
    p.add(
        "raise_concern",
        day,
        "class_teacher",
        {
            "source": "class_teacher",
            "area": _AREA[family],
            "description": "Noticed in class; raised with the SENCO.",
        },
    )
    p.add(
        "record_parent_views",
        day + timedelta(days=4),
        "senco",
        {"context": "assessment", "views": "Parents share the school's concern."},
    )
    p.add(
        "record_pupil_views",
        day + timedelta(days=5),
        "class_teacher",
        {"context": "assessment", "method": "conversation", "views": "Finds some lessons hard."},
    )
    p.add(
        "record_assessment",
        day + timedelta(days=7),
        "senco",
        {
            "kind": "screener",
            "area": _AREA[family],
            "standardised_score": p.rng.randrange(70, 85),
            "summary": "Below age expectations.",
        },
    )
    return day + timedelta(days=8)


def _cycle(p: _Pupil, start: date, review: date, next_review: date, need: str, cycle: int) -> bool:
    """One plan-do-review cycle; False once the dates run past today."""
    family = _FAMILY[need]
    options = INTERVENTIONS[family]
    chosen = p.rng.sample(options, k=1 if p.rng.random() < 0.5 else min(2, len(options)))
    plan_id = str(uuid5(p.id, f"plan-{cycle}"))
    provisions = [
        {
            "provision_id": f"P{i + 1}",
            "name": name,
            "delivery": delivery,
            "staff_role": _STAFF[staff],
            "sessions_per_week": per_week,
            "minutes_per_session": minutes,
            "weeks": 6,
            "group_size": 1 if delivery == "one_to_one" else 4,
            "cost_pence": cost,
            "outcome_ids": ["O1"],
        }
        for i, (name, delivery, staff, per_week, minutes, cost, _, _) in enumerate(chosen)
    ]
    if not p.add(
        "agree_plan",
        start,
        "senco",
        {
            "plan_id": plan_id,
            "outcomes": [{"outcome_id": "O1", "description": "Closes the gap."}],
            "provisions": provisions,
            "expected_impact": "Measurable progress in six weeks.",
            "review_date": review.isoformat(),
            "agreed_by": ["senco", "class_teacher", "parent", "pupil"],
            "staff_informed": True,
            "staff_informed_on": start.isoformat(),
        },
    ):
        return False
    impacts, begin = [], start + timedelta(days=4)
    for i, (_, _, _, _, minutes, _, instrument, gain) in enumerate(chosen):
        iid = str(uuid5(p.id, f"intervention-{cycle}-{i}"))
        entry = float(p.rng.randrange(70, 88))
        p.add(
            "start_intervention",
            begin,
            "teaching_assistant",
            {
                "intervention_id": iid,
                "plan_id": plan_id,
                "provision_id": f"P{i + 1}",
                "entry_measure": {"instrument": instrument, "value": entry},
            },
        )
        for week in range(6):
            p.add(
                "record_intervention_session",
                begin + timedelta(days=7 * week + 1),
                "teaching_assistant",
                {"intervention_id": iid, "minutes": minutes, "attended": p.rng.random() > 0.08},
            )
        change = round(p.rng.gauss(gain, 2.0))
        ended = p.add(
            "end_intervention",
            begin + timedelta(days=42),
            "teaching_assistant",
            {
                "intervention_id": iid,
                "exit_measure": {"instrument": instrument, "value": entry + change},
            },
        )
        if ended:
            rating = (
                "strong"
                if change >= 6
                else "good"
                if change >= 3
                else "limited"
                if change >= 1
                else "none"
            )
            impacts.append({"intervention_id": iid, "impact": rating, "keep": change >= 3})
    if p.rng.random() < 0.9:
        p.add(
            "hold_parent_meeting",
            start + timedelta(days=p.rng.randrange(20, 50)),
            "class_teacher",
            {
                "attendees": ["class_teacher", "parent"],
                "summary": "Progress shared; next steps agreed.",
                "record_given_to_parents": p.rng.random() > 0.05,
            },
        )
    if review.month == 7 and p.rng.random() < 0.95:  # the statutory annual report (6.64)
        _annual_report(p, review - timedelta(days=5))
    held = review + timedelta(days=p.rng.randrange(7, 22) if p.rng.random() < 0.1 else 0)
    ends = cycle >= 2 and p.rng.random() < 0.15
    return (
        p.add(
            "hold_review",
            held,
            "senco",
            {
                "plan_id": plan_id,
                "outcome_progress": [
                    {
                        "outcome_id": "O1",
                        "rating": p.rng.choice(
                            ["partially_met", "met", "met", "not_met", "exceeded"]
                        ),
                    }
                ],
                "intervention_impact": impacts,
                "pupil_views": "Likes the group." if p.rng.random() > 0.1 else None,
                "parent_views": "Happy with support." if p.rng.random() > 0.1 else None,
                "decision": "end_sen_support"
                if ends
                else p.rng.choice(["continue", "revise_plan"]),
                "next_review_date": None if ends else next_review.isoformat(),
            },
        )
        and not ends
    )


def _terms_from(start: date, today: date) -> list[tuple[date, date]]:
    out, year = [], start.year if start.month >= 9 else start.year - 1
    while date(year, 9, 1) <= today:
        for (sm, sd), (rm, rd) in _TERMS:
            y = year if sm >= 9 else year + 1
            ry = year if rm >= 9 else year + 1
            out.append((date(y, sm, sd), date(ry, rm, rd)))
        year += 1
    return [(s, r) for s, r in out if s >= start]


def _needs(p: _Pupil, table: dict[str, int], nsa_allowed: bool) -> list[dict[str, Any]]:
    primary = _weighted(p.rng, table)
    needs = [{"type": primary, "rank": 1}]
    if p.rng.random() < 0.3:
        second = _weighted(p.rng, table)
        if second != primary and (nsa_allowed or second != "NSA"):
            needs.append({"type": second, "rank": 2})
    return needs


def pupil_commands(
    spec: DemoSpec, school: int, urn: str, n: int, first_day: date, today: date
) -> tuple[list[dict[str, Any]], str]:
    """One pupil's history as commands, and what kind of pupil they are."""
    p = _Pupil(spec, school, urn, n, today)
    joins_late = p.rng.random() < 0.05
    on_roll = first_day + timedelta(
        days=p.rng.randrange(30, 200) if joins_late else p.rng.randrange(0, 4)
    )
    _register(p, on_roll)
    roll = p.rng.random()
    kind = "ehc" if roll < 0.04 else "support" if roll < 0.16 else "none"
    if kind != "none":
        needs = _needs(p, SUPPORT_NEEDS, nsa_allowed=True)
        day = _identify(p, on_roll + timedelta(days=14), needs[0]["type"])
        p.add(
            "start_sen_support",
            day,
            "senco",
            {
                "needs": needs,
                "parents_notified": True,
                "parents_notified_on": (day - timedelta(days=1)).isoformat(),
                "notification_method": "meeting",
            },
        )
        terms = _terms_from(day + timedelta(days=3), today)
        if kind == "ehc":
            _ehc(p, day, terms)
        else:
            for cycle, (start, review) in enumerate(terms):
                following = (
                    terms[cycle + 1][1] if cycle + 1 < len(terms) else review + timedelta(days=91)
                )
                if not _cycle(p, start, review, following, needs[0]["type"], cycle):
                    break
    if p.rng.random() < 0.03:
        leave = on_roll + timedelta(days=p.rng.randrange(60, 360))
        kept = [c for c in p.commands if date.fromisoformat(c["occurred_at"]) < leave]
        p.commands = kept
        p.add("record_pupil_left", leave, "integration", {"destination": "moved_away"})
        kind += "+left"
    # chronological (stable: a command never precedes what it depends on the same day)
    return sorted(p.commands, key=lambda c: c["occurred_at"]), kind


def _annual_report(p: _Pupil, day: date) -> None:
    start = day.year if day.month >= 9 else day.year - 1
    p.add(
        "record_annual_report", day, "senco", {"academic_year": f"{start}/{(start + 1) % 100:02d}"}
    )


def _ehc(p: _Pupil, supported: date, terms: list[tuple[date, date]]) -> None:
    for year in range(supported.year, p.today.year + 1):
        if date(year, 7, 10) > supported and p.rng.random() < 0.95:
            _annual_report(p, date(year, 7, 10))
    for start, _ in terms:  # parents are met once a term, EHC plan or not
        if p.rng.random() < 0.9:
            p.add(
                "hold_parent_meeting",
                start + timedelta(days=p.rng.randrange(10, 40)),
                "senco",
                {
                    "attendees": ["senco", "parent"],
                    "summary": "Termly catch-up.",
                    "record_given_to_parents": True,
                },
            )
    request = supported + timedelta(days=21)
    p.add(
        "request_ehc_needs_assessment",
        request,
        "senco",
        {
            "requested_by": "school",
            "local_authority": f"{int(p.urn) % 900 + 100:03d}",
            "evidence_summary": "Limited progress despite targeted support.",
        },
    )
    p.add(
        "decide_ehc_needs_assessment",
        request + timedelta(days=42),
        "senco",
        {"decision": "agreed_to_assess", "la_reference": f"EHC-{p.urn}-{p.serial}"},
    )
    issued = request + timedelta(days=140)
    first_due = issued + timedelta(days=330)
    if not p.add(
        "issue_ehc_plan",
        issued,
        "senco",
        {
            "la_reference": f"EHC-{p.urn}-{p.serial}",
            "needs": _needs(p, EHC_NEEDS, nsa_allowed=False),
            "first_review_due": first_due.isoformat(),
            "provision_summary": "Daily small-group and specialist input.",
        },
    ):
        return
    review = first_due + timedelta(days=p.rng.randrange(15, 40) if p.rng.random() < 0.1 else 0)
    while p.add(
        "hold_ehc_annual_review",
        review,
        "senco",
        {
            "recommendation": "maintain",
            "next_review_due": (review + timedelta(days=330)).isoformat(),
            "pupil_views": "Settled.",
            "parent_views": "Good progress.",
        },
    ):
        review += timedelta(days=330)


async def generate(
    service: SenflowService,
    spec: DemoSpec,
    today: date,
    progress: Callable[[DemoReport], None] | None = None,
    concurrency: int = 8,
) -> DemoReport:
    """Record the demo trust; returns what was recorded (re-running records nothing new)."""
    academic = today.year if today.month >= 9 else today.year - 1
    first_day = date(academic - spec.years, 9, 2)
    report = DemoReport()
    pupils = [
        (s, urn, n)
        for s, urn in enumerate(school_urns(spec))
        for n in range(spec.pupils_per_school)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def one(school: int, urn: str, n: int) -> None:
        commands, kind = pupil_commands(spec, school, urn, n, first_day, today)
        async with gate:
            for raw in commands:
                result = await service.handle(parse_command(raw))
                if not result.accepted:
                    raise RuntimeError(f"demo command refused: {raw['command']} {result.rejection}")
                report.commands += 1
                report.events += 0 if result.duplicate else len(result.events)
                report.already += 1 if result.duplicate else 0
                for w in result.warnings:
                    report.warnings[w.rule] = report.warnings.get(w.rule, 0) + 1
        report.pupils += 1
        report.sen_support += kind.startswith("support")
        report.ehc_plans += kind.startswith("ehc")
        report.leavers += kind.endswith("+left")
        if progress and report.pupils % 100 == 0:
            progress(report)

    await asyncio.gather(*(one(*p) for p in pupils))
    log.info("demo_recorded", pupils=report.pupils, events=report.events)
    return report
