"""A pupil's evidence pack (6.72-6.73): the whole graduated approach, as evidence, in one document.

:func:`build_pack` is pure. It takes the pupil's whole stream as the store
returns it to an authorised reader (personal data open), the hash-chain result
and the day to judge on, and returns a JSON-ready document: who the pupil is;
need and provision history; identification and assessment; every cycle with
its plan, outcomes, interventions (entry and exit measures, impact), review and
views; parent meetings; specialists; the EHC route; transitions and annual
reports; the measures over time; the Code of Practice paragraph by paragraph;
the record itself (late entries, corrections, who recorded what) and the
verification. The read models are folded here from the same events with the
projections' own ``evolve`` (what a rebuild computes), so the pack needs no
running projection service and never lags.

The pack holds special category personal data: it is for authorised people.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections import compliance, register
from senflow.projections.base import fold
from senflow.projections.common import year_group_on
from senflow.services.auditing import cycles as cycles_mod
from senflow.services.auditing import practice
from senflow.services.auditing.timeline import effective_events, personal, select, timeline_entry
from senflow.services.workflow.calendar import school_day

Doc = dict[str, Any]
FORMAT_VERSION = 1


def _items(events: Sequence[RecordedEvent], *kinds: str) -> list[Doc]:
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.version))
    return [cycles_mod.item(e) for e in ordered if e.event_type in kinds]


def _pupil(events: Sequence[RecordedEvent], reg: Doc, today: date) -> Doc:
    registered = next((e for e in events if isinstance(e.data, ev.PupilRegistered)), None)
    data = registered.data if registered else None
    assert data is None or isinstance(data, ev.PupilRegistered)
    return {
        "pupil_id": reg["pupil_id"],
        "trust_id": reg["trust_id"],
        "school_urn": reg["school_urn"],
        "upn": reg["upn"],
        "forename": personal(data.forename) if data else None,
        "surname": personal(data.surname) if data else None,
        "date_of_birth": personal(data.date_of_birth) if data else None,
        "mis_id": data.mis_id if data else None,
        "year_group": year_group_on(reg["year_group"], reg["year_group_recorded_on"], today),
        "on_roll_from": reg["on_roll_from"],
        "on_roll": reg["on_roll"],
        "left_on": reg["left_on"],
        "destination": reg["destination"],
        "erased": bool(reg.get("erased")),
    }


def build_pack(
    events: Sequence[RecordedEvent],
    verification: Doc | None,
    today: date,
    generated_at: datetime,
) -> Doc:
    """The evidence pack of one pupil (raises LookupError for an empty stream)."""
    if not events:
        raise LookupError("no such pupil")
    view = select(events)
    effective = effective_events(view)
    reg = fold(register.PROJECTION, list(events))
    comp = fold(compliance.PROJECTION, list(events))
    assert reg is not None and comp is not None
    findings = compliance.findings(comp, today)
    cyc = cycles_mod.build(effective, today)
    checklist = practice.checklist(
        effective, cyc, register.derive(reg["facts"], until=today), findings, verification, today
    )
    corrected_by = view.corrected_by
    corrections = []
    for c in view.corrections:
        assert isinstance(c.data, ev.RecordCorrected)
        corrections.append(
            {
                "event_id": str(c.event_id),
                "corrects": str(c.data.corrects_event_id),
                "corrected_type": c.data.replacement.event_type,
                "on": school_day(c.occurred_at).isoformat(),
                "recorded_at": c.recorded_at.isoformat(),
                "recorded_by": f"{c.actor.role.value}:{c.actor.user_id}",
                "reason": personal(c.data.reason),
            }
        )
    trail = [timeline_entry(e, corrected_by, content=False) for e in events]
    reviews = [
        {
            "kind": "plan_review",
            "cycle": c["number"],
            **{k: v for k, v in c["review"].items() if k != "intervention_impact"},
            "intervention_impact": c["review"]["intervention_impact"],
        }
        for c in cyc["cycles"]
        if c["review"] is not None
    ] + [
        {
            "kind": "ehc_annual_review",
            "held_on": i["on"],
            "event_id": i["event_id"],
            "recommendation": i["recommendation"],
            "next_review_due": i["next_review_due"],
            "pupil_views": i["pupil_views"],
            "parent_views": i["parent_views"],
            "recorded_late": i["recorded_late"],
        }
        for i in cyc["ehc"]
        if i["kind"] == "ehc_annual_review_held"
    ]
    reviews.sort(key=lambda r: r["held_on"])
    pupil = _pupil(effective, reg, today)
    return {
        "kind": "senflow.evidence_pack",
        "format_version": FORMAT_VERSION,
        "generated_at": generated_at.isoformat(),
        "judged_on": today.isoformat(),
        "pupil": pupil,
        "summary": {
            "provision": reg["provision"],
            "provision_start": reg["provision_start"],
            "primary_need": reg["primary_need"],
            "secondary_need": reg["secondary_need"],
            "on_register": reg["on_register"],
            "next_review_date": reg["next_review_date"],
            "ehc_plan_since": reg["ehc_plan_since"],
            "ehc_next_review_due": reg["ehc_next_review_due"],
            "cycles": len(cyc["cycles"]),
            "interventions": len(cyc["interventions"]),
            "reviews": len(reviews),
            "parent_meetings": sum(1 for e in effective if e.event_type == "parent_meeting_held"),
            "findings": len(findings),
            "checklist": practice.tally(checklist),
            "chain_ok": verification["ok"] if verification else None,
        },
        "needs_and_provision": {
            "provision_history": reg["provision_history"],
            "needs_history": reg["needs_history"],
            "school_history": reg["school_history"],
        },
        "identification": cyc["identification"],
        "cycles": cyc["cycles"],
        "after_last_cycle": cyc["after_last_cycle"],
        "interventions": cyc["interventions"],
        "reviews": reviews,
        "views": _items(effective, "parent_views_recorded", "pupil_views_recorded"),
        "assessments": _items(effective, "assessment_recorded"),
        "parent_meetings": _items(effective, "parent_meeting_held"),
        "specialists": _items(effective, "specialist_involved"),
        "ehc": cyc["ehc"],
        "transitions": _items(
            effective,
            "transition_information_shared",
            "pupil_transferred",
            "pupil_left",
            "annual_report_shared",
        ),
        "measures": cycles_mod.measure_series(effective),
        "compliance": {
            "judged_on": today.isoformat(),
            "findings": findings,
            "checklist": checklist,
        },
        "record": {
            "events": len(events),
            "late_entries": sum(1 for t in trail if t["recorded_late"]),
            "corrections": corrections,
            "recorded_by_role": dict(sorted(Counter(t["actor"]["role"] for t in trail).items())),
            "audit_trail": trail,
        },
        "verification": verification,
    }


def index_entry(pack: Doc, files: Doc) -> Doc:
    """One line of a sample's index: who, where, what, how the record stands, and the files."""
    p, s = pack["pupil"], pack["summary"]
    return {
        "pupil_id": p["pupil_id"],
        "upn": p["upn"],
        "name": " ".join(x for x in (p["forename"], p["surname"]) if x),
        "year_group": p["year_group"],
        "school_urn": p["school_urn"],
        "provision": s["provision"],
        "primary_need": s["primary_need"],
        "secondary_need": s["secondary_need"],
        "cycles": s["cycles"],
        "interventions": s["interventions"],
        "reviews": s["reviews"],
        "findings": s["findings"],
        "not_met": s["checklist"]["not_met"],
        "partly_met": s["checklist"]["partly_met"],
        "chain_ok": s["chain_ok"],
        "files": files,
    }
