"""Commands: what a person (or the MIS) asks senflow to record.

Every command names the pupil, who is asking, when it happened in school and,
optionally, the stream version it was decided against. Its payload is the
content of the event it asks for, so command and event cannot drift apart.
``command_id`` makes a command idempotent: the same id, retried, returns the
first result and records nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, Union
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    create_model,
    field_validator,
    model_validator,
)

from senflow.events import catalogue as ev
from senflow.events.envelope import Actor, Tenant
from senflow.services.workflow.calendar import SCHOOL_TZ

# command name -> the event its payload describes
COMMAND_EVENTS: dict[str, type[ev.EventData]] = {
    "register_pupil": ev.PupilRegistered,
    "raise_concern": ev.ConcernRaised,
    "record_parent_views": ev.ParentViewsRecorded,
    "record_pupil_views": ev.PupilViewsRecorded,
    "record_assessment": ev.AssessmentRecorded,
    "involve_specialist": ev.SpecialistInvolved,
    "start_sen_support": ev.SenSupportStarted,
    "reclassify_needs": ev.NeedsReclassified,
    "agree_plan": ev.PlanAgreed,
    "start_intervention": ev.InterventionStarted,
    "record_intervention_session": ev.InterventionSessionRecorded,
    "end_intervention": ev.InterventionEnded,
    "record_progress": ev.ProgressRecorded,
    "hold_parent_meeting": ev.ParentMeetingHeld,
    "hold_review": ev.ReviewHeld,
    "request_ehc_needs_assessment": ev.EhcNeedsAssessmentRequested,
    "decide_ehc_needs_assessment": ev.EhcNeedsAssessmentDecided,
    "issue_ehc_plan": ev.EhcPlanIssued,
    "hold_ehc_annual_review": ev.EhcAnnualReviewHeld,
    "end_sen_support": ev.SenSupportEnded,
    "share_transition_information": ev.TransitionInformationShared,
    "transfer_pupil": ev.PupilTransferred,
    "record_pupil_left": ev.PupilLeft,
    "correct_record": ev.RecordCorrected,
    "record_annual_report": ev.AnnualReportShared,
}


EARLIEST = datetime(1990, 1, 1, tzinfo=SCHOOL_TZ)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")  # tab, LF, CR are text


def _control_character(value: Any, path: str) -> str | None:
    """The path of the first string holding a control character (or a lone surrogate)."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            if (found := _control_character(v, f"{path}.{k}")) is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _control_character(v, f"{path}.{i}")) is not None:
                return found
    return None


class CommandBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: UUID = Field(default_factory=uuid4)
    pupil_id: UUID
    expected_version: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Stream version the command was decided against; omit for any"
    )
    occurred_at: AwareDatetime = Field(
        description="When it happened in school; a plain date means midday that day (UK time)"
    )
    actor: Actor
    tenant: Tenant | None = Field(
        default=None, description="Required to register; otherwise must match the pupil's school"
    )
    correlation_id: UUID | None = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _date_means_midday(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time(12), SCHOOL_TZ)
        if isinstance(value, str) and len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(12), SCHOOL_TZ)
        return value

    @field_validator("occurred_at")
    @classmethod
    def _within_records(cls, value: datetime) -> datetime:
        # Nothing senflow records happened before digital SEN records existed; this
        # also keeps time-zone arithmetic well away from datetime's limits.
        if value < EARLIEST:
            raise ValueError("occurred_at must be on or after 1990-01-01")
        return value

    @model_validator(mode="after")
    def _no_control_characters(self) -> CommandBase:
        # NUL cannot be stored in jsonb and control characters are not XML (the CTF):
        # refuse them at the door, naming the field, rather than fail further in.
        where = _control_character(self.payload.model_dump(mode="json"), "payload")  # type: ignore[attr-defined]
        if where is not None:
            raise ValueError(f"{where}: control characters are not allowed in text")
        return self

    @property
    def name(self) -> str:
        return self.command  # type: ignore[attr-defined,no-any-return]

    @property
    def event_data(self) -> ev.EventData:
        return self.payload  # type: ignore[attr-defined,no-any-return]


def _command_model(name: str, event: type[ev.EventData]) -> type[CommandBase]:
    class_name = "".join(part.title() for part in name.split("_"))
    command_literal: Any = Literal[name]
    return create_model(
        class_name,
        __base__=CommandBase,
        __doc__=f"Asks for a {event.__name__} event. {event.__doc__ or ''}".strip(),
        command=(command_literal, ...),
        payload=(event, ...),
    )


COMMAND_MODELS: dict[str, type[CommandBase]] = {
    name: _command_model(name, event) for name, event in COMMAND_EVENTS.items()
}

# Built from the table above, so it is typed loosely; each member is a CommandBase.
Command: Any = Annotated[
    Union[tuple(COMMAND_MODELS.values())],  # noqa: UP007
    Field(discriminator="command"),
]
COMMAND_ADAPTER: TypeAdapter[CommandBase] = TypeAdapter(Command)


# The first element of a pydantic location inside the command union is the
# discriminator tag ("raise_concern"); people and clients know fields, not tags.
_TOP_FIELDS = frozenset(CommandBase.model_fields) | {"command", "payload"}


def error_fields(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors as {field, rule, message}: the field named as a client knows it."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if len(loc) > 1 and loc[0] not in _TOP_FIELDS and loc[1] in _TOP_FIELDS:
            loc = loc[1:]
        out.append(
            {"field": ".".join(loc) or "body", "rule": err.get("type"), "message": err.get("msg")}
        )
    return out


def parse_command(raw: dict[str, Any] | str | bytes) -> CommandBase:
    """Validate a command; raises pydantic.ValidationError naming field and rule."""
    if isinstance(raw, (str, bytes)):
        return COMMAND_ADAPTER.validate_json(raw)
    return COMMAND_ADAPTER.validate_python(raw)
