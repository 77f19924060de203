"""The whole pipeline as separate processes: store -> relay -> RabbitMQ -> three projections.

Consumers are SIGKILLed again and again while events flow; afterwards every read
model must equal a rebuild from the store, and the register, provision map and
audit trail must show exactly what was recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from senflow.projections.catalogue import PROJECTIONS
from senflow.projections.rebuild import rebuild
from senflow.projections.tables import snapshot
from senflow.services.bus.topology import Topology
from senflow.services.store.db import create_pool, with_database
from senflow.services.store.eventstore import EventStore
from tests.conftest import BASE_URL
from tests.integration.bus import delete_topology
from tests.integration.helpers import upn
from tests.integration.story import story

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SENFLOW = [sys.executable, "-m", "senflow.services.cli"]
PUPILS = 30


class Services:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [*SENFLOW, "serve", name], env=self.env, cwd=ROOT, stdout=log, stderr=log
        )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def senflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SENFLOW, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    name = f"senflow_test_svc_{uuid.uuid4().hex[:10]}"
    prefix = f"senflow-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "SENFLOW_DATABASE_URL": with_database(BASE_URL, name),
        "SENFLOW_BUS_PREFIX": prefix,
        "SENFLOW_PARTITIONS": "2",
        "SENFLOW_LOG_LEVEL": "INFO",
    }
    assert senflow(env, "db", "migrate").returncode == 0
    services = Services(env, tmp_path_factory.mktemp("logs"))
    yield env, services
    services.stop_all()
    asyncio.run(
        delete_topology(
            Topology(
                prefix=prefix, partitions=2, services=tuple(p.name for p in PROJECTIONS.values())
            )
        )
    )

    async def drop() -> None:
        admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())


def _commands(pupils: list[uuid.UUID]) -> str:
    lines = []
    for n, pupil in enumerate(pupils):
        lines += [json.dumps(c) for c in story(pupil, upn(1000 + n))]
    return "\n".join(lines) + "\n"


async def _caught_up(dsn: str) -> dict[str, int]:
    """How many pupils each projection still lags behind the store on."""
    conn = await asyncpg.connect(dsn)
    try:
        behind = {}
        for name, projection in PROJECTIONS.items():
            behind[name] = await conn.fetchval(
                f"""SELECT count(*) FROM streams s
                      LEFT JOIN {projection.schema}.docs d USING (stream_id)
                     WHERE s.version > 0 AND coalesce(d.version, 0) <> s.version"""
            )
        # and the relays: events not yet on their feed
        for name, lag in await conn.fetch(
            """SELECT name, (SELECT coalesce(max(position), 0) FROM events) - position
                 FROM relay_checkpoint"""
        ):
            behind[f"relay {name}"] = lag
        return behind
    finally:
        await conn.close()


def _wait_caught_up(dsn: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    behind: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            behind = asyncio.run(_caught_up(dsn))
        except asyncpg.UndefinedTableError:
            behind = {"tables": -1}
        if all(v == 0 for v in behind.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"projections still behind: {behind}")


async def _equal_to_rebuild(dsn: str) -> dict[str, bool]:
    pool = await create_pool(dsn)
    try:
        store, equal = EventStore(pool), {}
        for name, projection in PROJECTIONS.items():
            target = f"{projection.schema}_check"
            await rebuild(pool, store, projection, swap=False, target=target)
            async with pool.acquire() as conn:
                equal[name] = await snapshot(conn, projection) == await snapshot(
                    conn, projection, target
                )
                await conn.execute(f"DROP SCHEMA {target} CASCADE")
        return equal
    finally:
        await pool.close()


def test_pipeline_survives_repeated_sigkill_and_matches_a_rebuild(deployment, tmp_path):
    env, services = deployment
    dsn = env["SENFLOW_DATABASE_URL"]
    for name in ("relay", "public-feed", *PROJECTIONS):
        services.start(name)

    pupils = [uuid.uuid4() for _ in range(PUPILS)]
    commands = tmp_path / "commands.jsonl"
    commands.write_text(_commands(pupils))
    submitting = subprocess.Popen(
        [*SENFLOW, "submit", str(commands)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    kills = 0
    while submitting.poll() is None and kills < 12:
        time.sleep(0.7)
        victim = list(PROJECTIONS)[kills % 3]
        services.kill(victim)  # mid-batch: no goodbye, unacknowledged messages return
        services.start(victim)
        kills += 1
    out, _ = submitting.communicate(timeout=300)
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == PUPILS * 26 and all(r["ok"] for r in results)
    assert kills >= 3, "the submission finished before the consumers could be killed"

    _wait_caught_up(dsn)
    assert asyncio.run(_equal_to_rebuild(dsn)) == {name: True for name in PROJECTIONS}

    # what people read
    register = [
        json.loads(line)
        for line in senflow(env, "register", "--trust", "trust-7").stdout.splitlines()
    ]
    counts = register[-1]["counts"]
    assert counts["total"] == PUPILS and counts["by_provision"] == {"E": PUPILS}
    assert counts["by_primary_need"] == {"SLCN": PUPILS}
    as_of = json.loads(senflow(env, "register", "--as-of", "2024-12-01", "--counts").stdout)
    assert as_of["by_provision"] == {"K": PUPILS}

    totals = [json.loads(line) for line in senflow(env, "provision-map").stdout.splitlines()]
    assert totals == [{**totals[0], "school": "123456"}]
    assert totals[0]["interventions"] == 3 * PUPILS
    assert totals[0]["cost_pence"] == (12000 + 20000 + 25000) * PUPILS

    trail = json.loads(senflow(env, "audit", str(pupils[0])).stdout)
    assert len(trail["entries"]) == 26 and trail["chain"]["ok"] is True

    status = json.loads(senflow(env, "status", "--json").stdout)
    assert all(p["lag"] == 0 for p in status["projections"].values())
    assert status["relay"]["lag"] == 0
    assert status["public_feed"]["lag"] == 0
    assert status["broker"]["dead_letters"] == {name: 0 for name in PROJECTIONS}


def test_rebuild_swaps_while_the_consumer_keeps_serving(deployment, tmp_path):
    env, services = deployment
    dsn = env["SENFLOW_DATABASE_URL"]
    for name in ("relay", *PROJECTIONS):
        if name not in services.procs or services.procs[name].poll() is not None:
            services.start(name)
    more = [uuid.uuid4() for _ in range(5)]
    commands = tmp_path / "more.jsonl"
    commands.write_text(_commands(more))
    submitting = subprocess.Popen(
        [*SENFLOW, "submit", str(commands)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rebuilt = senflow(env, "rebuild", "register")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["swapped"] is True
    assert submitting.wait(120) == 0
    _wait_caught_up(dsn)
    assert asyncio.run(_equal_to_rebuild(dsn))["register"] is True
