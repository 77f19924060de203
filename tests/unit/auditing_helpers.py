"""Builders for the auditing unit tests: a pupil's stream as the store returns it, decrypted.

Unlike the projection tests (events as the bus delivers them, personal fields
withheld), auditing reads streams with personal data open, so these events keep
their names and free text. ``recorded_at`` defaults to five minutes after the
event happened; pass it to make an entry late.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid5

from senflow.events.catalogue import EVENT_TYPES
from senflow.events.envelope import RecordedEvent
from senflow.services.workflow.calendar import SCHOOL_TZ
from senflow.services.workflow.commands import COMMAND_EVENTS
from tests.integration.story import EXAMPLE_PUPIL, TENANT, story


def at_midday(day: str | date) -> datetime:
    d = day if isinstance(day, date) else date.fromisoformat(day)
    return datetime.combine(d, time(12), SCHOOL_TZ)


class Pupil:
    def __init__(self, pupil: UUID = EXAMPLE_PUPIL, tenant: dict[str, str] | None = None) -> None:
        self.pupil = pupil
        self.tenant = dict(tenant or TENANT)
        self.events: list[RecordedEvent] = []

    def add(
        self,
        event_type: str,
        payload: dict[str, Any],
        day: str | date,
        *,
        role: str = "senco",
        recorded_at: datetime | None = None,
    ) -> RecordedEvent:
        model = EVENT_TYPES[event_type]
        data = model.model_validate({**payload, "event_type": event_type})
        version = len(self.events) + 1
        occurred = at_midday(day)
        event = RecordedEvent(
            event_id=uuid5(self.pupil, f"event-{version}"),
            stream_id=self.pupil,
            version=version,
            position=1000 + version,
            schema_version=model.schema_version,
            occurred_at=occurred,
            recorded_at=recorded_at or occurred + timedelta(minutes=5),
            actor={"user_id": f"{role}.1", "role": role},
            tenant=self.tenant,
            correlation_id=uuid5(self.pupil, f"command-{version}"),
            causation_id=uuid5(self.pupil, f"command-{version}"),
            data=data,
            hash=f"{version:064x}",
        )
        if event_type == "pupil_transferred":
            self.tenant = {**self.tenant, "school_urn": payload["to_urn"]}
        self.events.append(event)
        return event

    def command(self, cmd: dict[str, Any], recorded_at: datetime | None = None) -> RecordedEvent:
        event_type = COMMAND_EVENTS[cmd["command"]].model_fields["event_type"].default
        return self.add(
            event_type,
            cmd["payload"],
            cmd["occurred_at"],
            role=cmd["actor"]["role"],
            recorded_at=recorded_at,
        )

    def correct(
        self,
        target: RecordedEvent,
        day: str,
        recorded_at: datetime | None = None,
        reason: str = "Typed in the wrong value.",
        **changes: Any,
    ) -> RecordedEvent:
        replacement = {**target.data.model_dump(mode="json"), **changes}
        return self.add(
            "record_corrected",
            {
                "corrects_event_id": str(target.event_id),
                "replacement": replacement,
                "reason": reason,
            },
            day,
            recorded_at=recorded_at,
        )


def story_pupil(pupil: UUID = EXAMPLE_PUPIL, upn: str = "B801200005001") -> Pupil:
    p = Pupil(pupil)
    for cmd in story(pupil, upn):
        p.command(cmd)
    return p
