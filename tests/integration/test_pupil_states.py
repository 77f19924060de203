"""Kept pupil states: a command folds only what is new, and is never wrong for it."""

from __future__ import annotations

import uuid

import pytest

from senflow.services.application import SYSTEM_ACTOR, SenflowService
from senflow.services.pupil_states import PupilStates
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.commands import parse_command
from senflow.services.workflow.state import replay
from tests.integration.helpers import upn
from tests.integration.story import secondary_need_correction, story

pytestmark = pytest.mark.integration


async def _whole(store: EventStore, pupil: uuid.UUID):
    return replay(await store.read_stream(pupil))


async def test_commands_fold_from_the_kept_state_and_it_equals_a_whole_replay(store):
    states = PupilStates()
    svc, pupil = SenflowService(store, states=states), uuid.uuid4()
    for raw in story(pupil, upn(4101)):
        assert (await svc.handle(parse_command(raw))).accepted
    assert states.misses == 1 and states.hits == len(story(pupil)) - 1  # one whole read only
    kept, tail, _ = await states.load(store, pupil)
    assert tail == [] and kept == await _whole(store, pupil)


async def test_another_writers_events_are_read_and_folded(store):
    ours, theirs = PupilStates(), PupilStates()
    a = SenflowService(store, states=ours)
    b = SenflowService(store, states=theirs)  # another process, say
    pupil = uuid.uuid4()
    commands = story(pupil, upn(4102))
    for i, raw in enumerate(commands):
        svc = a if i % 3 else b  # interleaved: each misses some of the other's events
        assert (await svc.handle(parse_command(raw))).accepted, raw["command"]
    whole = await _whole(store, pupil)
    assert (await ours.load(store, pupil)).state == whole
    assert (await theirs.load(store, pupil)).state == whole


async def test_a_correction_of_an_event_already_folded_means_a_whole_replay(store):
    states = PupilStates()
    svc, pupil = SenflowService(store, states=states), uuid.uuid4()
    results = [await svc.handle(parse_command(r)) for r in story(pupil, upn(4103))]
    started = results[5].events[0]
    other = SenflowService(store, states=PupilStates())  # the correction comes from elsewhere
    fix = secondary_need_correction(pupil, started)
    assert (await other.handle(parse_command(fix))).accepted
    misses = states.misses
    state = (await states.load(store, pupil)).state
    assert states.misses == misses + 1  # not folded onto the kept state
    assert state == await _whole(store, pupil)


async def test_an_erasure_elsewhere_drops_the_kept_state(store):
    states = PupilStates()
    svc, pupil = SenflowService(store, states=states), uuid.uuid4()
    for raw in story(pupil, upn(4104))[:4]:
        assert (await svc.handle(parse_command(raw))).accepted
    await SenflowService(store, states=PupilStates()).forget(
        pupil, "parent's request", SYSTEM_ACTOR
    )
    misses = states.misses
    state = (await states.load(store, pupil)).state
    assert states.misses == misses + 1 and state.erased
    assert state == await _whole(store, pupil)


async def test_the_least_recently_used_state_goes_first(store):
    states = PupilStates(capacity=2)
    svc = SenflowService(store, states=states)
    pupils = [uuid.uuid4() for _ in range(3)]
    for n, pupil in enumerate(pupils):
        assert (await svc.handle(parse_command(story(pupil, upn(4105 + n))[0]))).accepted
    assert len(states) == 2
    await states.load(store, pupils[0])  # the first was dropped: read whole again
    assert states.misses == 3 + 1


async def test_a_command_id_already_used_for_another_pupil_is_found_in_the_same_read(store):
    svc = SenflowService(store, states=PupilStates())
    a, b = uuid.uuid4(), uuid.uuid4()
    first_a, first_b = story(a, upn(4110))[0], story(b, upn(4111))[0]
    assert (await svc.handle(parse_command(first_a))).accepted
    assert (await svc.handle(parse_command(first_b))).accepted
    used_for_a = (await store.read_stream(a))[0].causation_id
    reused = dict(story(b, upn(4111))[1], command_id=str(used_for_a))
    with pytest.raises(ValueError, match="another pupil"):
        await svc.handle(parse_command(reused))
    assert await store.stream_version(b) == 1
