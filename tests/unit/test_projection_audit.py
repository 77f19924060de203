"""The audit projection: every event in order, who and when, late entries, corrections both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid5
from zoneinfo import ZoneInfo

import pytest

from senflow.projections import audit
from senflow.projections.base import fold
from tests.integration.story import EXAMPLE_PUPIL, story
from tests.unit.test_projection_register import (
    Stream,
    assert_plain_json,
    at_midday,
    fold_via_storage,
    story_events,
    story_stream,
)

pytestmark = pytest.mark.unit


def test_the_story_folds_to_one_entry_per_event() -> None:
    events = story_events()
    doc = fold(audit.PROJECTION, events)
    assert doc is not None
    assert_plain_json(doc)
    assert (doc["pupil_id"], doc["trust_id"], doc["school_urn"]) == (
        str(EXAMPLE_PUPIL),
        "trust-7",
        "123456",
    )
    entries = audit.timeline(doc)
    assert [e["version"] for e in entries] == list(range(1, 27))
    assert [e["event_id"] for e in entries] == [str(e.event_id) for e in events]
    first = entries[0]
    assert first == {
        "version": 1,
        "position": 1,
        "event_id": str(events[0].event_id),
        "event_type": "pupil_registered",
        "schema_version": 1,
        "occurred_at": events[0].occurred_at.isoformat(),
        "recorded_at": events[0].recorded_at.isoformat(),
        "recorded_late": False,
        "actor_id": "integration.1",
        "actor_role": "integration",
        "school_urn": "123456",
        "hash": events[0].hash,
        "correlation_id": str(events[0].correlation_id),
        "causation_id": str(events[0].causation_id),
        "corrects": None,
        "corrected_by": [],
    }
    assert entries[5]["event_type"] == "sen_support_started"
    assert entries[5]["schema_version"] == 2
    assert doc["counts"] == {
        "pupil_registered": 1,
        "concern_raised": 1,
        "parent_views_recorded": 1,
        "pupil_views_recorded": 1,
        "assessment_recorded": 1,
        "sen_support_started": 1,
        "plan_agreed": 2,
        "intervention_started": 3,
        "intervention_session_recorded": 2,
        "parent_meeting_held": 3,
        "intervention_ended": 3,
        "review_held": 2,
        "specialist_involved": 1,
        "ehc_needs_assessment_requested": 1,
        "ehc_needs_assessment_decided": 1,
        "ehc_plan_issued": 1,
        "ehc_annual_review_held": 1,
    }
    assert sum(doc["counts"].values()) == 26
    assert (doc["late_entries"], doc["corrections"]) == (0, 0)


def test_a_correction_is_linked_both_ways() -> None:
    stream = story_stream()
    target = stream.events[4]  # the WellComm screener
    first = stream.correct(target, "2026-09-28", standardised_score=80)
    second = stream.correct(target, "2026-09-29", standardised_score=79)
    doc = fold(audit.PROJECTION, stream.events)
    assert doc is not None
    entries = {e["event_id"]: e for e in audit.timeline(doc)}
    assert entries[str(target.event_id)]["corrected_by"] == [
        str(first.event_id),
        str(second.event_id),
    ]
    assert entries[str(first.event_id)]["corrects"] == str(target.event_id)
    assert entries[str(first.event_id)]["event_type"] == "record_corrected"
    assert entries[str(second.event_id)]["corrects"] == str(target.event_id)
    assert (doc["counts"]["record_corrected"], doc["corrections"]) == (2, 2)
    assert all(
        e["corrected_by"] == [] for e in entries.values() if e["event_id"] != str(target.event_id)
    )
    assert "Typed in the wrong value" not in json.dumps(doc)


def test_events_recorded_more_than_seven_days_late_are_flagged() -> None:
    stream = Stream()
    for cmd in story(EXAMPLE_PUPIL)[:2]:
        stream.command(cmd)
    meeting = {"attendees": ["senco", "parent"], "summary": "Met.", "record_given_to_parents": True}
    on_time = stream.add(
        "parent_meeting_held", meeting, "2024-10-01", recorded_at=at_midday("2024-10-08")
    )
    late = stream.add(
        "parent_meeting_held",
        meeting,
        "2024-10-01",
        recorded_at=at_midday("2024-10-08") + timedelta(seconds=1),
    )
    doc = fold(audit.PROJECTION, stream.events)
    assert doc is not None
    flags = {e["event_id"]: e["recorded_late"] for e in doc["entries"]}
    assert (flags[str(on_time.event_id)], flags[str(late.event_id)]) == (False, True)
    assert doc["late_entries"] == 1


def test_a_transfer_moves_the_pupil_and_entries_keep_where_they_were_recorded() -> None:
    stream = Stream()
    stream.command(story(EXAMPLE_PUPIL)[0])
    stream.add("pupil_transferred", {"from_urn": "123456", "to_urn": "654321"}, "2024-10-01")
    stream.add("concern_raised", {"source": "class_teacher", "description": "Quiet."}, "2024-10-02")
    doc = fold(audit.PROJECTION, stream.events)
    assert doc is not None
    assert doc["school_urn"] == "654321"
    assert [e["school_urn"] for e in audit.timeline(doc)] == ["123456", "123456", "654321"]


def test_timeline_is_in_version_order_whatever_the_stored_order() -> None:
    doc = fold(audit.PROJECTION, story_events())
    assert doc is not None
    shuffled = {**doc, "entries": list(reversed(doc["entries"]))}
    assert [e["version"] for e in audit.timeline(shuffled)] == list(range(1, 27))


def test_count_by_type_across_pupils() -> None:
    docs = [
        fold(audit.PROJECTION, story_events()),
        fold(audit.PROJECTION, story_events(uuid5(EXAMPLE_PUPIL, "another"), first_position=100)),
    ]
    totals = audit.count_by_type(docs)  # type: ignore[arg-type]
    assert totals["plan_agreed"] == 4
    assert sum(totals.values()) == 52
    assert list(totals) == sorted(totals)


def test_folding_the_same_events_twice_gives_equal_documents() -> None:
    events = story_events()
    once = fold(audit.PROJECTION, events)
    assert once == fold(audit.PROJECTION, events)
    assert fold(audit.PROJECTION, events + events) == once


def test_documents_read_back_from_storage_evolve_the_same() -> None:
    stream = story_stream()
    stream.correct(stream.events[4], "2026-09-28", standardised_score=80)
    read = fold(audit.PROJECTION, stream.events)
    assert read is not None
    summary = {k: v for k, v in read.items() if k != "entries"}  # the entries are rows
    assert fold_via_storage(audit.PROJECTION, stream.events) == summary


def test_evolve_does_not_change_the_document_it_is_given() -> None:
    stream = story_stream()
    doc = fold(audit.PROJECTION, stream.events)
    snapshot = json.dumps(doc, sort_keys=True)
    correction = stream.correct(stream.events[4], "2026-09-28", standardised_score=80)
    after = audit.evolve(doc, correction)
    assert json.dumps(doc, sort_keys=True) == snapshot
    assert after["corrections"] == doc["corrections"] + 1
    trail = fold(audit.PROJECTION, [*stream.events, correction])
    assert trail is not None
    assert trail["entries"][4]["corrected_by"] == [str(correction.event_id)]


def test_projection_declaration() -> None:
    assert audit.PROJECTION.name == "audit"
    for index in audit.PROJECTION.indexes:
        index.format(schema="senflow_audit")


def test_an_entry_writes_each_moment_in_its_own_zone() -> None:
    """Moments are written once and remembered: an equal moment in another zone is still
    written in that zone (equal datetimes, different text)."""
    registered = Stream().command(story(EXAMPLE_PUPIL)[0])
    in_utc = datetime(2024, 10, 1, 11, 0, tzinfo=UTC)
    in_london = in_utc.astimezone(ZoneInfo("Europe/London"))
    assert in_utc == in_london
    texts = [
        audit.entry(registered.model_copy(update={"recorded_at": moment}))["recorded_at"]
        for moment in (in_utc, in_london, in_utc)
    ]
    assert texts == [
        "2024-10-01T11:00:00+00:00",
        "2024-10-01T12:00:00+01:00",
        "2024-10-01T11:00:00+00:00",
    ]
