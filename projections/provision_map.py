"""The provision map: what each pupil's plans provide, what was delivered, and what it achieved.

One document per pupil. Like the register, this projection handles
``record_corrected`` with a **fact log**: the document keeps, in stream order,
a compact copy of every event it needs except sessions (plans with their
provision lines, interventions started and ended with their measures, reviews
with their ratings, needs, registration and transfers: ids, codes, dates,
numbers, never free text), and recomputes ``plans``, ``interventions`` and
``outcome_ratings`` from it with :func:`derive`. A correction replaces the
content of the fact it points at (its id and day kept) and everything is
derived again, so a corrected cost, measure or rating shows everywhere.

Sessions are many, so they are kept apart in ``session_log``
(``{intervention_id: {event_id: [minutes, attended]}}``): a session only
refreshes its intervention's totals, and a corrected session replaces its own
entry. Totals follow the write side: ``sessions`` counts attended sessions,
``minutes_delivered`` adds the minutes of every recorded session.

An intervention's ``impact_rating`` and ``keep`` come from the latest review
that rated it; ``outcome_ratings`` holds, per plan, the latest rating of each
outcome.

Each intervention also records, as they were when it started, the school it
was delivered in, the pupil's year group and primary need: the provision
map's totals by school, year group and need attribute provision to where and
when it was given, not to where the pupil is now.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from functools import lru_cache
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection
from senflow.projections.common import (
    already_applied,
    day_of,
    envelope_part,
    iso,
    measure_doc,
    names_school,
    need_of_rank,
    needs_doc,
    replace_fact,
    year_group_on,
    year_group_order,
)

GOOD_IMPACT = ("good", "strong")
IMPACTS = ("none", "limited", "good", "strong")


# --- the fact log ---------------------------------------------------------------------------


def _provision_doc(p: ev.Provision) -> Doc:
    return {
        "name": p.name,
        "delivery": str(p.delivery.value),
        "staff_role": str(p.staff_role.value),
        "sessions_per_week": p.sessions_per_week,
        "minutes_per_session": p.minutes_per_session,
        "weeks": p.weeks,
        "group_size": p.group_size,
        "cost_pence": p.cost_pence,
        "outcome_ids": list(p.outcome_ids),
    }


def _fields(data: ev.EventData) -> Doc | None:
    """The non-personal content of an event the provision map needs (sessions aside)."""
    match data:
        case ev.PupilRegistered():
            return {"year_group": data.year_group}
        case ev.SenSupportStarted() | ev.NeedsReclassified() | ev.EhcPlanIssued():
            return {"needs": needs_doc(data.needs)}
        case ev.SenSupportEnded():
            return {}
        case ev.PupilTransferred():
            return {"to_urn": data.to_urn}
        case ev.PlanAgreed():
            return {
                "plan_id": str(data.plan_id),
                "review_date": iso(data.review_date),
                "outcomes": [
                    {"outcome_id": o.outcome_id, "target_date": iso(o.target_date)}
                    for o in data.outcomes
                ],
                "provisions": [
                    {"provision_id": p.provision_id, **_provision_doc(p)} for p in data.provisions
                ],
            }
        case ev.InterventionStarted():
            return {
                "intervention_id": str(data.intervention_id),
                "plan_id": str(data.plan_id),
                "provision_id": data.provision_id,
                "entry": measure_doc(data.entry_measure),
            }
        case ev.InterventionEnded():
            return {
                "intervention_id": str(data.intervention_id),
                "reason": str(data.reason),
                "exit": measure_doc(data.exit_measure),
            }
        case ev.ReviewHeld():
            return {
                "plan_id": str(data.plan_id),
                "decision": str(data.decision.value),
                "next_review_date": iso(data.next_review_date),
                "outcome_progress": [
                    {"outcome_id": o.outcome_id, "rating": str(o.rating.value)}
                    for o in data.outcome_progress
                ],
                "intervention_impact": [
                    {
                        "intervention_id": str(i.intervention_id),
                        "impact": str(i.impact.value),
                        "keep": bool(i.keep),
                    }
                    for i in data.intervention_impact
                ],
            }
    return None


# --- deriving the map -------------------------------------------------------------------------


def _with_session_totals(intervention: Doc, log: dict[str, list[Any]] | None) -> Doc:
    sessions = minutes_delivered = 0
    for minutes, attended in (log or {}).values():
        sessions += 1 if attended else 0
        minutes_delivered += int(minutes)
    return {**intervention, "sessions": sessions, "minutes_delivered": minutes_delivered}


@lru_cache(maxsize=4096)
def _year_group_on(recorded: str | None, recorded_on: str | None, day: str) -> str | None:
    # derive asks again for every intervention after each event; the answers repeat.
    return year_group_on(recorded, recorded_on, date.fromisoformat(day))


def _agreed_plan(fact: Doc) -> Doc:
    """A ``plan_agreed`` fact's plan, as ``plans`` holds it before any review."""
    return {
        "agreed_on": fact["on"],
        "review_date": fact["review_date"],
        "outcomes": fact["outcomes"],
        "provisions": {
            p["provision_id"]: {k: v for k, v in p.items() if k != "provision_id"}
            for p in fact["provisions"]
        },
        "reviewed_on": None,
        "decision": None,
    }


def _started(
    fact: Doc,
    plans: dict[str, Doc],
    school_urn: str | None,
    year_group: str | None,
    year_group_recorded_on: str | None,
    primary_need: str | None,
) -> Doc:
    """An ``intervention_started`` fact's intervention, before any session, end or rating."""
    plan = plans.get(fact["plan_id"])
    line = plan["provisions"].get(fact["provision_id"]) if plan else None
    return {
        "plan_id": fact["plan_id"],
        "provision_id": fact["provision_id"],
        "name": line["name"] if line else fact["provision_id"],
        "school_urn": school_urn or fact["school_urn"],
        "year_group": _year_group_on(year_group, year_group_recorded_on, fact["on"]),
        "primary_need": primary_need,
        "started_on": fact["on"],
        "ended_on": None,
        "end_reason": None,
        "sessions": 0,
        "minutes_delivered": 0,
        "entry": fact["entry"],
        "exit": None,
        "impact_rating": None,
        "keep": None,
        "rated_on": None,
    }


def _ended(fact: Doc, day: str) -> Doc:
    """What an intervention_ended fact sets on its intervention."""
    return {"ended_on": day, "end_reason": fact["reason"], "exit": fact["exit"]}


def _reviewed(fact: Doc, day: str) -> Doc:
    """What a review_held fact sets on its plan."""
    return {"reviewed_on": day, "decision": fact["decision"]}


def _rated(impact: Doc, day: str) -> Doc:
    """What a review's rating of an intervention's impact sets on the intervention."""
    return {"impact_rating": impact["impact"], "keep": impact["keep"], "rated_on": day}


def derive(facts: list[Doc], session_log: dict[str, dict[str, list[Any]]]) -> Doc:
    """``school_urn``, ``year_group``, needs, ``plans``, ``interventions``, ``outcome_ratings``."""
    school_urn: str | None = None
    year_group: str | None = None
    year_group_recorded_on: str | None = None
    needs: list[Doc] = []
    plans: dict[str, Doc] = {}
    interventions: dict[str, Doc] = {}
    ratings: dict[str, dict[str, str]] = {}
    for fact in facts:
        day: str = fact["on"]
        match fact["type"]:
            case "pupil_registered":
                school_urn = fact["school_urn"]
                year_group, year_group_recorded_on = fact["year_group"], day
            case "sen_support_started" | "needs_reclassified" | "ehc_plan_issued":
                needs = fact["needs"]
            case "sen_support_ended":
                needs = []
            case "pupil_transferred":
                school_urn = fact["to_urn"]
            case "plan_agreed":
                plans[fact["plan_id"]] = _agreed_plan(fact)
            case "intervention_started":
                interventions[fact["intervention_id"]] = _started(
                    fact,
                    plans,
                    school_urn,
                    year_group,
                    year_group_recorded_on,
                    need_of_rank(needs, 1),
                )
            case "intervention_ended":
                iid = fact["intervention_id"]
                if iid in interventions:
                    interventions[iid] = {**interventions[iid], **_ended(fact, day)}
            case "review_held":
                pid = fact["plan_id"]
                if pid in plans:
                    plans[pid] = {**plans[pid], **_reviewed(fact, day)}
                plan_ratings = ratings.setdefault(pid, {})
                for progress in fact["outcome_progress"]:
                    plan_ratings[progress["outcome_id"]] = progress["rating"]
                for impact in fact["intervention_impact"]:
                    iid = impact["intervention_id"]
                    if iid in interventions:
                        interventions[iid] = {**interventions[iid], **_rated(impact, day)}
    return {
        "school_urn": school_urn,
        "year_group": year_group,
        "year_group_recorded_on": year_group_recorded_on,
        "primary_need": need_of_rank(needs, 1),
        "secondary_need": need_of_rank(needs, 2),
        "plans": plans,
        "interventions": {
            iid: _with_session_totals(i, session_log.get(iid)) for iid, i in interventions.items()
        },
        "outcome_ratings": ratings,
    }


def _derive_one_more(derived: Doc, fact: Doc, session_log: dict[str, dict[str, list[Any]]]) -> Doc:
    """``derive`` of the log with ``fact`` appended, from ``derive`` of the log before it.

    ``derive`` is a fold over the facts, so one more fact at the end needs only its
    own step, not the whole log again (which made a pupil's every event cost time in
    proportion to their history). Only for a log that names the pupil's school: the
    school ``derive`` carries is then the document's (no event's fallback in it).
    Equal to a whole ``derive`` after every event (tests/unit/test_projection_kept_fields).
    """
    out = dict(derived)
    day: str = fact["on"]
    match fact["type"]:
        case "pupil_registered":
            out["school_urn"] = fact["school_urn"]
            out["year_group"], out["year_group_recorded_on"] = fact["year_group"], day
        case "sen_support_started" | "needs_reclassified" | "ehc_plan_issued":
            out["primary_need"] = need_of_rank(fact["needs"], 1)
            out["secondary_need"] = need_of_rank(fact["needs"], 2)
        case "sen_support_ended":
            out["primary_need"] = out["secondary_need"] = None
        case "pupil_transferred":
            out["school_urn"] = fact["to_urn"]
        case "plan_agreed":
            out["plans"] = {**derived["plans"], fact["plan_id"]: _agreed_plan(fact)}
        case "intervention_started":
            iid = fact["intervention_id"]
            started = _started(
                fact,
                derived["plans"],
                derived["school_urn"],
                derived["year_group"],
                derived["year_group_recorded_on"],
                derived["primary_need"],
            )
            out["interventions"] = {
                **derived["interventions"],
                iid: _with_session_totals(started, session_log.get(iid)),
            }
        case "intervention_ended":
            iid = fact["intervention_id"]
            if iid in derived["interventions"]:
                out["interventions"] = {
                    **derived["interventions"],
                    iid: {**derived["interventions"][iid], **_ended(fact, day)},
                }
        case "review_held":
            pid = fact["plan_id"]
            if pid in derived["plans"]:
                out["plans"] = {
                    **derived["plans"],
                    pid: {**derived["plans"][pid], **_reviewed(fact, day)},
                }
            plan_ratings = dict(derived["outcome_ratings"].get(pid, {}))
            for progress in fact["outcome_progress"]:
                plan_ratings[progress["outcome_id"]] = progress["rating"]
            out["outcome_ratings"] = {**derived["outcome_ratings"], pid: plan_ratings}
            interventions = derived["interventions"]
            for impact in fact["intervention_impact"]:
                iid = impact["intervention_id"]
                if iid in interventions:
                    interventions = {
                        **interventions,
                        iid: {**interventions[iid], **_rated(impact, day)},
                    }
            out["interventions"] = interventions
    return out


# --- evolve ----------------------------------------------------------------------------------

_DERIVED = frozenset(
    {
        "school_urn",
        "year_group",
        "year_group_recorded_on",
        "primary_need",
        "secondary_need",
        "plans",
        "interventions",
        "outcome_ratings",
    }
)


def _log_session(
    log: dict[str, dict[str, list[Any]]], iid: str, event_id: str, minutes: int, attended: bool
) -> dict[str, dict[str, list[Any]]]:
    return {**log, iid: {**log.get(iid, {}), event_id: [minutes, attended]}}


def evolve(doc: Doc | None, event: RecordedEvent) -> Doc:
    if already_applied(doc, event):
        assert doc is not None
        return doc
    facts: list[Doc] = list(doc["facts"]) if doc else []
    sessions: dict[str, dict[str, list[Any]]] = dict(doc["session_log"]) if doc else {}
    data = event.data
    derived: Doc | None = None
    match data:
        case ev.InterventionSessionRecorded():
            iid = str(data.intervention_id)
            sessions = _log_session(
                sessions, iid, str(event.event_id), data.minutes, bool(data.attended)
            )
            if doc is not None and doc.keys() >= _DERIVED:
                derived = {k: doc[k] for k in _DERIVED}
                if iid in doc["interventions"]:
                    derived["interventions"] = {
                        **doc["interventions"],
                        iid: _with_session_totals(doc["interventions"][iid], sessions[iid]),
                    }
        case ev.RecordCorrected(replacement=ev.InterventionSessionRecorded() as replacement):
            iid, target = str(replacement.intervention_id), str(data.corrects_event_id)
            if target in sessions.get(iid, {}):
                sessions = _log_session(
                    sessions, iid, target, replacement.minutes, bool(replacement.attended)
                )
        case ev.RecordCorrected():
            fields = _fields(data.replacement)
            if fields is not None:
                facts = replace_fact(
                    facts, str(data.corrects_event_id), fields, correction_id=str(event.event_id)
                )
            elif doc is not None and names_school(facts) and doc.keys() >= _DERIVED:
                derived = {k: doc[k] for k in _DERIVED}  # nothing the map derives from changed
        case _:
            fields = _fields(data)
            if fields is not None:
                fact = {
                    "event_id": str(event.event_id),
                    "type": event.event_type,
                    "on": day_of(event),
                    "school_urn": event.tenant.school_urn,
                    **fields,
                }
                if doc is not None and names_school(facts) and doc.keys() >= _DERIVED:
                    derived = _derive_one_more({k: doc[k] for k in _DERIVED}, fact, sessions)
                facts.append(fact)
            elif doc is not None and names_school(facts) and doc.keys() >= _DERIVED:
                derived = {k: doc[k] for k in _DERIVED}  # nothing the map derives from changed
    if derived is None:
        derived = derive(facts, sessions)
    if derived["school_urn"] is None:
        derived["school_urn"] = event.tenant.school_urn
    return {**envelope_part(doc, event), **derived, "facts": facts, "session_log": sessions}


PROJECTION = Projection(
    name="provision_map",
    evolve=evolve,
    indexes=(
        "CREATE INDEX IF NOT EXISTS provision_map_need ON {schema}.docs ((doc->>'primary_need'))",
    ),
)


# --- queries (pure: the caller fetches the documents) -----------------------------------------


def _change(entry: Doc | None, exit_: Doc | None) -> float | None:
    """Exit minus entry, positive meaning better; None unless both measure the same thing."""
    if not entry or not exit_:
        return None
    same = (
        entry["instrument"].strip().casefold() == exit_["instrument"].strip().casefold()
        and entry["unit"] == exit_["unit"]
        and entry["higher_is_better"] == exit_["higher_is_better"]
    )
    if not same:
        return None
    change = float(exit_["value"]) - float(entry["value"])
    return round(change if entry["higher_is_better"] else -change, 6)


def provision_rows(docs: list[Doc]) -> list[Doc]:
    """One row per intervention, with its provision line, planned hours, cost and impact.

    ``planned_pupil_minutes`` = sessions a week x minutes x weeks (what the pupil
    receives); ``planned_staff_hours`` divides that by the group size (the staff
    time attributable to this pupil) and by 60. ``change`` is exit minus entry
    when both use the same instrument and unit, with the sign flipped when a
    lower score is better, so a positive change is always progress.
    """
    rows: list[Doc] = []
    for doc in docs:
        for iid, i in doc["interventions"].items():
            plan = doc["plans"].get(i["plan_id"]) or {}
            line = (plan.get("provisions") or {}).get(i["provision_id"]) or {}
            pupil_minutes = (
                line["sessions_per_week"] * line["minutes_per_session"] * line["weeks"]
                if line
                else None
            )
            staff_hours = (
                pupil_minutes / line["group_size"] / 60 if pupil_minutes is not None else None
            )
            rows.append(
                {
                    "pupil_id": doc["pupil_id"],
                    "trust_id": doc["trust_id"],
                    "school_urn": i["school_urn"],
                    "year_group": i["year_group"],
                    "need": i["primary_need"],
                    "intervention_id": iid,
                    "plan_id": i["plan_id"],
                    "provision_id": i["provision_id"],
                    "name": i["name"],
                    "delivery": line.get("delivery"),
                    "staff_role": line.get("staff_role"),
                    "sessions_per_week": line.get("sessions_per_week"),
                    "minutes_per_session": line.get("minutes_per_session"),
                    "weeks": line.get("weeks"),
                    "group_size": line.get("group_size"),
                    "planned_pupil_minutes": pupil_minutes,
                    "planned_staff_hours": (
                        round(staff_hours, 2) if staff_hours is not None else None
                    ),
                    "cost_pence": line.get("cost_pence"),
                    "started_on": i["started_on"],
                    "ended_on": i["ended_on"],
                    "end_reason": i["end_reason"],
                    "sessions": i["sessions"],
                    "delivered_minutes": i["minutes_delivered"],
                    "entry": i["entry"],
                    "exit": i["exit"],
                    "change": _change(i["entry"], i["exit"]),
                    "impact_rating": i["impact_rating"],
                    "keep": i["keep"],
                }
            )
    rows.sort(
        key=lambda r: (
            r["school_urn"] or "",
            r["pupil_id"],
            r["started_on"],
            r["provision_id"],
            r["intervention_id"],
        )
    )
    return rows


_GROUP_KEYS = {"school": "school_urn", "year_group": "year_group", "need": "need"}


def _staff_hours(row: Doc) -> float:
    if row["planned_pupil_minutes"] is None:
        return 0.0
    return float(row["planned_pupil_minutes"]) / int(row["group_size"]) / 60


def provision_totals(rows: list[Doc], by: str) -> list[Doc]:
    """Totals of provision rows grouped ``by`` "school", "year_group" or "need".

    Each group: the number of interventions and of distinct pupils, planned
    staff hours (exact sum, rounded at the end), cost in pence and hours
    delivered. Groups are in order (year groups in curriculum order); a
    missing value groups as None, last.
    """
    if by not in _GROUP_KEYS:
        raise ValueError(f"by must be one of {sorted(_GROUP_KEYS)}, not {by!r}")
    key = _GROUP_KEYS[by]
    groups: dict[Any, list[Doc]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)

    def order(value: Any) -> tuple[bool, Any]:
        if by == "year_group":
            return (value is None, year_group_order(value))
        return (value is None, str(value))

    return [
        {
            by: value,
            "interventions": len(group),
            "pupils": len({r["pupil_id"] for r in group}),
            "planned_staff_hours": round(sum(_staff_hours(r) for r in group), 2),
            "cost_pence": sum(int(r["cost_pence"] or 0) for r in group),
            "delivered_hours": round(sum(int(r["delivered_minutes"]) for r in group) / 60, 2),
        }
        for value, group in sorted(groups.items(), key=lambda kv: order(kv[0]))
    ]


def intervention_impact(rows: list[Doc]) -> list[Doc]:
    """Per intervention name across the rows: how many, how much progress, how well rated.

    ``mean_change`` averages the measured changes (``by_instrument`` splits
    them when different measures were used); ``good_share`` is the share of
    rated interventions rated good or strong (None when none is rated yet).
    Weakest first: lowest ``good_share``, then lowest ``mean_change``; names
    never rated or measured come last.
    """
    groups: dict[str, list[Doc]] = defaultdict(list)
    for row in rows:
        groups[" ".join(str(row["name"]).split()).casefold()].append(row)
    out: list[Doc] = []
    for group in groups.values():
        changes = [r["change"] for r in group if r["change"] is not None]
        rated = [r["impact_rating"] for r in group if r["impact_rating"] is not None]
        by_instrument: dict[str, list[float]] = defaultdict(list)
        for r in group:
            if r["change"] is not None:
                by_instrument[f"{r['entry']['instrument']} ({r['entry']['unit']})"].append(
                    r["change"]
                )
        spellings = Counter(" ".join(str(r["name"]).split()) for r in group)
        out.append(
            {
                # the most used spelling (ties: the first in sort order)
                "name": min(spellings, key=lambda n: (-spellings[n], n)),
                "count": len(group),
                "pupils": len({r["pupil_id"] for r in group}),
                "measured": len(changes),
                "mean_change": round(sum(changes) / len(changes), 2) if changes else None,
                "by_instrument": {
                    k: {"count": len(v), "mean_change": round(sum(v) / len(v), 2)}
                    for k, v in sorted(by_instrument.items())
                },
                "rated": len(rated),
                "ratings": {level: rated.count(level) for level in IMPACTS},
                "good_share": (
                    round(sum(1 for r in rated if r in GOOD_IMPACT) / len(rated), 4)
                    if rated
                    else None
                ),
                "kept": sum(1 for r in group if r["keep"] is True),
                "cost_pence": sum(int(r["cost_pence"] or 0) for r in group),
                "planned_staff_hours": round(sum(_staff_hours(r) for r in group), 2),
            }
        )

    def weakest_first(item: Doc) -> tuple[Any, ...]:
        share, mean = item["good_share"], item["mean_change"]
        return (
            share is None and mean is None,
            share if share is not None else 2.0,
            mean if mean is not None else float("inf"),
            item["name"].casefold(),
        )

    out.sort(key=weakest_first)
    return out
