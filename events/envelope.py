"""The envelope every stored event travels in: identity, order, time, who and where."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from senflow.events.catalogue import Event
from senflow.events.codes import URN

TrustId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", examples=["trust-7"])]
UserId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:-]{1,120}$", examples=["senco.smith"])]


class Role(StrEnum):
    CLASS_TEACHER = "class_teacher"
    TEACHING_ASSISTANT = "teaching_assistant"
    SENCO = "senco"
    SENIOR_LEADER = "senior_leader"
    TRUST_SEND_LEAD = "trust_send_lead"
    AUDITOR = "auditor"
    INTEGRATION = "integration"
    SYSTEM = "system"  # the scheduler and other senflow services


class Actor(BaseModel):
    """Who recorded the event (a user id, never a name: actors appear on the bus)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: UserId
    role: Role


class Tenant(BaseModel):
    """Where the event belongs: the trust and the school (by URN)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    trust_id: TrustId
    school_urn: URN


class NewEvent(BaseModel):
    """An event ready to append: everything but the store-assigned fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: UUID
    data: Event
    occurred_at: AwareDatetime
    actor: Actor
    tenant: Tenant
    correlation_id: UUID
    causation_id: UUID | None = None

    @property
    def event_type(self) -> str:
        return str(self.data.event_type)


class RecordedEvent(BaseModel):
    """An event as the store holds it.

    ``version`` counts the pupil's stream from 1; ``position`` is the global
    order assigned at append (commit order, see the store); ``occurred_at`` is
    when it happened in school and ``recorded_at`` when senflow stored it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: UUID
    stream_id: UUID
    version: Annotated[int, Field(ge=1)]
    position: Annotated[int, Field(ge=1)]
    schema_version: Annotated[int, Field(ge=1)]
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor
    tenant: Tenant
    correlation_id: UUID
    causation_id: UUID | None = None
    data: Event
    hash: str | None = None

    @property
    def event_type(self) -> str:
        return str(self.data.event_type)


_M = TypeVar("_M", bound=BaseModel)
# A model's slots besides __dict__, set through their descriptors: object.__setattr__
# would look each up by name first.
_SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE = (
    BaseModel.__dict__[slot].__set__
    for slot in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """A model from values that are already valid and typed (a row the store wrote).

    What ``model_construct`` does, without its per-field loop over defaults: the
    caller gives every field. Reading a pupil's history builds one of these per
    event, so it matters; a unit test holds the result equal to a validated model.
    """
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    _SET_FIELDS_SET(obj, set(values))
    _SET_EXTRA(obj, None)
    _SET_PRIVATE(obj, None)
    return obj
