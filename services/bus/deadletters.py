"""Inspect and re-drive a consumer service's dead-letter queue.

Listing takes every message without acknowledging it and then closes the
channel, which hands them all back in their order: nothing is removed. A dead
letter is usually a page (``bus.pages``): the listing names the events in it.
Replay republishes each message (with publisher confirms) straight to the
partition queue it died in, so it lands with the pupils' other events and no
other service sees it again, and only then acknowledges it in the dead-letter
queue. Events of the page that were applied before are duplicates then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aio_pika

from senflow.services.bus.pages import parse_page
from senflow.services.bus.topology import Topology


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    routing_key: str | None
    stream_id: str | None  # the pupil, when the message holds one event
    version: Any
    event_type: str | None
    reason: str | None
    deaths: int
    from_queue: str | None
    events: list[str] = field(default_factory=list)  # "<event id> <stream id> v<version>"

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def _describe(msg: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = msg.headers or {}
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    routing_keys = first.get("routing-keys") or [msg.routing_key]
    return DeadLetter(
        message_id=msg.message_id,
        routing_key=str(routing_keys[0]) if routing_keys else None,
        stream_id=_text(headers.get("stream_id")),
        version=headers.get("version"),
        event_type=_text(headers.get("event_type")),
        reason=_text(first.get("reason")) or _text(headers.get("x-first-death-reason")),
        deaths=int(first.get("count", 1)) if first else 0,
        from_queue=_from_queue(msg),
        events=_events_in(msg.body),
    )


def _from_queue(msg: aio_pika.abc.AbstractIncomingMessage) -> str | None:
    headers = msg.headers or {}
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    return _text(first.get("queue")) or _text(headers.get("x-first-death-queue"))


def _target_queue(
    msg: aio_pika.abc.AbstractIncomingMessage, topology: Topology, service: str
) -> str:
    """The partition queue a dead letter goes back to (the default exchange routes by
    queue name): the one it died in, else its (first) pupil's, else the first."""
    died_in = _from_queue(msg)
    partitions = {topology.queue_name(service, p) for p in range(topology.partitions)}
    if died_in in partitions:
        return died_in
    stream_id = _text((msg.headers or {}).get("stream_id"))
    try:
        pupil = UUID(stream_id) if stream_id else parse_page(msg.body)[0].stream_id
        return topology.queue_name(service, topology.partition_of(pupil))
    except (ValueError, IndexError):
        return topology.queue_name(service, 0)


def _events_in(body: bytes) -> list[str]:
    """What a dead page holds, for people to read; nothing if it does not parse."""
    try:
        return [f"{e.event_id} {e.stream_id} v{e.version}" for e in parse_page(body)]
    except Exception:
        return []


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def list_dead_letters(amqp_url: str, topology: Topology, service: str) -> list[DeadLetter]:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.dlq(service).name, ensure=True)
        held = []
        while (msg := await queue.get(no_ack=False, fail=False)) is not None:
            held.append(_describe(msg))
        await channel.close()  # returns every unacknowledged message to the queue
        return held
    finally:
        await connection.close()


async def replay_dead_letters(
    amqp_url: str, topology: Topology, service: str, message_id: str | None = None
) -> int:
    """Re-drive dead letters (all, or the one with ``message_id``); returns how many."""
    connection = await aio_pika.connect(amqp_url)
    replayed = 0
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.get_queue(topology.dlq(service).name, ensure=True)
        skipped = []
        while (msg := await queue.get(no_ack=False, fail=False)) is not None:
            if message_id is not None and msg.message_id != message_id:
                skipped.append(msg)
                continue
            headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("x-")}
            await channel.default_exchange.publish(
                aio_pika.Message(
                    msg.body,
                    headers=headers,
                    message_id=msg.message_id,
                    correlation_id=msg.correlation_id,
                    content_type=msg.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=_target_queue(msg, topology, service),
                mandatory=True,
            )
            await msg.ack()
            replayed += 1
        for msg in skipped:
            await msg.nack(requeue=True)
        await channel.close()
        return replayed
    finally:
        await connection.close()
