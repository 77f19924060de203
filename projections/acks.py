"""Acknowledging deliveries in runs: one ``basic.ack(multiple)`` for a batch, not one per message.

Each ack is a frame written to the socket, and on a busy consumer those writes
cost more than the projection's own work. A multiple ack settles every delivery
up to a tag on that channel, so it is only safe for a contiguous run: tags are
given out 1, 2, 3... per channel, and a lower tag still being worked on (or not
yet handed to the handler) must not be acked with the run. So: a run that
continues from the last acked tag is acked at its top with one frame; tags
beyond a gap are acked one by one at once (nothing waits for the gap to close).
A nacked tag is settled too, so the run can pass it (a multiple ack skips
deliveries already nacked or acked).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Delivery(Protocol):
    """What is needed of a delivery (aio-pika's ``IncomingMessage`` is one)."""

    @property
    def delivery_tag(self) -> int | None: ...
    @property
    def channel(self) -> Any: ...
    async def ack(self, multiple: bool = False) -> None: ...
    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


# Settled tags kept above a gap before a channel gives up acking in runs: a tag that
# never settles (a delivery dropped before it reached the handler) would otherwise hold
# every later tag here for the channel's life. Giving up means acking one by one from
# then on; the unsettled delivery is redelivered when the channel closes.
GAP_LIMIT = 10_000


@dataclass
class _Channel:
    acked: int = 0  # every tag up to here is settled
    settled: set[int] = field(default_factory=set)  # settled tags above ``acked``
    runs: bool = True  # False once a gap has lasted too long: ack one by one


def _channel(delivery: Delivery) -> Any | None:
    try:
        return delivery.channel
    except Exception:  # aio-pika raises once the channel is closed: the broker redelivers
        return None


class Acknowledger:
    def __init__(self) -> None:
        self._channels: dict[int, tuple[Any, _Channel]] = {}
        self.frames = 0  # ack frames sent, for tests and metrics

    def _state(self, channel: Any) -> _Channel:
        known = self._channels.get(id(channel))
        if known is None or known[0] is not channel:  # a new channel (after a reconnect)
            self._channels = {
                k: v for k, v in self._channels.items() if not getattr(v[0], "is_closed", False)
            }
            known = (channel, _Channel())
            self._channels[id(channel)] = known
        return known[1]

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge these (processed and committed) deliveries.

        Deliveries of a channel that has closed since are skipped: the broker has
        already put them back, and the versions in the documents make them duplicates.
        """
        by_channel: dict[int, tuple[Any, list[Delivery]]] = {}
        for d in deliveries:
            channel = _channel(d)
            if channel is not None:
                by_channel.setdefault(id(channel), (channel, []))[1].append(d)
        failure: Exception | None = None
        for channel, group in by_channel.values():
            try:  # one channel's trouble must not keep another's deliveries unacked
                await self._ack_on(self._state(channel), group)
            except Exception as exc:
                failure = exc
        if failure is not None:
            raise failure

    async def _ack_on(self, state: _Channel, group: list[Delivery]) -> None:
        tags = {int(d.delivery_tag or 0): d for d in group}
        if not state.runs:
            for t in sorted(tags):
                await tags[t].ack()
                self.frames += 1
            return
        top = state.acked
        while top + 1 in tags or top + 1 in state.settled:
            top += 1
        run = [t for t in tags if t <= top]
        if run:
            await tags[max(run)].ack(multiple=True)
            self.frames += 1
        for t in sorted(t for t in tags if t > top):  # beyond a gap: one by one
            await tags[t].ack()
            self.frames += 1
        # Settled only now that their frames are written.
        state.settled.update(tags)
        self._advance(state)
        if len(state.settled) > GAP_LIMIT:
            state.runs, state.settled = False, set()

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        """Return a delivery to its queue (the delivery limit dead-letters a poison one),
        or with ``requeue=False`` dead-letter it at once."""
        channel = _channel(delivery)
        if channel is None:
            return  # its channel closed: the broker has put it back already
        await delivery.nack(requeue=requeue)
        self.frames += 1
        state = self._state(channel)
        if state.runs:
            state.settled.add(int(delivery.delivery_tag or 0))
            self._advance(state)

    @staticmethod
    def _advance(state: _Channel) -> int:
        while state.acked + 1 in state.settled:
            state.acked += 1
            state.settled.discard(state.acked)
        return state.acked
