"""Compliance with the SEND Code of Practice, per pupil, school and trust.

The document is the register's fact log (``register._fields``) with a little
more: whether each review heard the pupil and the parents, the assessments,
and the annual reports given. Findings depend on the day they are judged, so
they are computed at query time by :func:`findings`, each naming the Code of
Practice paragraph it rests on. Corrections replace facts as in the register.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections import register
from senflow.projections.base import Doc, Projection
from senflow.projections.common import already_applied, envelope_part, names_school, with_fact
from senflow.services.workflow.calendar import (
    academic_year_label,
    academic_year_start,
    add_months,
    term_ends,
)

# rule -> (paragraph, what it means)
RULES: dict[str, tuple[str, str]] = {
    "review_overdue": ("6.53", "review date passed without a review"),
    "ehc_annual_review_overdue": ("6.56", "EHC plan not reviewed within 12 months (must)"),
    "parent_meetings_behind": ("6.65", "fewer than one parent meeting a term this year"),
    "review_without_pupil_views": ("6.54", "a review held without the pupil's views"),
    "review_without_parent_views": ("6.54", "a review held without the parents' views"),
    "support_without_assessment": ("6.45", "SEN support started with no assessment recorded"),
    "annual_report_missing": ("6.64", "no annual report to parents for the year (must)"),
}
ANNUAL_REPORT_DUE_BY = (7, 20)  # month, day: before the summer holiday


def _fields(data: ev.EventData) -> Doc | None:
    base = register._fields(data)
    match data:
        case ev.ReviewHeld() | ev.EhcAnnualReviewHeld():
            assert base is not None
            return {
                **base,
                "pupil_views": data.pupil_views is not None,
                "parent_views": data.parent_views is not None,
            }
        case ev.AssessmentRecorded():
            return {"kind": data.kind.value}
        case ev.AnnualReportShared():
            return {"academic_year": data.academic_year}
    return base


def evolve(doc: Doc | None, event: RecordedEvent) -> Doc:
    if already_applied(doc, event):
        assert doc is not None
        return doc
    kept: list[Doc] = list(doc["facts"]) if doc else []
    facts = with_fact(kept, event, _fields)
    if doc is not None and facts is kept and names_school(facts):
        school = doc["school_urn"]  # what deriving the same facts again would give
    else:
        school = register.derive(facts)["school_urn"] or event.tenant.school_urn
    return {**envelope_part(doc, event), "school_urn": school, "facts": facts}


PROJECTION = Projection(name="compliance", evolve=evolve)


def _finding(doc: Doc, view: Doc, rule: str, since: str | None, **detail: Any) -> Doc:
    paragraph, meaning = RULES[rule]
    return {
        "pupil_id": doc["pupil_id"],
        "trust_id": doc["trust_id"],
        "school_urn": view["school_urn"],
        "rule": rule,
        "paragraph": paragraph,
        "meaning": meaning,
        "since": since,
        **detail,
    }


def _register_start(view: Doc) -> str | None:
    """Start of the current unbroken time on the register (K then E counts as one)."""
    spells = view["provision_history"]
    if not spells or spells[-1]["end"] is not None:
        return None
    start = spells[-1]["start"]
    for spell in reversed(spells[:-1]):
        if spell["end"] != start:
            break
        start = spell["start"]
    return str(start)


def findings(doc: Doc, today: date) -> list[Doc]:
    """What the pupil's record falls short of on ``today`` (only pupils on the register)."""
    view = register.derive(doc["facts"], until=today)
    if not view["on_register"]:
        return []
    out: list[Doc] = []
    now, facts = today.isoformat(), [f for f in doc["facts"] if f["on"] <= today.isoformat()]
    due = view["next_review_date"]
    if due and due < now:
        out.append(_finding(doc, view, "review_overdue", due, review_date=due))
    if view["provision"] == "E":
        anchor = view["last_ehc_review_on"] or view["ehc_plan_since"]
        deadline = add_months(date.fromisoformat(anchor), 12).isoformat()
        if deadline < now:
            out.append(
                _finding(doc, view, "ehc_annual_review_overdue", deadline, last_reviewed_on=anchor)
            )
    start = _register_start(view)
    if start is not None:
        year = academic_year_start(today)
        ends = [e for e in term_ends(year) if start <= e.isoformat() and e < today]
        counted_from = max(year.isoformat(), start)
        held = sum(1 for m in view["parent_meetings"] if counted_from <= m <= now)
        if held < len(ends):
            out.append(
                _finding(
                    doc,
                    view,
                    "parent_meetings_behind",
                    ends[-1].isoformat(),
                    expected=len(ends),
                    held=held,
                    academic_year=academic_year_label(today),
                )
            )
        window = (today - timedelta(days=365)).isoformat()
        for f in facts:
            if f["type"] in ("review_held", "ehc_annual_review_held") and f["on"] >= window:
                if not f["pupil_views"]:
                    out.append(
                        _finding(
                            doc, view, "review_without_pupil_views", f["on"], event_id=f["event_id"]
                        )
                    )
                if not f["parent_views"]:
                    out.append(
                        _finding(
                            doc,
                            view,
                            "review_without_parent_views",
                            f["on"],
                            event_id=f["event_id"],
                        )
                    )
        support_started = next(
            (
                f["on"]
                for f in reversed(facts)
                if f["type"] == "sen_support_started" and f["on"] >= start
            ),
            None,
        )
        assessed = any(f["type"] == "assessment_recorded" for f in facts)
        if support_started and not any(
            f["type"] == "assessment_recorded" and f["on"] <= support_started for f in facts
        ):
            out.append(
                _finding(
                    doc,
                    view,
                    "support_without_assessment",
                    support_started,
                    assessed_since=assessed,
                )
            )
        last_year = _last_report_year(today)
        if last_year is not None and start <= last_year[1]:
            reports = {f["academic_year"] for f in facts if f["type"] == "annual_report_shared"}
            if last_year[0] not in reports:
                out.append(
                    _finding(
                        doc, view, "annual_report_missing", last_year[1], academic_year=last_year[0]
                    )
                )
    return out


def _last_report_year(today: date) -> tuple[str, str] | None:
    """The latest academic year whose annual report deadline has passed, with that deadline."""
    year = academic_year_start(today)
    deadline = date(year.year + 1, *ANNUAL_REPORT_DUE_BY)
    if deadline >= today:
        year = date(year.year - 1, 9, 1)
        deadline = date(year.year + 1, *ANNUAL_REPORT_DUE_BY)
    return academic_year_label(deadline), deadline.isoformat()


def compliance_items(docs: list[Doc], today: date) -> list[Doc]:
    items = [f for doc in docs for f in findings(doc, today)]
    return sorted(items, key=lambda f: (f["school_urn"] or "", f["rule"], f["pupil_id"]))


def compliance_summary(items: list[Doc]) -> Doc:
    return {
        "total": len(items),
        "by_rule": dict(sorted(Counter(i["rule"] for i in items).items())),
        "by_school": dict(sorted(Counter(i["school_urn"] for i in items).items())),
        "paragraphs": {rule: paragraph for rule, (paragraph, _) in RULES.items()},
    }
