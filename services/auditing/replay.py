"""Replay: a pupil's state, cycles and timeline as they stood on a date, or as known at a moment.

:func:`build_replay` is pure: it takes the pupil's whole stream (as the store
returns it, personal fields open or withheld) and the two cut-offs of
:mod:`.timeline`. ``gather.replay_pupil`` reads the stream and calls it; the
CLI (``senflow replay``) and the HTTP API call that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.services.auditing import cycles as cycles_mod
from senflow.services.auditing.timeline import (
    effective_events,
    personal,
    select,
    timeline_entry,
)
from senflow.services.workflow.calendar import school_day
from senflow.services.workflow.state import PupilState, replay

Doc = dict[str, Any]
_STATE = TypeAdapter(PupilState)


def state_json(state: PupilState) -> Doc:
    doc: Doc = _STATE.dump_python(state, mode="json")
    doc["event_types"] = len(state.event_types)
    return doc


def reference_day(as_of: date | None, as_known_at: datetime | None, today: date) -> date:
    """The day against which open cycles are judged (overdue or not)."""
    if as_of is not None:
        return as_of
    if as_known_at is not None:
        return min(school_day(as_known_at), today)
    return today


def build_replay(
    events: Sequence[RecordedEvent],
    as_of: date | None,
    as_known_at: datetime | None,
    today: date,
) -> Doc:
    """The replay document; raises LookupError when the stream is empty."""
    if not events:
        raise LookupError("no such pupil")
    view = select(events, as_of, as_known_at)
    seen = {e.event_id for e in view.events}
    facts = sorted(
        [*view.events, *(c for c in view.corrections if c.event_id not in seen)],
        key=lambda e: e.version,
    )
    state = replay(facts)
    effective = effective_events(view)
    judged_on = reference_day(as_of, as_known_at, today)
    corrected_by = view.corrected_by
    cutoff = view.occurred_before
    corrections = []
    for c in view.corrections:
        assert isinstance(c.data, ev.RecordCorrected)
        corrections.append(
            {
                "event_id": str(c.event_id),
                "corrects": str(c.data.corrects_event_id),
                "on": school_day(c.occurred_at).isoformat(),
                "recorded_at": c.recorded_at.isoformat(),
                "reason": personal(c.data.reason),
                "made_after_as_of": cutoff is not None and c.occurred_at >= cutoff,
            }
        )
    timeline = [timeline_entry(e, corrected_by) for e in view.events]
    return {
        "pupil_id": str(events[0].stream_id),
        "as_of": as_of.isoformat() if as_of else None,
        "as_known_at": as_known_at.isoformat() if as_known_at else None,
        "judged_on": judged_on.isoformat(),
        "stream_events": view.stream_length,
        "events_in_view": len(view.events),
        "state": state_json(state),
        "cycles": cycles_mod.build(effective, judged_on),
        "timeline": timeline,
        "late_entries": sum(1 for t in timeline if t["recorded_late"]),
        "corrections": corrections,
        "recorded_later": [timeline_entry(e, {}) for e in view.recorded_later],
    }


def describe(doc: Doc) -> list[str]:
    """Lines for a person: the state, each cycle, then the timeline (no free text)."""
    s = doc["state"]
    when = f"as of {doc['as_of'] or 'now'}" + (
        f", as known at {doc['as_known_at']}" if doc["as_known_at"] else ""
    )
    needs = ", ".join(f"{n['type']}({n['rank']})" for n in s["needs"]) or "-"
    out = [
        f"pupil {doc['pupil_id']} {when}: {doc['events_in_view']} of {doc['stream_events']} events",
        f"  provision {s['provision']}  needs {needs}  next review {s['next_review_due'] or '-'}"
        f"  EHC annual review due {s['ehc_next_review_due'] or '-'}",
    ]
    for c in doc["cycles"]["cycles"]:
        review = c["review"]
        reviewed = (
            f"reviewed {review['held_on']} ({'on time' if review['on_time'] else 'late'}) "
            f"-> {review['decision']}"
            if review
            else c["status"]
        )
        ratings = ", ".join(f"{o['outcome_id']}:{o['rating'] or '-'}" for o in c["outcomes"])
        out.append(
            f"  cycle {c['number']}: plan {c['started_on']} review date {c['review_date']}"
            f"  {len(c['interventions'])} interventions  outcomes {ratings}  {reviewed}"
        )
        for i in c["interventions"]:
            entry = i["entry"]["value"] if i["entry"] else "-"
            exit_ = i["exit"]["value"] if i["exit"] else "-"
            out.append(
                f"      {i['name']}: {i['started_on']} to {i['ended_on'] or 'running'}"
                f"  {entry} -> {exit_}  impact {i['impact'] or '-'}"
            )
    for e in doc["timeline"]:
        flags = " LATE" if e["recorded_late"] else ""
        flags += " corrected" if e["corrected_by"] else ""
        out.append(
            f"  v{e['version']:<3} {e['on']}  {e['event_type']:<32} recorded "
            f"{e['recorded_at'][:10]} by {e['actor']['role']}:{e['actor']['user_id']}{flags}"
        )
    for e in doc["recorded_later"]:
        out.append(
            f"  not yet known: v{e['version']} {e['on']} {e['event_type']} "
            f"(recorded {e['recorded_at'][:19]}, {e['delay_days']} days after)"
        )
    return out
