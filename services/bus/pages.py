"""Pages: many events in one AMQP message, the projections' feed.

A page is a JSON array of event envelopes (personal fields withheld), all of
one partition, in position order. Each AMQP message costs the broker a queue
write and a Python consumer a frame parse, a task and an ack, which was more
than applying the event; a page pays that once for many events. The relay cuts
pages from each batch it reads, so under a light load a page is a commit's few
events (latency is unchanged) and under a heavy one it fills up.

A single envelope (a JSON object) is read as a page of one: a dead letter from
before pages can still be re-driven.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
from pydantic import TypeAdapter, ValidationError

from senflow.events.envelope import RecordedEvent
from senflow.services.bus.topology import Topology

PAGE_SIZE = 200  # events per page at most: ~200 KB, small next to the broker's limits

_PAGE = TypeAdapter(list[RecordedEvent])
_CONTEXT = {"allow_redacted": True}  # personal fields arrive withheld


class PartlyInvalid(ValueError):
    """A page whose array parsed but some of whose envelopes did not validate: the valid
    ones are in ``events``, so they can be applied before the page is dead-lettered."""

    def __init__(self, events: list[RecordedEvent], errors: list[str]) -> None:
        super().__init__(f"{len(errors)} envelope(s) of the page invalid: {errors[0]}")
        self.events, self.errors = events, errors


def parse_page(body: bytes) -> list[RecordedEvent]:
    """A page's events (or a single envelope's, as a page of one).

    Raises ``PartlyInvalid`` when only some envelopes are bad (an event type this
    consumer does not know yet, say), ``ValueError`` when nothing is usable.
    """
    if body.lstrip()[:1] != b"[":
        return [RecordedEvent.model_validate_json(body, context=_CONTEXT)]
    try:
        return _PAGE.validate_json(body, context=_CONTEXT)  # the whole page at once: fast
    except ValidationError:
        pass
    raw = orjson.loads(body)  # raises ValueError if this is not JSON at all
    if not isinstance(raw, list):
        raise ValueError("a page is a JSON array of envelopes")
    events: list[RecordedEvent] = []
    errors: list[str] = []
    for item in raw:
        try:
            events.append(RecordedEvent.model_validate(item, context=_CONTEXT))
        except ValidationError as exc:
            errors.append(str(exc).splitlines()[0][:200])
    if not events:
        raise ValueError(f"no envelope of the page is valid: {errors[0] if errors else ''}")
    raise PartlyInvalid(events, errors)


def cut(
    topology: Topology, events: Sequence[RecordedEvent], size: int = PAGE_SIZE
) -> list[tuple[int, list[int]]]:
    """Indexes of ``events`` grouped into pages: (partition, indexes in position order)."""
    open_pages: dict[int, list[int]] = {}
    pages: list[tuple[int, list[int]]] = []
    for i, e in enumerate(events):
        p = topology.partition_of(e.stream_id)
        page = open_pages.get(p)
        if page is None or len(page) >= size:
            page = open_pages[p] = []
            pages.append((p, page))
        page.append(i)
    return pages


def page_message(
    partition: int, events: Sequence[RecordedEvent], bodies: Sequence[bytes]
) -> aio_pika.Message:
    """The AMQP message of one page: the envelopes' JSON joined into an array."""
    first, last = events[0], events[-1]
    headers: dict[str, Any] = {
        "partition": partition,
        "events": len(events),
        "first_position": first.position,
        "last_position": last.position,
    }
    if len(events) == 1:  # a page of one says whose event it is, as an event message does
        headers |= {
            "stream_id": str(first.stream_id),
            "version": first.version,
            "event_type": first.event_type,
        }
    return aio_pika.Message(
        b"[" + b",".join(bodies) + b"]",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=f"page-{partition}-{first.position}-{last.position}",
        correlation_id=str(first.correlation_id) if len(events) == 1 else None,
        content_type="application/json",
        headers=headers,
    )
