"""Group commit: concurrent appends share transactions, yet each keeps its own outcome."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from senflow.services.store.coalescing import CoalescingAppender
from senflow.services.store.eventstore import ConcurrencyConflict, EventIdConflict, EventStore
from tests.integration.helpers import concern, new_event, registered

pytestmark = pytest.mark.integration


async def test_concurrent_appends_coalesce_and_each_gets_its_own_outcome(store: EventStore):
    appender = CoalescingAppender(store)
    pupils = [uuid.uuid4() for _ in range(120)]
    try:
        firsts = await asyncio.gather(
            *(appender.append(p, [new_event(registered(i))], 0) for i, p in enumerate(pupils))
        )
        assert all(r.last_version == 1 for r in firsts)
        retried = new_event(concern("retry me"))
        outcomes = await asyncio.gather(
            *(
                appender.append(p, [new_event(concern("a")), new_event(concern("b"))], 1)
                for p in pupils[:100]
            ),
            *(appender.append(p, [new_event(concern("stale"))], 0) for p in pupils[100:110]),
            appender.append(pupils[110], [retried], 1),
            appender.append(pupils[110], [retried], 1),  # same events again: a retry
            return_exceptions=True,
        )
    finally:
        await appender.close()
    assert all(o.last_version == 3 for o in outcomes[:100])
    assert all(isinstance(o, ConcurrencyConflict) and o.current == 1 for o in outcomes[100:110])
    first, second = outcomes[110:]
    assert first.event_ids == second.event_ids and (first.duplicate or second.duplicate)
    assert appender.transactions < appender.requests  # they really shared transactions
    for p in pupils[:100]:
        assert [e.version for e in await store.read_stream(p)] == [1, 2, 3]
    for p in pupils[100:110]:
        assert await store.stream_version(p) == 1


async def test_a_failing_shared_transaction_is_retried_request_by_request(store: EventStore):
    appender = CoalescingAppender(store, writers=1)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    clash = uuid.uuid4()
    try:
        outcomes = await asyncio.gather(
            appender.append(a, [new_event(registered(1), event_id=clash)], 0),
            appender.append(b, [new_event(registered(2), event_id=clash)], 0),
            appender.append(c, [new_event(registered(3))], 0),
            return_exceptions=True,
        )
    finally:
        await appender.close()
    # the same event id for two new pupils fails the shared insert; alone, one wins
    assert sum(isinstance(o, EventIdConflict) for o in outcomes[:2]) == 1
    assert outcomes[2].last_version == 1
    assert await store.stream_version(c) == 1
