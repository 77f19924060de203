"""Bulk import: bring a school's existing SEN history into senflow fast.

The input is the same commands ``senflow submit`` takes. Each new pupil's
commands are decided in memory by the same pure workflow (so every rule
applies, and event ids come from command ids as on the command path), then
whole histories are written with COPY, many pupils per transaction. The
result is the store the command path would have produced. A pupil whose
history breaks a rule is reported and skipped whole; pupils already in the
store are skipped (import is for new pupils; use ``submit`` for the rest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog

from senflow.events import catalogue as ev
from senflow.events.envelope import NewEvent
from senflow.services.application import SenflowService, envelop
from senflow.services.workflow.commands import CommandBase
from senflow.services.workflow.decide import Rejection, decide
from senflow.services.workflow.state import PupilState, evolve, replay

log = structlog.get_logger(__name__)


@dataclass
class ImportReport:
    pupils: int = 0
    events: int = 0
    skipped_existing: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)


def decide_history(
    commands: list[CommandBase], service: SenflowService
) -> list[NewEvent] | dict[str, Any]:
    """A new pupil's events from their commands, or why the history is refused."""
    state, events = PupilState(), []
    now = service.clock()
    for n, command in enumerate(commands):
        original = None
        if isinstance(command.event_data, ev.RecordCorrected):
            target = command.event_data.corrects_event_id
            original = next((e for e in events if e.event_id == target), None)
        outcome = decide(state, command, now, original)
        if isinstance(outcome, Rejection):
            return {"pupil_id": str(command.pupil_id), "command": n, "rejection": vars(outcome)}
        new = envelop(command, state, outcome)
        events += new
        if isinstance(command.event_data, ev.RecordCorrected):
            state = replay(events)
        else:
            for e in new:
                state = evolve(state, e)
    return events


async def bulk_import(
    service: SenflowService, commands: Iterable[CommandBase], batch_pupils: int = 500
) -> ImportReport:
    by_pupil: dict[UUID, list[CommandBase]] = {}
    for c in commands:
        by_pupil.setdefault(c.pupil_id, []).append(c)
    report = ImportReport()
    store = service.store
    async with store.pool.acquire() as conn:
        existing = {
            r["stream_id"]
            for r in await conn.fetch(
                "SELECT stream_id FROM streams WHERE stream_id = ANY($1::uuid[])",
                list(by_pupil),
            )
        }
    # Deciding, sealing and hashing are Python's work, COPY is the server's: a
    # chunk is written while the next one is decided, and two chunks may be
    # in flight (one sealing and hashing while the other's COPY runs).
    gate = asyncio.Semaphore(2)
    writing: list[asyncio.Task[None]] = []

    async def write(chunk: list[tuple[UUID, list[NewEvent]]]) -> None:
        async with gate:
            report.events += await store.import_new_streams(chunk)
            report.pupils += len(chunk)

    ready: list[tuple[UUID, list[NewEvent]]] = []
    try:
        for pupil, history in by_pupil.items():
            if pupil in existing:
                report.skipped_existing += 1
                continue
            decided = decide_history(history, service)
            if isinstance(decided, dict):
                report.refused.append(decided)
                continue
            ready.append((pupil, decided))
            if len(ready) == batch_pupils:
                writing.append(asyncio.create_task(write(ready)))
                ready = []
            await asyncio.sleep(0)  # let chunks in flight take their next step
        if ready:
            writing.append(asyncio.create_task(write(ready)))
        await asyncio.gather(*writing)
    except BaseException:
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        raise
    log.info(
        "bulk_import",
        pupils=report.pupils,
        events=report.events,
        refused=len(report.refused),
        skipped=report.skipped_existing,
    )
    return report
