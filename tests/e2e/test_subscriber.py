"""The example downstream subscriber receives exactly its trust's review-due events."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import date, datetime, time
from pathlib import Path

import aio_pika
import pytest

from senflow.services.application import SenflowService
from senflow.services.relay import Feed
from senflow.services.scheduler import Scheduler
from senflow.services.workflow.calendar import SCHOOL_TZ
from senflow.services.workflow.commands import parse_command
from tests.integration.bus import AMQP_URL, delete_topology, running_relay, unique_topology
from tests.integration.helpers import upn

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def _pupil_with_a_plan(trust: str, serial: int, review: str) -> list[dict]:
    pupil = str(uuid.uuid4())

    def cmd(name: str, day: str, payload: dict, **kw) -> dict:
        return {
            "command": name,
            "pupil_id": pupil,
            "occurred_at": day,
            "actor": {"user_id": "senco.1", "role": "senco"},
            "payload": payload,
            **kw,
        }

    return [
        cmd(
            "register_pupil",
            "2024-09-02",
            {
                "upn": upn(7000 + serial),
                "forename": "Kim",
                "surname": "Ng",
                "date_of_birth": "2016-02-02",
                "year_group": "3",
                "on_roll_from": "2024-09-02",
            },
            tenant={"trust_id": trust, "school_urn": f"1{serial:05d}"},
        ),
        cmd(
            "start_sen_support",
            "2024-09-10",
            {
                "needs": [{"type": "SPLD", "rank": 1}],
                "parents_notified": True,
                "parents_notified_on": "2024-09-10",
            },
        ),
        cmd(
            "agree_plan",
            "2024-09-12",
            {
                "outcomes": [{"outcome_id": "O1", "description": "Reads more"}],
                "provisions": [
                    {
                        "provision_id": "P1",
                        "name": "Toe by Toe",
                        "delivery": "one_to_one",
                        "staff_role": "teaching_assistant",
                        "sessions_per_week": 3,
                        "minutes_per_session": 20,
                        "weeks": 8,
                        "cost_pence": 0,
                    }
                ],
                "expected_impact": "Reading age +6 months",
                "review_date": review,
                "agreed_by": ["senco", "parent", "pupil"],
                "staff_informed": True,
            },
        ),
    ]


async def test_example_subscriber_gets_its_trusts_review_due_events_only(store, migrated):
    topology = unique_topology(["audit"], partitions=1)
    mine, other = f"trust-m{uuid.uuid4().hex[:6]}", f"trust-o{uuid.uuid4().hex[:6]}"
    queue = f"review-due-test-{uuid.uuid4().hex[:8]}"
    sub = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/review_due_subscriber.py",
        "--trust",
        mine,
        "--amqp-url",
        AMQP_URL,
        "--exchange",
        topology.events.name,
        "--queue",
        queue,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with running_relay(store, migrated, topology, feed=Feed.EVENTS):
            # the subscriber declares its queue on start; wait until it says so
            ready = await asyncio.wait_for(sub.stdout.readline(), 30)
            assert json.loads(ready)["ready"] is True

            now = datetime.combine(date(2024, 11, 30), time(18), SCHOOL_TZ)
            svc = SenflowService(store, clock=lambda: now)
            for serial, (trust, review) in enumerate(
                [
                    (mine, "2024-11-20"),
                    (mine, "2024-12-05"),
                    (other, "2024-11-25"),
                    (mine, "2025-03-01"),
                ]  # the last is not due yet
            ):
                for raw in _pupil_with_a_plan(trust, serial, review):
                    assert (await svc.handle(parse_command(raw))).accepted
            scheduler = Scheduler(store, svc)
            await scheduler.tick(date(2024, 11, 30), mine)
            await scheduler.tick(date(2024, 11, 30), other)

            got = []
            for _ in range(2):
                line = await asyncio.wait_for(sub.stdout.readline(), 30)
                got.append(json.loads(line))
            await asyncio.sleep(1.0)  # anything else would arrive now
    finally:
        sub.terminate()
        rest_bytes, _ = await asyncio.wait_for(sub.communicate(), 20)
        rest = rest_bytes.decode()
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await connection.close()
        await delete_topology(topology)

    assert [line for line in rest.splitlines() if line.strip()] == []
    assert sorted(g["review_date"] for g in got) == ["2024-11-20", "2024-12-05"]
    assert {g["due_since"] for g in got} == {"2024-11-06", "2024-11-21"}
