"""The RabbitMQ topology, declared in code (FastStream objects over aio-pika).

    senflow.events (topic, durable)   the public feed: one message per event,
      │                               routing key <event_type>.<trust>.<urn>
      └─ (downstream systems bind their own queues, e.g. review_due.trust-7.#)
    senflow.pages (direct, durable)   the projections' feed: pages of events,
      │                               routing key = the pupils' partition
      └─ "<p>" ──► senflow.<service>.<p>   for every service, p in 0 … N-1: quorum queues,
                                          single active consumer, delivery limit,
                                          at-least-once dead-lettering
    senflow.dlx (direct)  ── <service> ──► senflow.<service>.dlq (quorum)

The projections read pages (many events per AMQP message) because per-message
work in the broker and in Python's AMQP clients cost more than applying an
event; downstream systems get one message per event, routed by type and school.
Partitioning by pupil keeps each pupil's events in one queue, and a single
active consumer per queue keeps them in order, while N queues let a service
scale out. The relay computes the partition (``partition_of``); a page holds
the events of one partition, and one publish reaches that partition's queue of
every service. The same declarations work on RabbitMQ 3.10 and 4.x (on 4.x
quorum queues have a default delivery limit of 20; we always set ours).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from uuid import UUID

import aio_pika
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

SERVICES = ("register", "provision_map", "audit", "compliance")
# Generous on purpose: a consumer killed mid-batch also returns its messages,
# and on RabbitMQ 3.10 that counts as a delivery.
DELIVERY_LIMIT = 10


def routing_key(event_type: str, trust_id: str, school_urn: str) -> str:
    return f"{event_type}.{trust_id}.{school_urn}"


@dataclass(frozen=True)
class Topology:
    prefix: str = "senflow"  # tests use a unique prefix per run
    partitions: int = 2
    services: tuple[str, ...] = SERVICES

    @property
    def events(self) -> RabbitExchange:
        return RabbitExchange(f"{self.prefix}.events", type=ExchangeType.TOPIC, durable=True)

    @property
    def dead_letters(self) -> RabbitExchange:
        return RabbitExchange(f"{self.prefix}.dlx", type=ExchangeType.DIRECT, durable=True)

    @property
    def pages(self) -> RabbitExchange:
        return RabbitExchange(f"{self.prefix}.pages", type=ExchangeType.DIRECT, durable=True)

    def partition_of(self, stream_id: UUID) -> int:
        """The partition of a pupil's events: stable across processes and releases."""
        return zlib.crc32(stream_id.bytes) % self.partitions

    def legacy_hash_exchange(self, service: str) -> str:
        """Where a release before pages fed the service from (see ``retire_legacy``)."""
        return f"{self.prefix}.{service}.hash"

    def queue_name(self, service: str, partition: int) -> str:
        return f"{self.prefix}.{service}.{partition}"

    def queue(self, service: str, partition: int) -> RabbitQueue:
        return RabbitQueue(
            self.queue_name(service, partition),
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=str(partition),  # its binding on the pages exchange
            arguments={
                "x-single-active-consumer": True,
                "x-dead-letter-exchange": self.dead_letters.name,
                "x-dead-letter-routing-key": service,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
                "x-delivery-limit": DELIVERY_LIMIT,
            },
        )

    def dlq(self, service: str) -> RabbitQueue:
        return RabbitQueue(
            f"{self.prefix}.{service}.dlq",
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=service,
        )

    def queue_names(self) -> list[str]:
        return [self.queue_name(s, p) for s in self.services for p in range(self.partitions)] + [
            self.dlq(s).name for s in self.services
        ]

    def exchange_names(self) -> list[str]:
        return [self.events.name, self.pages.name, self.dead_letters.name]


async def declare(broker: RabbitBroker, topology: Topology) -> None:
    """Declare everything (idempotent): exchanges, partition queues, dead-letter queues."""
    await broker.declare_exchange(topology.events)
    pages = await broker.declare_exchange(topology.pages)
    dlx = await broker.declare_exchange(topology.dead_letters)
    for service in topology.services:
        for p in range(topology.partitions):
            q = await broker.declare_queue(topology.queue(service, p))
            await q.bind(pages, routing_key=str(p))
        dlq = await broker.declare_queue(topology.dlq(service))
        await dlq.bind(dlx, routing_key=service)


async def retire_legacy(broker: RabbitBroker, topology: Topology) -> None:
    """Delete the per-service hash exchanges of releases before pages (absent: a no-op).

    They fed the projections' queues one message per event from the public feed.
    Only the pages relay calls this, once it holds the lead: while a relay of an
    older release may still be publishing, its events must keep reaching the
    queues (new consumers read a single event as a page of one). Left in place
    after, each event would arrive twice. Deleting an exchange drops its bindings.
    """
    events = await broker.declare_exchange(topology.events)
    for service in topology.services:
        await events.channel.exchange_delete(topology.legacy_hash_exchange(service))


async def remove(amqp_url: str, topology: Topology) -> None:
    """Delete the topology's queues and exchanges (a test run's, or one being retired)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for name in topology.queue_names():
            await channel.queue_delete(name)
        for name in topology.exchange_names():
            await channel.exchange_delete(name)
    finally:
        await connection.close()


def definitions(topology: Topology) -> dict[str, object]:
    """The topology as a RabbitMQ definitions document (``rabbitmqctl import_definitions``).

    The services declare all of this themselves on start; the file lets an
    operator create or review it up front. Users and permissions are left to
    the operator.
    """
    exchanges: list[dict[str, object]] = []
    queues: list[dict[str, object]] = []
    bindings: list[dict[str, object]] = []

    def exchange(x: RabbitExchange) -> None:
        exchanges.append(
            {
                "name": x.name,
                "vhost": "/",
                "type": x.type.value,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": dict(x.arguments or {}),
            }
        )

    def queue(q: RabbitQueue) -> None:
        args = {**(q.arguments or {}), "x-queue-type": "quorum"}
        queues.append(
            {"name": q.name, "vhost": "/", "durable": True, "auto_delete": False, "arguments": args}
        )

    def bind(source: str, destination: str, kind: str, key: str) -> None:
        bindings.append(
            {
                "source": source,
                "vhost": "/",
                "destination": destination,
                "destination_type": kind,
                "routing_key": key,
                "arguments": {},
            }
        )

    exchange(topology.events)
    exchange(topology.pages)
    exchange(topology.dead_letters)
    for service in topology.services:
        for p in range(topology.partitions):
            queue(topology.queue(service, p))
            bind(topology.pages.name, topology.queue_name(service, p), "queue", str(p))
        queue(topology.dlq(service))
        bind(topology.dead_letters.name, topology.dlq(service).name, "queue", service)
    return {
        "vhosts": [{"name": "/"}],
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }
