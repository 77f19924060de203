"""Events a projection ignores keep the derived fields: they must be what a full derive gives.

``evolve`` skips deriving from the whole fact log again when an event leaves
the log as it was (sessions, meetings, views...) and the log names the
pupil's school; after every event of the story, with a transfer, corrections
and events after them, the document must hold what deriving it afresh gives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from senflow.events.catalogue import current_version
from senflow.events.envelope import RecordedEvent
from senflow.projections import compliance, provision_map, register
from senflow.projections.base import Doc
from senflow.services import demo
from senflow.services.importer import _decide
from senflow.services.workflow.commands import parse_command
from tests.unit.test_projection_register import Stream, _meeting, story_stream

pytestmark = pytest.mark.unit


def _busy_stream() -> Stream:
    stream = story_stream()
    session = next(e for e in stream.events if e.event_type == "intervention_session_recorded")
    concern = next(e for e in stream.events if e.event_type == "concern_raised")
    stream.correct(session, "2026-09-28", minutes=25)
    stream.correct(concern, "2026-09-28", source="parent")
    stream.add("pupil_transferred", {"from_urn": "123456", "to_urn": "654321"}, "2026-10-01")
    stream.add("parent_meeting_held", _meeting(), "2026-10-02")
    return stream


def _docs(evolve) -> Iterator[Doc]:  # type: ignore[no-untyped-def]
    doc = None
    for event in _busy_stream().events:
        doc = evolve(doc, event)
        yield doc


def test_register_keeps_what_a_full_derive_gives() -> None:
    for doc in _docs(register.evolve):
        derived = register.derive(doc["facts"])
        assert {k: doc[k] for k in derived} == derived


def test_compliance_keeps_the_school_a_full_derive_gives() -> None:
    for doc in _docs(compliance.evolve):
        assert doc["school_urn"] == register.derive(doc["facts"])["school_urn"]


def test_provision_map_keeps_what_a_full_derive_gives() -> None:
    for doc in _docs(provision_map.evolve):
        derived = provision_map.derive(doc["facts"], doc["session_log"])
        assert {k: doc[k] for k in derived} == derived


def _demo_histories(pupils: int) -> Iterator[list[RecordedEvent]]:
    """Demo pupils over four years (support cycles, EHC plans, leavers) as recorded events."""
    spec = demo.DemoSpec(seed=11, years=4)
    today, now = date(2026, 3, 20), datetime(2026, 3, 20, 12, tzinfo=UTC)
    for n in range(pupils):
        raw, _ = demo.pupil_commands(spec, 0, "131313", n, date(2022, 9, 5), today)
        decided = _decide([parse_command(c) for c in raw], now)
        assert isinstance(decided, list), decided
        pupil = decided[0].event_id  # any id: one stream per pupil
        yield [
            RecordedEvent(
                **e.model_dump(exclude={"data"}),
                data=e.data,
                stream_id=pupil,
                version=v,
                position=v,
                schema_version=current_version(e.event_type),
                recorded_at=now,
            )
            for v, e in enumerate(decided, start=1)
        ]


def test_provision_map_keeps_what_a_full_derive_gives_over_long_histories() -> None:
    """Facts appended one at a time (``_derive_one_more``) give what a whole derive does,
    after every event of many pupils' years of plan-do-review cycles and EHC plans."""
    checked: Counter[str] = Counter()
    for history in _demo_histories(300):
        doc = None
        for event in history:
            doc = provision_map.evolve(doc, event)
            derived = provision_map.derive(doc["facts"], doc["session_log"])
            assert {k: doc[k] for k in derived} == derived
            checked[event.event_type] += 1
    for kind in ("intervention_started", "intervention_ended", "review_held", "ehc_plan_issued"):
        assert checked[kind] >= 10, checked
