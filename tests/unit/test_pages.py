"""Pages of events: cut by partition in order, carried as one message, read back whole."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from uuid import UUID, uuid4, uuid5

import pytest

from senflow.events.envelope import RecordedEvent
from senflow.projections.consumer import Batcher
from senflow.projections.tables import ApplyStats
from senflow.services.bus.pages import PartlyInvalid, cut, page_message, parse_page
from senflow.services.bus.topology import Topology
from tests.integration.helpers import concern
from tests.unit.test_acks import Channel, FakeDelivery, deliver

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def event(pupil: UUID, version: int, position: int) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid5(pupil, str(version)),
        stream_id=pupil,
        version=version,
        position=position,
        schema_version=1,
        occurred_at=AT,
        recorded_at=AT,
        actor={"user_id": "senco.1", "role": "senco"},
        tenant={"trust_id": "trust-7", "school_urn": "123456"},
        correlation_id=uuid4(),
        data=concern(f"note {version}"),
        hash=f"{position:064x}",
    )


def test_a_pupils_partition_is_fixed_and_every_partition_is_used() -> None:
    topology = Topology(partitions=4)
    pupil = UUID("8a4c6f0e-0d5e-4f49-9f3f-0c0f0c8f3c11")
    # The partition is part of the bus contract between releases: it must never move.
    assert [Topology(partitions=n).partition_of(pupil) for n in (1, 2, 3, 4)] == [0, 0, 2, 2]
    assert {topology.partition_of(uuid4()) for _ in range(400)} == {0, 1, 2, 3}


def test_pages_hold_one_partition_each_in_position_order_and_no_more_than_the_size() -> None:
    topology = Topology(partitions=3)
    pupils = [uuid4() for _ in range(12)]
    events = [event(p, v, 12 * (v - 1) + i + 1) for v in (1, 2, 3) for i, p in enumerate(pupils)]
    pages = cut(topology, events, size=4)
    seen = sorted(i for _, page in pages for i in page)
    assert seen == list(range(len(events)))  # every event once
    for partition, page in pages:
        assert 1 <= len(page) <= 4 and page == sorted(page)
        assert {topology.partition_of(events[i].stream_id) for i in page} == {partition}
    for pupil in pupils:  # each pupil's events leave in version order
        mine = [
            events[i].version for _, page in pages for i in page if events[i].stream_id == pupil
        ]
        assert mine == [1, 2, 3]


def test_a_page_reads_back_as_its_events() -> None:
    pupil = uuid4()
    events = [event(pupil, v, 40 + v) for v in (1, 2, 3)]
    message = page_message(1, events, [e.model_dump_json().encode() for e in events])
    assert parse_page(message.body) == events
    assert message.headers == {
        "partition": 1,
        "events": 3,
        "first_position": 41,
        "last_position": 43,
    }
    assert message.message_id == "page-1-41-43"


def test_a_single_envelope_is_a_page_of_one_and_garbage_is_refused() -> None:
    e = event(uuid4(), 1, 7)
    assert parse_page(e.model_dump_json().encode()) == [e]
    one = page_message(0, [e], [e.model_dump_json().encode()])
    assert one.headers is not None and one.headers["stream_id"] == str(e.stream_id)
    for bad in (b'[{"this is": "not an event"}]', b"[", b"", b"null"):
        with pytest.raises(ValueError):
            parse_page(bad)


async def test_a_bad_event_nacks_only_its_page_and_every_good_event_is_applied() -> None:
    bad_pupil, good = uuid4(), uuid4()
    refused = event(bad_pupil, 1, 2)
    applied: list[UUID] = []

    async def apply(events: Sequence[RecordedEvent]) -> ApplyStats:
        # all or nothing, as the transaction is
        if any(e.event_id == refused.event_id for e in events):
            raise RuntimeError("a projection bug")
        applied.extend(e.event_id for e in events)
        return ApplyStats(applied=len(events))

    channel = Channel()
    d = deliver(channel, range(1, 3))
    batcher = Batcher(apply, max_wait=0.01)
    first = [event(good, 1, 1), refused, event(good, 2, 3)]
    second = [event(good, 3, 4)]
    results = await asyncio.gather(
        batcher.submit(d[1], first), batcher.submit(d[2], second), return_exceptions=True
    )
    await batcher.close()
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert sorted(applied) == sorted(e.event_id for e in (first[0], first[2], second[0]))
    # the nacked tag is settled first, so the ack of the next one may cover the run
    assert channel.sent == [("nack", 1, False), ("ack", 2, True)] and not channel.outstanding
    assert batcher.stats.applied == 3


def test_a_page_with_some_unreadable_envelopes_gives_the_readable_ones() -> None:
    pupil = uuid4()
    good = [event(pupil, 1, 1), event(pupil, 2, 2)]
    bodies = [
        good[0].model_dump_json().encode(),
        b'{"not": "an event"}',
        good[1].model_dump_json().encode(),
    ]
    with pytest.raises(PartlyInvalid) as caught:
        parse_page(b"[" + b",".join(bodies) + b"]")
    assert caught.value.events == good and len(caught.value.errors) == 1


async def test_readable_events_of_a_partly_invalid_page_are_applied_then_it_is_dead_lettered() -> (
    None
):
    applied: list[UUID] = []

    async def apply(events: Sequence[RecordedEvent]) -> ApplyStats:
        applied.extend(e.event_id for e in events)
        return ApplyStats(applied=len(events))

    requeued: list[bool] = []

    class Recording(FakeDelivery):
        async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
            requeued.append(requeue)
            await super().nack(multiple, requeue)

    channel = Channel()
    channel.outstanding |= {1, 2}
    partly, whole = Recording(channel, 1), Recording(channel, 2)
    batcher = Batcher(apply)
    good = event(uuid4(), 1, 1)
    other = event(uuid4(), 1, 2)
    results = await asyncio.gather(
        batcher.submit(partly, [good], invalid=PartlyInvalid([good], ["bad"])),
        batcher.submit(whole, [other]),
        return_exceptions=True,
    )
    await batcher.close()
    assert isinstance(results[0], PartlyInvalid) and results[1] is None
    assert sorted(applied) == sorted([good.event_id, other.event_id])
    assert requeued == [False]  # at once: reading it will fail the same way every time
    assert not channel.outstanding


async def test_a_batch_holds_whole_pages_up_to_max_batch_events() -> None:
    sizes: list[int] = []

    async def apply(events: Sequence[RecordedEvent]) -> ApplyStats:
        sizes.append(len(events))
        return ApplyStats(applied=len(events))

    channel = Channel()
    d = deliver(channel, range(1, 5))
    batcher = Batcher(apply, max_batch=5)
    pages = [[event(uuid4(), 1, 10 * t + i) for i in range(3)] for t in range(1, 5)]
    await asyncio.gather(*(batcher.submit(d[t], pages[t - 1]) for t in range(1, 5)))
    await batcher.close()
    assert sum(sizes) == 12 and max(sizes) <= 5


async def test_a_busy_consumer_waits_linger_between_writes_and_a_quiet_one_does_not() -> None:
    starts: list[float] = []

    async def apply(events: Sequence[RecordedEvent]) -> ApplyStats:
        starts.append(asyncio.get_running_loop().time())
        return ApplyStats(applied=len(events))

    batcher = Batcher(apply, linger=0.3, busy_rate=100)
    channel = Channel()
    d = deliver(channel, range(1, 40))
    tag = iter(range(1, 40))

    async def page(size: int) -> None:
        await batcher.submit(d[next(tag)], [event(uuid4(), 1, i) for i in range(1, size + 1)])

    def gaps() -> list[float]:
        return [b - a for a, b in pairwise(starts)]

    for _ in range(6):  # ~50 events/s: quiet, each write at once
        await page(1)
        await asyncio.sleep(0.02)
    assert max(gaps()) < 0.2 and batcher.rate < 100
    quiet = len(starts)
    await asyncio.gather(*(page(10) for _ in range(6)))  # a burst: 60 events at once
    assert batcher.rate >= 100 and len(starts) == quiet + 1
    await page(10)
    assert gaps()[-1] >= 0.29  # busy: the next write waits ``linger``
    await asyncio.sleep(0.6)  # the burst is over
    after = len(starts)
    for _ in range(4):
        await page(1)
        await asyncio.sleep(0.02)
    # quiet again at once: the rate is an average over the last moments, not a count
    # of the last second (which held light traffic back for up to two seconds)
    assert max(gaps()[after:]) < 0.2 and batcher.rate < 100
    await batcher.close()
