"""One look at every part: store head, relay checkpoint, each projection's position and lag."""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
import asyncpg

from senflow.projections.catalogue import PROJECTIONS
from senflow.services.bus.topology import Topology


async def status(pool: asyncpg.Pool, amqp_url: str, topology: Topology) -> dict[str, Any]:
    async with pool.acquire() as conn:
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        relay = await conn.fetchval("SELECT position FROM relay_checkpoint WHERE name = 'main'")
        projections = {}
        for name, projection in PROJECTIONS.items():
            exists = await conn.fetchval("SELECT to_regclass($1)", f"{projection.schema}.docs")
            if exists is None:
                projections[name] = {"state": "not started"}
                continue
            row = await conn.fetchrow(
                f"SELECT count(*) AS pupils, coalesce(max(position), 0) AS position "
                f"FROM {projection.schema}.docs"
            )
            projections[name] = {
                "pupils": row["pupils"],
                "position": row["position"],
                "lag": head - row["position"],
            }
    broker: dict[str, Any] = {"reachable": False}
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url, timeout=3)
        try:
            channel = await connection.channel()
            broker = {"reachable": True, "dead_letters": {}}
            for name, projection in PROJECTIONS.items():
                with contextlib.suppress(Exception):
                    q = await channel.declare_queue(
                        topology.dlq(projection.name).name, passive=True
                    )
                    broker["dead_letters"][name] = q.declaration_result.message_count
        finally:
            await connection.close()
    return {
        "store": {"head_position": head},
        "relay": {"position": relay, "lag": None if relay is None else head - relay},
        "projections": projections,
        "broker": broker,
    }
