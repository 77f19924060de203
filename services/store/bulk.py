"""Whole histories of new pupils as one COPY: keys, stream heads and rows, ready to write.

Building a chunk is the CPU part of a bulk import (sealing, hash chains,
encoding) and touches no connection, so it can run in a worker process while
the main process writes an earlier chunk. The result is cheap to hand over:
the rows are already in COPY's binary format, one ``bytes`` for the chunk
(pickled row tuples would cost the main process ~20 µs a row: UUIDs pickle
slowly). The store writes it with ``EventStore.import_prepared``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from senflow.events.catalogue import PupilTransferred
from senflow.events.envelope import NewEvent
from senflow.services.store import vault
from senflow.services.store.rows import StreamRows


@dataclass(frozen=True)
class Prepared:
    """One transaction's worth of new streams: their heads, keys and events' rows."""

    stream_ids: list[UUID]
    keys: list[bytes]  # each stream's vault key
    versions: list[int]  # each stream's version, last hash and tenant after the import
    last_hashes: list[bytes]
    trust_ids: list[str]
    school_urns: list[str]
    copy: bytes  # the events' rows, ``_COLUMNS`` order, in COPY's binary format
    events: int


class Chunk:
    """A transaction's worth of new streams, built one stream at a time."""

    def __init__(self, recorded_at: datetime | None = None) -> None:
        self.recorded_at = recorded_at or datetime.now(UTC)
        self._copy = _CopyWriter(self.recorded_at)
        self._heads: list[tuple[UUID, bytes, int, bytes, str, str]] = []

    def __len__(self) -> int:
        return len(self._heads)

    def add(self, stream_id: UUID, events: Sequence[NewEvent]) -> None:
        key = vault.new_key()
        stream = StreamRows(stream_id, key, self.recorded_at)
        last_hash: bytes | None = None
        for version, e in enumerate(events, start=1):
            row = stream.raw_row(version, e, last_hash)
            last_hash = row[-1]
            self._copy.add(row)
        assert last_hash is not None, "a stream has at least one event"
        last = events[-1]
        # A transfer is recorded at the old school; the pupil now belongs to the new one.
        school = last.data.to_urn if isinstance(last.data, PupilTransferred) else None
        self._heads.append(
            (
                stream_id,
                key,
                len(events),
                last_hash,
                last.tenant.trust_id,
                school or last.tenant.school_urn,
            )
        )

    def finish(self) -> Prepared:
        ids, keys, versions, hashes, trusts, schools = (
            list(column) for column in zip(*self._heads, strict=True)
        )
        return Prepared(
            ids, keys, versions, hashes, trusts, schools, self._copy.finish(), self._copy.rows
        )


# --- COPY's binary format (PostgreSQL docs, "COPY", "Binary Format") -----------------------
# A header, then per row the field count and each field as a 4-byte length
# (-1 for NULL) followed by the value in the type's binary form, then -1.

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_LENGTH = struct.Struct(">i")
_UUID = struct.Struct(">i16s")
_ROW_START = struct.Struct(">hi16si16sii")  # 16 fields; event id, stream id, version
_SCHEMA = struct.Struct(">ih")  # int2
_MOMENT = struct.Struct(">iq")  # microseconds since 2000-01-01 UTC
_JSONB = struct.Struct(">ib")  # then the JSON text; 1 is jsonb's binary format version
_HASH = struct.Struct(">i32s")  # a SHA-256 digest
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(value: datetime) -> int:
    return (value - _PG_EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=4096)
def _moment(value: datetime, fold: int) -> int:
    """``_micros`` remembered, as ``rows.moment_text`` (and keyed by fold for the same reason)."""
    return _micros(value)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _LENGTH.pack(len(raw)) + raw


@functools.lru_cache(maxsize=1024)
def _type(event_type: str, schema_version: int) -> bytes:
    return _text(event_type) + _SCHEMA.pack(2, schema_version)


@functools.lru_cache(maxsize=4096)
def _who(actor_id: str, actor_role: str, trust_id: str, school_urn: str) -> bytes:
    return _text(actor_id) + _text(actor_role) + _text(trust_id) + _text(school_urn)


class _CopyWriter:
    """Rows as ``StreamRows.raw_row`` gives them, in the ``events`` table's column types.

    Per row this is Python's own work, so what repeats is encoded once: the
    stream id (rows come stream by stream), the moment recorded (one per
    chunk), and the few types, actors and tenants.
    """

    def __init__(self, recorded_at: datetime) -> None:
        self._parts = [_HEADER]
        self._recorded = _MOMENT.pack(8, _micros(recorded_at))
        self._stream: tuple[UUID | None, bytes] = (None, b"")
        self.rows = 0

    def add(self, row: tuple[Any, ...]) -> None:
        (event_id, stream_id, version, event_type, schema_version, occurred_at, _recorded,
         actor_id, actor_role, trust_id, school_urn, correlation_id, causation_id, data,
         prev_hash, digest) = row  # fmt: skip
        if stream_id is not self._stream[0]:
            self._stream = (stream_id, stream_id.bytes)
        correlation = _UUID.pack(16, correlation_id.bytes)
        if causation_id is None:
            causation = _NULL
        elif causation_id is correlation_id or causation_id == correlation_id:  # the usual case
            causation = correlation
        else:
            causation = _UUID.pack(16, causation_id.bytes)
        self._parts += (
            _ROW_START.pack(16, 16, event_id.bytes, 16, self._stream[1], 4, version),
            _type(event_type, schema_version),
            _MOMENT.pack(8, _moment(occurred_at, occurred_at.fold)),
            self._recorded,
            _who(actor_id, actor_role, trust_id, school_urn),
            correlation,
            causation,
            _JSONB.pack(len(data) + 1, 1),
            data,
            _NULL if prev_hash is None else _HASH.pack(32, prev_hash),
            _HASH.pack(32, digest),
        )
        self.rows += 1

    def finish(self) -> bytes:
        self._parts.append(_TRAILER)
        return b"".join(self._parts)
