"""The audit trail: every event of a pupil, who recorded it, when, where, and what corrected what.

One document per pupil with one entry per event, in stream order: its
version, global position, id, type, when it happened and when it was
recorded (``recorded_late`` when stored more than seven days after it
happened), the actor (user id and role, never a name), the school it was
recorded in, its hash, and the links of corrections: a ``record_corrected``
entry names the event it ``corrects``, and that event's entry lists it in
``corrected_by`` as soon as the correction arrives. Entries never hold event
content (personal or not); the store is the place to read it. ``counts`` holds
the number of events of each type.

``record_corrected`` needs no fact log here: the trail shows the original and
the correction side by side, which is what an auditor wants.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection
from senflow.projections.common import already_applied, envelope_part

LATE_AFTER = timedelta(days=7)


def _entry(event: RecordedEvent) -> Doc:
    data = event.data
    return {
        "version": event.version,
        "position": event.position,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "recorded_late": event.recorded_at - event.occurred_at > LATE_AFTER,
        "actor_id": event.actor.user_id,
        "actor_role": str(event.actor.role.value),
        "school_urn": event.tenant.school_urn,
        "hash": event.hash,
        "correlation_id": str(event.correlation_id),
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "corrects": (str(data.corrects_event_id) if isinstance(data, ev.RecordCorrected) else None),
        "corrected_by": [],
    }


def evolve(doc: Doc | None, event: RecordedEvent) -> Doc:
    if already_applied(doc, event):
        assert doc is not None
        return doc
    entry = _entry(event)
    entries: list[Doc] = list(doc["entries"]) if doc else []
    if entry["corrects"] is not None:
        for index in range(len(entries) - 1, -1, -1):
            if entries[index]["event_id"] == entry["corrects"]:
                target = entries[index]
                entries[index] = {
                    **target,
                    "corrected_by": [*target["corrected_by"], entry["event_id"]],
                }
                break
    entries.append(entry)
    counts = dict(doc["counts"]) if doc else {}
    counts[entry["event_type"]] = counts.get(entry["event_type"], 0) + 1
    data = event.data
    if isinstance(data, ev.PupilTransferred):
        school_urn = data.to_urn
    elif doc is not None:
        school_urn = doc["school_urn"]
    else:
        school_urn = event.tenant.school_urn
    return {
        **envelope_part(doc, event),
        "school_urn": school_urn,
        "entries": entries,
        "counts": counts,
        "late_entries": int(doc["late_entries"] if doc else 0) + int(entry["recorded_late"]),
        "corrections": counts.get("record_corrected", 0),
    }


PROJECTION = Projection(
    name="audit",
    evolve=evolve,
    indexes=(
        "CREATE INDEX IF NOT EXISTS audit_late ON {schema}.docs (trust_id, school_urn) "
        "WHERE (doc->>'late_entries')::int > 0",
    ),
)


def timeline(doc: Doc) -> list[Doc]:
    """The pupil's entries in stream (version) order."""
    return sorted(doc["entries"], key=lambda e: e["version"])


def count_by_type(docs: list[Doc]) -> dict[str, int]:
    """Events of each type across many pupils (e.g. a school's)."""
    total: Counter[str] = Counter()
    for doc in docs:
        total.update(doc["counts"])
    return dict(sorted(total.items()))
