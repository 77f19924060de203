"""Personal data in events: which fields are personal, and how the vault sees them.

A personal field (a name, a date of birth, free text) is declared with one of
the annotated types below. When an event is serialised with a ``seal`` function
in the pydantic context, each personal value is replaced by a sealed token;
when it is validated with an ``open`` function, tokens are opened again, or
become a :class:`Redacted` marker once the pupil's key has been destroyed.
Everything else in an event (codes, dates, ids, numbers) stays in clear, which
is what keeps the skeleton useful after an erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WrapSerializer,
    model_validator,
)

SEALED_KEY = "$sealed"
REDACTION_TEXT = "[redacted: personal data erased]"

Seal = Callable[[Any], dict[str, str]]
Open = Callable[[dict[str, str]], "Any | Redacted"]


class Redacted(BaseModel):
    """Stands where a personal value was, after the pupil's key was destroyed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    redacted: Literal[True] = True
    marker: str = REDACTION_TEXT

    @model_validator(mode="before")
    @classmethod
    def _only_from_the_vault(cls, data: Any, info: ValidationInfo) -> Any:
        # A client must not be able to submit "redacted" values in a command:
        # only the vault (or a re-read of vault output) may produce them.
        if not (info.context or {}).get("allow_redacted"):
            raise ValueError("a redaction marker can only come from the vault")
        return data

    def __str__(self) -> str:
        return self.marker


def _open_sealed(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, dict) and SEALED_KEY in value:
        opener: Open | None = (info.context or {}).get("open")
        if opener is None:
            raise ValueError("sealed personal data can only be read through the vault")
        return opener(value)
    return value


def _seal(value: Any, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
    plain = handler(value)
    seal: Seal | None = (info.context or {}).get("seal") if info.context else None
    if seal is None or isinstance(value, Redacted):
        return plain
    return seal(plain)


def is_vault_serialiser(func: Any) -> bool:
    """Whether ``func`` is the serialiser of personal fields (it writes strings, or the
    plain value: what the store's canonical encoding needs to know)."""
    return func is _seal


class PersonalMarker:
    """Metadata tag: the field holds personal data (used by docs and schema export)."""

    def __repr__(self) -> str:
        return "Personal"


PERSONAL = PersonalMarker()

PersonalText = Annotated[
    Annotated[str, Field(min_length=1, max_length=20_000)] | Redacted,
    BeforeValidator(_open_sealed),
    WrapSerializer(_seal),
    Field(json_schema_extra={"x-personal": True}),
    PERSONAL,
]
PersonalName = Annotated[
    Annotated[str, Field(min_length=1, max_length=200)] | Redacted,
    BeforeValidator(_open_sealed),
    WrapSerializer(_seal),
    Field(json_schema_extra={"x-personal": True}),
    PERSONAL,
]
PersonalDate = Annotated[
    date | Redacted,
    BeforeValidator(_open_sealed),
    WrapSerializer(_seal),
    Field(json_schema_extra={"x-personal": True}),
    PERSONAL,
]
