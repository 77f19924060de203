"""Row building for bulk import: remembered moments stay exact, content hashes as defined."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from senflow.events import catalogue as ev
from senflow.events.envelope import Actor, NewEvent, Role, Tenant, trusted
from senflow.services.application import event_id_for
from senflow.services.store import bulk, hashchain, vault
from senflow.services.store.eventstore import _COLUMN_NAMES
from senflow.services.store.rows import StreamRows, moment_text

pytestmark = pytest.mark.unit


def test_remembered_moments_tell_the_repeated_hour_apart():
    # When the clocks go back, 01:30 happens twice: the two compare (and hash) equal
    # in their zone, so a cache keyed on the moment alone would give one for the other.
    first = datetime(2025, 10, 26, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    second = first.replace(fold=1)
    assert first == second
    for moment in (first, second, first, second):
        assert moment_text(moment, moment.fold) == hashchain.ts(moment)
        assert bulk._moment(moment, moment.fold) == bulk._micros(moment)
    assert moment_text(first, 0) != moment_text(second, 1)


_odd_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(actor=_odd_text, trust=_odd_text, urn=_odd_text, fold=st.integers(0, 1))
def test_rows_hash_the_reference_content(actor: str, trust: str, urn: str, fold: int) -> None:
    # StreamRows writes the canonical bytes straight into their fixed layout; they must
    # equal the reference definition's whatever the text (quotes, escapes, non-ASCII).
    stream_id, command = uuid.uuid4(), uuid.uuid4()
    occurred = datetime(2025, 10, 26, 1, 30, fold=fold, tzinfo=ZoneInfo("Europe/London"))
    events = [
        trusted(
            NewEvent,
            {
                "event_id": uuid.uuid4(),
                "data": data,
                "occurred_at": occurred,
                "actor": Actor.model_construct(user_id=actor, role=Role.SENCO),
                "tenant": Tenant.model_construct(trust_id=trust, school_urn=urn),
                "correlation_id": command,
                "causation_id": cause,
            },
        )
        for data, cause in (
            (ev.ConcernRaised(source=ev.ConcernSource.PARENT, description='Ann\'s "words"'), None),
            (ev.ConcernRaised(source=ev.ConcernSource.PARENT, description="x"), command),
            (ev.ConcernRaised(source=ev.ConcernSource.PARENT, description="y"), uuid.uuid4()),
        )
    ]
    recorded = datetime(2026, 3, 1, 9, 31, 0, 5, tzinfo=UTC)
    stream = StreamRows(stream_id, vault.new_key(), recorded)
    prev = None
    for version, e in enumerate(events, start=1):
        row = stream.row(version, e, prev)
        content = hashchain.reference_canonical(
            **dict(zip(_COLUMN_NAMES[:13], row[:13], strict=True)), data=json.loads(row[13])
        )
        assert row[-1] == hashchain.chain(prev, content)
        prev = row[-1]


@given(st.uuids(), st.integers(0, 10_000))
def test_event_ids_are_the_commands_uuid5(command_id: uuid.UUID, index: int) -> None:
    assert event_id_for(command_id, index) == uuid.uuid5(command_id, f"event-{index}")
