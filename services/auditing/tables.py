"""Register and provision map as spreadsheet tables (CSV), costed, per school and for the trust.

Rows come from the projections' own query helpers
(:func:`senflow.projections.register.register_rows`,
:func:`senflow.projections.provision_map.provision_rows`), so the CSVs agree
with ``senflow register`` and ``senflow provision-map``. Costs are in pounds
(two decimals) beside the pence they come from. Text cells that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``) are prefixed
with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from senflow.services.workflow.calendar import academic_year_start

Doc = dict[str, Any]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def pounds(pence: int | None) -> str | None:
    return None if pence is None else f"{pence / 100:.2f}"


def _in_year(row: Doc, ref: date) -> bool:
    start = academic_year_start(ref).isoformat()
    return bool(start <= row["started_on"] <= ref.isoformat())


REGISTER_COLUMNS = (
    "school_urn",
    "pupil_id",
    "upn",
    "year_group",
    "provision",
    "provision_start",
    "primary_need",
    "secondary_need",
    "next_review_date",
    "ehc_plan_since",
    "ehc_next_review_due",
    "review_overdue",
    "parent_meetings_this_year",
    "interventions_this_year",
    "provision_cost_this_year_gbp",
)


def register_table(
    register_rows: list[Doc], provision_rows: list[Doc], ref: date
) -> list[list[Any]]:
    """The register, one line a pupil on K or E, with the cost of their provision this year."""
    cost: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for p in provision_rows:
        if _in_year(p, ref):
            cost[p["pupil_id"]] += int(p["cost_pence"] or 0)
            count[p["pupil_id"]] += 1
    out: list[list[Any]] = [list(REGISTER_COLUMNS)]
    for r in register_rows:
        out.append(
            [
                r["school_urn"],
                r["pupil_id"],
                r["upn"],
                r["year_group"],
                r["provision"],
                r["provision_start"],
                r["primary_need"],
                r["secondary_need"],
                r["next_review_date"],
                r["ehc_plan_since"],
                r["ehc_next_review_due"],
                r["overdue"],
                r["parent_meetings_this_year"],
                count[r["pupil_id"]],
                pounds(cost[r["pupil_id"]]),
            ]
        )
    return out


PROVISION_COLUMNS = (
    "school_urn",
    "pupil_id",
    "year_group",
    "need",
    "intervention",
    "delivery",
    "staff_role",
    "sessions_per_week",
    "minutes_per_session",
    "weeks",
    "group_size",
    "planned_staff_hours",
    "cost_gbp",
    "cost_pence",
    "started_on",
    "ended_on",
    "end_reason",
    "sessions_attended",
    "delivered_minutes",
    "instrument",
    "entry",
    "exit",
    "change",
    "impact_rating",
    "keep",
    "intervention_id",
)


def provision_table(rows: list[Doc]) -> list[list[Any]]:
    """The provision map, one line an intervention, costed."""
    out: list[list[Any]] = [list(PROVISION_COLUMNS)]
    for r in rows:
        entry, exit_ = r["entry"] or {}, r["exit"] or {}
        out.append(
            [
                r["school_urn"],
                r["pupil_id"],
                r["year_group"],
                r["need"],
                r["name"],
                r["delivery"],
                r["staff_role"],
                r["sessions_per_week"],
                r["minutes_per_session"],
                r["weeks"],
                r["group_size"],
                r["planned_staff_hours"],
                pounds(r["cost_pence"]),
                r["cost_pence"],
                r["started_on"],
                r["ended_on"],
                r["end_reason"],
                r["sessions"],
                r["delivered_minutes"],
                entry.get("instrument"),
                entry.get("value"),
                exit_.get("value"),
                r["change"],
                r["impact_rating"],
                r["keep"],
                r["intervention_id"],
            ]
        )
    return out


TOTAL_COLUMNS = (
    "scope",
    "school_urn",
    "pupils_on_register",
    "on_sen_support",
    "with_ehc_plan",
    "interventions",
    "pupils_with_interventions",
    "planned_staff_hours",
    "delivered_hours",
    "cost_gbp",
    "cost_per_pupil_on_register_gbp",
)


def _staff_hours(row: Doc) -> float:
    minutes = row["planned_pupil_minutes"]
    return 0.0 if minutes is None else float(minutes) / int(row["group_size"]) / 60


def totals(register_rows: list[Doc], provision_rows: list[Doc]) -> list[Doc]:
    """Per school, then one line for all of them (the trust, or the scope asked for)."""
    schools = sorted(
        {r["school_urn"] for r in register_rows} | {p["school_urn"] for p in provision_rows},
        key=lambda s: s or "",
    )

    def line(scope: str, urn: str | None, reg: list[Doc], prov: list[Doc]) -> Doc:
        cost = sum(int(p["cost_pence"] or 0) for p in prov)
        return {
            "scope": scope,
            "school_urn": urn,
            "pupils_on_register": len(reg),
            "on_sen_support": sum(1 for r in reg if r["provision"] == "K"),
            "with_ehc_plan": sum(1 for r in reg if r["provision"] == "E"),
            "interventions": len(prov),
            "pupils_with_interventions": len({p["pupil_id"] for p in prov}),
            "planned_staff_hours": round(sum(_staff_hours(p) for p in prov), 2),
            "delivered_hours": round(sum(int(p["delivered_minutes"]) for p in prov) / 60, 2),
            "cost_pence": cost,
            "cost_per_pupil_on_register_pence": round(cost / len(reg)) if reg else None,
        }

    out = [
        line(
            "school",
            urn,
            [r for r in register_rows if r["school_urn"] == urn],
            [p for p in provision_rows if p["school_urn"] == urn],
        )
        for urn in schools
    ]
    out.append(line("all", None, register_rows, provision_rows))
    return out


def totals_table(lines: list[Doc]) -> list[list[Any]]:
    out: list[list[Any]] = [list(TOTAL_COLUMNS)]
    for t in lines:
        out.append(
            [
                t["scope"],
                t["school_urn"],
                t["pupils_on_register"],
                t["on_sen_support"],
                t["with_ehc_plan"],
                t["interventions"],
                t["pupils_with_interventions"],
                t["planned_staff_hours"],
                t["delivered_hours"],
                pounds(t["cost_pence"]),
                pounds(t["cost_per_pupil_on_register_pence"]),
            ]
        )
    return out
