"""Pupils' latest states, kept between commands so a command folds only what is new.

Without it every command reads, decrypts and replays the pupil's whole history:
O(history) per command. With it a command reads the events after the kept
version (usually none) and folds those. The store stays the truth: a kept state
is only ever a starting point for reading what follows it, and a concurrent
writer's events are found that way, so a state kept by one process and moved on
by another is still correct. Where folding from a kept state could differ from a
whole replay (the new events correct an event already folded, or erase personal
data) the whole history is read again.

Kept in memory, per process and per trust (a state kept under one trust's
database role is never used under another's), least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple
from uuid import UUID

from senflow.events.envelope import RecordedEvent
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.state import PupilState, replay, resumable

DEFAULT_CAPACITY = 2_000


class Loaded(NamedTuple):
    state: PupilState
    read: list[RecordedEvent]  # the events folded onto the kept state (all, if none was kept)
    caused: list[RecordedEvent]  # events the command (if one was named) already caused


class PupilStates:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._states: OrderedDict[UUID, PupilState] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    async def load(
        self, store: EventStore, pupil_id: UUID, command_id: UUID | None = None
    ) -> Loaded:
        """The pupil's current state, the events read to bring it up to date and, given
        a command id, the events that command already caused (one round trip)."""
        kept = self._states.get(pupil_id)
        after = kept.version if kept is not None else 0
        if command_id is not None:
            tail, caused = await store.read_for_command(pupil_id, after, command_id)
        else:
            tail, caused = await store.read_stream(pupil_id, from_version=after + 1), []
        if kept is not None and resumable(kept, tail):
            self.hits += 1
            state = replay(tail, start=kept) if tail else kept
        else:
            self.misses += 1
            if kept is not None:  # the tail alone will not do: read the whole stream
                tail = await store.read_stream(pupil_id)
            state = replay(tail)
        self.keep(pupil_id, state)
        return Loaded(state, tail, caused)

    def keep(self, pupil_id: UUID, state: PupilState) -> None:
        """Remember ``state`` (the store's, up to its version) unless a later one is kept."""
        kept = self._states.get(pupil_id)
        if kept is not None and kept.version > state.version:
            self._states.move_to_end(pupil_id)
            return
        if state.version == 0:
            self._states.pop(pupil_id, None)  # nothing to keep: an unknown pupil id
            return
        self._states[pupil_id] = state
        self._states.move_to_end(pupil_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def forget(self, pupil_id: UUID) -> None:
        self._states.pop(pupil_id, None)
