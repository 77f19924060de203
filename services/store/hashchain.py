"""The per-pupil hash chain: each event's hash covers its content and the previous hash.

The hash is taken over the event as stored (personal fields sealed), so
destroying a pupil's key changes nothing the chain covers and ``verify`` still
passes after an erasure. The global position is not covered: it is an index
assigned by the store, not part of what happened.

The covered bytes are sorted-key JSON without whitespace, exactly as Python's
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes
it. ``orjson`` writes the same bytes far faster for everything but numbers that
are not plain 64-bit integers, so those (rare) events take the reference encoder.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

# A float somewhere in orjson's output: json writes some differently (87.0 must be
# 87, 1e-07 not 1e-7). In orjson's compact output a number follows ":", "[" or ","
# and a float has a "." or an exponent; the same pattern inside a string is a
# harmless false alarm that costs only speed. (An integer beyond 64 bits makes
# orjson raise; below that it writes integers as json does.)
_FLOAT = re.compile(rb"[:\[,]-?\d+[.eE]")


def _normalise(value: Any) -> Any:
    # jsonb keeps a number as the decimal it was written as (Python writes the
    # shortest repr), and it may come back as an int (1e23 reads back as 10**23)
    # or a float: both sides are brought to that decimal, integral ones as ints.
    if isinstance(value, float):
        if not value.is_integer():
            return value  # a fraction's shortest decimal is never a whole number
        if -(2**53) < value < 2**53:
            return int(value)  # exact: the decimal is the digits before ".0"
        decimal = Decimal(repr(value))
        return int(decimal) if decimal == decimal.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _reference(data: Any) -> bytes:
    return json.dumps(
        _normalise(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def _fast(data: Any) -> bytes | None:
    try:
        encoded = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits
        return None
    return None if _FLOAT.search(encoded) else encoded


def encode_data(data: dict[str, Any], floats: bool = True) -> bytes:
    """An event's data as canonical JSON.

    ``floats`` False says the data hold no float (``floats.may_hold_floats`` of the
    event's model): orjson's bytes are then the canonical ones unless an integer is beyond 64
    bits, and the search of its output for floats (most of the cost) is skipped.
    """
    if not floats:
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits
            return _reference(data)
    fast = _fast(data)
    if fast is not None:
        return fast
    # Most floats in events are whole numbers (a score of 87.0), which the canonical
    # form writes as integers: once normalised, orjson can usually write them after all.
    normalised = _normalise(data)
    fast = _fast(normalised)
    if fast is not None:
        return fast
    return json.dumps(
        normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


# jsonb writes numbers in plain decimal, never with an exponent, so in its text a number
# orjson would write differently (a fraction, or an integer beyond 64 bits) shows as
# digit-dot-digit or as 19 digits in a row. With every digit mapped to 0 both are plain
# substring searches, far cheaper than a regular expression; a hit inside a string is a
# harmless false alarm that costs only speed.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _plain_stored(raw: bytes) -> bool:
    shape = raw.translate(_DIGITS_AS_ZERO)
    return b"0.0" not in shape and b"0" * 19 not in shape


def stored_data(text: str) -> Any:
    """Data as jsonb gives it back, ready to go into ``orjson.dumps`` with sorted keys:
    parsed, or as its reference bytes when orjson would write its numbers differently."""
    raw = text.encode()
    if _plain_stored(raw):
        return orjson.loads(raw)
    return orjson.Fragment(_reference(json.loads(raw)))


def decode_stored(text: str) -> bytes:
    """Canonical JSON of data as jsonb gives it back (its own spacing and key order)."""
    return orjson.dumps(stored_data(text), option=orjson.OPT_SORT_KEYS)


def ts(moment: datetime) -> str:
    if moment.tzinfo is not UTC:  # the database gives moments in UTC already
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def canonical(
    *,
    event_id: UUID | str,
    stream_id: UUID | str,
    version: int,
    event_type: str,
    schema_version: int,
    occurred_at: datetime | str,
    recorded_at: datetime | str,
    actor_id: str,
    actor_role: str,
    trust_id: str,
    school_urn: str,
    correlation_id: UUID | str,
    causation_id: UUID | str | None,
    data: bytes,
) -> bytes:
    """The bytes an event's hash covers: sorted-key JSON, no whitespace.

    ``data`` is already canonical (``encode_data`` / ``decode_stored``); ids may
    come as text and moments as ``ts`` text (``stored_content`` is the same for rows
    read back).
    """
    doc = {
        "event_id": str(event_id),
        "stream_id": str(stream_id),
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else ts(occurred_at),
        "recorded_at": recorded_at if isinstance(recorded_at, str) else ts(recorded_at),
        "actor": [actor_id, actor_role],
        "tenant": [trust_id, school_urn],
        "correlation_id": str(correlation_id),
        "causation_id": str(causation_id) if causation_id else None,
        "data": orjson.Fragment(data),
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def stored_content(
    event_id: str,
    stream_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    occurred_at: str,
    recorded_at: str,
    actor_id: str,
    actor_role: str,
    trust_id: str,
    school_urn: str,
    correlation_id: str,
    causation_id: str | None,
    data: str,
) -> bytes:
    """``canonical`` of a row as ``verify`` reads it (ids as text, moments as ``ts`` text,
    data as jsonb text), in one ``orjson.dumps``: the data are parsed into the document
    instead of being written out on their own first."""
    doc = {
        "event_id": event_id,
        "stream_id": stream_id,
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
        "actor": [actor_id, actor_role],
        "tenant": [trust_id, school_urn],
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "data": stored_data(data),
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def reference_canonical(**fields: Any) -> bytes:
    """The original definition, kept for tests: ``canonical`` must equal it byte for byte."""
    doc = {
        "event_id": str(fields["event_id"]),
        "stream_id": str(fields["stream_id"]),
        "version": fields["version"],
        "event_type": fields["event_type"],
        "schema_version": fields["schema_version"],
        "occurred_at": ts(fields["occurred_at"]),
        "recorded_at": ts(fields["recorded_at"]),
        "actor": [fields["actor_id"], fields["actor_role"]],
        "tenant": [fields["trust_id"], fields["school_urn"]],
        "correlation_id": str(fields["correlation_id"]),
        "causation_id": str(fields["causation_id"]) if fields["causation_id"] else None,
        "data": _normalise(fields["data"]),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(prev_hash: bytes | None, content: bytes) -> bytes:
    return hashlib.sha256((prev_hash or b"") + content).digest()
