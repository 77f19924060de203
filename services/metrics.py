"""Prometheus metrics of the long-running services (the HTTP API has its own in services/api).

Each process exposes what it does on ``SENFLOW_METRICS_PORT`` (the supervisor
gives each child its own port): events appended and commands rejected by
rule, relay progress and lag, each projection's applied events, lag and
dead-letter depth, and the notices the scheduler recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, start_http_server

EVENTS_APPENDED = Counter("senflow_events_appended", "Events appended to the store", ["event_type"])
REJECTIONS = Counter(
    "senflow_workflow_rejections", "Commands rejected by the workflow, by rule", ["rule"]
)
RELAY_PUBLISHED = Counter("senflow_relay_published", "Events published and confirmed")
RELAY_LAG = Gauge("senflow_relay_lag_events", "Events in the store not yet published")
PROJECTION_APPLIED = Counter(
    "senflow_projection_applied", "Events applied to a projection", ["projection"]
)
PROJECTION_DUPLICATES = Counter(
    "senflow_projection_duplicates", "Redelivered events skipped", ["projection"]
)
PROJECTION_FILLED = Counter(
    "senflow_projection_gap_filled", "Events read from the store to close a gap", ["projection"]
)
PROJECTION_LAG = Gauge(
    "senflow_projection_lag_events", "Store head minus the projection's position", ["projection"]
)
DEAD_LETTERS = Gauge("senflow_dead_letters", "Messages in a dead-letter queue", ["projection"])
NOTICES = Counter("senflow_notices_recorded", "Notices recorded by the scheduler", ["type"])


def serve_metrics(port: int | None) -> None:
    if port:
        start_http_server(port, addr="127.0.0.1")


async def every(seconds: float, stop: asyncio.Event, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` now and then every ``seconds`` until ``stop`` (failures are skipped)."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await work()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
