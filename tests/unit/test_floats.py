"""Which event types can hold a float, read from their types (``store.floats``).

A type wrongly said to hold none would be hashed from orjson's bytes without the
canonical form's float rules (87.0 written as 87), and its chain would not verify.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from senflow.events import catalogue as ev
from senflow.events.codes import URN
from senflow.events.personal import PersonalText
from senflow.services.store.floats import may_hold_floats

pytestmark = pytest.mark.unit


def test_the_catalogue_types_that_may_hold_floats() -> None:
    # A new float (or anything that hides one) in an event shows here for review.
    assert sorted(t for t, model in ev.EVENT_TYPES.items() if may_hold_floats(model)) == [
        "intervention_ended",  # exit measure
        "intervention_started",  # entry measure
        "progress_recorded",  # measure
        "record_corrected",  # may replace any of the above
    ]


class _Plain(BaseModel):
    name: str
    count: int
    on: date
    kind: Literal["a", "b"]
    ids: list[uuid.UUID] = Field(default_factory=list)
    urn: URN  # an after-validator that says it returns a str
    note: PersonalText  # the vault's serialiser writes strings
    me: _Plain | None = None  # holds itself


class _Scored(BaseModel):
    scores: list[tuple[str, float]]


class _Nested(BaseModel):
    inner: _Scored | None = None


class _Half(float, Enum):
    HALF = 0.5


class _Pair(Enum):
    A = (1, 0.5)


class _Odd(Enum):
    SMALL = 1e-7


class _Whatever(BaseModel):
    value: Any


class _Written(BaseModel):
    when: Annotated[datetime, PlainSerializer(lambda v: v.timestamp())]


class _Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class _Halved(BaseModel):
    n: Annotated[int, AfterValidator(lambda v: v / 2)]


class _FieldHook(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def _halve(cls, v: int) -> Any:
        return v / 2


class _ModelHook(BaseModel):
    n: int

    @model_validator(mode="after")
    def _touch(self) -> _ModelHook:
        return self


class _Defaulted(BaseModel):
    n: int = 2.0  # type: ignore[assignment]  # a default is not validated


class _Made(BaseModel):
    n: list[int] = Field(default_factory=lambda: [1.5])  # type: ignore[list-item]


class _Base(BaseModel):
    pass


class _AsAny(BaseModel):
    part: SerializeAsAny[_Base]


@pytest.mark.parametrize(
    "tp",
    [
        _Scored,
        _Nested,
        _Half,
        _Pair,
        Literal[_Odd.SMALL],
        Literal[1.5],
        _Whatever,
        _Written,
        _Extra,
        _Halved,
        _FieldHook,
        _ModelHook,
        _Defaulted,
        _Made,
        _AsAny,
        dict[str, int],
    ],
)
def test_whatever_could_hide_a_float_counts_as_one(tp: Any) -> None:
    assert may_hold_floats(tp)


def test_plain_types_hold_no_float() -> None:
    assert not may_hold_floats(_Plain)
    assert not may_hold_floats(ev.InterventionSessionRecorded)
    assert not may_hold_floats(ev.PupilRegistered)
