"""The bus contract as an AsyncAPI document, generated from the code.

Every event type is a publisher on the ``senflow.events`` topic exchange, its
routing key ``<event_type>.<trust_id>.<school_urn>`` and its payload the
envelope with that type's content (personal fields withheld). The projection
services' partition queues are listed as subscribers of the internal pages
exchange (a page is a JSON array of envelopes). ``senflow asyncapi``
writes it to ``docs/asyncapi.yaml``; a test keeps the file current.
"""

from __future__ import annotations

import yaml
from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI
from pydantic import create_model

from senflow.events.catalogue import EVENT_TYPES, EventData
from senflow.events.envelope import RecordedEvent
from senflow.services.bus.topology import Topology

VERSION = "1.0.0"


def _message_model(name: str, cls: type[EventData]) -> type[RecordedEvent]:
    camel = "".join(part.title() for part in name.split("_"))
    return create_model(  # type: ignore[no-any-return]
        f"{camel}Message",
        __base__=RecordedEvent,
        __doc__=f"Envelope carrying a {name} event. {cls.__doc__ or ''}".strip(),
        data=(cls, ...),
    )


def contract(topology: Topology) -> AsyncAPI:
    broker = RabbitBroker(description="senflow's RabbitMQ: one topic exchange for all events")
    for name, cls in EVENT_TYPES.items():
        broker.publisher(
            exchange=topology.events,
            routing_key=f"{name}.{{trust_id}}.{{school_urn}}",
            title=f"{name}",
            description=" ".join((cls.__doc__ or name).split()),
            schema=_message_model(name, cls),
            persist=True,
        )
    for service in topology.services:
        for p in range(topology.partitions):

            @broker.subscriber(
                topology.queue(service, p),
                topology.pages,
                title=f"{service}/{p}",
                description=f"Partition {p} of the {service} projection service "
                "(quorum queue, single active consumer, dead-lettered after "
                "the delivery limit). Internal: each message is a page, a JSON array "
                "of envelopes of one partition in position order.",
            )
            async def consume(body: list[RecordedEvent]) -> None:  # documentation only
                raise NotImplementedError

    return AsyncAPI(
        broker,
        title="senflow events",
        version=VERSION,
        description=(
            "Every event senflow stores, published after commit with publisher confirms. "
            "message_id is the event id; headers carry stream_id, version, position, "
            "event_type, schema_version, trust_id, school_urn and correlation_id. Bind your "
            "own queue to the exchange, e.g. with routing key 'review_held.trust-7.#'. "
            "Delivery is at least once: drop duplicates by message_id or stream version."
        ),
        schema_version="3.0.0",
    )


def asyncapi_yaml(topology: Topology) -> str:
    """The document as YAML with sorted keys, so regenerating it gives the same file."""
    document = yaml.safe_load(contract(topology).to_specification().to_yaml())
    return str(yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100))
