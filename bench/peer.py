"""The peer: the Python ``eventsourcing`` library's PostgreSQL recorder, same server, same events.

Configured as the library documents, through its ``POSTGRES_*`` environment
settings (``PERSISTENCE_MODULE=eventsourcing.postgres``), with its JSON
transcoder and its AES cipher (``CIPHER_TOPIC``/``CIPHER_KEY``, the closest
thing it has to senflow's vault: it encrypts each event's whole state). Its
``PostgresApplicationRecorder`` gives it the guarantees it has: optimistic
concurrency on (aggregate id, version) and notification ids in commit order
(it locks the table in EXCLUSIVE mode for each insert). It has no
idempotency by event id and no hash chain. The library is synchronous
(psycopg 3 with a connection pool), so concurrent writers are threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from eventsourcing.utils import Environment

from senflow.events.envelope import NewEvent


@dataclass(frozen=True)
class PupilEvent(DomainEvent):
    """A senflow event as an ``eventsourcing`` domain event: the same envelope and data."""

    event_type: str
    event_id: UUID
    occurred_at: datetime
    actor_id: str
    actor_role: str
    trust_id: str
    school_urn: str
    correlation_id: UUID
    causation_id: UUID | None
    data: dict[str, Any]


def domain_events(
    pupil: UUID, first_version: int, events: Sequence[NewEvent], now: datetime
) -> list[PupilEvent]:
    return [
        PupilEvent(
            originator_id=pupil,
            originator_version=first_version + i,
            timestamp=now,
            event_type=e.event_type,
            event_id=e.event_id,
            occurred_at=e.occurred_at,
            actor_id=e.actor.user_id,
            actor_role=e.actor.role.value,
            trust_id=e.tenant.trust_id,
            school_urn=e.tenant.school_urn,
            correlation_id=e.correlation_id,
            causation_id=e.causation_id,
            data=e.data.model_dump(mode="json"),
        )
        for i, e in enumerate(events)
    ]


class Peer:
    def __init__(self, database_url: str, pool_size: int) -> None:
        parts = urlsplit(database_url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": parts.username or "postgres",
            "POSTGRES_PASSWORD": parts.password or "",
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_LOCK_TIMEOUT": "30",
            "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
            "CIPHER_KEY": AESCipher.create_key(32),
        }
        environment = Environment("senflowbench", env)
        self.factory = InfrastructureFactory.construct(environment)
        transcoder = JSONTranscoder()
        for t in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(t)
        self.mapper: Mapper[UUID] = self.factory.mapper(transcoder=transcoder)
        self.recorder = self.factory.application_recorder()

    def append(self, events: Sequence[PupilEvent]) -> None:
        self.recorder.insert_events([self.mapper.to_stored_event(e) for e in events])

    def close(self) -> None:
        self.factory.close()


def run_writers(
    peer: Peer, plans: list[list[list[PupilEvent]]], seconds: float
) -> tuple[int, int, float]:
    """Each plan is one writer's appends in order; returns (events, appends, elapsed)."""
    counts = [[0, 0] for _ in plans]
    start_gate = threading.Barrier(len(plans) + 1)
    deadline = [0.0]

    def writer(i: int) -> None:
        start_gate.wait()
        for command in plans[i]:
            if time.perf_counter() >= deadline[0]:
                return
            peer.append(command)
            counts[i][0] += len(command)
            counts[i][1] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed
