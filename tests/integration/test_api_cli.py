"""`senflow token create|list|revoke` and `senflow access-log`, run in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from senflow.events.envelope import Role
from senflow.services import bootstrap
from senflow.services.api import access_log
from senflow.services.api.tokens import create_token
from senflow.services.cli import app
from senflow.services.store.db import create_pool
from senflow.services.store.tenancy import TrustPool
from tests.integration.api_support import new_school, new_trust

pytestmark = pytest.mark.integration


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_tokens_and_the_access_log_from_the_command_line(
    migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENFLOW_DATABASE_URL", migrated)
    # The CLI configures structlog onto stderr; under CliRunner that is a stream closed
    # after each invocation, which would break the logging of every later test.
    monkeypatch.setattr(bootstrap, "configure_logging", lambda settings: None)
    runner = CliRunner()
    trust, school = new_trust(), new_school()

    made = runner.invoke(
        app,
        [
            "token",
            "create",
            "--role",
            "senco",
            "--trust",
            trust,
            "--school",
            school,
            "--user",
            "senco.cli",
        ],
    )
    assert made.exit_code == 0, made.output
    token = _lines(made.output)[0]
    assert token["token"].startswith("sft_") and token["user_id"] == "senco.cli"

    # an auditor's token must be time-boxed, a class teacher's must name a school
    refused = runner.invoke(app, ["token", "create", "--role", "auditor", "--trust", trust])
    assert refused.exit_code == 2 and "time-boxed" in refused.output
    refused = runner.invoke(app, ["token", "create", "--role", "class_teacher", "--trust", trust])
    assert refused.exit_code == 2 and "one school" in refused.output
    short = runner.invoke(
        app, ["token", "create", "--role", "auditor", "--trust", trust, "--expires-in", "8h"]
    )
    assert short.exit_code == 0, short.output

    listed = _lines(runner.invoke(app, ["token", "list", "--trust", trust]).output)
    assert {t["role"] for t in listed} == {"senco", "auditor"}
    assert all("token" not in t and "token_hash" not in t for t in listed)

    revoked = runner.invoke(app, ["token", "revoke", token["token_id"]])
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(app, ["token", "revoke", token["token_id"]]).exit_code == 2
    listed = _lines(runner.invoke(app, ["token", "list", "--trust", trust]).output)
    assert {t["role"] for t in listed} == {"auditor"}

    log = runner.invoke(app, ["access-log", "--trust", trust])
    assert log.exit_code == 0, log.output
    assert _lines(log.output) == []  # nobody has read anything in this trust yet

    pupil = uuid.uuid4()
    asyncio.run(_a_read(migrated, trust, school, pupil))
    log = runner.invoke(app, ["access-log", "--trust", trust, "--pupil", str(pupil)])
    [entry] = _lines(log.output)
    assert entry["user_id"] == "teacher.cli" and entry["pupil_ids"] == [str(pupil)]
    other = runner.invoke(app, ["access-log", "--trust", trust, "--pupil", str(uuid.uuid4())])
    assert _lines(other.output) == []


async def _a_read(dsn: str, trust: str, school: str, pupil: uuid.UUID) -> None:
    """What the API records when a class teacher reads a pupil."""
    pool = await create_pool(dsn)
    try:
        issued = await create_token(
            pool, Role.CLASS_TEACHER, trust, school, "teacher.cli", timedelta(hours=1)
        )
        await access_log.record(
            TrustPool(pool, trust), issued.principal, "pupil_state", [pupil], school
        )
    finally:
        await pool.close()
