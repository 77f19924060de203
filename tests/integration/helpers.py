"""Builders for events and commands used by the integration tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from senflow.events import catalogue as ev
from senflow.events.codes import upn_check_letter
from senflow.events.envelope import Actor, NewEvent, Role, Tenant

TENANT = Tenant(trust_id="trust-7", school_urn="123456")
SENCO = Actor(user_id="senco.1", role=Role.SENCO)


def upn(serial: int) -> str:
    body = f"80120000{serial % 10000:04d}"
    return upn_check_letter(body) + body


def registered(serial: int = 1) -> ev.PupilRegistered:
    return ev.PupilRegistered(
        upn=upn(serial),
        forename="Amy",
        surname="Jones",
        date_of_birth=date(2016, 4, 2),
        year_group="4",
        on_roll_from=date(2021, 9, 1),
    )


def concern(text: str = "Finds it hard to follow spoken instructions") -> ev.ConcernRaised:
    return ev.ConcernRaised(source=ev.ConcernSource.CLASS_TEACHER, description=text)


def new_event(
    data: ev.EventData,
    occurred: datetime | None = None,
    event_id: UUID | None = None,
    tenant: Tenant = TENANT,
) -> NewEvent:
    return NewEvent(
        event_id=event_id or uuid4(),
        data=data,  # type: ignore[arg-type]
        occurred_at=occurred or datetime(2025, 10, 1, 10, tzinfo=UTC),
        actor=SENCO,
        tenant=tenant,
        correlation_id=uuid4(),
    )


def command(name: str, pupil: UUID, day: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    role = kw.pop("role", "senco")
    return {
        "command": name,
        "pupil_id": str(pupil),
        "occurred_at": day,
        "actor": {"user_id": f"{role}.1", "role": role},
        "payload": payload,
        **kw,
    }
