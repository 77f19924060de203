"""The hash chain's canonical bytes: the fast encoder must equal the reference byte for byte.

Stored hashes were computed with the reference definition; if the fast path ever
wrote different bytes, every existing chain would fail to verify.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from senflow.services.store import hashchain, vault
from senflow.services.store.floats import may_hold_floats
from tests.unit.test_projection_kept_fields import _busy_stream, _demo_histories

pytestmark = pytest.mark.unit

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


def _envelope(data: object) -> dict[str, object]:
    return dict(
        event_id=uuid.uuid4(),
        stream_id=uuid.uuid4(),
        version=7,
        event_type="concern_raised",
        schema_version=1,
        occurred_at=datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))),
        recorded_at=datetime(2026, 3, 1, 9, 31, 0, 5, tzinfo=UTC),
        actor_id="u-1",
        actor_role="senco",
        trust_id="trust-é\x7f",
        school_urn="123456",
        correlation_id=uuid.uuid4(),
        causation_id=None,
        data=data,
    )


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_text, _json, max_size=6))
def test_fast_encoding_equals_the_reference(data: dict[str, object]) -> None:
    fields = _envelope(data)
    reference = hashchain.reference_canonical(**fields)
    fast = hashchain.canonical(**{**fields, "data": hashchain.encode_data(data)})
    assert fast == reference


def _as_jsonb_gives_it_back(value: object) -> str:
    """JSON text as jsonb writes it: its own spacing and key order, numbers in plain decimal."""
    if isinstance(value, dict):
        items = [
            f"{json.dumps(k, ensure_ascii=False)}: {_as_jsonb_gives_it_back(v)}"
            for k, v in value.items()
        ]
        return "{" + ", ".join(reversed(items)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_as_jsonb_gives_it_back(v) for v in value) + "]"
    if isinstance(value, Decimal):  # jsonb keeps a number as numeric: never an exponent
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_text, _json, max_size=6))
def test_data_read_back_as_jsonb_text_encodes_as_written(data: dict[str, object]) -> None:
    # jsonb gives the written data back in its own way: the bytes must not change
    written = hashchain.encode_data(data)
    stored = json.loads(written, parse_float=Decimal, parse_int=Decimal)
    jsonb_text = _as_jsonb_gives_it_back(stored)
    assert hashchain.decode_stored(jsonb_text) == written


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_text, _json, max_size=6))
def test_stored_rows_hash_as_written(data: dict[str, object]) -> None:
    # verify's one-pass content of a row read back equals the content hashed at append
    fields = _envelope(data)
    written = hashchain.encode_data(data)
    stored = json.loads(written, parse_float=Decimal, parse_int=Decimal)
    as_read = [
        str(fields["event_id"]),
        str(fields["stream_id"]),
        *(fields[k] for k in ("version", "event_type", "schema_version")),
        hashchain.ts(fields["occurred_at"]),  # type: ignore[arg-type]
        hashchain.ts(fields["recorded_at"]),  # type: ignore[arg-type]
        *(fields[k] for k in ("actor_id", "actor_role", "trust_id", "school_urn")),
        str(fields["correlation_id"]),
        None,
        _as_jsonb_gives_it_back(stored),
    ]
    assert hashchain.stored_content(*as_read) == hashchain.canonical(**{**fields, "data": written})


def test_fractions_and_long_integers_in_jsonb_text_take_the_reference() -> None:
    # as jsonb writes 1e-07, -3.25e40 and 2**70: plain decimal, which orjson reads as floats
    for data, text in (
        ({"x": 1e-07}, '{"x": 0.0000001}'),
        ({"x": [0.5, -3.25e40]}, '{"x": [0.5, -32500000000000000000000000000000000000000]}'),
        ({"x": 2**70}, '{"x": 1180591620717411303424}'),
        ({"x": -(2**63) - 1}, '{"x": -9223372036854775809}'),
    ):
        assert hashchain.decode_stored(text) == hashchain._reference(data)


def test_numbers_the_fast_encoder_would_write_differently_take_the_reference() -> None:
    for data in ({"x": 1e-7}, {"x": 2**70}, {"x": 1e23}, {"x": [0.5, -3.25e40]}, {"x": 87.0}):
        assert hashchain.encode_data(data) == hashchain._reference(data)
    # 1e23 is stored as the integer it denotes and hashes the same when read back
    assert hashchain.decode_stored('{"x": 100000000000000000000000}') == hashchain.encode_data(
        {"x": 1e23}
    )


def test_text_timestamps_and_ids_hash_as_their_objects() -> None:
    fields = _envelope({"a": 1})
    as_text = {
        **fields,
        "event_id": str(fields["event_id"]),
        "occurred_at": hashchain.ts(fields["occurred_at"]),  # type: ignore[arg-type]
        "recorded_at": hashchain.ts(fields["recorded_at"]),  # type: ignore[arg-type]
        "data": hashchain.encode_data({"a": 1}),
    }
    assert hashchain.canonical(**as_text) == hashchain.reference_canonical(**fields)


def test_data_said_to_hold_no_float_encode_as_the_reference() -> None:
    """Every event of a hundred demo pupils and of a story with corrections, sealed as
    the store seals them: where the model holds no float, the shortcut's bytes are the
    reference's."""
    histories = [*_demo_histories(100), _busy_stream().events]
    sealer = vault.stream_sealer(vault.new_key(), "stream")
    shortcut = 0
    for event in (e for history in histories for e in history):
        data = event.data.__pydantic_serializer__.to_python(
            event.data, mode="json", exclude={"event_type"}, context={"seal": sealer("e")}
        )
        if may_hold_floats(type(event.data)):
            continue
        shortcut += 1
        encoded = hashchain.encode_data(data, floats=False)
        assert encoded == hashchain._reference(data) == hashchain.encode_data(data)
    assert shortcut > 1000
    assert hashchain.encode_data({"n": 2**70}, floats=False) == b'{"n":%d}' % 2**70


@settings(max_examples=300, deadline=None)
@given(_text, _text, _text, _text, _text)
def test_a_row_read_back_hashes_as_canonical_whatever_its_text_columns_hold(
    actor_id: str, role: str, trust_id: str, school_urn: str, event_type: str
) -> None:
    # A changed row may hold anything in a text column (quotes, backslashes, controls):
    # the template's bytes are still the canonical bytes of what it holds, so a change
    # shows as a broken hash and never as some other row's content.
    fields = {
        **_envelope({"a": 1}),
        "actor_id": actor_id,
        "actor_role": role,
        "trust_id": trust_id,
        "school_urn": school_urn,
        "event_type": event_type,
        "causation_id": uuid.uuid4(),
    }
    as_read = [
        str(fields["event_id"]),
        str(fields["stream_id"]),
        fields["version"],
        event_type,
        fields["schema_version"],
        hashchain.ts(fields["occurred_at"]),  # type: ignore[arg-type]
        hashchain.ts(fields["recorded_at"]),  # type: ignore[arg-type]
        actor_id,
        role,
        trust_id,
        school_urn,
        str(fields["correlation_id"]),
        str(fields["causation_id"]),
        '{"a": 1}',
    ]
    assert hashchain.stored_content(*as_read) == hashchain.reference_canonical(**fields)
