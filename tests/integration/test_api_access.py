"""Every endpoint × every role × own school / other school / other trust, over HTTP.

The expected statuses are written out here from the issue's rules, not computed
from permissions.py, so a change to the matrix has to be made twice on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from senflow.services.application import SenflowService
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.commands import parse_command
from tests.integration.api_support import (
    Projector,
    bearer,
    client_for,
    new_school,
    new_trust,
    progress_body,
    register_body,
    running_app,
)

pytestmark = pytest.mark.integration

ROLES = [
    "class_teacher",
    "teaching_assistant",
    "senco",
    "senior_leader",
    "trust_send_lead",
    "auditor",
    "integration",
]
TARGETS = ["own_school", "other_school", "other_trust"]

TRUST_WIDE = {"trust_send_lead", "auditor"}  # the tokens below: these two cover the trust
READ_PUPIL = {
    "class_teacher",
    "teaching_assistant",
    "senco",
    "senior_leader",
    "trust_send_lead",
    "auditor",
}
SCHOOL_VIEWS = {"senco", "senior_leader", "trust_send_lead", "auditor"}
TRUST_VIEWS = {"trust_send_lead", "auditor"}
RECORD_PROGRESS = {"class_teacher", "teaching_assistant", "senco"}
REGISTER = {"senco", "integration"}


def expected(endpoint: str, role: str, target: str) -> int:
    wide = role in TRUST_WIDE
    if endpoint in ("pupil", "timeline"):
        allowed, reach = role in READ_PUPIL, {"own_school"} | ({"other_school"} if wide else set())
    elif endpoint in ("school_register", "school_provision_map", "school_compliance"):
        allowed = role in SCHOOL_VIEWS
        reach = {"own_school"} | ({"other_school"} if wide else set())
    elif endpoint in ("trust_register", "trust_provision_map", "trust_compliance"):
        allowed, reach = role in TRUST_VIEWS, {"own_school", "other_school"}
    elif endpoint == "record_progress":
        allowed, reach = role in RECORD_PROGRESS, {"own_school"}
    elif endpoint == "register_pupil":
        # outside the token's school it is refused (403): registering reveals nothing
        if role not in REGISTER:
            return 403
        return 200 if target == "own_school" else 403
    elif endpoint == "events":
        return 200 if role in {"integration", "auditor"} else 403
    elif endpoint == "access_log":
        return 200 if role == "auditor" else 403
    elif endpoint == "me":
        return 200
    else:
        raise AssertionError(endpoint)
    if not allowed:
        return 403
    return 200 if target in reach else 404


@dataclass
class World:
    trust: str
    schools: dict[str, str]  # target -> URN
    trusts: dict[str, str]  # target -> trust id
    pupils: dict[str, uuid.UUID]  # target -> pupil
    tokens: dict[str, dict[str, str]]  # role -> headers


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(pool: asyncpg.Pool) -> World:
    trust, other_trust = new_trust(), new_trust()
    schools = {"own_school": new_school(), "other_school": new_school(), "other_trust": "999001"}
    trusts = {"own_school": trust, "other_school": trust, "other_trust": other_trust}
    service = SenflowService(EventStore(pool))
    pupils = {}
    for n, target in enumerate(TARGETS):
        pupil = uuid.uuid4()
        tenant = {"trust_id": trusts[target], "school_urn": schools[target]}
        body = register_body(
            pupil, 7000 + n, tenant=tenant, actor={"user_id": "mis", "role": "integration"}
        )
        result = await service.handle(parse_command(body))
        assert result.accepted
        pupils[target] = pupil
    projector = Projector(pool)
    await projector.prepare()
    await projector.catch_up()
    own = schools["own_school"]
    tokens = {
        role: await bearer(pool, role, trust, None if role in TRUST_WIDE else own) for role in ROLES
    }
    return World(trust, schools, trusts, pupils, tokens)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(migrated: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(migrated) as app, client_for(app) as c:
        yield c


def request_for(endpoint: str, target: str, w: World) -> tuple[str, str, Any]:
    pupil, school, trust = w.pupils[target], w.schools[target], w.trusts[target]
    match endpoint:
        case "pupil":
            return "GET", f"/v1/pupils/{pupil}", None
        case "timeline":
            return "GET", f"/v1/pupils/{pupil}/timeline?as_of=2025-12-01", None
        case "school_register":
            return "GET", f"/v1/schools/{school}/register", None
        case "school_provision_map":
            return "GET", f"/v1/schools/{school}/provision-map", None
        case "trust_register":
            return "GET", f"/v1/trusts/{trust}/register", None
        case "trust_provision_map":
            return "GET", f"/v1/trusts/{trust}/provision-map", None
        case "school_compliance":
            return "GET", f"/v1/schools/{school}/compliance", None
        case "trust_compliance":
            return "GET", f"/v1/trusts/{trust}/compliance?date=2026-01-15", None
        case "record_progress":
            return "POST", "/v1/commands", progress_body(pupil)
        case "register_pupil":
            tenant = {"trust_id": trust, "school_urn": school}
            serial = uuid.uuid4().int % 9000
            return "POST", "/v1/commands", register_body(uuid.uuid4(), serial, tenant=tenant)
        case "events":
            return "GET", "/v1/events", None
        case "access_log":
            return "GET", "/v1/access-log", None
        case "me":
            return "GET", "/v1/me", None
    raise AssertionError(endpoint)


ENDPOINTS = [
    "pupil",
    "timeline",
    "school_register",
    "school_provision_map",
    "trust_register",
    "trust_provision_map",
    "school_compliance",
    "trust_compliance",
    "record_progress",
    "register_pupil",
    "events",
    "access_log",
    "me",
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_matrix(
    client: httpx.AsyncClient, world: World, endpoint: str, role: str, target: str
) -> None:
    method, path, body = request_for(endpoint, target, world)
    response = await client.request(method, path, json=body, headers=world.tokens[role])
    want = expected(endpoint, role, target)
    assert response.status_code == want, (endpoint, role, target, response.text)
    if want == 404:
        # another school's pupil looks exactly like a pupil that does not exist
        assert response.json()["error"] == "not_found"


async def test_another_schools_pupil_is_indistinguishable_from_none(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = world.tokens["senco"]
    for suffix in ("", "/timeline"):
        theirs = await client.get(
            f"/v1/pupils/{world.pupils['other_school']}{suffix}", headers=headers
        )
        nobody = await client.get(f"/v1/pupils/{uuid.uuid4()}{suffix}", headers=headers)
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json() == nobody.json()
    theirs = await client.post(
        "/v1/commands", json=progress_body(world.pupils["other_trust"]), headers=headers
    )
    nobody = await client.post("/v1/commands", json=progress_body(uuid.uuid4()), headers=headers)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == nobody.json()


async def test_a_trust_wide_integration_token_registers_at_any_school_of_its_trust(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool
) -> None:
    headers = await bearer(pool, "integration", world.trust)
    school = world.schools["other_school"]
    tenant = {"trust_id": world.trust, "school_urn": school}
    ok = await client.post(
        "/v1/commands", json=register_body(uuid.uuid4(), 7100, tenant=tenant), headers=headers
    )
    assert ok.status_code == 200, ok.text
    # without a tenant a trust-wide token has no school to register at: the workflow says so
    missing = await client.post(
        "/v1/commands", json=register_body(uuid.uuid4(), 7101), headers=headers
    )
    assert missing.status_code == 422
    assert missing.json()["rejection"]["rule"] == "tenant_matches_pupil"
    elsewhere = {"trust_id": world.trusts["other_trust"], "school_urn": "999001"}
    refused = await client.post(
        "/v1/commands", json=register_body(uuid.uuid4(), 7102, tenant=elsewhere), headers=headers
    )
    assert refused.status_code == 403


async def test_registering_an_id_taken_elsewhere_is_refused_without_saying_where(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = world.tokens["senco"]
    for target in ("other_school", "other_trust"):
        body = register_body(world.pupils[target], 7200)
        response = await client.post("/v1/commands", json=body, headers=headers)
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "pupil_id_unavailable"
        assert world.schools[target] not in response.text
        assert world.trusts[target] not in response.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sft_nonsense"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
async def test_without_a_valid_token_everything_is_401(
    client: httpx.AsyncClient, world: World, headers: dict[str, str]
) -> None:
    for endpoint in ENDPOINTS:
        method, path, body = request_for(endpoint, "own_school", world)
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (endpoint, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
