"""Realistic pupils' histories, decided by the real workflow (as the demo trust records them).

Pupils come from ``senflow.services.demo.pupil_commands`` (the national mix of
needs, termly plan-do-review cycles, interventions with sessions, parent
meetings, EHC plans and reviews), decided in memory by the same pure workflow
the command path uses, so event sizes and shapes are those of real records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from senflow.events.envelope import NewEvent
from senflow.services.demo import DemoSpec, pupil_commands, school_urns
from senflow.services.importer import decide_history
from senflow.services.workflow.commands import CommandBase, parse_command

TODAY = date(2026, 3, 20)
FIRST_DAY = date(2023, 9, 4)  # three school years of history
_NOW = datetime(2026, 3, 20, 16, tzinfo=UTC)


@dataclass(frozen=True)
class Pupil:
    pupil_id: UUID
    commands: list[dict[str, Any]]
    events: list[NewEvent]


def _clock() -> Any:
    return SimpleNamespace(clock=lambda: _NOW)


def raw_pupils(count: int, seed: int, min_events: int = 1) -> Iterator[list[dict[str, Any]]]:
    """Command histories of ``count`` pupils with at least ``min_events`` commands."""
    spec = DemoSpec(schools=3, pupils_per_school=10**6, seed=seed, trust_id=f"trust-b{seed}")
    urns = school_urns(spec)
    made, n = 0, 0
    while made < count:
        school = n % len(urns)
        commands, _ = pupil_commands(spec, school, urns[school], n, FIRST_DAY, TODAY)
        n += 1
        if len(commands) >= min_events:
            made += 1
            yield commands


def pupils(count: int, seed: int = 1, min_events: int = 1) -> list[Pupil]:
    """Pupils with their commands and the events the workflow decides for them."""
    out = []
    for raw in raw_pupils(count, seed, min_events):
        parsed = [parse_command(r) for r in raw]
        events = decide_history(parsed, _clock())  # type: ignore[arg-type]
        if isinstance(events, dict):
            raise RuntimeError(f"demo history refused: {events}")
        out.append(Pupil(parsed[0].pupil_id, raw, events))
    return out


def parsed_commands(p: Pupil) -> list[CommandBase]:
    return [parse_command(r) for r in p.commands]


def commands_of_1_to_3(events: list[NewEvent], rng: random.Random) -> list[list[NewEvent]]:
    """A history cut into consecutive appends of 1-3 events (the commands' shape)."""
    out, i = [], 0
    while i < len(events):
        k = rng.randint(1, 3)
        out.append(events[i : i + k])
        i += k
    return out


def clone(events: list[NewEvent], pupil_id: UUID | None = None) -> tuple[UUID, list[NewEvent]]:
    """The same history for another pupil: fresh pupil, event and command ids."""
    pupil_id = pupil_id or uuid4()
    causes: dict[UUID | None, UUID] = {}
    out = []
    for e in events:
        cause = causes.setdefault(e.causation_id, uuid4())
        out.append(
            e.model_copy(
                update={"event_id": uuid4(), "causation_id": cause, "correlation_id": cause}
            )
        )
    return pupil_id, out


def size_summary(ps: list[Pupil]) -> dict[str, float]:
    sizes = [len(e.data.model_dump_json()) for p in ps for e in p.events]
    counts = [len(p.events) for p in ps]
    return {
        "pupils": len(ps),
        "events": sum(counts),
        "events_per_pupil_mean": round(sum(counts) / len(counts), 1),
        "event_data_bytes_mean": round(sum(sizes) / len(sizes), 1),
        "event_data_bytes_max": max(sizes),
    }
