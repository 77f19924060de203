"""Events a projection ignores keep the derived fields: they must be what a full derive gives.

``evolve`` skips deriving from the whole fact log again when an event leaves
the log as it was (sessions, meetings, views...) and the log names the
pupil's school; after every event of the story, with a transfer, corrections
and events after them, the document must hold what deriving it afresh gives.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from senflow.projections import compliance, provision_map, register
from senflow.projections.base import Doc
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
