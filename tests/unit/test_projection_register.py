"""The SEN register projection: the story's pupil, as of dates, corrections, transfers, leaving.

Events are built by hand as the bus delivers them: a RecordedEvent per command
of ``tests/integration/story.py`` (payload = event content), with personal
fields sealed on the way out and withheld on the way in, so every personal
value arrives as ``Redacted``. ``Stream`` and ``story_events`` are shared with
the other projection tests.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest

from senflow.events.catalogue import EVENT_TYPES, EventData
from senflow.events.envelope import RecordedEvent
from senflow.events.personal import SEALED_KEY, Redacted
from senflow.projections import register
from senflow.projections.base import Doc, fold
from senflow.services.workflow.calendar import SCHOOL_TZ
from senflow.services.workflow.commands import COMMAND_EVENTS
from tests.integration.story import EXAMPLE_PUPIL, TENANT, ids, story

pytestmark = pytest.mark.unit

PERSONAL_WORDS = ("Amy", "Jones", "2017-03-14", "Mum", "Talk Boost is fun", "words get stuck")


# --- building events as the bus delivers them ----------------------------------------------


def _sealed(_plain: Any) -> dict[str, str]:
    return {SEALED_KEY: "v1:opaque"}


def _withheld(_token: dict[str, str]) -> Redacted:
    return Redacted.model_construct(marker="[personal data withheld]")


def as_on_the_bus(event: RecordedEvent) -> RecordedEvent:
    """The event with every personal field (nested ones too) replaced by Redacted."""
    body = event.model_dump_json(context={"seal": _sealed})
    return RecordedEvent.model_validate_json(body, context={"open": _withheld})


def at_midday(day: str | date) -> datetime:
    d = day if isinstance(day, date) else date.fromisoformat(day)
    return datetime.combine(d, time(12), SCHOOL_TZ)


class Stream:
    """One pupil's stream: versions count from 1, positions from ``first_position``."""

    def __init__(
        self,
        pupil: UUID = EXAMPLE_PUPIL,
        tenant: dict[str, str] | None = None,
        first_position: int = 1,
        *,
        follow_transfers: bool = True,
    ) -> None:
        self.pupil = pupil
        self.tenant = dict(tenant or TENANT)
        self.position = first_position - 1
        self.follow_transfers = follow_transfers
        self.events: list[RecordedEvent] = []
        self.originals: dict[UUID, EventData] = {}  # content before withholding, for corrections

    def add(
        self,
        event_type: str,
        payload: dict[str, Any],
        day: str | date,
        *,
        role: str = "senco",
        recorded_at: datetime | None = None,
        tenant: dict[str, str] | None = None,
    ) -> RecordedEvent:
        model = EVENT_TYPES[event_type]
        data = model.model_validate({**payload, "event_type": event_type})
        version = len(self.events) + 1
        self.position += 1
        occurred = at_midday(day)
        event = RecordedEvent(
            event_id=uuid5(self.pupil, f"event-{version}"),
            stream_id=self.pupil,
            version=version,
            position=self.position,
            schema_version=model.schema_version,
            occurred_at=occurred,
            recorded_at=recorded_at or occurred + timedelta(minutes=5),
            actor={"user_id": f"{role}.1", "role": role},
            tenant=tenant or self.tenant,
            correlation_id=uuid5(self.pupil, f"command-{version}"),
            causation_id=uuid5(self.pupil, f"command-{version}"),
            data=data,
            hash=f"{version:064x}",
        )
        if event_type == "pupil_transferred" and self.follow_transfers:
            self.tenant = {**self.tenant, "school_urn": payload["to_urn"]}
        bus_event = as_on_the_bus(event)
        self.originals[bus_event.event_id] = data
        self.events.append(bus_event)
        return bus_event

    def command(self, cmd: dict[str, Any]) -> RecordedEvent:
        """The event a story command records (its payload is the event's content)."""
        event_type = COMMAND_EVENTS[cmd["command"]].model_fields["event_type"].default
        return self.add(
            event_type,
            cmd["payload"],
            cmd["occurred_at"],
            role=cmd["actor"]["role"],
            tenant=cmd.get("tenant"),
        )

    def correct(self, target: RecordedEvent, day: str, **changes: Any) -> RecordedEvent:
        """A record_corrected replacing ``target``'s content, with ``changes`` applied."""
        replacement = {**self.originals[target.event_id].model_dump(mode="json"), **changes}
        return self.add(
            "record_corrected",
            {
                "corrects_event_id": str(target.event_id),
                "replacement": replacement,
                "reason": "Typed in the wrong value.",
            },
            day,
        )


def story_stream(pupil: UUID = EXAMPLE_PUPIL, first_position: int = 1) -> Stream:
    stream = Stream(pupil, first_position=first_position)
    for cmd in story(pupil):
        stream.command(cmd)
    return stream


def story_events(pupil: UUID = EXAMPLE_PUPIL, first_position: int = 1) -> list[RecordedEvent]:
    return story_stream(pupil, first_position).events


def assert_plain_json(value: Any, path: str = "doc") -> None:
    """Only str/int/float/bool/None/list/dict (no enums, UUIDs, dates), and nothing personal."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, f"{path}: key {k!r}"
            assert_plain_json(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain_json(v, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{path}: {value!r}"
    if path == "doc":
        text = json.dumps(value)
        assert json.loads(text) == value
        for word in (*PERSONAL_WORDS, "redacted", "withheld", "placeholder"):
            assert word not in text, f"{word!r} in the document"


def through_jsonb(doc: Doc | None) -> Doc | None:
    """What the consumer reads back: JSON text, keys in another order."""
    if doc is None:
        return None
    return json.loads(json.dumps(doc, sort_keys=True))


def fold_via_storage(projection: Any, events: list[RecordedEvent]) -> Doc | None:
    doc: Doc | None = None
    for event in events:
        doc = projection.evolve(through_jsonb(doc), event)
    return doc


# --- the story ---------------------------------------------------------------------------------

TODAY = date(2026, 10, 1)


def test_events_arrive_with_personal_fields_withheld() -> None:
    events = story_events()
    assert isinstance(events[0].data.forename, Redacted)  # type: ignore[union-attr]
    assert isinstance(events[6].data.outcomes[0].description, Redacted)  # type: ignore[union-attr]


def test_the_story_folds_to_the_register_entry() -> None:
    doc = fold(register.PROJECTION, story_events())
    assert doc is not None
    assert_plain_json(doc)
    plan2 = ids(EXAMPLE_PUPIL)["plan2"]
    expected = {
        "pupil_id": str(EXAMPLE_PUPIL),
        "trust_id": "trust-7",
        "school_urn": "123456",
        "upn": "B801200005001",
        "year_group": "3",
        "year_group_recorded_on": "2024-09-05",
        "on_roll": True,
        "on_roll_from": "2021-09-01",
        "left_on": None,
        "on_register": True,
        "provision": "E",
        "primary_need": "SLCN",
        "secondary_need": "SEMH",
        "provision_start": "2025-10-15",
        "provision_history": [
            {"provision": "K", "start": "2024-10-08", "end": "2025-10-15"},
            {"provision": "E", "start": "2025-10-15", "end": None},
        ],
        "needs_history": [
            {"type": "SLCN", "rank": 1, "start": "2024-10-08", "end": None},
            {"type": "SEMH", "rank": 2, "start": "2025-10-15", "end": None},
        ],
        "current_plan_id": plan2,
        "next_review_date": None,
        "ehc_plan_since": "2025-10-15",
        "ehc_next_review_due": "2027-09-01",
        "last_ehc_review_on": "2026-09-25",
        "parent_meetings": ["2024-11-05", "2025-01-13", "2025-03-24"],
        "last_event_on": "2026-09-25",
        "erased": False,
        "version": 26,
        "position": 26,
    }
    assert {k: doc[k] for k in expected} == expected


def test_register_now_shows_the_pupil_on_e() -> None:
    docs = [fold(register.PROJECTION, story_events())]
    rows = register.register_rows(docs, None, TODAY)  # type: ignore[arg-type]
    assert rows == [
        {
            "pupil_id": str(EXAMPLE_PUPIL),
            "trust_id": "trust-7",
            "school_urn": "123456",
            "upn": "B801200005001",
            "year_group": "5",  # Year 3 in 2024/25, so Year 5 in 2026/27
            "provision": "E",
            "provision_start": "2025-10-15",
            "primary_need": "SLCN",
            "secondary_need": "SEMH",
            "current_plan_id": ids(EXAMPLE_PUPIL)["plan2"],
            "next_review_date": None,
            "last_review_on": "2025-04-28",
            "ehc_plan_since": "2025-10-15",
            "ehc_next_review_due": "2027-09-01",
            "overdue": False,
            "parent_meetings_this_year": 0,
            "erased": False,
        }
    ]


def test_register_as_of_2024_12_01_shows_sen_support() -> None:
    docs = [fold(register.PROJECTION, story_events())]
    [row] = register.register_rows(docs, date(2024, 12, 1), TODAY)  # type: ignore[arg-type]
    assert row["provision"] == "K"
    assert row["provision_start"] == "2024-10-08"
    assert row["primary_need"] == "SLCN"
    assert row["secondary_need"] is None
    assert row["next_review_date"] == "2025-01-20"
    assert row["ehc_next_review_due"] is None
    assert row["current_plan_id"] == ids(EXAMPLE_PUPIL)["plan1"]
    assert row["overdue"] is False
    assert row["parent_meetings_this_year"] == 1
    assert row["year_group"] == "3"


def test_register_as_of_2024_09_30_is_empty() -> None:
    docs = [fold(register.PROJECTION, story_events())]
    assert register.register_rows(docs, date(2024, 9, 30), TODAY) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("as_of", "provision", "next_review", "overdue"),
    [
        ("2024-10-08", "K", None, False),  # the day support started
        ("2025-01-19", "K", "2025-01-20", False),
        ("2025-01-20", "K", "2025-04-28", False),  # held that day: the date moves on
        ("2025-09-01", "K", "2025-07-14", True),  # July review never held
        ("2025-10-15", "E", None, False),
        ("2027-09-02", "E", None, True),  # annual review due 2027-09-01
    ],
)
def test_register_as_of_follows_the_story(
    as_of: str, provision: str, next_review: str | None, overdue: bool
) -> None:
    docs = [fold(register.PROJECTION, story_events())]
    [row] = register.register_rows(docs, date.fromisoformat(as_of), TODAY)  # type: ignore[arg-type]
    assert (row["provision"], row["next_review_date"], row["overdue"]) == (
        provision,
        next_review,
        overdue,
    )


def test_overdue_now_uses_today() -> None:
    stream = Stream()
    for cmd in story(EXAMPLE_PUPIL)[:7]:  # up to the first plan, review due 2025-01-20
        stream.command(cmd)
    docs = [fold(register.PROJECTION, stream.events)]
    [due] = register.register_rows(docs, None, date(2025, 1, 20))  # type: ignore[arg-type]
    [late] = register.register_rows(docs, None, date(2025, 1, 21))  # type: ignore[arg-type]
    assert (due["overdue"], late["overdue"]) == (False, True)


def test_parent_meetings_count_in_the_academic_year_of_the_date() -> None:
    docs = [fold(register.PROJECTION, story_events())]
    as_of = {
        "2024-08-31": None,
        "2025-01-13": 2,
        "2025-08-31": 3,  # all three in 2024/25
        "2025-09-01": 0,  # a new academic year
    }
    for day, expected in as_of.items():
        rows = register.register_rows(docs, date.fromisoformat(day), TODAY)  # type: ignore[arg-type]
        assert (rows[0]["parent_meetings_this_year"] if rows else None) == expected, day


def _second_pupil(urn: str, need: str, provision_e: bool = False) -> list[RecordedEvent]:
    pupil = uuid5(EXAMPLE_PUPIL, f"pupil-{urn}-{need}")
    s = Stream(pupil, {"trust_id": "trust-7", "school_urn": urn}, first_position=1000)
    s.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "Ben",
            "surname": "Smith",
            "date_of_birth": "2016-01-02",
            "year_group": "4",
            "on_roll_from": "2024-09-01",
        },
        "2024-09-05",
    )
    s.add(
        "sen_support_started",
        {"needs": [{"type": need, "rank": 1}], "parents_notified": True},
        "2024-09-20",
    )
    if provision_e:
        s.add(
            "ehc_plan_issued",
            {
                "la_reference": "LA-1",
                "needs": [{"type": need, "rank": 1}],
                "first_review_due": "2025-09-01",
            },
            "2024-10-01",
        )
    return s.events


def test_register_counts() -> None:
    docs = [
        fold(register.PROJECTION, story_events()),
        fold(register.PROJECTION, _second_pupil("123456", "SPLD")),
        fold(register.PROJECTION, _second_pupil("654321", "SLCN", provision_e=True)),
        fold(register.PROJECTION, _second_pupil("654321", "ASD")),
    ]
    rows = register.register_rows(docs, date(2024, 12, 1), TODAY)  # type: ignore[arg-type]
    assert register.register_counts(rows) == {
        "total": 4,
        "by_school": {"123456": 2, "654321": 2},
        "by_primary_need": {"ASD": 1, "SLCN": 2, "SPLD": 1},
        "by_provision": {"E": 1, "K": 3},
        "overdue": 0,
    }
    assert [r["school_urn"] for r in rows] == ["123456", "123456", "654321", "654321"]
    assert register.register_counts([]) == {
        "total": 0,
        "by_school": {},
        "by_primary_need": {},
        "by_provision": {},
        "overdue": 0,
    }


# --- transfers, leaving, corrections -----------------------------------------------------------


def _on_support(stream: Stream) -> Stream:
    for cmd in story(stream.pupil)[:7]:
        stream.command(cmd)
    return stream


@pytest.mark.parametrize("follow_transfers", [True, False])
def test_a_transfer_moves_the_pupil_to_the_new_school(follow_transfers: bool) -> None:
    # follow_transfers=False: later events still carry the old school in their
    # envelope (what the write side does today); the register must not care.
    stream = _on_support(Stream(follow_transfers=follow_transfers))
    stream.add("pupil_transferred", {"from_urn": "123456", "to_urn": "654321"}, "2024-11-01")
    stream.add("parent_meeting_held", _meeting(), "2024-11-20")
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert doc["school_urn"] == "654321"
    assert doc["school_history"] == [
        {"school_urn": "123456", "start": "2021-09-01", "end": "2024-11-01"},
        {"school_urn": "654321", "start": "2024-11-01", "end": None},
    ]
    assert doc["provision"] == "K"  # support goes with the pupil
    before = register.register_rows([doc], date(2024, 10, 31), TODAY)
    after = register.register_rows([doc], date(2024, 11, 1), TODAY)
    now = register.register_rows([doc], None, TODAY)
    assert [r["school_urn"] for r in before + after + now] == ["123456", "654321", "654321"]


def _meeting() -> dict[str, Any]:
    return {"attendees": ["senco", "parent"], "summary": "Met.", "record_given_to_parents": True}


def test_pupil_left_removes_them_from_the_register_from_that_day() -> None:
    stream = _on_support(Stream())
    stream.add("pupil_left", {"destination": "school_outside_trust"}, "2025-02-10")
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert (doc["on_roll"], doc["on_register"], doc["left_on"]) == (False, False, "2025-02-10")
    assert doc["provision_history"] == [
        {"provision": "K", "start": "2024-10-08", "end": "2025-02-10"}
    ]
    assert doc["needs_history"] == [
        {"type": "SLCN", "rank": 1, "start": "2024-10-08", "end": "2025-02-10"}
    ]
    assert doc["next_review_date"] is None
    assert len(register.register_rows([doc], date(2025, 2, 9), TODAY)) == 1
    assert register.register_rows([doc], date(2025, 2, 10), TODAY) == []
    assert register.register_rows([doc], None, TODAY) == []
    assert register.provision_on(doc, date(2025, 2, 9)) == "K"
    assert register.provision_on(doc, date(2025, 2, 10)) == "N"


def test_sen_support_ended_closes_the_spell_and_clears_the_review() -> None:
    stream = _on_support(Stream())
    stream.add("sen_support_ended", {"reason": "needs_met", "note": "Caught up."}, "2025-01-20")
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert doc["provision"] == "N"
    assert doc["on_register"] is False
    assert doc["provision_start"] is None
    assert doc["next_review_date"] is None
    assert doc["current_plan_id"] is None
    assert doc["provision_history"] == [
        {"provision": "K", "start": "2024-10-08", "end": "2025-01-20"}
    ]
    assert register.needs_on(doc, date(2025, 1, 19)) == [{"type": "SLCN", "rank": 1}]
    assert register.needs_on(doc, date(2025, 1, 20)) == []


def test_reclassification_keeps_unchanged_needs_open() -> None:
    stream = _on_support(Stream())
    stream.add(
        "needs_reclassified",
        {"needs": [{"type": "SLCN", "rank": 1}, {"type": "ASD", "rank": 2}], "reason": "SALT"},
        "2024-12-01",
    )
    stream.add(
        "needs_reclassified",
        {"needs": [{"type": "ASD", "rank": 1}], "reason": "Diagnosis."},
        "2025-02-01",
    )
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert (doc["primary_need"], doc["secondary_need"]) == ("ASD", None)
    assert doc["needs_history"] == [
        {"type": "SLCN", "rank": 1, "start": "2024-10-08", "end": "2025-02-01"},
        {"type": "ASD", "rank": 2, "start": "2024-12-01", "end": "2025-02-01"},
        {"type": "ASD", "rank": 1, "start": "2025-02-01", "end": None},
    ]
    assert register.needs_on(doc, date(2025, 1, 1)) == [
        {"type": "SLCN", "rank": 1},
        {"type": "ASD", "rank": 2},
    ]


def test_a_correction_of_the_needs_rewrites_history_and_current_needs() -> None:
    stream = _on_support(Stream())
    started = next(e for e in stream.events if e.event_type == "sen_support_started")
    stream.correct(started, "2024-10-20", needs=[{"type": "SPLD", "rank": 1}])
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert doc["primary_need"] == "SPLD"
    assert doc["needs_history"] == [{"type": "SPLD", "rank": 1, "start": "2024-10-08", "end": None}]
    fact = next(f for f in doc["facts"] if f["event_id"] == str(started.event_id))
    assert fact["corrected_by"] == str(stream.events[-1].event_id)
    assert_plain_json(doc)


def test_a_correction_of_a_review_date_moves_the_next_review() -> None:
    stream = _on_support(Stream())
    plan = next(e for e in stream.events if e.event_type == "plan_agreed")
    stream.correct(plan, "2024-10-12", review_date="2025-01-27")
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert doc["next_review_date"] == "2025-01-27"
    [row] = register.register_rows([doc], date(2025, 1, 25), TODAY)
    assert (row["next_review_date"], row["overdue"]) == ("2025-01-27", False)


def test_a_correction_of_an_event_the_register_ignores_changes_nothing_but_the_envelope() -> None:
    stream = _on_support(Stream())
    before = fold(register.PROJECTION, stream.events)
    concern = next(e for e in stream.events if e.event_type == "concern_raised")
    stream.correct(concern, "2024-10-20", source="parent")
    after = fold(register.PROJECTION, stream.events)
    assert before is not None and after is not None
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"version", "position", "last_event_on"}


def test_erasure_sets_the_flag_and_keeps_the_skeleton() -> None:
    stream = story_stream()
    stream.add(
        "personal_data_erased",
        {"reason_code": "erasure_request", "reason": "Request SAR-2026-31"},
        "2026-09-30",
    )
    doc = fold(register.PROJECTION, stream.events)
    assert doc is not None
    assert doc["erased"] is True
    assert doc["provision"] == "E"
    assert "SAR-2026-31" not in json.dumps(doc)


# --- determinism and idempotence ----------------------------------------------------------------


def test_folding_the_same_events_twice_gives_equal_documents() -> None:
    events = story_events()
    assert fold(register.PROJECTION, events) == fold(register.PROJECTION, events)
    assert fold(register.PROJECTION, story_events()) == fold(register.PROJECTION, events)


def test_redelivered_events_change_nothing() -> None:
    events = story_events()
    once = fold(register.PROJECTION, events)
    assert fold(register.PROJECTION, events + events) == once
    assert once is not None
    assert register.evolve(once, events[3]) is once


def test_documents_read_back_from_storage_evolve_the_same() -> None:
    stream = story_stream()
    stream.correct(stream.events[5], "2026-09-28", needs=[{"type": "SLCN", "rank": 1}])
    assert fold_via_storage(register.PROJECTION, stream.events) == fold(
        register.PROJECTION, stream.events
    )


def test_evolve_does_not_change_the_document_it_is_given() -> None:
    events = story_events()
    doc = fold(register.PROJECTION, events[:-1])
    snapshot = json.dumps(doc, sort_keys=True)
    register.evolve(doc, events[-1])
    assert json.dumps(doc, sort_keys=True) == snapshot


def test_projection_declaration() -> None:
    assert register.PROJECTION.name == "register"
    assert register.PROJECTION.schema == "senflow_register"
    for index in register.PROJECTION.indexes:
        assert "{schema}.docs" in index
        index.format(schema="senflow_register")


def test_recorded_times_are_aware() -> None:
    event = story_events()[0]
    assert event.occurred_at.utcoffset() is not None
    assert event.recorded_at.astimezone(UTC) > event.occurred_at.astimezone(UTC)
