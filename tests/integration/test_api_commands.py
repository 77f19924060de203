"""Commands and queries over HTTP against the real app and database: the story, errors,
idempotent retries, concurrency conflicts, read-your-writes, the access log, tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import pytest_asyncio

from senflow.events.envelope import Role
from senflow.services.application import SenflowService
from senflow.services.store.eventstore import EventStore
from senflow.services.store.tenancy import TrustPool
from senflow.services.store.verify import verify
from senflow.services.workflow.permissions import may_run
from tests.integration.api_support import (
    Projector,
    bearer,
    client_for,
    new_school,
    new_trust,
    progress_body,
    register_body,
    running_app,
    story_commands,
)

pytestmark = pytest.mark.integration


@dataclass
class Ctx:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    trust: str
    school: str
    senco: dict[str, str]
    projector: Projector

    async def pupil(self, serial: int) -> uuid.UUID:
        pupil = uuid.uuid4()
        r = await self.client.post(
            "/v1/commands", json=register_body(pupil, serial), headers=self.senco
        )
        assert r.status_code == 200, r.text
        return pupil

    async def events_of(self, pupil: uuid.UUID) -> list:
        return await EventStore(self.pool).read_stream(pupil)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ctx(migrated: str, pool: asyncpg.Pool) -> AsyncIterator[Ctx]:
    trust, school = new_trust(), new_school()
    projector = Projector(pool)
    await projector.prepare()
    async with running_app(migrated, api_max_consistency_wait=1.0) as app, client_for(app) as c:
        yield Ctx(c, pool, trust, school, await bearer(pool, "senco", trust, school), projector)


async def test_the_whole_story_over_http_with_each_role_doing_its_part(ctx: Ctx) -> None:
    tokens = {
        role: await bearer(ctx.pool, role, ctx.trust, ctx.school, user=f"{role.value}.story")
        for role in (Role.CLASS_TEACHER, Role.TEACHING_ASSISTANT, Role.SENCO, Role.INTEGRATION)
    }
    pupil = uuid.uuid4()
    story = story_commands(pupil, 5101, ctx.trust, ctx.school)
    wanted_roles = {}
    for raw, original in zip(story, _roles(story), strict=True):
        role = Role(original) if may_run(Role(original), raw["command"]) else Role.SENCO
        wanted_roles[raw["command_id"]] = role
        r = await ctx.client.post("/v1/commands", json=raw, headers=tokens[role])
        assert r.status_code == 200, (raw["command"], r.text)
        body = r.json()
        assert body["ok"] and body["warnings"] == []
        assert body["stream_version"] == body["events"][-1]["version"]
        assert body["position"] == body["events"][-1]["position"]
    events = await ctx.events_of(pupil)
    # the actor of every event is the token's user and role, never the body's
    for e in events:
        role = wanted_roles[str(e.causation_id)]
        assert e.actor.role is role and e.actor.user_id == f"{role.value}.story"
    assert (await verify(ctx.pool, pupil)).ok

    state = (await ctx.client.get(f"/v1/pupils/{pupil}", headers=ctx.senco)).json()
    history = await SenflowService(EventStore(ctx.pool)).history(pupil)
    assert state["state"] == history.as_json()["state"]
    assert state["version"] == len(events) and state["state"]["provision"] == "E"
    then = (await ctx.client.get(f"/v1/pupils/{pupil}?as_of=2024-10-09", headers=ctx.senco)).json()
    assert then["state"]["provision"] == "K" and then["as_of"] == "2024-10-09"
    timeline = (
        await ctx.client.get(f"/v1/pupils/{pupil}/timeline?as_of=2024-09-30", headers=ctx.senco)
    ).json()["timeline"]
    assert [e["event_type"] for e in timeline][:2] == ["pupil_registered", "concern_raised"]
    assert timeline[1]["data"]["description"].startswith("Amy struggles")  # personal, decrypted


def _roles(story: list[dict]) -> list[str]:
    from tests.integration.story import story as original

    by_id = {c["command_id"]: c["actor"]["role"] for c in original(uuid.UUID(story[0]["pupil_id"]))}
    return [by_id[c["command_id"]] for c in story]


async def test_the_actor_comes_from_the_token(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5201)
    me = (await ctx.client.get("/v1/me", headers=ctx.senco)).json()
    impostor = progress_body(pupil, actor={"user_id": "head.teacher", "role": "senco"})
    r = await ctx.client.post("/v1/commands", json=impostor, headers=ctx.senco)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "actor"
    assert r.json()["errors"][0]["rule"] == "actor_from_token"
    same = progress_body(pupil, actor={"user_id": me["user_id"], "role": "senco"})
    assert (await ctx.client.post("/v1/commands", json=same, headers=ctx.senco)).status_code == 200


async def test_bad_input_is_422_naming_field_and_rule(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5301)
    body = {
        "command": "start_sen_support",
        "pupil_id": str(pupil),
        "occurred_at": "2025-10-08",
        "payload": {"needs": [{"type": "XYZ", "rank": 1}], "parents_notified": True},
    }
    r = await ctx.client.post("/v1/commands", json=body, headers=ctx.senco)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid"
    fields = {(e["field"], e["rule"]) for e in r.json()["errors"]}
    assert ("payload.needs.0.type", "enum") in fields
    for bad in (b"not json", b"[1, 2]", b'{"command": "no_such_command"}'):
        r = await ctx.client.post(
            "/v1/commands", content=bad, headers={**ctx.senco, "content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["error"] == "invalid", r.text
    for moment in ("0001-01-01T00:00:00+14:00", "1989-12-31"):
        r = await ctx.client.post(
            "/v1/commands", json={**progress_body(pupil), "occurred_at": moment}, headers=ctx.senco
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "occurred_at", r.text
    r = await ctx.client.get(f"/v1/pupils/{pupil}?as_of=yesterday", headers=ctx.senco)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.as_of"


async def test_a_workflow_rejection_is_422_with_rule_remedy_and_paragraph(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5401)
    body = {
        "command": "start_sen_support",
        "pupil_id": str(pupil),
        "occurred_at": "2025-10-08",
        "payload": {"needs": [{"type": "SLCN", "rank": 1}], "parents_notified": False},
    }
    r = await ctx.client.post("/v1/commands", json=body, headers=ctx.senco)
    assert r.status_code == 422
    rejection = r.json()["rejection"]
    assert r.json()["error"] == "rejected"
    assert rejection["rule"] == "parents_notified_before_sen_support"
    assert rejection["field"] == "payload.parents_notified"
    assert rejection["paragraph"] == "6.48" and rejection["remedy"] and rejection["message"]
    assert len(await ctx.events_of(pupil)) == 1  # nothing but the registration
    metrics = (await ctx.client.get("/metrics")).text
    assert (
        'senflow_commands_total{command="start_sen_support",outcome="rejected",'
        'rule="parents_notified_before_sen_support"}'
    ) in metrics
    assert 'senflow_commands_total{command="register_pupil",outcome="accepted",rule=""}' in metrics
    assert 'route="/v1/commands",status="422"' in metrics


async def test_a_stale_expected_version_is_409_with_the_current_version(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5501)
    r = await ctx.client.post(
        "/v1/commands", json=progress_body(pupil, expected_version=0), headers=ctx.senco
    )
    assert r.status_code == 409
    assert r.json()["error"] == "concurrency_conflict"
    assert r.json()["current_version"] == 1 and r.json()["expected_version"] == 0


async def test_concurrent_writers_deciding_on_one_version_one_wins(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5601)
    responses = await asyncio.gather(
        *(
            ctx.client.post(
                "/v1/commands", json=progress_body(pupil, expected_version=1), headers=ctx.senco
            )
            for _ in range(6)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 5, [r.text for r in responses]
    assert {r.json()["current_version"] for r in responses if r.status_code == 409} == {2}
    assert len(await ctx.events_of(pupil)) == 2


async def test_concurrent_commands_of_a_trust_share_transactions(migrated: str, pool) -> None:
    trust, school = new_trust(), new_school()
    senco = await bearer(pool, "senco", trust, school)
    async with running_app(migrated) as app, client_for(app) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/commands",
                    json=register_body(
                        uuid.uuid4(), 6000 + n, tenant={"trust_id": trust, "school_urn": school}
                    ),
                    headers=senco,
                )
                for n in range(40)
            )
        )
        assert [r.status_code for r in responses] == [200] * 40, responses[0].text
        appender = app.state.appenders[trust]
        assert appender.requests == 40 and appender.transactions < 40  # group commit


async def test_an_idempotent_retry_gets_the_same_answer_and_appends_nothing(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5701)
    headers = {**ctx.senco, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = progress_body(pupil)  # no command_id: the key gives it one
    first = await ctx.client.post("/v1/commands", json=body, headers=headers)
    again = await ctx.client.post("/v1/commands", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await ctx.events_of(pupil)) == 2

    other = await ctx.client.post(
        "/v1/commands", json={**body, "payload": {"note": "something else"}}, headers=headers
    )
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    assert len(await ctx.events_of(pupil)) == 2


async def test_concurrent_retries_with_one_key_append_once(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5801)
    headers = {**ctx.senco, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *(
            ctx.client.post("/v1/commands", json=progress_body(pupil), headers=headers)
            for _ in range(8)
        )
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert len({tuple(e["event_id"] for e in r.json()["events"]) for r in responses}) == 1
    assert len(await ctx.events_of(pupil)) == 2


async def test_a_retry_after_the_answer_was_lost_finds_the_events_already_recorded(
    ctx: Ctx,
) -> None:
    """The append committed but the stored answer did not (a crash in between): the key's
    derived command id still makes the retry a no-op with the same events."""
    pupil = await ctx.pupil(5901)
    key = f"k-{uuid.uuid4()}"
    headers = {**ctx.senco, "Idempotency-Key": key}
    first = await ctx.client.post("/v1/commands", json=progress_body(pupil), headers=headers)
    async with ctx.pool.acquire() as conn:
        await conn.execute("DELETE FROM api_idempotency WHERE key = $1", key)
    retry = await ctx.client.post("/v1/commands", json=progress_body(pupil), headers=headers)
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert retry.json()["events"] == first.json()["events"]
    assert len(await ctx.events_of(pupil)) == 2


async def test_a_rejection_is_remembered_under_its_key(ctx: Ctx) -> None:
    pupil = await ctx.pupil(6001)
    headers = {**ctx.senco, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {
        "command": "end_sen_support",
        "pupil_id": str(pupil),
        "occurred_at": "2025-10-08",
        "payload": {"reason": "needs_met"},
    }
    first = await ctx.client.post("/v1/commands", json=body, headers=headers)
    again = await ctx.client.post("/v1/commands", json=body, headers=headers)
    assert first.status_code == again.status_code == 422, first.text
    assert first.json() == again.json()


async def test_the_correlation_id_follows_the_command(ctx: Ctx) -> None:
    pupil = await ctx.pupil(6101)
    correlation = str(uuid.uuid4())
    r = await ctx.client.post(
        "/v1/commands",
        json=progress_body(pupil),
        headers={**ctx.senco, "X-Correlation-ID": correlation},
    )
    assert r.headers["x-correlation-id"] == correlation
    assert str((await ctx.events_of(pupil))[-1].correlation_id) == correlation
    r = await ctx.client.get("/health/live", headers={"X-Correlation-ID": "mis-sync:42"})
    assert r.headers["x-correlation-id"] == "mis-sync:42"
    generated = (await ctx.client.get("/health/live")).headers["x-correlation-id"]
    assert uuid.UUID(generated)


async def test_read_your_writes_waits_for_the_projection(ctx: Ctx) -> None:
    await ctx.projector.catch_up()
    pupil = await ctx.pupil(6201)
    r = await ctx.client.post(
        "/v1/commands",
        json={
            "command": "start_sen_support",
            "pupil_id": str(pupil),
            "occurred_at": "2025-10-08",
            "payload": {
                "needs": [{"type": "SLCN", "rank": 1}],
                "parents_notified": True,
                "parents_notified_on": "2025-10-07",
            },
        },
        headers=ctx.senco,
    )
    position = r.json()["position"]
    url = f"/v1/schools/{ctx.school}/register?min_position={position}"

    # nothing projects: the bounded wait ends in a 503 that says so, not in stale rows
    behind = await ctx.client.get(url, headers=ctx.senco)
    assert behind.status_code == 503, behind.text
    assert behind.json()["error"] == "projection_behind" and behind.headers["retry-after"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        await ctx.projector.catch_up()

    catching_up = asyncio.create_task(later())
    seen = await ctx.client.get(url, headers=ctx.senco)
    await catching_up
    assert seen.status_code == 200, seen.text
    assert str(pupil) in {row["pupil_id"] for row in seen.json()["rows"]}

    beyond = await ctx.client.get(
        f"/v1/schools/{ctx.school}/register?min_position={position + 10**9}", headers=ctx.senco
    )
    assert beyond.status_code == 422 and beyond.json()["errors"][0]["rule"] == "beyond_head"


async def test_register_filters_and_pages(ctx: Ctx) -> None:
    pupils = []
    for n, need in enumerate(["SLCN", "SLCN", "SEMH"]):
        pupil = await ctx.pupil(6300 + n)
        r = await ctx.client.post(
            "/v1/commands",
            json={
                "command": "start_sen_support",
                "pupil_id": str(pupil),
                "occurred_at": "2025-10-08",
                "payload": {
                    "needs": [{"type": need, "rank": 1}],
                    "parents_notified": True,
                    "parents_notified_on": "2025-10-07",
                },
            },
            headers=ctx.senco,
        )
        assert r.status_code == 200, r.text
        pupils.append(pupil)
    await ctx.projector.catch_up()
    base = f"/v1/schools/{ctx.school}/register"
    slcn = (await ctx.client.get(f"{base}?need=SLCN&limit=1", headers=ctx.senco)).json()
    assert slcn["page"]["total"] >= 2 and len(slcn["rows"]) == 1
    assert slcn["page"]["next_offset"] == 1 and slcn["counts"]["by_primary_need"] == {
        "SLCN": slcn["page"]["total"]
    }
    rest = (await ctx.client.get(f"{base}?need=SLCN&limit=1&offset=1", headers=ctx.senco)).json()
    assert rest["rows"][0]["pupil_id"] != slcn["rows"][0]["pupil_id"]
    semh = (await ctx.client.get(f"{base}?need=SEMH&provision=K", headers=ctx.senco)).json()
    assert str(pupils[2]) in {r["pupil_id"] for r in semh["rows"]}
    none = (await ctx.client.get(f"{base}?provision=E&year_group=4", headers=ctx.senco)).json()
    assert none["rows"] == [] and none["counts"]["total"] == 0
    overdue = (await ctx.client.get(f"{base}?overdue=true", headers=ctx.senco)).json()
    assert all(r["overdue"] for r in overdue["rows"])
    bad = await ctx.client.get(f"{base}?provision=X", headers=ctx.senco)
    assert bad.status_code == 422


async def test_reads_of_personal_data_are_in_the_access_log(ctx: Ctx) -> None:
    pupil = await ctx.pupil(6401)
    teacher = await bearer(ctx.pool, "class_teacher", ctx.trust, ctx.school, user="teacher.log")
    await ctx.client.get(f"/v1/pupils/{pupil}", headers=teacher)
    await ctx.client.get(f"/v1/pupils/{pupil}/timeline", headers=teacher)
    auditor = await bearer(ctx.pool, "auditor", ctx.trust)
    log = (await ctx.client.get(f"/v1/access-log?pupil_id={pupil}", headers=auditor)).json()
    entries = [e for e in log["entries"] if e["user_id"] == "teacher.log"]
    assert [e["action"] for e in entries] == ["pupil_state", "pupil_timeline"]
    assert all(e["pupil_ids"] == [str(pupil)] and e["role"] == "class_teacher" for e in entries)
    assert all(e["school_urn"] == ctx.school for e in entries)
    # and the auditor's look at the log is itself logged
    again = (await ctx.client.get("/v1/access-log?limit=1000", headers=auditor)).json()
    assert any(e["action"] == "access_log" for e in again["entries"])
    # the log cannot be edited, even by the owner
    async with ctx.pool.acquire() as conn:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM access_log")


async def test_revoked_and_expired_tokens_stop_working(ctx: Ctx) -> None:
    from senflow.services.api.tokens import create_token, revoke_token

    issued = await create_token(ctx.pool, Role.SENIOR_LEADER, ctx.trust, ctx.school)
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await ctx.client.get("/v1/me", headers=headers)).status_code == 200
    assert await revoke_token(ctx.pool, issued.principal.token_id)
    assert (await ctx.client.get("/v1/me", headers=headers)).status_code == 401

    issued = await create_token(ctx.pool, Role.SENIOR_LEADER, ctx.trust, ctx.school)
    async with ctx.pool.acquire() as conn:
        await conn.execute(
            """UPDATE api_tokens SET created_at = now() - interval '2 days',
                                     expires_at = now() - interval '1 second'
                WHERE token_id = $1""",
            issued.principal.token_id,
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM api_tokens WHERE token_hash = sha256($1::text::bytea)",
            issued.token,
        )
    assert stored == 1  # only the hash is kept
    expired = {"Authorization": f"Bearer {issued.token}"}
    assert (await ctx.client.get("/v1/me", headers=expired)).status_code == 401


async def test_row_level_security_is_a_second_wall_between_trusts(ctx: Ctx) -> None:
    """Even code that forgot to check the scope sees nothing of another trust."""
    pupil = await ctx.pupil(6501)
    elsewhere = TrustPool(ctx.pool, new_trust())
    assert await EventStore(elsewhere).read_stream(pupil) == []
    async with elsewhere.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM events WHERE trust_id = $1", ctx.trust) == 0
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM vault_keys WHERE stream_id = $1", pupil) == 0
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT count(*) FROM api_tokens")
    own = TrustPool(ctx.pool, ctx.trust)
    assert len(await EventStore(own).read_stream(pupil)) == 1
    # a connection goes back to the pool as it came: no role, no trust left on it
    async with ctx.pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "postgres"
        assert await conn.fetchval("SELECT current_setting('senflow.trust_id', true)") in ("", None)
    # and writing into another trust is refused by the database itself
    body = register_body(
        uuid.uuid4(), 6502, tenant={"trust_id": ctx.trust, "school_urn": ctx.school}
    )
    from senflow.services.workflow.commands import parse_command

    command = parse_command({**body, "actor": {"user_id": "x", "role": "senco"}})
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await SenflowService(EventStore(elsewhere)).handle(command)
    assert await EventStore(ctx.pool).read_stream(command.pupil_id) == []


async def test_health_metrics_and_openapi(ctx: Ctx) -> None:
    assert (await ctx.client.get("/health/live")).json() == {"status": "ok"}
    assert (await ctx.client.get("/health/ready")).json() == {"status": "ready"}
    doc = (await ctx.client.get("/openapi.json")).json()
    assert "/v1/commands" in doc["paths"] and "RaiseConcern" in doc["components"]["schemas"]
    assert "actor" not in doc["components"]["schemas"]["RaiseConcern"].get("required", [])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    metrics = (await ctx.client.get("/metrics")).text
    assert "senflow_http_requests_total" in metrics and "senflow_commands_total" in metrics
    assert "/v1/pupils/{pupil_id}" in metrics  # the route template, never a pupil id


async def test_an_idempotency_key_never_replays_across_scope(ctx: Ctx) -> None:
    """The same user id at two schools: the other school's stored answer is not shown."""
    other_school = new_school()
    mine = await bearer(ctx.pool, "senco", ctx.trust, ctx.school, user="senco.same")
    theirs = await bearer(ctx.pool, "senco", ctx.trust, other_school, user="senco.same")
    pupil = uuid.uuid4()
    registered = await ctx.client.post(
        "/v1/commands",
        json=register_body(pupil, 5901, tenant={"trust_id": ctx.trust, "school_urn": other_school}),
        headers=theirs,
    )
    assert registered.status_code == 200, registered.text
    body = progress_body(pupil)
    first = await ctx.client.post(
        "/v1/commands", json=body, headers={**theirs, "Idempotency-Key": "k-scope"}
    )
    assert first.status_code == 200
    replay = await ctx.client.post(
        "/v1/commands", json=body, headers={**mine, "Idempotency-Key": "k-scope"}
    )
    assert replay.status_code == 404 and "Idempotent-Replayed" not in replay.headers


async def test_hostile_input_is_refused_not_a_server_error(ctx: Ctx) -> None:
    pupil = await ctx.pupil(5902)
    nul = progress_body(pupil)
    nul["payload"] = {**nul["payload"], "note": "ok\x00"}
    for body in (nul, "[" * 100000):
        r = await ctx.client.post(
            "/v1/commands",
            content=body if isinstance(body, str) else None,
            json=None if isinstance(body, str) else body,
            headers={**ctx.senco, "Idempotency-Key": f"hostile-{uuid.uuid4()}"},
        )
        assert r.status_code == 422, r.text
    auditor = await bearer(ctx.pool, "auditor", ctx.trust)
    for query in ("since=0001-01-01T00:00:00%2B01:00", "user_id=a%00b"):
        r = await ctx.client.get(f"/v1/access-log?{query}", headers=auditor)
        assert r.status_code == 422, r.text
    r = await ctx.client.get(f"/v1/schools/{ctx.school}/register?junk=%00", headers=ctx.senco)
    assert r.status_code == 200, r.text
