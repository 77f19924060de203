"""Acknowledging in runs: one frame for a contiguous run, never a tag still being worked on."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from senflow.projections.acks import Acknowledger

pytestmark = pytest.mark.unit


@dataclass
class Channel:
    """Records what the broker would be told, and settles as RabbitMQ does."""

    sent: list[tuple[str, int, bool]] = field(default_factory=list)
    outstanding: set[int] = field(default_factory=set)
    is_closed: bool = False

    def settle(self, verb: str, tag: int, multiple: bool) -> None:
        assert not self.is_closed
        assert tag in self.outstanding, f"{verb} of tag {tag}, which is not outstanding"
        self.sent.append((verb, tag, multiple))
        done = {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.outstanding -= done


@dataclass
class FakeDelivery:
    _channel: Channel
    delivery_tag: int

    @property
    def channel(self) -> Channel:
        if self._channel.is_closed:  # as aio-pika does
            raise RuntimeError("channel closed")
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        self._channel.settle("ack", self.delivery_tag, multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self._channel.settle("nack", self.delivery_tag, multiple)


def deliver(channel: Channel, tags: range) -> dict[int, FakeDelivery]:
    channel.outstanding |= set(tags)
    return {t: FakeDelivery(channel, t) for t in tags}


async def test_a_contiguous_batch_is_one_multiple_ack() -> None:
    ch, acks = Channel(), Acknowledger()
    d = deliver(ch, range(1, 201))
    await acks.ack(d[t] for t in range(1, 201))
    assert ch.sent == [("ack", 200, True)] and not ch.outstanding


async def test_a_tag_still_in_flight_is_never_acked_with_the_run() -> None:
    ch, acks = Channel(), Acknowledger()
    d = deliver(ch, range(1, 11))
    await acks.ack(d[t] for t in (1, 2, 3, 5, 6))  # 4 is still being worked on
    assert ch.sent[0] == ("ack", 3, True)
    assert 4 in ch.outstanding and {5, 6}.isdisjoint(ch.outstanding)  # beyond the gap: alone
    await acks.ack(d[t] for t in (4, 7, 8))  # the gap closes: 4..8 is one run again
    assert ch.sent[-1] == ("ack", 8, True)
    assert ch.outstanding == {9, 10}


async def test_a_nacked_tag_lets_the_run_pass() -> None:
    ch, acks = Channel(), Acknowledger()
    d = deliver(ch, range(1, 6))
    await acks.nack(d[1])
    await acks.ack(d[t] for t in (2, 3, 4, 5))
    assert ch.sent == [("nack", 1, False), ("ack", 5, True)] and not ch.outstanding


async def test_channels_are_counted_apart_and_a_new_channel_starts_again() -> None:
    a, b, acks = Channel(), Channel(), Acknowledger()
    da, db = deliver(a, range(1, 4)), deliver(b, range(1, 4))
    await acks.ack([da[1], db[1], da[2], db[2], da[3]])
    assert a.sent == [("ack", 3, True)] and b.sent == [("ack", 2, True)]
    a.is_closed = True  # reconnected: tags start from 1 on the new channel
    c = Channel()
    dc = deliver(c, range(1, 3))
    await acks.ack(dc.values())
    assert c.sent == [("ack", 2, True)]


async def test_deliveries_of_a_closed_channel_do_not_hold_back_the_new_channels() -> None:
    old, new, acks = Channel(), Channel(), Acknowledger()
    before, after = deliver(old, range(1, 3)), deliver(new, range(1, 3))
    old.is_closed = True  # the broker put its deliveries back; they come again on `new`
    await acks.ack([before[1], after[1], before[2], after[2]])
    assert new.sent == [("ack", 2, True)] and not new.outstanding and old.sent == []


async def test_a_gap_that_never_closes_turns_to_acks_one_by_one(monkeypatch) -> None:
    from senflow.projections import acks as module

    monkeypatch.setattr(module, "GAP_LIMIT", 5)
    ch, acks = Channel(), Acknowledger()
    d = deliver(ch, range(1, 21))  # tag 1 never reaches the handler
    for t in range(2, 21):
        await acks.ack([d[t]])
    assert ch.outstanding == {1}  # never acked by a run passing over it
    assert all(not multiple for _, _, multiple in ch.sent)
    assert len(acks._channels[id(ch)][1].settled) == 0  # nothing piles up
