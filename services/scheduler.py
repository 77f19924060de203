"""The scheduler service: record each dated notice once, on its day.

For every pupil it asks the pure ``schedule.occurrences`` what is due up to
today and appends what is not yet in the stream, as the system actor. Event
ids are derived from the occurrence and everything else in the event (day,
actor, correlation id) is too, so two schedulers, a restart or a catch-up
after downtime meet the store's idempotency instead of writing twice; a
concurrent append makes the stale one look again. When a retention period
ends, the pupil's personal data is erased through the vault.

No leader is needed: run one or several. ``senflow scheduler tick --now DATE``
runs it once for a given day (catch-up, simulation on a copy, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from uuid import UUID, uuid5

import structlog

from senflow.events import catalogue as ev
from senflow.events.envelope import Actor, NewEvent, RecordedEvent, Role
from senflow.services.application import SenflowService
from senflow.services.metrics import NOTICES
from senflow.services.store.eventstore import ConcurrencyConflict, EventStore
from senflow.services.workflow.calendar import SCHOOL_TZ, school_day
from senflow.services.workflow.schedule import Occurrence, ScheduleConfig, occurrences
from senflow.services.workflow.state import effective, replay

log = structlog.get_logger(__name__)

SCHEDULER = Actor(user_id="senflow-scheduler", role=Role.SYSTEM)
_ATTEMPTS = 5


@dataclass
class TickReport:
    day: date
    pupils: int = 0
    recorded: int = 0
    already: int = 0  # recorded by another scheduler meanwhile
    erased: int = 0
    failed: int = 0  # pupils whose notices could not be recorded this time (logged)
    by_type: dict[str, int] = field(default_factory=dict)


class FutureTick(ValueError):
    pass


def _moment(day: date) -> datetime:
    # Notices happen at the start of the school day they are about.
    return datetime.combine(day, time(6), SCHOOL_TZ)


class Scheduler:
    def __init__(
        self,
        store: EventStore,
        service: SenflowService,
        config: ScheduleConfig = ScheduleConfig(),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store, self.service, self.config = store, service, config
        self.clock = clock or service.clock

    async def tick(self, day: date | None = None, trust_id: str | None = None) -> TickReport:
        """Record every notice due on or before ``day`` (default: today), for one trust or all."""
        today = school_day(self.clock())
        day = day or today
        if day > today:
            raise FutureTick(f"{day} is in the future: notices are recorded on or after their day")
        report = TickReport(day)
        async with self.store.pool.acquire() as conn:
            pupils = [
                r["stream_id"]
                for r in await conn.fetch(
                    "SELECT stream_id FROM streams WHERE version > 0 "
                    "AND ($1::text IS NULL OR trust_id = $1) ORDER BY stream_id",
                    trust_id,
                )
            ]
        for pupil in pupils:
            report.pupils += 1
            await self._pupil(pupil, day, report)
        log.info(
            "scheduler_tick",
            **{k: v for k, v in vars(report).items() if k != "day"},
            day=day.isoformat(),
        )
        return report

    async def _pupil(self, pupil: UUID, day: date, report: TickReport) -> None:
        # One pupil's trouble must not cost the others their notices.
        try:
            await self._attempt(pupil, day, report)
        except Exception as exc:
            report.failed += 1
            log.error("scheduler_pupil_failed", pupil_id=str(pupil), error=repr(exc))

    async def _attempt(self, pupil: UUID, day: date, report: TickReport) -> None:
        for _ in range(_ATTEMPTS):
            events = await self.store.read_stream(pupil)
            state = replay(events)
            if state.erased:
                return  # nothing more is recorded for an erased pupil
            if any(isinstance(e.data, ev.RetentionExpired) for e in events):
                # recorded by a senflow that erased separately, and interrupted: finish it
                await self._erase(pupil, report, ())
                return
            have = {e.event_id for e in events}
            due = [
                o
                for o in occurrences(events, day, self.config, _date_of_birth(events))
                if o.event_id(pupil) not in have
            ]
            if not due:
                return
            try:
                await self._record(pupil, events, due, report)
                return
            except ConcurrencyConflict:
                continue  # someone appended meanwhile: look again from the new state
        log.warning("scheduler_gave_up_on_pupil", pupil_id=str(pupil))

    async def _record(
        self, pupil: UUID, events: list[RecordedEvent], due: list[Occurrence], report: TickReport
    ) -> None:
        tenant = replay(events).tenant
        assert tenant is not None
        version = events[-1].version
        for o in due:
            notice = NewEvent(
                event_id=o.event_id(pupil),
                data=o.data,  # type: ignore[arg-type]
                occurred_at=_moment(o.day),
                actor=SCHEDULER,
                tenant=tenant,
                correlation_id=uuid5(pupil, f"notice-correlation:{o.key}"),
            )
            if isinstance(o.data, ev.RetentionExpired):
                # the notice and the erasure it calls for, in one transaction
                await self._erase(pupil, report, (notice,))
                NOTICES.labels(o.data.event_type).inc()
                report.recorded += 1
                return
            result = await self.store.append(pupil, [notice], version)
            version = result.last_version
            if result.duplicate:
                report.already += 1
                continue
            report.recorded += 1
            kind = o.data.event_type  # type: ignore[attr-defined]
            report.by_type[kind] = report.by_type.get(kind, 0) + 1
            NOTICES.labels(kind).inc()

    async def _erase(
        self, pupil: UUID, report: TickReport, preceding: tuple[NewEvent, ...]
    ) -> None:
        try:
            await self.service.forget(
                pupil,
                "retention period ended",
                SCHEDULER,
                reason_code="retention_expired",
                preceding=preceding,
            )
            report.erased += 1
        except ValueError:
            pass  # another scheduler erased it first

    async def run(self, stop: asyncio.Event, every: float = 3600.0) -> None:
        """Tick for today, then every ``every`` seconds, until ``stop``."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # a bad night must not stop tomorrow's notices
                log.error("scheduler_tick_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


def _date_of_birth(events: list[RecordedEvent]) -> date | None:
    for e in effective(events):  # a corrected date of birth counts
        if isinstance(e.data, ev.PupilRegistered) and isinstance(e.data.date_of_birth, date):
            return e.data.date_of_birth
    return None
