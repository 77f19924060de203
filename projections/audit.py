"""The audit trail: every event of a pupil, who recorded it, when, where, and what corrected what.

One entry per event, in stream order: its version, global position, id,
type, when it happened and when it was recorded (``recorded_late`` when
stored more than seven days after it happened), the actor (user id and role,
never a name), the school it was recorded in, its hash, and the links of
corrections: a ``record_corrected`` entry names the event it ``corrects``,
and that event's entry lists it in ``corrected_by``. Entries never hold event
content (personal or not); the store is the place to read it.

Entries are rows of their own (``senflow_audit.entries``), appended once and
never rewritten: kept inside the document, every write rewrote the pupil's
whole history (tens of KB), the largest cost of the running projections.
``corrected_by`` is therefore derived as the trail is read (``assemble``).
The document itself is the summary: ``counts`` of events of each type, late
entries, corrections and the school the pupil is at now.

``record_corrected`` needs no fact log here: the trail shows the original and
the correction side by side, which is what an auditor wants.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timedelta, tzinfo

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc, Projection
from senflow.projections.common import already_applied, envelope_part

LATE_AFTER = timedelta(days=7)


def entry(event: RecordedEvent) -> Doc:
    """The event's row in the trail, as stored (``corrected_by`` is added as it is read)."""
    data = event.data
    return {
        "version": event.version,
        "position": event.position,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": _iso(event.occurred_at, event.occurred_at.tzinfo, event.occurred_at.fold),
        "recorded_at": _iso(event.recorded_at, event.recorded_at.tzinfo, event.recorded_at.fold),
        "recorded_late": _late(event),
        "actor_id": event.actor.user_id,
        "actor_role": str(event.actor.role.value),
        "school_urn": event.tenant.school_urn,
        "hash": event.hash,
        "correlation_id": str(event.correlation_id),
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "corrects": (str(data.corrects_event_id) if isinstance(data, ev.RecordCorrected) else None),
    }


@functools.lru_cache(maxsize=4096)
def _iso(moment: datetime, zone: tzinfo | None, fold: int) -> str:
    """``moment.isoformat()``, remembered: a batch's or an import's events share their
    recording moment, and a school's their day's. The zone and fold are part of the key
    because equal moments in other zones (or either side of a clock change) compare equal
    but are written differently."""
    return moment.isoformat()


def _late(event: RecordedEvent) -> bool:
    return event.recorded_at - event.occurred_at > LATE_AFTER


def evolve(doc: Doc | None, event: RecordedEvent) -> Doc:
    if already_applied(doc, event):
        assert doc is not None
        return doc
    counts = dict(doc["counts"]) if doc else {}
    counts[event.event_type] = counts.get(event.event_type, 0) + 1
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
        "counts": counts,
        "late_entries": int(doc["late_entries"] if doc else 0) + int(_late(event)),
        "corrections": counts.get("record_corrected", 0),
    }


def assemble(doc: Doc, entries: list[Doc]) -> Doc:
    """The trail as readers see it: the summary with its entries in stream order, each
    listing the entries that correct it (in the order they were recorded)."""
    ordered = sorted(entries, key=lambda e: e["version"])
    corrected_by: dict[str, list[str]] = {}
    for e in ordered:
        if e.get("corrects") is not None:
            corrected_by.setdefault(e["corrects"], []).append(e["event_id"])
    return {
        **doc,
        "entries": [{**e, "corrected_by": corrected_by.get(e["event_id"], [])} for e in ordered],
    }


PROJECTION = Projection(
    name="audit",
    evolve=evolve,
    indexes=(
        "CREATE INDEX IF NOT EXISTS audit_late ON {schema}.docs (trust_id, school_urn) "
        "WHERE (doc->>'late_entries')::int > 0",
    ),
    entry=entry,
    assemble=assemble,
    # Releases before entries were rows kept them in the document: move them out once.
    upgrades=(
        """INSERT INTO {schema}.entries (stream_id, version, position, entry)
           SELECT d.stream_id, (e->>'version')::int, (e->>'position')::bigint,
                  e - 'corrected_by'
             FROM {schema}.docs d, jsonb_array_elements(d.doc->'entries') e
            WHERE d.doc ? 'entries'
           ON CONFLICT (stream_id, version) DO NOTHING""",
        "UPDATE {schema}.docs SET doc = doc - 'entries' WHERE doc ? 'entries'",
    ),
)


def timeline(doc: Doc) -> list[Doc]:
    """The pupil's entries in stream (version) order (of an assembled trail)."""
    return sorted(doc["entries"], key=lambda e: e["version"])


def count_by_type(docs: list[Doc]) -> dict[str, int]:
    """Events of each type across many pupils (e.g. a school's)."""
    total: Counter[str] = Counter()
    for doc in docs:
        total.update(doc["counts"])
    return dict(sorted(total.items()))
