"""The service layer: load a pupil, decide, append; read a pupil's history.

This is the only place where the pure workflow meets the store. Commands are
idempotent by ``command_id``: event ids are derived from it, and a command
whose events are already stored returns its first result without deciding
again (the state has moved on, so deciding again could wrongly reject it).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol
from uuid import UUID, uuid5

import structlog

from senflow.events import catalogue as ev
from senflow.events.envelope import Actor, NewEvent, RecordedEvent, Role, Tenant, trusted
from senflow.events.personal import Redacted
from senflow.services.metrics import EVENTS_APPENDED, REJECTIONS
from senflow.services.pupil_states import PupilStates
from senflow.services.store.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    EventIdConflict,
    EventStore,
)
from senflow.services.workflow.calendar import end_of_school_day
from senflow.services.workflow.commands import CommandBase
from senflow.services.workflow.decide import Accepted, Rejection, Warning, decide
from senflow.services.workflow.state import PupilState, replay, resumable

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


class Appender(Protocol):
    async def append(
        self, stream_id: UUID, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> AppendResult: ...


_RETRIES = 20  # decide again after a concurrent append, with a growing random pause


def utc_now() -> datetime:
    return datetime.now(UTC)


# uuid5's version and variant bits, set on the SHA-1 digest as ``uuid.uuid5`` does
_UUID5_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET = (5 << 76) | (0x8000 << 48)


def event_id_for(command_id: UUID, index: int) -> UUID:
    """``uuid5(command_id, f"event-{index}")``, computed directly: a bulk import makes one
    per event and ``UUID(bytes=..., version=...)`` is the slow part (equal by test)."""
    digest = hashlib.sha1(command_id.bytes + b"event-%d" % index).digest()
    return UUID(int=(int.from_bytes(digest[:16]) & _UUID5_KEEP) | _UUID5_SET)


def envelop(command: CommandBase, state: PupilState, outcome: Accepted) -> list[NewEvent]:
    """The decided events in their envelopes: ids from the command, tenant from the pupil."""
    tenant = command.tenant or state.tenant
    assert tenant is not None
    events = []
    for i, data in enumerate(outcome.events):
        # Every part is already a validated value (the command was parsed, the data
        # decided), so the envelope is put together without validating them again.
        events.append(
            trusted(
                NewEvent,
                {
                    "event_id": event_id_for(command.command_id, i),
                    "data": data,
                    "occurred_at": command.occurred_at,
                    "actor": command.actor,
                    "tenant": tenant,
                    "correlation_id": command.correlation_id or command.command_id,
                    "causation_id": command.command_id,
                },
            )
        )
        if isinstance(data, ev.PupilTransferred):
            # What follows a transfer in the same command belongs to the new school.
            tenant = Tenant(trust_id=tenant.trust_id, school_urn=data.to_urn)
    return events


def _same_command(command: CommandBase, first: RecordedEvent) -> bool:
    """Whether ``first``, the first event a command id recorded, came from this command."""
    data = command.event_data
    if first.data.event_type != data.event_type or first.actor != command.actor:  # type: ignore[attr-defined]
        return False
    if first.occurred_at != command.occurred_at:
        return False
    for name in data.model_fields_set:
        before, now = getattr(first.data, name, None), getattr(data, name)
        if isinstance(before, Redacted) or before == now:
            continue  # erased since: the sealed value can no longer be compared
        return False
    return True


@dataclass(frozen=True)
class CommandResult:
    command_id: UUID
    pupil_id: UUID
    accepted: bool
    events: tuple[RecordedEvent, ...] = ()
    stream_version: int | None = None
    last_position: int | None = None
    warnings: tuple[Warning, ...] = ()
    rejection: Rejection | None = None
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "ok": self.accepted,
            "command_id": str(self.command_id),
            "pupil_id": str(self.pupil_id),
        }
        if self.rejection:
            base["rejection"] = vars(self.rejection)
            return base
        base.update(
            stream_version=self.stream_version,
            position=self.last_position,
            duplicate=self.duplicate,
            events=[
                {
                    "event_id": str(e.event_id),
                    "event_type": e.event_type,
                    "version": e.version,
                    "position": e.position,
                }
                for e in self.events
            ],
            warnings=[vars(w) for w in self.warnings],
        )
        return base


class SenflowService:
    def __init__(
        self,
        store: EventStore,
        clock: Clock = utc_now,
        appender: Appender | None = None,
        states: PupilStates | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        # Pupils' states kept between commands (shared by the services of one process
        # and trust): a command then reads and folds only the events it has not seen.
        self.states = states if states is not None else PupilStates()
        # Where decided events go: the store itself, or a group-commit coalescer in
        # front of it for services that take many commands at once (the HTTP API).
        self.append = appender.append if appender is not None else store.append

    async def handle(self, command: CommandBase) -> CommandResult:
        structlog.contextvars.bind_contextvars(
            command=command.name,
            command_id=str(command.command_id),
            pupil_id=str(command.pupil_id),
            correlation_id=str(command.correlation_id or command.command_id),
        )
        try:
            return await self._handle(command)
        finally:
            structlog.contextvars.unbind_contextvars(
                "command", "command_id", "pupil_id", "correlation_id"
            )

    async def _handle(self, command: CommandBase) -> CommandResult:
        for attempt in range(_RETRIES):
            state, read, earlier = await self.states.load(
                self.store, command.pupil_id, command.command_id
            )
            if earlier:
                return self._replayed(command, earlier)
            if command.expected_version is not None and command.expected_version != state.version:
                raise ConcurrencyConflict(command.pupil_id, command.expected_version, state.version)
            original = None
            if isinstance(command.event_data, ev.RecordCorrected):
                target = command.event_data.corrects_event_id
                original = next((e for e in read if e.event_id == target), None)
                if original is None and target in state.event_types:
                    original = next(
                        e
                        for e in await self.store.read_stream(command.pupil_id)
                        if e.event_id == target
                    )
            outcome = decide(state, command, self.clock(), original)
            if isinstance(outcome, Rejection):
                log.info("command_rejected", rule=outcome.rule, field=outcome.field)
                REJECTIONS.labels(outcome.rule).inc()
                return CommandResult(command.command_id, command.pupil_id, False, rejection=outcome)
            new_events = envelop(command, state, outcome)
            try:
                result = await self.append(command.pupil_id, new_events, state.version)
            except ConcurrencyConflict:
                # Someone appended between our read and our write. With an explicit
                # expected version the caller decides; otherwise decide again.
                if command.expected_version is not None or attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            if not result.duplicate and resumable(state, new_events):
                self.states.keep(command.pupil_id, replay(new_events, start=state))
            else:
                self.states.forget(command.pupil_id)
            for e in new_events:
                EVENTS_APPENDED.labels(e.event_type).inc()
            log.info(
                "command_accepted",
                events=len(new_events),
                version=result.last_version,
                position=result.last_position,
                warnings=[w.rule for w in outcome.warnings],
            )
            return self._result(command, new_events, result, outcome.warnings)
        raise AssertionError("unreachable")

    def _result(
        self,
        command: CommandBase,
        new_events: list[NewEvent],
        result: AppendResult,
        warnings: tuple[Warning, ...],
    ) -> CommandResult:
        recorded = tuple(
            RecordedEvent(
                **e.model_dump(exclude={"data"}),
                data=e.data,
                stream_id=command.pupil_id,
                version=result.first_version + i,
                position=result.positions[i],
                schema_version=ev.current_version(e.event_type),
                recorded_at=result.recorded_at,
            )
            for i, e in enumerate(new_events)
        )
        return CommandResult(
            command.command_id,
            command.pupil_id,
            True,
            events=recorded,
            stream_version=result.last_version,
            last_position=result.last_position,
            warnings=warnings,
            duplicate=result.duplicate,
        )

    def _replayed(self, command: CommandBase, earlier: list[RecordedEvent]) -> CommandResult:
        if earlier[0].stream_id != command.pupil_id:
            raise ValueError(f"command {command.command_id} was already used for another pupil")
        if not _same_command(command, earlier[0]):
            # A retry must be the same command; another one under a used id would
            # otherwise be answered "done" and silently never recorded.
            raise EventIdConflict(
                earlier[0].event_id,
                f"command id {command.command_id} was already used for a different command",
            )
        log.info("command_already_applied", version=earlier[-1].version)
        return CommandResult(
            command.command_id,
            command.pupil_id,
            True,
            events=tuple(earlier),
            stream_version=earlier[-1].version,
            last_position=earlier[-1].position,
            duplicate=True,
        )

    # --- erasure ----------------------------------------------------------------------------

    async def forget(
        self,
        pupil_id: UUID,
        reason: str,
        actor: Actor,
        reason_code: str = "erasure_request",
        preceding: Sequence[NewEvent] = (),
    ) -> AppendResult:
        """Destroy the pupil's vault key and record that it was done (after ``preceding``,
        e.g. the retention notice that calls for it, in the same transaction)."""
        history = await self.store.read_stream(pupil_id)
        state = replay(history)
        if not state.registered or state.tenant is None:
            raise LookupError(f"no pupil {pupil_id}")
        if state.erased:
            raise ValueError(f"pupil {pupil_id}'s personal data is already erased")
        event = NewEvent(
            event_id=uuid5(pupil_id, "personal-data-erased"),
            data=ev.PersonalDataErased(reason_code=reason_code, reason=reason),  # type: ignore[arg-type]
            occurred_at=self.clock(),
            actor=actor,
            tenant=state.tenant,
            correlation_id=uuid5(pupil_id, "personal-data-erased"),
        )
        self.states.forget(pupil_id)
        result = await self.store.erase(pupil_id, [*preceding, event], None, len(history))
        self.states.forget(pupil_id)
        log.info("personal_data_erased", pupil_id=str(pupil_id), reason_code=reason_code)
        return result

    # --- reading ----------------------------------------------------------------------------

    async def history(self, pupil_id: UUID, as_of: date | None = None) -> History:
        """The pupil's state and timeline as it stood at the end of ``as_of`` (school time).

        "As of" is about when things happened: corrections known today are
        applied to what had happened by then.
        """
        events = await self.store.read_stream(pupil_id)
        if not events:
            raise LookupError(f"no pupil {pupil_id}")
        if as_of is not None:
            cutoff = end_of_school_day(as_of)
            happened = [e for e in events if e.occurred_at < cutoff]
            seen = {e.event_id for e in happened}
            # a correction made later still fixes what had happened by then
            late_fixes = [
                e
                for e in events
                if isinstance(e.data, ev.RecordCorrected)
                and e.event_id not in seen
                and e.data.corrects_event_id in seen
            ]
            events = happened + late_fixes
        return History(pupil_id, as_of, replay(events), events)


@dataclass(frozen=True)
class History:
    pupil_id: UUID
    as_of: date | None
    state: PupilState
    timeline: list[RecordedEvent]

    def as_json(self) -> dict[str, Any]:
        from pydantic import TypeAdapter

        state = TypeAdapter(PupilState).dump_python(self.state, mode="json")
        state["event_types"] = len(self.state.event_types)
        return {
            "pupil_id": str(self.pupil_id),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "state": state,
            "timeline": [
                {
                    "version": e.version,
                    "position": e.position,
                    "event_id": str(e.event_id),
                    "event_type": e.event_type,
                    "occurred_at": e.occurred_at.isoformat(),
                    "recorded_at": e.recorded_at.isoformat(),
                    "actor": e.actor.model_dump(mode="json"),
                    "tenant": e.tenant.model_dump(mode="json"),
                    "data": e.data.model_dump(mode="json"),
                }
                for e in self.timeline
            ],
        }


SYSTEM_ACTOR = Actor(user_id="senflow", role=Role.SYSTEM)
