"""Helpers shared by the projections: days, year groups, measures, needs, the envelope part.

Everything here returns JSON-ready values (``str``, ``int``, ``float``,
``bool``, ``None``, lists and dicts): documents are stored as ``jsonb`` and read
back with ``json.loads``, so ``evolve`` must never rely on ``date``, ``UUID``
or enum objects, nor on the order of a dict's keys (``jsonb`` does not keep it).
Ordered things are lists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.base import Doc
from senflow.services.workflow.calendar import academic_year_start, school_day

# National curriculum years in order, as the catalogue spells them.
YEAR_GROUPS: tuple[str, ...] = ("N1", "N2", "R", *(str(n) for n in range(1, 15)))


def iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_day(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def day_of(event: RecordedEvent) -> str:
    """The school day (England) on which the event happened, as an ISO string."""
    return _school_day_text(event.occurred_at)


@functools.lru_cache(maxsize=4096)
def _school_day_text(moment: datetime) -> str:
    # Remembered: every projection asks for every event's day, a time-zone conversion
    # each, and a school's events share few moments. Equal moments are the same instant
    # (they are always zone-aware), so they fall on the same day in England.
    return school_day(moment).isoformat()


def year_group_on(recorded: str | None, recorded_on: str | None, day: date) -> str | None:
    """The year group on ``day`` of a pupil recorded in ``recorded`` on ``recorded_on``.

    senflow records the year group once, at registration; pupils move up a
    year every 1 September. Years before the recorded one are not guessed
    (the recorded year is returned) and Year 14 is the last.
    """
    if recorded is None or recorded_on is None or recorded not in YEAR_GROUPS:
        return recorded
    start = academic_year_start(date.fromisoformat(recorded_on)).year
    steps = max(0, academic_year_start(day).year - start)
    return YEAR_GROUPS[min(YEAR_GROUPS.index(recorded) + steps, len(YEAR_GROUPS) - 1)]


def year_group_order(value: Any) -> tuple[int, str]:
    """Sort key putting year groups in curriculum order (N1, N2, R, 1 ... 14), others last."""
    if isinstance(value, str) and value in YEAR_GROUPS:
        return (YEAR_GROUPS.index(value), value)
    return (len(YEAR_GROUPS), str(value))


def measure_doc(measure: ev.Measure | None) -> dict[str, Any] | None:
    if measure is None:
        return None
    return {
        "instrument": measure.instrument,
        "value": float(measure.value),
        "unit": str(measure.unit),
        "higher_is_better": bool(measure.higher_is_better),
    }


def needs_doc(needs: Iterable[ev.RankedNeed]) -> list[dict[str, Any]]:
    """Ranked needs as ``[{type, rank}]``, primary first."""
    return sorted(
        ({"type": str(n.type.value), "rank": int(n.rank)} for n in needs),
        key=lambda n: (n["rank"], n["type"]),
    )


def need_of_rank(needs: list[dict[str, Any]], rank: int) -> str | None:
    return next((n["type"] for n in needs if n["rank"] == rank), None)


def already_applied(doc: Doc | None, event: RecordedEvent) -> bool:
    """True when the document has seen this version of the stream (a redelivery)."""
    return doc is not None and event.version <= int(doc.get("version", 0))


def envelope_part(doc: Doc | None, event: RecordedEvent) -> Doc:
    """The fields every projection keeps from the envelope, after ``event``."""
    day = day_of(event)
    last = doc.get("last_event_on") if doc else None
    return {
        "pupil_id": str(event.stream_id),
        "trust_id": event.tenant.trust_id,
        "version": event.version,
        "position": event.position,
        "last_event_on": max(day, last) if last else day,
    }


def names_school(facts: list[Doc]) -> bool:
    """Whether the fact log says which school the pupil is at (registered, or transferred).

    Then the school derived from the log never falls back to the event's, so the
    fields derived from an unchanged log are exactly those the document holds, and
    ``evolve`` can keep them instead of deriving them again from the whole log (most
    events leave a projection's fact log as it was).
    """
    return any(f["type"] in ("pupil_registered", "pupil_transferred") for f in facts)


def replace_fact(facts: list[Doc], target_id: str, fields: Doc, correction_id: str) -> list[Doc]:
    """The fact log with the content of ``target_id`` replaced (its id, day and school kept)."""
    out: list[Doc] = []
    for fact in facts:
        if fact["event_id"] == target_id:
            kept = {k: fact[k] for k in ("event_id", "type", "on", "school_urn")}
            fact = {**kept, **fields, "corrected_by": correction_id}
        out.append(fact)
    return out


def with_fact(
    facts: list[Doc], event: RecordedEvent, fields: Callable[[ev.EventData], Doc | None]
) -> list[Doc]:
    """The fact log after ``event``: a new fact, a corrected one, or unchanged.

    ``fields`` gives the non-personal content a projection keeps of an event
    (None for events it ignores).
    """
    data = event.data
    if isinstance(data, ev.RecordCorrected):
        replacement = fields(data.replacement)
        if replacement is None:
            return facts
        return replace_fact(
            facts, str(data.corrects_event_id), replacement, correction_id=str(event.event_id)
        )
    content = fields(data)
    if content is None:
        return facts
    return [
        *facts,
        {
            "event_id": str(event.event_id),
            "type": event.event_type,
            "on": day_of(event),
            "school_urn": event.tenant.school_urn,
            **content,
        },
    ]
