"""The event catalogue: the union, JSON round trips, immutability, redaction, upcasting."""

from __future__ import annotations

import typing
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from senflow.events import catalogue as ev
from senflow.events.codes import NeedType
from senflow.events.personal import REDACTION_TEXT, Redacted
from senflow.events.upcasting import UnknownSchemaVersion, upcast
from senflow.services.workflow.commands import COMMAND_EVENTS, parse_command

pytestmark = pytest.mark.unit

MEASURE = {"instrument": "WellComm", "value": 82.5, "unit": "standardised_score"}
PROVISION = {
    "provision_id": "P1",
    "name": "Talk Boost",
    "delivery": "small_group",
    "staff_role": "teaching_assistant",
    "sessions_per_week": 3,
    "minutes_per_session": 30,
    "weeks": 10,
    "group_size": 4,
    "cost_pence": 12000,
    "outcome_ids": ["O1"],
}
NEEDS = [{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}]

# One valid example of every event type, as JSON-shaped data.
SAMPLES: dict[str, dict[str, Any]] = {
    "pupil_registered": {
        "upn": "B801200005001",
        "forename": "Amy",
        "surname": "Jones",
        "date_of_birth": "2016-04-02",
        "year_group": "R",
        "mis_id": "SIMS-1",
        "on_roll_from": "2021-09-01",
    },
    "concern_raised": {"source": "parent", "area": "sensory_and_physical", "description": "x"},
    "parent_views_recorded": {"context": "review", "views": "Happy"},
    "pupil_views_recorded": {"context": "planning", "method": "visual", "views": "Sad"},
    "assessment_recorded": {
        "kind": "standardised_score",
        "instrument": "NGRT",
        "area": "cognition_and_learning",
        "standardised_score": 72,
        "summary": "Reading age 2 years below",
    },
    "specialist_involved": {
        "specialist": "educational_psychologist",
        "parental_consent": True,
        "consent_given_on": "2025-01-10",
        "reason": "Assessment of cognition",
    },
    "sen_support_started": {
        "needs": NEEDS,
        "parents_notified": True,
        "parents_notified_on": "2025-01-10",
        "notification_method": "letter",
    },
    "needs_reclassified": {"needs": NEEDS, "reason": "After EP report"},
    "plan_agreed": {
        "plan_id": str(uuid4()),
        "outcomes": [{"outcome_id": "O1", "description": "Reads", "target_date": "2025-07-01"}],
        "provisions": [PROVISION],
        "expected_impact": "Reading age up 6 months",
        "review_date": "2025-04-01",
        "agreed_by": ["senco", "parent", "pupil"],
        "staff_informed": True,
        "staff_informed_on": "2025-01-11",
    },
    "intervention_started": {
        "intervention_id": str(uuid4()),
        "plan_id": str(uuid4()),
        "provision_id": "P1",
        "entry_measure": MEASURE,
    },
    "intervention_session_recorded": {
        "intervention_id": str(uuid4()),
        "minutes": 30,
        "attended": False,
        "note": "Ill",
    },
    "intervention_ended": {
        "intervention_id": str(uuid4()),
        "reason": "stopped_early",
        "exit_measure": {**MEASURE, "unit": "age_months", "higher_is_better": True},
    },
    "progress_recorded": {"outcome_id": "O1", "measure": MEASURE, "note": "Better"},
    "parent_meeting_held": {
        "attendees": ["senco", "parent"],
        "summary": "Progress",
        "agreed_actions": "Reading at home",
        "record_given_to_parents": True,
    },
    "review_held": {
        "plan_id": str(uuid4()),
        "outcome_progress": [{"outcome_id": "O1", "rating": "met", "note": "Yes"}],
        "intervention_impact": [{"intervention_id": str(uuid4()), "impact": "good", "keep": True}],
        "pupil_views": "Good",
        "parent_views": "Good",
        "decision": "revise_plan",
        "next_review_date": "2025-07-01",
    },
    "ehc_needs_assessment_requested": {
        "requested_by": "parent",
        "local_authority": "202",
        "evidence_summary": "Two cycles",
    },
    "ehc_needs_assessment_decided": {"decision": "declined", "la_reference": None},
    "ehc_plan_issued": {
        "la_reference": "LA/1",
        "needs": NEEDS,
        "first_review_due": "2026-01-01",
        "provision_summary": "Section F",
    },
    "ehc_annual_review_held": {
        "recommendation": "amend",
        "next_review_due": "2026-01-01",
        "pupil_views": "x",
        "parent_views": "y",
    },
    "sen_support_ended": {"reason": "no_longer_sen", "note": "Caught up"},
    "transition_information_shared": {
        "recipient": "next_school",
        "recipient_urn": "111111",
        "parental_agreement": True,
        "summary": "One-page profile",
    },
    "pupil_transferred": {"from_urn": "123456", "to_urn": "654321"},
    "pupil_left": {"destination": "school_outside_trust", "destination_urn": "222222"},
    "record_corrected": {
        "corrects_event_id": str(uuid4()),
        "replacement": {"event_type": "concern_raised", "source": "parent", "description": "y"},
        "reason": "Wrong source",
    },
    "personal_data_erased": {"reason_code": "retention_expired", "reason": "25th birthday + 6y"},
    "annual_report_shared": {"academic_year": "2025/26"},
    "review_due": {"plan_id": str(uuid4()), "review_date": "2026-01-20", "lead_days": 14},
    "review_overdue": {"plan_id": str(uuid4()), "review_date": "2026-01-20"},
    "ehc_annual_review_due": {"last_reviewed_on": "2025-10-15", "due_by": "2026-10-15"},
    "ehc_annual_review_overdue": {"last_reviewed_on": "2025-10-15", "due_by": "2026-10-15"},
    "parent_meetings_behind": {
        "academic_year": "2025/26",
        "term": "autumn",
        "expected": 1,
        "held": 0,
    },
    "annual_report_due": {"academic_year": "2025/26", "due_by": "2026-07-20"},
    "retention_expired": {"retention_years": 31},
}


def union_members(annotated: Any) -> set[type]:
    union = typing.get_args(annotated)[0]
    return set(typing.get_args(union))


def sample(event_type: str) -> ev.EventData:
    return ev.EVENT_ADAPTER.validate_python({"event_type": event_type, **SAMPLES[event_type]})


def test_samples_cover_the_catalogue() -> None:
    assert set(SAMPLES) == set(ev.EVENT_TYPES)
    assert len(ev.EVENT_TYPES) == 33


def test_every_event_type_is_in_the_union() -> None:
    assert union_members(ev.Event) == set(ev.EVENT_TYPES.values())


def test_every_event_but_corrections_erasure_and_notices_is_correctable() -> None:
    notices = {ev.EVENT_TYPES[name] for name in ev.NOTICE_TYPES}
    not_correctable = {ev.RecordCorrected, ev.PersonalDataErased} | notices
    assert union_members(ev.CorrectableEvent) == set(ev.EVENT_TYPES.values()) - not_correctable


def test_every_command_asks_for_a_catalogue_event() -> None:
    assert set(COMMAND_EVENTS.values()) <= set(ev.EVENT_TYPES.values())
    # Erasure is the vault's business, never a command.
    assert ev.PersonalDataErased not in COMMAND_EVENTS.values()


@pytest.mark.parametrize("event_type", sorted(ev.EVENT_TYPES))
def test_event_round_trips_json(event_type: str) -> None:
    event = sample(event_type)
    assert type(event) is ev.EVENT_TYPES[event_type]
    assert event.event_type == event_type  # type: ignore[attr-defined]
    again = ev.EVENT_ADAPTER.validate_json(ev.EVENT_ADAPTER.dump_json(event))
    assert again == event
    assert type(again) is type(event)
    # and through plain JSON-shaped python data as well
    assert ev.EVENT_ADAPTER.validate_python(event.model_dump(mode="json")) == event


@pytest.mark.parametrize("event_type", sorted(ev.EVENT_TYPES))
def test_events_are_frozen(event_type: str) -> None:
    event = sample(event_type)
    name = next(n for n in type(event).model_fields if n != "event_type")
    with pytest.raises(ValidationError, match="frozen"):
        setattr(event, name, None)


@pytest.mark.parametrize("event_type", sorted(ev.EVENT_TYPES))
def test_events_refuse_unknown_fields(event_type: str) -> None:
    with pytest.raises(ValidationError, match="extra"):
        ev.EVENT_ADAPTER.validate_python(
            {"event_type": event_type, **SAMPLES[event_type], "surprise": 1}
        )


def test_nested_values_are_frozen_too() -> None:
    plan = sample("plan_agreed")
    assert isinstance(plan, ev.PlanAgreed)
    with pytest.raises(ValidationError, match="frozen"):
        plan.provisions[0].weeks = 52  # type: ignore[misc]


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        ev.EVENT_ADAPTER.validate_python({"event_type": "pupil_teleported"})


def test_current_versions() -> None:
    assert ev.current_version("sen_support_started") == 2
    assert ev.current_version("concern_raised") == 1


# --- redaction -----------------------------------------------------------------------------

MARKER = {"redacted": True, "marker": REDACTION_TEXT}


def test_redaction_marker_is_refused_without_the_vault() -> None:
    data = {"event_type": "concern_raised", "source": "parent", "description": MARKER}
    with pytest.raises(ValidationError, match="redaction marker"):
        ev.EVENT_ADAPTER.validate_python(data)
    with pytest.raises(ValidationError, match="redaction marker"):
        ev.EVENT_ADAPTER.validate_python(data, context={"allow_redacted": False})


def test_redaction_marker_is_accepted_from_the_vault() -> None:
    data = {**SAMPLES["pupil_registered"], "event_type": "pupil_registered"}
    data.update(forename=MARKER, surname=MARKER, date_of_birth=MARKER)
    event = ev.EVENT_ADAPTER.validate_python(data, context={"allow_redacted": True})
    assert isinstance(event, ev.PupilRegistered)
    assert isinstance(event.forename, Redacted)
    assert isinstance(event.date_of_birth, Redacted)
    assert str(event.surname) == REDACTION_TEXT
    assert event.upn == "B801200005001"  # codes and dates stay in clear
    # what the vault produced can be re-read by the vault, never by anyone else
    dumped = ev.EVENT_ADAPTER.dump_json(event)
    assert ev.EVENT_ADAPTER.validate_json(dumped, context={"allow_redacted": True}) == event
    with pytest.raises(ValidationError, match="redaction marker"):
        ev.EVENT_ADAPTER.validate_json(dumped)


def test_a_command_cannot_submit_a_redaction_marker() -> None:
    with pytest.raises(ValidationError, match="redaction marker"):
        parse_command(
            {
                "command": "raise_concern",
                "pupil_id": str(uuid4()),
                "occurred_at": "2025-01-10",
                "actor": {"user_id": "senco.1", "role": "senco"},
                "payload": {"source": "parent", "description": MARKER},
            }
        )


def test_sealed_value_needs_the_vault() -> None:
    data = {"event_type": "concern_raised", "source": "parent", "description": {"$sealed": "x"}}
    with pytest.raises(ValidationError, match="vault"):
        ev.EVENT_ADAPTER.validate_python(data)
    opened = ev.EVENT_ADAPTER.validate_python(
        data, context={"open": lambda token: f"opened {token['$sealed']}"}
    )
    assert opened.description == "opened x"  # type: ignore[union-attr]


# --- upcasting -----------------------------------------------------------------------------

V1 = {
    "need_types": ["SLCN", "SEMH", "ASD"],
    "parents_notified": True,
    "parents_notified_on": "2025-09-01",
}


def test_upcast_sen_support_started_v1_ranks_the_first_two_needs() -> None:
    data = upcast("sen_support_started", 1, dict(V1))
    event = ev.SenSupportStarted.model_validate(data)
    assert [(n.type, n.rank) for n in event.needs] == [(NeedType.SLCN, 1), (NeedType.SEMH, 2)]
    assert event.parents_notified is True
    assert event.parents_notified_on.isoformat() == "2025-09-01"  # type: ignore[union-attr]
    assert "need_types" not in data


def test_upcast_does_not_change_its_input() -> None:
    original = dict(V1)
    upcast("sen_support_started", 1, original)
    assert original == V1


def test_upcast_passes_sealed_values_through() -> None:
    token = {"$sealed": "opaque"}
    data = upcast("sen_support_started", 1, {**V1, "note": token})
    assert data["note"] is token


def test_upcast_v1_with_one_or_no_need() -> None:
    assert upcast("sen_support_started", 1, {"need_types": ["NSA"]})["needs"] == [
        {"type": "NSA", "rank": 1}
    ]
    assert upcast("sen_support_started", 1, {"parents_notified": False})["needs"] == []


def test_upcast_current_version_is_identity() -> None:
    data = {"source": "parent", "description": "x"}
    assert upcast("concern_raised", 1, data) == data
    current = {"needs": NEEDS, "parents_notified": True}
    assert upcast("sen_support_started", 2, current) == current


@pytest.mark.parametrize(("event_type", "version"), [("sen_support_started", 3), ("pupil_left", 2)])
def test_upcast_refuses_a_newer_version(event_type: str, version: int) -> None:
    with pytest.raises(UnknownSchemaVersion, match="newer"):
        upcast(event_type, version, {})


def test_a_command_dated_before_1990_is_refused() -> None:
    import pydantic

    from senflow.services.workflow.commands import parse_command

    with pytest.raises(pydantic.ValidationError, match="1990"):
        parse_command(
            {
                "command": "raise_concern",
                "pupil_id": str(uuid4()),
                "occurred_at": "0001-01-01T00:00:00+14:00",
                "actor": {"user_id": "t", "role": "class_teacher"},
                "payload": {"source": "parent", "description": "x"},
            }
        )


def test_control_characters_in_a_command_are_refused_naming_the_field() -> None:
    import pydantic

    from senflow.services.workflow.commands import parse_command

    with pytest.raises(pydantic.ValidationError, match=r"payload\.description"):
        parse_command(
            {
                "command": "raise_concern",
                "pupil_id": str(uuid4()),
                "occurred_at": "2025-01-01",
                "actor": {"user_id": "t", "role": "class_teacher"},
                "payload": {"source": "parent", "description": "O\x0bBrien\x00"},
            }
        )
