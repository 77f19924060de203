"""A downstream system's view of senflow: print one trust's review-due notices as they come.

    python examples/review_due_subscriber.py --trust trust-7

It binds a queue of its own to the ``senflow.events`` exchange with the routing
key ``review_due.<trust>.#`` (every school of the trust), so it receives only
that trust's review-due events, and prints each as one JSON line. Delivery is
at least once, so it remembers the event ids it has printed and drops repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from faststream import FastStream
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage


def build(amqp_url: str, exchange: str, trust: str, queue: str) -> FastStream:
    broker = RabbitBroker(amqp_url, logger=None)
    events = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
    seen: set[str] = set()

    @broker.subscriber(
        RabbitQueue(queue, durable=True, routing_key=f"review_due.{trust}.#"), events
    )
    async def review_due(body: dict, msg: RabbitMessage) -> None:
        if msg.message_id in seen:
            return
        seen.add(msg.message_id or "")
        data = body["data"]
        print(
            json.dumps(
                {
                    "event_id": body["event_id"],
                    "pupil_id": body["stream_id"],
                    "school_urn": body["tenant"]["school_urn"],
                    "review_date": data["review_date"],
                    "due_since": body["occurred_at"][:10],
                }
            ),
            flush=True,
        )

    app = FastStream(broker)

    @app.after_startup
    async def ready() -> None:
        print(json.dumps({"ready": True, "queue": queue}), flush=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trust", required=True)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--exchange", default="senflow.events")
    parser.add_argument("--queue", help="queue name (default: review-due.<trust>)")
    args = parser.parse_args()
    app = build(args.amqp_url, args.exchange, args.trust, args.queue or f"review-due.{args.trust}")
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
