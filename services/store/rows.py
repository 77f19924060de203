"""One pupil's events as stored rows: personal fields sealed, hash-chained.

Every write path (append and bulk import) builds its rows here, so a row's
content and hash are computed one way only. What is the same for all of a
stream's rows (the cipher, the stream id as text, the moment recorded as
text) is worked out once per stream: bulk import builds hundreds of
thousands of rows and this is its per-row cost.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from senflow.events.envelope import NewEvent
from senflow.services.store import hashchain, vault
from senflow.services.store.floats import may_hold_floats

_NOT_DATA = {"event_type"}  # the type has its own column


@functools.lru_cache(maxsize=4096)
def moment_text(moment: datetime, fold: int) -> str:
    """``hashchain.ts``, remembered: a school's events share a few moments (a day at
    midday), and converting from the school's time zone costs more than the rest
    of the envelope. ``fold`` is part of the key because two moments in the same
    zone compare equal whatever their fold (the repeated hour when clocks go back)."""
    return hashchain.ts(moment)


@functools.lru_cache(maxsize=4096)
def _moment_json(moment: datetime, fold: int) -> bytes:
    return b'"%s"' % moment_text(moment, fold).encode()


@functools.lru_cache(maxsize=4096)
def _json(*values: str) -> bytes:
    """A string (or a pair, as a list) as JSON: actors, tenants and types are few."""
    return orjson.dumps(values[0] if len(values) == 1 else list(values))


# ``hashchain.canonical``'s bytes, written straight: its keys are fixed and sorted, so
# the layout is too (equal byte for byte, tested). The stream's own parts (recorded_at,
# stream_id) are filled in once per stream; neither holds a "%".
_CONTENT_HEAD = (
    b'{"actor":%s,"causation_id":%s,"correlation_id":"%s","data":%s,"event_id":"%s",'
    b'"event_type":%s,"occurred_at":%s,"recorded_at":"'
)
_CONTENT_MIDDLE = b'","schema_version":%d,"stream_id":"'
_CONTENT_TAIL = b'","tenant":%s,"version":%d}'


class StreamRows:
    def __init__(self, stream_id: UUID, key: bytes, recorded_at: datetime) -> None:
        self.stream_id = stream_id
        self.recorded_at = recorded_at
        sid = str(stream_id)
        recorded = hashchain.ts(recorded_at).encode()
        self._content = _CONTENT_HEAD + recorded + _CONTENT_MIDDLE + sid.encode() + _CONTENT_TAIL
        self._sealer = vault.stream_sealer(key, sid)
        self._correlation: tuple[UUID | None, bytes] = (None, b"")

    def row(self, version: int, e: NewEvent, prev_hash: bytes | None) -> tuple[Any, ...]:
        """The row of the event at ``version``, in ``_COLUMNS`` order (data as JSON text)."""
        row = self.raw_row(version, e, prev_hash)
        return (*row[:13], row[13].decode(), *row[14:])

    def raw_row(self, version: int, e: NewEvent, prev_hash: bytes | None) -> tuple[Any, ...]:
        """``row`` with the data as the canonical JSON bytes (as COPY's binary format takes
        them: no text to encode again)."""
        event_id = str(e.event_id)
        # ``model_dump``'s serializer called directly: its Python wrapper costs as much
        # as a small event's serialisation.
        data = hashchain.encode_data(
            e.data.__pydantic_serializer__.to_python(
                e.data, mode="json", exclude=_NOT_DATA, context={"seal": self._sealer(event_id)}
            ),
            floats=may_hold_floats(type(e.data)),
        )
        event_type = e.event_type
        schema_version = type(e.data).schema_version  # the model is the current version
        actor, tenant = e.actor, e.tenant
        role = actor.role._value_  # what .value gives, without the enum's property
        correlation_id, causation_id = e.correlation_id, e.causation_id
        # A command's events share their correlation id (and are mostly caused by the
        # same id): turned into text once.
        if correlation_id is not self._correlation[0]:
            self._correlation = (correlation_id, str(correlation_id).encode())
        correlation = self._correlation[1]
        if causation_id is None:
            causation = b"null"
        elif causation_id is correlation_id:
            causation = b'"%s"' % correlation
        else:
            causation = b'"%s"' % str(causation_id).encode()
        content = self._content % (
            _json(actor.user_id, role),
            causation,
            correlation,
            data,
            event_id.encode(),
            _json(event_type),
            _moment_json(e.occurred_at, e.occurred_at.fold),
            schema_version,
            _json(tenant.trust_id, tenant.school_urn),
            version,
        )
        return (
            e.event_id,
            self.stream_id,
            version,
            event_type,
            schema_version,
            e.occurred_at,
            self.recorded_at,
            actor.user_id,
            role,
            tenant.trust_id,
            tenant.school_urn,
            correlation_id,
            causation_id,
            data,
            prev_hash,
            hashchain.chain(prev_hash, content),
        )
