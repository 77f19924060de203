"""`senflow serve api` as a process: ready, a command with a CLI-made token, JSON logs, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.api_support import new_school, new_trust, register_body

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SENFLOW = [sys.executable, "-m", "senflow.services.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_api_runs_answers_and_stops_on_sigterm(migrated: str) -> None:
    port = _free_port()
    env = {**os.environ, "SENFLOW_DATABASE_URL": migrated, "SENFLOW_API_PORT": str(port)}
    trust, school = new_trust(), new_school()
    made = await asyncio.create_subprocess_exec(
        *SENFLOW,
        "token",
        "create",
        "--role",
        "senco",
        "--trust",
        trust,
        "--school",
        school,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await made.communicate()
    assert made.returncode == 0, err.decode()
    token = json.loads(out.decode().splitlines()[-1])["token"]

    server = await asyncio.create_subprocess_exec(
        *SENFLOW,
        "serve",
        "api",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API never became ready"
                await asyncio.sleep(0.1)
            correlation = str(uuid.uuid4())
            r = await client.post(
                "/v1/commands",
                json=register_body(uuid.uuid4(), 9301),
                headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": correlation},
            )
            assert r.status_code == 200, r.text
            assert "senflow_http_requests_total" in (await client.get("/metrics")).text
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(server.communicate(), 20)
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it
    assert server.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]
    logged = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert logged[-1]["event"] == "api_stopped"  # the lifespan ran to its end: pool closed
    request = next(
        e
        for e in logged
        if e.get("event") == "http_request" and e["status"] == 200 and e["route"] == "/v1/commands"
    )
    assert request["correlation_id"] == correlation and request["role"] == "senco"
