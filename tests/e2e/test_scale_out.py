"""Scale-out: three consumer processes per projection, each on its own partition.

Every instance does a share of the work, no pupil's events arrive out of order
(no gap ever has to be filled from the store), and every read model equals a
rebuild from the store.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from senflow.projections.catalogue import PROJECTIONS
from senflow.services.bus.topology import Topology
from senflow.services.store.db import with_database
from tests.conftest import BASE_URL
from tests.e2e.test_services import (
    ROOT,
    SENFLOW,
    Services,
    _commands,
    _equal_to_rebuild,
    _wait_caught_up,
    senflow,
)
from tests.integration.bus import delete_topology

pytestmark = pytest.mark.e2e

INSTANCES = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(v) for v in found)


def test_three_instances_per_projection_share_the_work_in_order(tmp_path):
    name = f"senflow_test_scale_{uuid.uuid4().hex[:10]}"
    prefix = f"senflow-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "SENFLOW_DATABASE_URL": with_database(BASE_URL, name),
        "SENFLOW_BUS_PREFIX": prefix,
        "SENFLOW_PARTITIONS": str(INSTANCES),
        "SENFLOW_LOG_LEVEL": "WARNING",
    }
    assert senflow(env, "db", "migrate").returncode == 0
    procs: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    services = Services(env, tmp_path)
    try:
        services.start("relay")
        for projection in PROJECTIONS:
            for i in range(INSTANCES):
                port = _free_port()
                log = (tmp_path / f"{projection}-{i}.log").open("ab")
                procs.append(
                    (
                        projection,
                        port,
                        subprocess.Popen(
                            [*SENFLOW, "serve", projection, "--partitions", str(i)],
                            env={**env, "SENFLOW_METRICS_PORT": str(port)},
                            cwd=ROOT,
                            stdout=log,
                            stderr=log,
                        ),
                    )
                )
        pupils = [uuid.uuid4() for _ in range(24)]
        commands = tmp_path / "commands.jsonl"
        commands.write_text(_commands(pupils))
        assert senflow(env, "submit", str(commands)).returncode == 0
        _wait_caught_up(env["SENFLOW_DATABASE_URL"])
        time.sleep(0.5)
        for projection, port, _ in procs:
            applied = _metric(port, "senflow_projection_applied_total")
            filled = _metric(port, "senflow_projection_gap_filled_total")
            logs = tmp_path
            tail = "\n".join(
                f.read_text()[-2000:] for f in sorted(logs.glob(f"{projection}-*.log"))
            )
            assert applied > 0, f"{projection} instance on {port} did nothing\n{tail}"
            assert filled == 0, f"{projection} on {port} saw events out of order\n{tail}"
            # the observer reports the dead-letter queue's depth (none here)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            assert re.search(rb"^senflow_dead_letters\{[^}]*\} 0\.0$", text, re.MULTILINE), tail
        equal = asyncio.run(_equal_to_rebuild(env["SENFLOW_DATABASE_URL"]))
        assert equal == {p: True for p in PROJECTIONS}
    finally:
        for _, _, p in procs:
            p.terminate()
        for _, _, p in procs:
            p.wait(30)
        services.stop_all()
        asyncio.run(
            delete_topology(
                Topology(
                    prefix=prefix,
                    partitions=INSTANCES,
                    services=tuple(p.name for p in PROJECTIONS.values()),
                )
            )
        )

        async def drop() -> None:
            import asyncpg

            admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

        asyncio.run(drop())
