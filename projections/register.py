"""The SEN register: who is on SEN support (K) or has an EHC plan (E), in which school, why.

One document per pupil. Corrections (``record_corrected``) are handled with a
**fact log**: the document keeps, in stream order, a compact copy of every
event this projection cares about (event id, type, school day, the school it
was recorded in and its non-personal fields: codes, dates, ids). Every derived
field (provision, spells, needs, review dates, school...) is recomputed from that
log by :func:`derive` after each event, so a correction simply replaces the
content of the fact it points at (keeping its id and day, as the write side
does) and the derived fields come out as if the corrected content had been
recorded in the first place, spells and histories included. The same
:func:`derive`, cut off at a date, answers "the register as of" a date.

Conventions:

* Spells and needs are half-open: a spell ``{start, end}`` is in force on
  ``start`` and up to the day before ``end`` (``end`` is the day of the event
  that closed it; ``None`` while open). A spell opened and closed on the same
  day is dropped, as it was never in force.
* ``provision`` stays at the last census provision after the pupil leaves (as
  the write side's state does); ``on_roll`` turns false and the open spell and
  needs close on the leaving day. ``on_register`` (on roll and on K or E) is
  what to filter on.
* ``school_urn`` is the school of registration, moved by each transfer.
* ``year_group`` is the year group recorded at registration (``year_group_recorded_on``);
  query rows give the year group on the date asked about (pupils move up each September).
* ``next_review_date`` is the plan-do-review date: a plan's ``review_date``,
  then each review's ``next_review_date``; cleared when SEN support ends, an EHC
  plan is issued, or the pupil leaves. ``ehc_next_review_due`` is the EHC annual
  review date.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection
from senflow.projections.common import (
    already_applied,
    envelope_part,
    iso,
    names_school,
    need_of_rank,
    needs_doc,
    with_fact,
    year_group_on,
)
from senflow.services.workflow.calendar import academic_year_start

ON_REGISTER = ("K", "E")


# --- the fact log ---------------------------------------------------------------------------


def _fields(data: ev.EventData) -> Doc | None:
    """The non-personal content of an event the register needs, or None if it needs none."""
    match data:
        case ev.PupilRegistered():
            return {
                "upn": data.upn,
                "year_group": data.year_group,
                "on_roll_from": iso(data.on_roll_from),
            }
        case ev.SenSupportStarted() | ev.NeedsReclassified():
            return {"needs": needs_doc(data.needs)}
        case ev.PlanAgreed():
            return {"plan_id": str(data.plan_id), "review_date": iso(data.review_date)}
        case ev.ReviewHeld():
            return {
                "plan_id": str(data.plan_id),
                "decision": str(data.decision.value),
                "next_review_date": iso(data.next_review_date),
            }
        case ev.EhcPlanIssued():
            return {
                "needs": needs_doc(data.needs),
                "first_review_due": iso(data.first_review_due),
            }
        case ev.EhcAnnualReviewHeld():
            return {
                "recommendation": str(data.recommendation),
                "next_review_due": iso(data.next_review_due),
            }
        case ev.SenSupportEnded():
            return {"reason": str(data.reason)}
        case ev.ParentMeetingHeld():
            return {}
        case ev.PupilTransferred():
            return {"from_urn": data.from_urn, "to_urn": data.to_urn}
        case ev.PupilLeft():
            return {"destination": str(data.destination)}
    return None


# --- deriving the register fields from the log -----------------------------------------------


def _close(history: list[Doc], day: str) -> list[Doc]:
    """Close the open entries of a spell history on ``day`` (dropping ones that never ran)."""
    out: list[Doc] = []
    for spell in history:
        if spell["end"] is None:
            if spell["start"] >= day:
                continue
            spell = {**spell, "end": day}
        out.append(spell)
    return out


def _open_provision(history: list[Doc], provision: str, day: str) -> list[Doc]:
    history = _close(history, day)
    if provision != "N":
        history.append({"provision": provision, "start": day, "end": None})
    return history


def _set_needs(history: list[Doc], needs: list[Doc], day: str) -> list[Doc]:
    """Needs history after the needs became ``needs`` on ``day`` (unchanged needs stay open)."""
    wanted = {(n["type"], n["rank"]) for n in needs}
    still_open: set[tuple[str, int]] = set()
    out: list[Doc] = []
    for entry in history:
        if entry["end"] is None:
            key = (entry["type"], entry["rank"])
            if key in wanted:
                still_open.add(key)
            elif entry["start"] >= day:
                continue  # opened and closed on the same day: never in force
            else:
                entry = {**entry, "end": day}
        out.append(entry)
    for n in needs:
        if (n["type"], n["rank"]) not in still_open:
            out.append({"type": n["type"], "rank": n["rank"], "start": day, "end": None})
    return out


def derive(facts: list[Doc], until: date | None = None) -> Doc:
    """The register fields from the fact log, counting only facts on or before ``until``."""
    cutoff = iso(until)
    registered_on: str | None = None
    upn = year_group = year_group_recorded_on = on_roll_from = None
    school_urn: str | None = None
    schools: list[Doc] = []
    left_on: str | None = None
    destination: str | None = None
    provision = "N"
    spells: list[Doc] = []
    needs: list[Doc] = []
    needs_history: list[Doc] = []
    plan_id: str | None = None
    next_review: str | None = None
    last_review_on: str | None = None
    ehc_since: str | None = None
    ehc_due: str | None = None
    last_ehc_review_on: str | None = None
    meetings: list[str] = []

    for fact in facts:
        day: str = fact["on"]
        if cutoff is not None and day > cutoff:
            continue
        match fact["type"]:
            case "pupil_registered":
                registered_on = registered_on or day
                upn, year_group = fact["upn"], fact["year_group"]
                year_group_recorded_on, on_roll_from = day, fact["on_roll_from"]
                school_urn = fact["school_urn"]
                schools = [{"school_urn": school_urn, "start": on_roll_from, "end": None}]
            case "sen_support_started":
                spells = _open_provision(spells, "K", day)
                provision = "K"
                needs = fact["needs"]
                needs_history = _set_needs(needs_history, needs, day)
            case "needs_reclassified":
                needs = fact["needs"]
                needs_history = _set_needs(needs_history, needs, day)
            case "plan_agreed":
                plan_id, next_review = fact["plan_id"], fact["review_date"]
            case "review_held":
                next_review, last_review_on = fact["next_review_date"], day
            case "ehc_plan_issued":
                spells = _open_provision(spells, "E", day)
                provision = "E"
                needs = fact["needs"]
                needs_history = _set_needs(needs_history, needs, day)
                ehc_since, ehc_due, next_review = day, fact["first_review_due"], None
            case "ehc_annual_review_held":
                ehc_due, last_ehc_review_on = fact["next_review_due"], day
            case "sen_support_ended":
                spells = _open_provision(spells, "N", day)
                provision, needs, plan_id, next_review = "N", [], None, None
                needs_history = _set_needs(needs_history, [], day)
            case "parent_meeting_held":
                meetings.append(day)
            case "pupil_transferred":
                schools = _close(schools, day)
                school_urn = fact["to_urn"]
                schools.append({"school_urn": school_urn, "start": day, "end": None})
            case "pupil_left":
                left_on, destination = day, fact["destination"]
                spells = _close(spells, day)
                needs_history = _close(needs_history, day)
                schools = _close(schools, day)
                next_review, ehc_due = None, None

    on_roll = registered_on is not None and left_on is None
    open_spell = next((s for s in spells if s["end"] is None), None)
    return {
        "school_urn": school_urn,
        "school_history": schools,
        "registered_on": registered_on,
        "upn": upn,
        "year_group": year_group,
        "year_group_recorded_on": year_group_recorded_on,
        "on_roll_from": on_roll_from,
        "on_roll": on_roll,
        "left_on": left_on,
        "destination": destination,
        "provision": provision,
        "provision_start": open_spell["start"] if open_spell else None,
        "provision_history": spells,
        "needs": needs,
        "primary_need": need_of_rank(needs, 1),
        "secondary_need": need_of_rank(needs, 2),
        "needs_history": needs_history,
        "current_plan_id": plan_id,
        "next_review_date": next_review,
        "last_review_on": last_review_on,
        "ehc_plan_since": ehc_since,
        "ehc_next_review_due": ehc_due,
        "last_ehc_review_on": last_ehc_review_on,
        "parent_meetings": meetings,
        "on_register": on_roll and provision in ON_REGISTER and open_spell is not None,
    }


# --- evolve ----------------------------------------------------------------------------------

_DERIVED = frozenset(derive([]))  # the fields derive gives


def evolve(doc: Doc | None, event: RecordedEvent) -> Doc:
    if already_applied(doc, event):
        assert doc is not None
        return doc
    kept: list[Doc] = list(doc["facts"]) if doc else []
    facts = with_fact(kept, event, _fields)
    data = event.data
    if doc is not None and facts is kept and names_school(facts) and doc.keys() >= _DERIVED:
        # derive(facts) again would give the same (unless the document predates a field)
        derived = {k: doc[k] for k in _DERIVED}
    else:
        derived = derive(facts)
        if derived["school_urn"] is None:
            derived["school_urn"] = event.tenant.school_urn
    return {
        **envelope_part(doc, event),
        **derived,
        "erased": bool(doc and doc["erased"]) or isinstance(data, ev.PersonalDataErased),
        "facts": facts,
    }


PROJECTION = Projection(
    name="register",
    evolve=evolve,
    indexes=(
        "CREATE INDEX IF NOT EXISTS register_on_register ON {schema}.docs "
        "(trust_id, school_urn) WHERE (doc->>'on_register')::boolean",
        "CREATE INDEX IF NOT EXISTS register_provision ON {schema}.docs ((doc->>'provision'))",
        "CREATE INDEX IF NOT EXISTS register_upn ON {schema}.docs ((doc->>'upn'))",
    ),
)


# --- queries (pure: the caller fetches the documents) -----------------------------------------


def register_rows(docs: list[Doc], as_of: date | None, today: date) -> list[Doc]:
    """One row per pupil on K or E, now (``as_of`` None) or as of the end of a past day.

    "As of" replays the pupil's fact log up to that day (corrections applied),
    so school, provision, needs and review dates are those in force then. The
    reference day for ``overdue``, the year group and the parent meetings of
    the academic year is ``as_of`` if given, else ``today``. ``overdue``: the
    next review date (plan-do-review or EHC annual review) is before that day.
    """
    ref = as_of or today
    year_start = academic_year_start(ref).isoformat()
    ref_iso = ref.isoformat()
    rows: list[Doc] = []
    for doc in docs:
        view = derive(doc["facts"], until=as_of) if as_of is not None else doc
        if not view["on_register"]:
            continue
        due = [d for d in (view["next_review_date"], view["ehc_next_review_due"]) if d]
        rows.append(
            {
                "pupil_id": doc["pupil_id"],
                "trust_id": doc["trust_id"],
                "school_urn": view["school_urn"] or doc["school_urn"],
                "upn": view["upn"],
                "year_group": year_group_on(
                    view["year_group"], view["year_group_recorded_on"], ref
                ),
                "provision": view["provision"],
                "provision_start": view["provision_start"],
                "primary_need": view["primary_need"],
                "secondary_need": view["secondary_need"],
                "current_plan_id": view["current_plan_id"],
                "next_review_date": view["next_review_date"],
                "last_review_on": view["last_review_on"],
                "ehc_plan_since": view["ehc_plan_since"],
                "ehc_next_review_due": view["ehc_next_review_due"],
                "overdue": any(d < ref_iso for d in due),
                "parent_meetings_this_year": sum(
                    1 for m in view["parent_meetings"] if year_start <= m <= ref_iso
                ),
                "erased": bool(doc.get("erased")),
            }
        )
    rows.sort(key=lambda r: (r["school_urn"] or "", r["provision"], r["pupil_id"]))
    return rows


def register_counts(rows: list[Doc]) -> Doc:
    """Totals of register rows: by school, by primary need, by provision, and overdue reviews."""

    def count(key: str) -> dict[str, int]:
        c = Counter(str(r[key]) if r[key] is not None else "unknown" for r in rows)
        return dict(sorted(c.items()))

    return {
        "total": len(rows),
        "by_school": count("school_urn"),
        "by_primary_need": count("primary_need"),
        "by_provision": count("provision"),
        "overdue": sum(1 for r in rows if r["overdue"]),
    }


def provision_on(doc: Doc, day: date) -> str:
    """The census provision (N, K, E) the pupil had on ``day``, from the spell history."""
    d = day.isoformat()
    for spell in doc["provision_history"]:
        if spell["start"] <= d and (spell["end"] is None or d < spell["end"]):
            return str(spell["provision"])
    return "N"


def needs_on(doc: Doc, day: date) -> list[Doc]:
    """The ranked needs in force on ``day`` (for the census and the CTF)."""
    d = day.isoformat()
    return sorted(
        (
            {"type": h["type"], "rank": h["rank"]}
            for h in doc["needs_history"]
            if h["start"] <= d and (h["end"] is None or d < h["end"])
        ),
        key=lambda n: n["rank"],
    )


__all__ = [
    "PROJECTION",
    "derive",
    "evolve",
    "needs_on",
    "provision_on",
    "register_counts",
    "register_rows",
]
