"""The senflow command, run as a process against its own database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from senflow.services.store.db import with_database
from tests.conftest import BASE_URL
from tests.integration.story import EXAMPLE_PUPIL

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SENFLOW = [sys.executable, "-m", "senflow.services.cli"]


@pytest.fixture(scope="module")
def cli_env():
    url = with_database(BASE_URL, f"senflow_test_cli_{uuid.uuid4().hex[:10]}")
    env = {**os.environ, "SENFLOW_DATABASE_URL": url, "SENFLOW_LOG_LEVEL": "WARNING"}
    yield env

    async def drop() -> None:
        admin = await asyncpg.connect(with_database(BASE_URL, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.close()

    asyncio.run(drop())


def senflow(env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SENFLOW, *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_cli_end_to_end(cli_env):
    migrated = senflow(cli_env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert lines(migrated.stdout)[0]["applied"][0] == "0001_event_store"
    assert lines(senflow(cli_env, "db", "migrate").stdout) == [{"applied": []}]

    story = (ROOT / "examples" / "one_pupil.jsonl").read_text()
    first = senflow(cli_env, "submit", "examples/one_pupil.jsonl")
    assert first.returncode == 0, first.stdout + first.stderr
    results = lines(first.stdout)
    assert len(results) == len(story.splitlines()) and all(r["ok"] for r in results)
    again = senflow(cli_env, "submit", "-", stdin=story)
    assert again.returncode == 0 and all(r["duplicate"] for r in lines(again.stdout))

    bad = json.loads(story.splitlines()[1])
    bad.pop("command_id")
    bad["payload"]["area"] = "maths"
    rejected = dict(bad, command="end_sen_support", payload={"reason": "needs_met"})
    out = senflow(cli_env, "submit", "-", stdin=json.dumps(bad) + "\n" + json.dumps(rejected))
    assert out.returncode == 1
    invalid, refused = lines(out.stdout)
    assert invalid["error"] == "invalid" and invalid["errors"][0]["field"] == "payload.area"
    assert invalid["errors"][0]["rule"] == "enum"
    assert refused["rejection"]["rule"] == "requires_sen_support"

    pupil = str(EXAMPLE_PUPIL)
    then = lines(senflow(cli_env, "history", pupil, "--as-of", "2024-12-01", "--json").stdout)[0]
    assert then["state"]["provision"] == "K" and then["as_of"] == "2024-12-01"
    assert then["timeline"][0]["data"]["forename"] == "Amy"
    now = lines(senflow(cli_env, "history", pupil, "--json").stdout)[0]
    assert now["state"]["provision"] == "E"
    human = senflow(cli_env, "history", pupil).stdout
    assert "provision E" in human and "ehc_annual_review_held" in human
    assert senflow(cli_env, "history", str(uuid.uuid4())).returncode == 2

    ok = senflow(cli_env, "verify")
    assert ok.returncode == 0 and lines(ok.stdout)[0]["ok"] is True

    forgotten = senflow(
        cli_env, "forget", pupil, "--reason", "SAR-2026-31", "--code", "erasure_request"
    )
    assert forgotten.returncode == 0, forgotten.stderr
    after = lines(senflow(cli_env, "history", pupil, "--json").stdout)[0]
    assert after["timeline"][0]["data"]["forename"]["redacted"] is True
    assert after["timeline"][0]["data"]["upn"] == "B801200005001"
    assert after["timeline"][-1]["event_type"] == "personal_data_erased"
    assert senflow(cli_env, "verify", "--pupil", pupil).returncode == 0

    target = now["timeline"][3]["event_id"]

    async def tamper() -> None:
        conn = await asyncpg.connect(cli_env["SENFLOW_DATABASE_URL"])
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE events SET actor_id = 'someone.else' WHERE event_id = $1",
                uuid.UUID(target),
            )
        await conn.close()

    asyncio.run(tamper())
    broken = senflow(cli_env, "verify")
    assert broken.returncode == 1
    assert target in broken.stderr and "changed" in broken.stderr
