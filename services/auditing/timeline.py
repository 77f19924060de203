"""A pupil's stream seen on two time axes: when things happened, and when senflow knew them.

* ``as_of`` (a school day): what had *happened* by the end of that day. Events
  whose ``occurred_at`` is later are left out. Corrections known in the view are
  applied to what had happened, even a correction made after ``as_of``: "as of"
  is the best knowledge of that day (as ``senflow history --as-of`` does).
* ``as_known_at`` (a moment): what senflow had *recorded* before then. Events
  recorded at or after it are left out, corrections included, so the view is
  exactly what a reader of the system would have seen at that moment. Events
  that had happened by then (or by ``as_of``) but were recorded only later are
  listed apart as ``recorded_later``: that is how a late entry shows as late.

Both may be given (bitemporal: "what did we know on 1 March about January?").
Nothing here reads a database: the caller passes the whole stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.events.personal import Redacted
from senflow.projections.audit import LATE_AFTER
from senflow.services.workflow.calendar import SCHOOL_TZ, end_of_school_day, school_day

__all__ = [
    "LATE_AFTER",
    "View",
    "effective_events",
    "parse_moment",
    "personal",
    "select",
    "timeline_entry",
]


@dataclass(frozen=True)
class View:
    as_of: date | None
    as_known_at: datetime | None
    events: list[RecordedEvent]  # happened by as_of and known at as_known_at, stream order
    corrections: list[RecordedEvent]  # known corrections of events in view (any day)
    recorded_later: list[RecordedEvent]  # happened by the cut-off, recorded only later
    stream_length: int  # events in the whole stream (today)

    @property
    def occurred_before(self) -> datetime | None:
        return end_of_school_day(self.as_of) if self.as_of is not None else None

    @property
    def corrected_by(self) -> dict[UUID, list[UUID]]:
        out: dict[UUID, list[UUID]] = {}
        for c in self.corrections:
            assert isinstance(c.data, ev.RecordCorrected)
            out.setdefault(c.data.corrects_event_id, []).append(c.event_id)
        return out


def parse_moment(value: str) -> datetime:
    """A moment from ISO text: a date means the end of that school day; no zone means UK time."""
    if len(value) == 10:
        return end_of_school_day(date.fromisoformat(value))
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=SCHOOL_TZ)


def select(
    events: Sequence[RecordedEvent],
    as_of: date | None = None,
    as_known_at: datetime | None = None,
) -> View:
    """The events in view (see the module docstring), in stream order."""
    occurred_before = end_of_school_day(as_of) if as_of is not None else None
    known = [e for e in events if as_known_at is None or e.recorded_at < as_known_at]
    happened = [e for e in known if occurred_before is None or e.occurred_at < occurred_before]
    in_view = {e.event_id for e in happened}
    corrections = [
        e
        for e in known
        if isinstance(e.data, ev.RecordCorrected) and e.data.corrects_event_id in in_view
    ]
    later: list[RecordedEvent] = []
    if as_known_at is not None:
        horizon = min(as_known_at, occurred_before) if occurred_before else as_known_at
        later = [e for e in events if e.recorded_at >= as_known_at and e.occurred_at < horizon]
    return View(as_of, as_known_at, happened, corrections, later, len(events))


def effective_events(view: View) -> list[RecordedEvent]:
    """The events in view, corrections left out, each with its latest known correction's content.

    The envelope (id, version, when it happened, when it was recorded, who) is
    the original's, as the write side and the projections treat corrections.
    """
    replacement: dict[UUID, ev.EventData] = {}
    for c in view.corrections:  # stream order: the latest correction wins
        assert isinstance(c.data, ev.RecordCorrected)
        replacement[c.data.corrects_event_id] = c.data.replacement
    return [
        e.model_copy(update={"data": replacement[e.event_id]}) if e.event_id in replacement else e
        for e in view.events
        if not isinstance(e.data, ev.RecordCorrected)
    ]


def personal(value: Any) -> Any:
    """A personal value for a document: the text, or the redaction marker after an erasure."""
    if isinstance(value, Redacted):
        return value.marker
    if isinstance(value, date):
        return value.isoformat()
    return value


def recorded_late(event: RecordedEvent) -> bool:
    return event.recorded_at - event.occurred_at > LATE_AFTER


def delay_days(event: RecordedEvent) -> int:
    return max(0, (event.recorded_at - event.occurred_at) // timedelta(days=1))


def timeline_entry(
    event: RecordedEvent, corrected_by: dict[UUID, list[UUID]], content: bool = True
) -> dict[str, Any]:
    """One line of a timeline: envelope, lateness, correction links and (optionally) content."""
    data = event.data
    entry: dict[str, Any] = {
        "version": event.version,
        "position": event.position,
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "on": school_day(event.occurred_at).isoformat(),
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "recorded_late": recorded_late(event),
        "delay_days": delay_days(event),
        "actor": {"user_id": event.actor.user_id, "role": str(event.actor.role.value)},
        "school_urn": event.tenant.school_urn,
        "corrects": (str(data.corrects_event_id) if isinstance(data, ev.RecordCorrected) else None),
        "corrected_by": [str(c) for c in corrected_by.get(event.event_id, [])],
        "hash": event.hash,
    }
    if content:
        entry["data"] = data.model_dump(mode="json")
    return entry
