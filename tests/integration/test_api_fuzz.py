"""Property-based fuzz of the API from its own OpenAPI document (schemathesis + hypothesis).

Requests are generated from /openapi.json, valid and invalid, mostly with a real
token so they get past authentication into validation, scope checks and the
workflow. Whatever comes in: never a 5xx, and never a partial write (every event
chain still verifies, and a command that was not accepted recorded nothing).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from senflow.services.store.eventstore import EventStore
from senflow.services.store.verify import verify
from tests.integration.api_support import (
    Projector,
    bearer,
    client_for,
    new_school,
    new_trust,
    register_body,
    running_app,
)

pytestmark = pytest.mark.integration

EXAMPLES = 600


@dataclass
class Fuzz:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    trust: str
    school: str
    pupil: uuid.UUID
    tokens: list[dict[str, str]]
    refused_commands: set[uuid.UUID] = field(default_factory=set)
    accepted_commands: set[uuid.UUID] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz(migrated: str, pool: asyncpg.Pool) -> AsyncIterator[Fuzz]:
    trust, school = new_trust(), new_school()
    projector = Projector(pool)
    await projector.prepare()
    await projector.catch_up()
    tokens = [
        await bearer(pool, role, trust, None if role in ("trust_send_lead", "auditor") else school)
        for role in ("senco", "class_teacher", "trust_send_lead", "auditor", "integration")
    ]
    async with running_app(migrated, api_max_consistency_wait=0.2) as app, client_for(app) as c:
        pupil = uuid.uuid4()
        r = await c.post("/v1/commands", json=register_body(pupil, 9101), headers=tokens[0])
        assert r.status_code == 200, r.text
        yield Fuzz(c, pool, trust, school, pupil, tokens)


def _strategy() -> st.SearchStrategy[Any]:
    from senflow.services.api.app import create_app

    schema = schemathesis.openapi.from_dict(create_app().openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return st.one_of([op.as_strategy(generation_mode=mode) for op in operations for mode in modes])


CASES = _strategy()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(case=CASES, who=st.integers(min_value=-1, max_value=4), aim=st.booleans())
async def test_no_5xx_and_no_partial_write(fuzz: Fuzz, case: Any, who: int, aim: bool) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if isinstance(v, str)}
    if who >= 0:
        headers["Authorization"] = fuzz.tokens[who]["Authorization"]
    params = {k: str(v) for k, v in (case.path_parameters or {}).items()}
    body = case.body
    if aim:  # now and then at a real pupil, school and trust, to get past the 404s
        real = {"pupil_id": str(fuzz.pupil), "school_urn": fuzz.school, "trust_id": fuzz.trust}
        params = {k: real.get(k, v) for k, v in params.items()}
        if isinstance(body, dict) and "pupil_id" in body:
            body = {**body, "pupil_id": str(fuzz.pupil)}
    path = case.path.format(**{k: quote(v, safe="") for k, v in params.items()})
    kwargs: dict[str, Any] = {"headers": headers, "params": case.query or None}
    if case.method.upper() == "POST":
        if isinstance(body, bytes):
            kwargs["content"] = body
        else:
            try:
                kwargs["content"] = json.dumps(body).encode()
            except (TypeError, ValueError):
                return  # not JSON at all: nothing to send as a command
        headers.setdefault("content-type", "application/json")
    try:
        response = await fuzz.client.request(case.method.upper(), path, **kwargs)
    except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
        return  # httpx itself refuses to send it: nothing reached the API
    fuzz.statuses[response.status_code] = fuzz.statuses.get(response.status_code, 0) + 1
    assert response.status_code < 500, (case.method, path, kwargs, response.text)
    if path == "/v1/commands" and isinstance(body, dict):
        try:
            command_id = uuid.UUID(str(body.get("command_id")))
        except ValueError:
            return
        accepted = response.status_code == 200
        (fuzz.accepted_commands if accepted else fuzz.refused_commands).add(command_id)


async def test_after_the_fuzz_every_chain_holds_and_refusals_recorded_nothing(fuzz: Fuzz) -> None:
    if not fuzz.statuses:
        pytest.skip("runs after test_no_5xx_and_no_partial_write")
    assert sum(fuzz.statuses.values()) > EXAMPLES // 2, fuzz.statuses
    assert any(400 <= s < 500 for s in fuzz.statuses)
    report = await verify(fuzz.pool, trust_id=fuzz.trust)
    assert report.ok, [b.describe() for b in report.breaks]
    store = EventStore(fuzz.pool)
    for command_id in fuzz.refused_commands - fuzz.accepted_commands:
        assert await store.caused_by(command_id) == []
