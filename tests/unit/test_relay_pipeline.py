"""The relay's pipeline with the store, the lock connection and the broker faked: batches
in flight are checkpointed in order, and a failed batch holds back every later one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from senflow.services import relay as relay_module
from senflow.services.bus.topology import Topology
from senflow.services.relay import Relay

pytestmark = pytest.mark.unit


class Store:
    """The log as positions 1..n; reads give a batch after a position."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.reads = 0

    async def read_all(self, after: int, limit: int) -> list[Any]:
        self.reads += 1
        last = min(self.head, after + limit)
        return [SimpleNamespace(position=p) for p in range(after + 1, last + 1)]

    async def head_position(self) -> int:
        return self.head


class Lock:
    """The relay's own connection: it holds the checkpoint."""

    def __init__(self) -> None:
        self.checkpoint = 0
        self.moves: list[int] = []

    async def fetchval(self, sql: str, *args: Any) -> int:
        return self.checkpoint

    async def execute(self, sql: str, name: str, position: int) -> None:
        self.checkpoint = position
        self.moves.append(position)

    def is_closed(self) -> bool:
        return False


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """Every batch sent, with a future the test settles as the broker's confirm."""
    batches: list[tuple[list[int], asyncio.Future[Any]]] = []

    async def send(broker: Any, topology: Any, events: Sequence[Any], feed: Any) -> list[Any]:
        confirm: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batches.append(([e.position for e in events], confirm))
        return [asyncio.ensure_future(confirm)]

    monkeypatch.setattr(relay_module, "send", send)
    return batches


def _start(relay: Relay) -> tuple[Lock, asyncio.Event, asyncio.Event, asyncio.Task[None]]:
    """The relay's pipeline running on a fake lock connection: (lock, stop, wake, task)."""
    lock, stop, wake = Lock(), asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(relay._pipeline(None, lock, wake, stop))  # type: ignore[arg-type]
    return lock, stop, wake, running


async def _until(check: Any, seconds: float = 1.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_batches_confirmed_out_of_order_move_the_checkpoint_in_order(sent) -> None:
    relay = Relay(Store(head=10), "", "", Topology(), batch=3, in_flight=4, idle_wait=0.01)
    lock, stop, _wake, running = _start(relay)
    await _until(lambda: len(sent) == 4)  # four in flight, none confirmed: no more read
    assert [b for b, _ in sent] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    sent[2][1].set_result(None)
    sent[1][1].set_result(None)
    await asyncio.sleep(0.05)
    assert lock.moves == []  # the oldest is not confirmed: nothing moves past it
    sent[0][1].set_result(None)
    await _until(lambda: lock.checkpoint == 9)
    sent[3][1].set_result(None)
    await _until(lambda: lock.checkpoint == 10)
    stop.set()
    await asyncio.wait_for(running, 2)
    assert lock.moves == [9, 10] and relay.published == 10


async def test_a_failed_batch_stops_the_pipeline_with_the_checkpoint_before_it(sent) -> None:
    relay = Relay(Store(head=9), "", "", Topology(), batch=3, in_flight=4, idle_wait=0.01)
    lock, stop, wake, running = _start(relay)
    await _until(lambda: len(sent) == 3)
    sent[0][1].set_result(None)
    sent[2][1].set_result(None)  # a later batch went through...
    await _until(lambda: lock.checkpoint == 3)
    sent[1][1].set_exception(RuntimeError("returned: no queue took the page"))  # ...this not
    with pytest.raises(RuntimeError, match="returned"):
        await asyncio.wait_for(running, 2)
    assert lock.checkpoint == 3 and relay.published == 3

    # The relay starts again from its checkpoint: the failed batch and the ones after it.
    sent.clear()
    running = asyncio.create_task(relay._pipeline(None, lock, wake, stop))  # type: ignore[arg-type]
    await _until(lambda: len(sent) == 2)
    assert [b for b, _ in sent] == [[4, 5, 6], [7, 8, 9]]
    for _, confirm in sent:
        confirm.set_result(None)
    await _until(lambda: lock.checkpoint == 9)
    stop.set()
    await asyncio.wait_for(running, 2)


async def test_a_relay_at_the_head_reads_again_only_when_a_commit_is_notified(sent) -> None:
    store = Store(head=5)
    relay = Relay(store, "", "", Topology(), batch=10, idle_wait=30.0, checkpoint_every=0)
    lock, stop, wake, running = _start(relay)
    await _until(lambda: len(sent) == 1)
    sent[0][1].set_result(None)
    await _until(lambda: lock.checkpoint == 5)
    await asyncio.sleep(0.1)
    assert store.reads == 1  # the short batch was the head: no read finds nothing
    store.head = 7
    wake.set()  # a commit's NOTIFY
    await _until(lambda: len(sent) == 2)
    assert sent[1][0] == [6, 7] and store.reads == 2
    sent[1][1].set_result(None)
    await _until(lambda: lock.checkpoint == 7)
    stop.set()
    await asyncio.wait_for(running, 2)


async def test_a_relay_with_no_notification_for_a_while_looks_anyway(sent) -> None:
    """A missed NOTIFY (say the listening connection hiccuped) costs at most ``idle_wait``."""
    store = Store(head=2)
    relay = Relay(store, "", "", Topology(), batch=10, idle_wait=0.05, checkpoint_every=0)
    _lock, stop, _wake, running = _start(relay)
    await _until(lambda: len(sent) == 1)
    sent[0][1].set_result(None)
    store.head = 3  # committed, never notified
    await _until(lambda: len(sent) == 2)
    assert sent[1][0] == [3]
    sent[1][1].set_result(None)
    stop.set()
    await asyncio.wait_for(running, 2)


async def test_the_checkpoint_is_written_at_most_every_interval_and_when_idle(sent) -> None:
    store = Store(head=0)
    relay = Relay(store, "", "", Topology(), batch=1, idle_wait=30.0, checkpoint_every=1.5)
    lock, stop, wake, running = _start(relay)
    for position in range(1, 11):  # ten commits, each confirmed at once
        store.head = position
        wake.set()
        await _until(lambda n=position: len(sent) == n)
        sent[-1][1].set_result(None)
        await _until(lambda n=position: relay.published == n)
    assert len(lock.moves) <= 2  # the first at once, then none within the interval
    await _until(lambda: lock.checkpoint == 10, 5.0)  # written once the interval is over
    assert relay.published == 10
    stop.set()
    await asyncio.wait_for(running, 2)


async def test_stopping_writes_the_last_confirmed_position(sent) -> None:
    store = Store(head=3)
    relay = Relay(store, "", "", Topology(), batch=1, idle_wait=30.0, checkpoint_every=60)
    lock, stop, _wake, running = _start(relay)
    await _until(lambda: len(sent) == 3)
    for batch in sent:
        batch[1].set_result(None)
        await asyncio.sleep(0.01)
    await _until(lambda: relay.published == 3)
    assert lock.moves == [1]  # the first batch; the rest waits for the interval
    stop.set()
    await asyncio.wait_for(running, 2)
    assert lock.checkpoint == 3


async def test_batches_confirmed_before_a_failed_one_are_checkpointed_on_the_way_out(sent) -> None:
    store = Store(head=3)
    relay = Relay(store, "", "", Topology(), batch=1, idle_wait=30.0, checkpoint_every=60)
    lock, _stop, _wake, running = _start(relay)
    await _until(lambda: len(sent) == 3)
    sent[0][1].set_result(None)
    await _until(lambda: lock.checkpoint == 1)  # the first write is at once
    sent[1][1].set_result(None)  # confirmed, its write not due yet...
    sent[2][1].set_exception(RuntimeError("returned"))  # ...when the next one fails
    with pytest.raises(RuntimeError, match="returned"):
        await asyncio.wait_for(running, 2)
    assert lock.checkpoint == 2 and relay.published == 2
