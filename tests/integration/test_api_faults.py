"""The database goes away: 503 with Retry-After, readiness fails, and nothing half-written.

The app reaches PostgreSQL through a TCP proxy in the test, which can refuse new
connections (an outage) or cut the open ones mid-query (a network failure), so the
real server, shared by everyone, is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from senflow.services.store.eventstore import EventStore
from senflow.services.store.verify import verify
from tests.integration.api_support import (
    bearer,
    client_for,
    new_school,
    new_trust,
    progress_body,
    register_body,
    running_app,
)

pytestmark = pytest.mark.integration


class Proxy:
    """127.0.0.1:<port> -> the database server; ``down()``, ``up()``, ``cut()``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.cut()

    def cut(self) -> None:
        """Drop every open connection at once, as a failing network does."""
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.links |= {client_w, server_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


@pytest_asyncio.fixture(loop_scope="session")
async def proxied(migrated: str) -> AsyncIterator[tuple[Proxy, str]]:
    parts = urlsplit(migrated)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.up()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await proxy.down()


async def test_an_outage_is_503_with_retry_after_and_a_retry_records_once(
    proxied: tuple[Proxy, str], pool: asyncpg.Pool
) -> None:
    proxy, dsn = proxied
    trust, school = new_trust(), new_school()
    senco = await bearer(pool, "senco", trust, school)
    async with running_app(dsn, api_retry_after=7) as app, client_for(app) as client:
        pupil = uuid.uuid4()
        r = await client.post("/v1/commands", json=register_body(pupil, 8101), headers=senco)
        assert r.status_code == 200, r.text

        await proxy.down()
        keyed = {**senco, "Idempotency-Key": f"k-{uuid.uuid4()}"}
        body = progress_body(pupil)
        for method, path, json in (
            ("POST", "/v1/commands", body),
            ("GET", f"/v1/pupils/{pupil}", None),
            ("GET", f"/v1/schools/{school}/register", None),
            ("GET", "/v1/me", None),
        ):
            r = await client.request(method, path, json=json, headers=keyed)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "7"
            assert r.json()["error"] == "database_unavailable"
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "7"
        assert (await client.get("/health/live")).status_code == 200
        assert len(await EventStore(pool).read_stream(pupil)) == 1  # nothing half-written

        await proxy.up()
        assert (await client.get("/health/ready")).status_code == 200
        first = await client.post("/v1/commands", json=body, headers=keyed)
        again = await client.post("/v1/commands", json=body, headers=keyed)
        assert first.status_code == again.status_code == 200, first.text
        assert first.json() == again.json()
        assert len(await EventStore(pool).read_stream(pupil)) == 2


async def test_connections_cut_mid_command_leave_whole_commands_or_none(
    proxied: tuple[Proxy, str], pool: asyncpg.Pool
) -> None:
    proxy, dsn = proxied
    trust, school = new_trust(), new_school()
    senco = await bearer(pool, "senco", trust, school)
    rng = random.Random(20261122)
    async with running_app(dsn) as app, client_for(app) as client:
        pupils = []
        for n in range(3):
            pupil = uuid.uuid4()
            r = await client.post(
                "/v1/commands", json=register_body(pupil, 8200 + n), headers=senco
            )
            assert r.status_code == 200, r.text
            pupils.append(pupil)
        lanes = {
            p: [
                (f"k-{uuid.uuid4()}", progress_body(p, command_id=str(uuid.uuid4())))
                for _ in range(12)
            ]
            for p in pupils
        }
        outcomes: dict[str, int] = {}

        async def lane(commands: list) -> None:
            for key, body in commands:
                r = await client.post(
                    "/v1/commands", json=body, headers={**senco, "Idempotency-Key": key}
                )
                outcomes[key] = r.status_code

        stop = asyncio.Event()

        async def chaos() -> None:
            while not stop.is_set():
                await asyncio.sleep(rng.uniform(0.005, 0.04))
                proxy.cut()

        breaker = asyncio.create_task(chaos())
        await asyncio.gather(*(lane(c) for c in lanes.values()))
        stop.set()
        await breaker
        assert set(outcomes.values()) <= {200, 503}, outcomes
        assert 503 in outcomes.values(), "the cuts never hit a command: the test proved nothing"

        # retry what failed, as a client would, with the same key: a connection the last cut
        # killed may still sit in the pool and fail once more, so retry on 503
        for commands in lanes.values():
            for key, body in commands:
                status = outcomes[key]
                for _ in range(5):
                    if status == 200:
                        break
                    r = await client.post(
                        "/v1/commands", json=body, headers={**senco, "Idempotency-Key": key}
                    )
                    status = r.status_code
                    assert status in (200, 503), r.text
                assert status == 200, key

    store = EventStore(pool)
    for pupil, commands in lanes.items():
        for _, body in commands:
            assert len(await store.caused_by(uuid.UUID(body["command_id"]))) == 1
        events = await store.read_stream(pupil)
        assert [e.version for e in events] == list(range(1, 14))
        assert (await verify(pool, pupil)).ok


async def test_the_api_starts_while_the_database_is_down_and_says_it_is_not_ready(
    proxied: tuple[Proxy, str],
) -> None:
    proxy, dsn = proxied
    await proxy.down()
    async with running_app(dsn) as app, client_for(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503
        await proxy.up()
        assert (await client.get("/health/ready")).status_code == 200
