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

from senflow.events.catalogue import current_version
from senflow.events.envelope import NewEvent
from senflow.services.store import hashchain, vault

_NOT_DATA = {"event_type"}  # the type has its own column


@functools.lru_cache(maxsize=4096)
def moment_text(moment: datetime, fold: int) -> str:
    """``hashchain.ts``, remembered: a school's events share a few moments (a day at
    midday), and converting from the school's time zone costs more than the rest
    of the envelope. ``fold`` is part of the key because two moments in the same
    zone compare equal whatever their fold (the repeated hour when clocks go back)."""
    return hashchain.ts(moment)


class StreamRows:
    def __init__(self, stream_id: UUID, key: bytes, recorded_at: datetime) -> None:
        self.stream_id = stream_id
        self.recorded_at = recorded_at
        self._sid = str(stream_id)
        self._recorded = hashchain.ts(recorded_at)
        self._sealer = vault.stream_sealer(key, self._sid)

    def row(self, version: int, e: NewEvent, prev_hash: bytes | None) -> tuple[Any, ...]:
        """The row of the event at ``version``, in ``_COLUMNS`` order (data as JSON text)."""
        event_id = str(e.event_id)
        data = hashchain.encode_data(
            e.data.model_dump(
                mode="json", exclude=_NOT_DATA, context={"seal": self._sealer(event_id)}
            )
        )
        event_type = e.event_type
        schema_version = current_version(event_type)
        actor, tenant = e.actor, e.tenant
        role = actor.role.value
        correlation_id, causation_id = e.correlation_id, e.causation_id
        correlation = str(correlation_id)
        # A command's events are caused by it and mostly correlated to it too:
        # the same id, turned into text once.
        causation = correlation if causation_id is correlation_id else causation_id
        content = hashchain.canonical(
            event_id=event_id,
            stream_id=self._sid,
            version=version,
            event_type=event_type,
            schema_version=schema_version,
            occurred_at=moment_text(e.occurred_at, e.occurred_at.fold),
            recorded_at=self._recorded,
            actor_id=actor.user_id,
            actor_role=role,
            trust_id=tenant.trust_id,
            school_urn=tenant.school_urn,
            correlation_id=correlation,
            causation_id=causation,
            data=data,
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
            data.decode(),
            prev_hash,
            hashchain.chain(prev_hash, content),
        )
