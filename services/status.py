"""One look at every part: store head, relay and public-feed checkpoints, each projection's lag."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import asyncpg

from senflow.projections.catalogue import PROJECTIONS
from senflow.services.bus.topology import Topology
from senflow.services.relay import RELAY_NAMES, Feed


async def status(
    pool: asyncpg.Pool,
    amqp_url: str,
    topology: Topology,
    api_host: str = "127.0.0.1",
    api_port: int = 8000,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        relay = await conn.fetchval(
            "SELECT position FROM relay_checkpoint WHERE name = $1", RELAY_NAMES[Feed.PAGES]
        )
        feed = await conn.fetchval(
            "SELECT position FROM relay_checkpoint WHERE name = $1", RELAY_NAMES[Feed.EVENTS]
        )
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
    api = "not running"
    with contextlib.suppress(Exception):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(api_host, api_port), 2)
        writer.write(f"GET /health/ready HTTP/1.0\r\nHost: {api_host}\r\n\r\n".encode())
        line = (await asyncio.wait_for(reader.readline(), 3)).decode()
        writer.close()
        api = "ready" if " 200 " in line else f"unhealthy ({line.strip()})"
    return {
        "store": {"head_position": head},
        "api": {"url": f"http://{api_host}:{api_port}", "state": api},
        "relay": {"position": relay, "lag": None if relay is None else head - relay},
        "public_feed": {"position": feed, "lag": None if feed is None else head - feed},
        "projections": projections,
        "broker": broker,
    }


def render(report: dict[str, Any]) -> str:
    """The status report as a screen for people."""

    def lag(value: Any) -> str:
        return "-" if value is None else ("ok" if value == 0 else f"{value} behind")

    relay, feed = report["relay"], report["public_feed"]
    broker = report["broker"]
    lines = [
        f"store      head position {report['store']['head_position']}",
        f"relay      position {relay['position']}  {lag(relay['lag'])}",
        f"feed       position {feed['position']}  {lag(feed['lag'])}  (public, one per event)",
        f"broker     {'reachable' if broker['reachable'] else 'UNREACHABLE'}",
        f"api        {report['api']['state']}  {report['api']['url']}",
        "projections:",
    ]
    for name, p in report["projections"].items():
        if "state" in p:
            lines.append(f"  {name:<14} {p['state']}")
            continue
        dead = broker.get("dead_letters", {}).get(name)
        lines.append(
            f"  {name:<14} {p['pupils']:>7} pupils  position {p['position']:<10} "
            f"{lag(p['lag']):<14} dead letters {'-' if dead is None else dead}"
        )
    return "\n".join(lines)
