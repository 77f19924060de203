"""The `senflow` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from pydantic import ValidationError

from senflow.events.envelope import Actor, Role
from senflow.services import bootstrap
from senflow.services.settings import Settings, from_environment
from senflow.services.store.eventstore import EventStore, StoreError
from senflow.services.workflow.commands import error_fields, parse_command

app = typer.Typer(help="senflow: SEN support as an event-sourced workflow", no_args_is_help=True)
db_app = typer.Typer(help="Database administration", no_args_is_help=True)
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _run(fn: Callable[[Settings], Awaitable[T]]) -> T:
    settings = from_environment()
    bootstrap.configure_logging(settings)
    return asyncio.run(fn(settings))


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return error_fields(exc.errors(include_url=False, include_input=False))


@db_app.command("migrate")
def db_migrate() -> None:
    """Create the database if needed and apply pending migrations (safe to repeat)."""

    async def go(settings: Settings) -> None:
        from senflow.services.store.migrate import migrate

        applied = await migrate(settings.database_url)
        _print({"applied": [f"{m.version:04d}_{m.name}" for m in applied]})

    _run(go)


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="JSON lines of commands; - for standard input")],
) -> None:
    """Run commands (one JSON object a line); print one JSON result a line.

    Exits 1 if any command was invalid or rejected (the others still run).
    """

    lines = sys.stdin.readlines() if file == "-" else Path(file).read_text("utf-8").splitlines()

    async def go(settings: Settings) -> int:
        failures = 0
        async with bootstrap.service(settings) as svc:
            for n, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    command = parse_command(line)
                except ValidationError as exc:
                    failures += 1
                    _print(
                        {
                            "ok": False,
                            "line": n,
                            "error": "invalid",
                            "errors": validation_errors(exc),
                        }
                    )
                    continue
                try:
                    result = await svc.handle(command)
                except StoreError as exc:
                    failures += 1
                    _print(
                        {
                            "ok": False,
                            "line": n,
                            "error": type(exc).__name__,
                            "message": str(exc),
                            **_conflict(exc),
                        }
                    )
                    continue
                failures += 0 if result.accepted else 1
                _print({"line": n, **result.as_json()})
        return failures

    raise typer.Exit(1 if _run(go) else 0)


def _conflict(exc: StoreError) -> dict[str, Any]:
    current = getattr(exc, "current", None)
    return {"current_version": current} if current is not None else {}


@app.command("import")
def import_cmd(
    file: Annotated[str, typer.Argument(help="JSON lines of commands (new pupils); - for stdin")],
) -> None:
    """Bulk-import new pupils' histories (COPY): the same store the command path gives."""
    from senflow.services.importer import bulk_import

    lines = sys.stdin.readlines() if file == "-" else Path(file).read_text("utf-8").splitlines()
    try:
        commands = [parse_command(line) for line in lines if line.strip()]
    except ValidationError as exc:
        _print({"ok": False, "error": "invalid", "errors": validation_errors(exc)})
        raise typer.Exit(1) from exc

    async def go(settings: Settings) -> Any:
        async with bootstrap.service(settings) as svc:
            return await bulk_import(svc, commands)

    report = _run(go)
    _print(vars(report))
    raise typer.Exit(1 if report.refused else 0)


@app.command()
def history(
    pupil: UUID,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD: as it stood at the end of that day")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """A pupil's state and timeline, now or as it stood on a date."""

    async def go(settings: Settings) -> dict[str, Any]:
        async with bootstrap.service(settings) as svc:
            day = date.fromisoformat(as_of) if as_of else None
            return (await svc.history(pupil, day)).as_json()

    try:
        doc = _run(go)
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if as_json:
        _print(doc)
        return
    s = doc["state"]
    typer.echo(f"pupil {doc['pupil_id']} as of {doc['as_of'] or 'now'}")
    typer.echo(
        f"  provision {s['provision']}  needs "
        f"{', '.join(n['type'] for n in s['needs']) or '-'}  "
        f"next review {s['next_review_due'] or '-'}  "
        f"EHC annual review due {s['ehc_next_review_due'] or '-'}"
    )
    for e in doc["timeline"]:
        typer.echo(
            f"  v{e['version']:<3} {e['occurred_at'][:10]}  {e['event_type']:<32} "
            f"{e['actor']['role']}:{e['actor']['user_id']}"
        )


@app.command()
def verify(
    pupil: Annotated[UUID | None, typer.Option("--pupil", help="Only this pupil")] = None,
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
) -> None:
    """Check the hash chains, with a summary per school. Exit 0 if every chain holds, 1 naming
    the first break, 2 if the pupil, school or trust named has no events."""
    from senflow.services.cli_auditing import verify_report

    verify_report(pupil, trust, school)


@app.command()
def forget(
    pupil: UUID,
    reason: Annotated[str, typer.Option("--reason", help="Why (name nobody: kept in clear)")],
    code: Annotated[str, typer.Option("--code")] = "erasure_request",
    user: Annotated[str, typer.Option("--user", help="Who asks (user id)")] = "dpo",
) -> None:
    """Erase a pupil's personal data: destroy their vault key and record it."""

    async def go(settings: Settings) -> Any:
        async with bootstrap.service(settings) as svc:
            actor = Actor(user_id=user, role=Role.SENCO if user != "senflow" else Role.SYSTEM)
            return await svc.forget(pupil, reason, actor, code)

    try:
        result = _run(go)
    except (LookupError, ValueError, ValidationError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    _print(
        {
            "ok": True,
            "pupil_id": str(pupil),
            "version": result.last_version,
            "position": result.last_position,
        }
    )


@app.command()
def serve(
    service: Annotated[
        str,
        typer.Argument(
            help="relay | public-feed | scheduler | api | register | provision-map | audit | ..."
        ),
    ],
    partitions: Annotated[
        str | None, typer.Option("--partitions", help="Only these partitions, e.g. 0,1")
    ] = None,
) -> None:
    """Run one service until SIGTERM/SIGINT."""
    from senflow.services import serve as services

    if service == "relay":
        _run(services.serve_relay)
        return
    if service == "public-feed":
        _run(services.serve_public_feed)
        return
    if service == "scheduler":
        _run(services.serve_scheduler)
        return
    if service == "api":
        from senflow.services.api.server import serve_api

        _run(serve_api)
        return
    chosen = [int(p) for p in partitions.split(",")] if partitions else None
    _check_projection(service)
    _run(lambda settings: services.serve_projection(settings, service, chosen))


def _check_projection(name: str) -> None:
    from senflow.projections.catalogue import PROJECTIONS

    if name not in PROJECTIONS:
        typer.echo(f"unknown projection {name!r}; one of {', '.join(PROJECTIONS)}", err=True)
        raise typer.Exit(2)


@app.command()
def supervise(
    api: Annotated[bool, typer.Option("--api/--no-api", help="Also run the HTTP API")] = True,
    logs: Annotated[Path, typer.Option("--logs", help="Folder for each service's log")] = Path(
        ".senflow/logs"
    ),
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="First Prometheus port (one each)")
    ] = None,
) -> None:
    """Run every service (relay, scheduler, projections, API) as children, restarting them."""
    from senflow.services.supervisor import CORE, Supervisor

    services = [*CORE, "api"] if api else list(CORE)
    _run(lambda settings: Supervisor(services, logs, metrics_port).run())


@app.command()
def rebuild(
    projection: Annotated[str, typer.Argument(help="register | provision-map | audit")],
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes folding the log (default: one per CPU)"),
    ] = None,
) -> None:
    """Rebuild a projection from the store into fresh tables and swap them in atomically."""
    _check_projection(projection)

    async def go(settings: Settings) -> Any:
        from senflow.projections.catalogue import PROJECTIONS
        from senflow.projections.rebuild import rebuild as run_rebuild

        async with bootstrap.pool(settings) as pool:
            return await run_rebuild(
                pool, EventStore(pool), PROJECTIONS[projection], workers=workers
            )

    result = _run(go)
    _print({"projection": projection, **vars(result)})


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """One screen: the store, the relay, each projection's lag, dead letters, the API."""

    async def go(settings: Settings) -> Any:
        from senflow.services.serve import topology_from
        from senflow.services.status import status as run_status

        async with bootstrap.pool(settings) as pool:
            return await run_status(pool, settings.amqp_url, topology_from(settings))

    report = _run(go)
    if as_json:
        _print(report)
        return
    from senflow.services.status import render

    typer.echo(render(report))


scheduler_app = typer.Typer(help="Dated notices: reviews due and overdue, and more")
app.add_typer(scheduler_app, name="scheduler")


@scheduler_app.command("tick")
def scheduler_tick(
    now: Annotated[
        str | None, typer.Option("--now", help="YYYY-MM-DD: run as of this day (not future)")
    ] = None,
    trust: Annotated[str | None, typer.Option("--trust", help="Only this trust")] = None,
) -> None:
    """Record every notice due up to a day (default today), once, and erase expired files."""

    async def go(settings: Settings) -> Any:
        from senflow.services.scheduler import Scheduler

        async with bootstrap.service(settings) as svc:
            day = date.fromisoformat(now) if now else None
            return await Scheduler(svc.store, svc).tick(day, trust)

    try:
        report = _run(go)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    _print(vars(report))


dlq_app = typer.Typer(help="Dead-letter queues of the consumer services", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _service_name(projection: str) -> str:
    from senflow.projections.catalogue import PROJECTIONS

    _check_projection(projection)
    return PROJECTIONS[projection].name


@dlq_app.command("list")
def dlq_list(
    projection: Annotated[str, typer.Argument(help="register | provision-map | audit")],
) -> None:
    """Show the dead letters of a projection (nothing is removed)."""
    name = _service_name(projection)

    async def go(settings: Settings) -> Any:
        from senflow.services.bus.deadletters import list_dead_letters
        from senflow.services.serve import topology_from

        return await list_dead_letters(settings.amqp_url, topology_from(settings), name)

    for letter in _run(go):
        _print(letter.as_json())


@dlq_app.command("replay")
def dlq_replay(
    projection: Annotated[str, typer.Argument(help="register | provision-map | audit")],
    message_id: Annotated[str | None, typer.Option("--id", help="Only this message")] = None,
) -> None:
    """Send dead letters back to the projection's partitions."""
    name = _service_name(projection)

    async def go(settings: Settings) -> int:
        from senflow.services.bus.deadletters import replay_dead_letters
        from senflow.services.serve import topology_from

        return await replay_dead_letters(
            settings.amqp_url, topology_from(settings), name, message_id
        )

    _print({"replayed": _run(go)})


def _today() -> date:
    from datetime import UTC, datetime

    from senflow.services.workflow.calendar import school_day

    return school_day(datetime.now(UTC))


@app.command("register")
def register_cmd(
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (census day)")] = None,
    counts: Annotated[bool, typer.Option("--counts", help="Only the totals")] = False,
) -> None:
    """The SEN register (pupils on K or E) of a school or a trust, now or as of a date."""

    async def go(settings: Settings) -> Any:
        from senflow.projections.queries import register_view

        async with bootstrap.pool(settings) as pool:
            day = date.fromisoformat(as_of) if as_of else None
            return await register_view(pool, trust, school, day, _today())

    view = _run(go)
    if counts:
        _print(view["counts"])
        return
    for row in view["rows"]:
        _print(row)
    _print({"counts": view["counts"]})


@app.command("provision-map")
def provision_map_cmd(
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    by: Annotated[str, typer.Option("--by", help="school | year_group | need")] = "school",
    impact: Annotated[bool, typer.Option("--impact", help="Impact per intervention")] = False,
    rows: Annotated[bool, typer.Option("--rows", help="Every intervention")] = False,
) -> None:
    """The provision map: interventions, staff hours, costs and impact."""

    async def go(settings: Settings) -> Any:
        from senflow.projections.queries import provision_view

        async with bootstrap.pool(settings) as pool:
            return await provision_view(pool, trust, school, by)

    view = _run(go)
    for item in view["rows"] if rows else view["impact"] if impact else view["totals"]:
        _print(item)


@app.command("compliance")
def compliance_cmd(
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    on: Annotated[str | None, typer.Option("--date", help="Judge as of YYYY-MM-DD")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Only the totals")] = False,
) -> None:
    """Where the record falls short of the Code of Practice, paragraph by paragraph."""

    async def go(settings: Settings) -> Any:
        from senflow.projections.queries import compliance_view

        async with bootstrap.pool(settings) as pool:
            day = date.fromisoformat(on) if on else _today()
            return await compliance_view(pool, trust, school, day)

    view = _run(go)
    if not summary:
        for item in view["items"]:
            _print(item)
    _print({"summary": view["summary"]})


@app.command("audit")
def audit_cmd(pupil: UUID) -> None:
    """A pupil's audit trail (who recorded what, when) and their hash-chain result."""

    async def go(settings: Settings) -> Any:
        from senflow.projections.queries import audit_doc
        from senflow.services.store.verify import verify as run_verify

        async with bootstrap.pool(settings) as pool:
            doc = await audit_doc(pool, pupil)
            report = await run_verify(pool, pupil)
        return doc, report

    doc, report = _run(go)
    if doc is None:
        typer.echo(f"no audit trail for {pupil} (yet)", err=True)
        raise typer.Exit(2)
    _print({**doc, "chain": {"ok": report.ok, "breaks": [b.describe() for b in report.breaks]}})


@app.command()
def demo(
    schools: Annotated[int, typer.Option("--schools")] = 3,
    pupils_per_school: Annotated[int, typer.Option("--pupils-per-school")] = 200,
    years: Annotated[int, typer.Option("--years", help="Academic years of history")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    trust: Annotated[str, typer.Option("--trust")] = "trust-demo",
) -> None:
    """Record a realistic demo trust through the real command path (same seed, same trust)."""
    from senflow.services.demo import DemoSpec, generate

    spec = DemoSpec(schools, pupils_per_school, years, seed, trust)

    async def go(settings: Settings) -> Any:
        async with bootstrap.service(settings) as svc:
            return await generate(
                svc,
                spec,
                _today(),
                progress=lambda r: typer.echo(f"  {r.pupils} pupils, {r.events} events", err=True),
            )

    _print(vars(_run(go)))


@app.command()
def asyncapi(
    out: Annotated[Path, typer.Option("--out", help="Where to write it")] = Path(
        "docs/asyncapi.yaml"
    ),
) -> None:
    """Write the AsyncAPI document of the bus (exchange, routing keys, payload schemas)."""
    from senflow.services.bus.contract import asyncapi_yaml
    from senflow.services.bus.topology import Topology

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(asyncapi_yaml(Topology()))
    _print({"written": str(out)})


@app.command()
def definitions(
    out: Annotated[Path, typer.Option("--out")] = Path("deploy/rabbitmq/definitions.json"),
) -> None:
    """Write the RabbitMQ topology as a definitions file (for rabbitmqctl import_definitions)."""
    from senflow.services.bus.topology import Topology
    from senflow.services.bus.topology import definitions as topology_definitions

    settings = from_environment()
    topology = Topology(prefix=settings.bus_prefix, partitions=settings.partitions)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(topology_definitions(topology), indent=2) + "\n")
    _print({"written": str(out)})


@app.command()
def schemas(
    out: Annotated[Path, typer.Option("--out", help="Folder for the JSON Schemas")] = Path(
        "docs/events"
    ),
) -> None:
    """Write a JSON Schema for every event type, and the catalogue in Markdown."""
    from senflow.events.schemas import write_catalogue

    written = write_catalogue(out)
    _print({"written": len(written), "folder": str(out)})


from senflow.services.cli_api import access_log, token_app  # noqa: E402  (HTTP API commands)

app.add_typer(token_app, name="token")
app.command("access-log")(access_log)


from senflow.services.cli_auditing import register_commands  # noqa: E402  (auditors' commands)

register_commands(app)  # replay, evidence, export census|ctf|sar|register-csv|provision-csv


if __name__ == "__main__":
    app()
