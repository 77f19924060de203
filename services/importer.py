"""Bulk import: bring a school's existing SEN history into senflow fast.

The input is the same commands ``senflow submit`` takes. Each new pupil's
commands are decided in memory by the same pure workflow (so every rule
applies, and event ids come from command ids as on the command path), then
whole histories are written with COPY, many pupils per transaction. The
result is the store the command path would have produced. A pupil whose
history breaks a rule is reported and skipped whole; pupils already in the
store are skipped (import is for new pupils; use ``submit`` for the rest).

Deciding, sealing and hashing are Python's work, COPY is the server's: chunks
of pupils are decided and built in worker processes (a pupil's hash chain is
its own, so pupils parallelise) while the main process writes the chunks
already built, one transaction each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from senflow.events import catalogue as ev
from senflow.events.envelope import NewEvent
from senflow.services import forked
from senflow.services.application import SenflowService, envelop
from senflow.services.store import bulk
from senflow.services.workflow.commands import CommandBase
from senflow.services.workflow.decide import Rejection, decide
from senflow.services.workflow.state import PupilState, evolve, replay

log = structlog.get_logger(__name__)

History = tuple[UUID, list[CommandBase]]
Built = tuple[list[dict[str, Any]], bulk.Prepared | None]  # refusals, and the chunk to write


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
    return _decide(commands, service.clock())


def _decide(commands: list[CommandBase], now: datetime) -> list[NewEvent] | dict[str, Any]:
    state, events = PupilState(), list[NewEvent]()
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


class _Builder:
    """A chunk of pupils decided and built into rows: refusals, and the chunk to write."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.refused: list[dict[str, Any]] = []
        self.chunk = bulk.Chunk()

    def add(self, pupil: UUID, commands: list[CommandBase]) -> None:
        decided = _decide(commands, self.clock())
        if isinstance(decided, dict):
            self.refused.append(decided)
        else:
            self.chunk.add(pupil, decided)

    def finish(self) -> Built:
        return self.refused, self.chunk.finish() if len(self.chunk) else None


async def bulk_import(
    service: SenflowService,
    commands: Iterable[CommandBase],
    batch_pupils: int = 500,
    workers: int | None = None,
) -> ImportReport:
    """Import new pupils' histories; ``workers`` processes build chunks (0: in process)."""
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
    new = [(pupil, history) for pupil, history in by_pupil.items() if pupil not in existing]
    report.skipped_existing = len(by_pupil) - len(new)
    chunks = [new[i : i + batch_pupils] for i in range(0, len(new), batch_pupils)]
    if workers is None:
        workers = os.cpu_count() or 1
    if not forked.can_fork():
        workers = 0  # commands are not picklable: workers must inherit them

    def build(index: int) -> Built:
        builder = _Builder(service.clock)
        for pupil, history in chunks[index]:
            builder.add(pupil, history)
        return builder.finish()

    built = (
        forked.built_in_workers(build, len(chunks), workers)
        if workers and len(chunks) > 1
        else _built_in_process(chunks, service.clock)
    )

    # Two chunks are written at once: one's statements run while the other's COPY does.
    gate = asyncio.Semaphore(2)
    writing: list[asyncio.Task[None]] = []

    async def write(prepared: bulk.Prepared) -> None:
        try:
            written = await store.import_prepared(prepared)
            # Counted after the await: `report.events += await ...` would read the
            # count before it and lose the other write's events.
            report.events += written
            report.pupils += len(prepared.stream_ids)
        finally:
            gate.release()

    try:
        async for refused, prepared in built:
            report.refused += refused
            if prepared is not None:
                await gate.acquire()
                writing.append(asyncio.create_task(write(prepared)))
        await asyncio.gather(*writing)
    except BaseException:
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        raise
    finally:
        await built.aclose()
    log.info(
        "bulk_import",
        pupils=report.pupils,
        events=report.events,
        refused=len(report.refused),
        skipped=report.skipped_existing,
    )
    return report


async def _built_in_process(
    chunks: list[list[History]], clock: Callable[[], datetime]
) -> AsyncGenerator[Built, None]:
    for chunk in chunks:
        builder = _Builder(clock)
        for n, (pupil, commands) in enumerate(chunk, start=1):
            builder.add(pupil, commands)
            if n % 4 == 0:
                await asyncio.sleep(0)  # let the chunk being written be sent meanwhile
        yield builder.finish()
