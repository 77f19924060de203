"""The per-pupil hash chain: each event's hash covers its content and the previous hash.

The hash is taken over the event as stored (personal fields sealed), so
destroying a pupil's key changes nothing the chain covers and ``verify`` still
passes after an erasure. The global position is not covered: it is an index
assigned by the store, not part of what happened.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID


def _normalise(value: Any) -> Any:
    # jsonb keeps a number as the decimal it was written as (Python writes the
    # shortest repr), and it may come back as an int (1e23 reads back as 10**23)
    # or a float: both sides are brought to that decimal, integral ones as ints.
    if isinstance(value, float):
        decimal = Decimal(repr(value))
        return int(decimal) if decimal == decimal.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(
    *,
    event_id: UUID,
    stream_id: UUID,
    version: int,
    event_type: str,
    schema_version: int,
    occurred_at: datetime,
    recorded_at: datetime,
    actor_id: str,
    actor_role: str,
    trust_id: str,
    school_urn: str,
    correlation_id: UUID,
    causation_id: UUID | None,
    data: dict[str, Any],
) -> bytes:
    """The bytes an event's hash covers: sorted-key JSON, no whitespace."""
    doc = {
        "event_id": str(event_id),
        "stream_id": str(stream_id),
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": _ts(occurred_at),
        "recorded_at": _ts(recorded_at),
        "actor": [actor_id, actor_role],
        "tenant": [trust_id, school_urn],
        "correlation_id": str(correlation_id),
        "causation_id": str(causation_id) if causation_id else None,
        "data": _normalise(data),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(prev_hash: bytes | None, content: bytes) -> bytes:
    return hashlib.sha256((prev_hash or b"") + content).digest()
