"""Envelope models built from trusted store rows behave as validated ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from senflow.events.catalogue import ConcernRaised
from senflow.events.envelope import Actor, RecordedEvent, Role, Tenant, trusted

pytestmark = pytest.mark.unit


def test_a_trusted_model_equals_the_validated_one_and_stays_frozen() -> None:
    values = dict(
        event_id=uuid.uuid4(),
        stream_id=uuid.uuid4(),
        version=2,
        position=9,
        schema_version=1,
        occurred_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        recorded_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        hash="ab",
    )
    data = ConcernRaised.model_validate(
        {"source": "parent", "area": "cognition_and_learning", "description": "reading"}
    )
    built = trusted(
        RecordedEvent,
        {
            **values,
            "actor": trusted(Actor, {"user_id": "senco.1", "role": Role.SENCO}),
            "tenant": trusted(Tenant, {"trust_id": "trust-7", "school_urn": "123456"}),
            "data": data,
        },
    )
    validated = RecordedEvent.model_validate(
        {
            **values,
            "actor": {"user_id": "senco.1", "role": "senco"},
            "tenant": {"trust_id": "trust-7", "school_urn": "123456"},
            "data": data,
        }
    )
    assert built == validated
    assert built.model_dump(mode="json") == validated.model_dump(mode="json")
    assert hash(built.tenant) == hash(validated.tenant)
    assert built.model_fields_set == validated.model_fields_set
    assert (built.__pydantic_extra__, built.__pydantic_private__) == (None, None)
    assert built.model_copy(update={"version": 3}).version == 3
    with pytest.raises(Exception, match="frozen"):
        built.version = 3  # type: ignore[misc]
