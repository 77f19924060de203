"""CLI for the HTTP API: `senflow token create|revoke|list` and `senflow access-log`.

Wired into the `senflow` command by two lines at the end of services/cli.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError

from senflow.events.envelope import Role
from senflow.services import bootstrap
from senflow.services.settings import from_environment

token_app = typer.Typer(help="Bearer tokens of the HTTP API", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'30m', '8h', '7d', '2w' -> a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter("a duration like 30m, 8h, 7d or 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def _run(fn: Any) -> Any:
    settings = from_environment()
    bootstrap.configure_logging(settings)

    async def go() -> Any:
        async with bootstrap.pool(settings) as pool:
            return await fn(pool)

    return asyncio.run(go())


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option("--role", help="The token's role")],
    trust: Annotated[str, typer.Option("--trust", help="Trust id")],
    school: Annotated[
        str | None, typer.Option("--school", help="School URN (omit for trust-wide)")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="User id recorded as the actor (no names)")
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="e.g. 8h, 7d (default 90d; auditors must give it)"),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="What the token is for")] = None,
) -> None:
    """Issue a token. The secret is printed once and stored only as its SHA-256."""
    from senflow.services.api.tokens import create_token

    lifetime = parse_duration(expires_in) if expires_in else None
    try:
        issued = _run(lambda pool: create_token(pool, role, trust, school, user, lifetime, note))
    except (ValueError, ValidationError) as exc:
        typer.echo(f"cannot issue the token: {exc}", err=True)
        raise typer.Exit(2) from exc
    p = issued.principal
    _print(
        {
            "token": issued.token,
            "token_id": str(p.token_id),
            "user_id": p.user_id,
            "role": p.role.value,
            "trust_id": p.scope.trust_id,
            "school_urn": p.scope.school_urn,
            "expires_at": p.expires_at.isoformat(),
        }
    )


@token_app.command("revoke")
def token_revoke(token_id: UUID) -> None:
    """Revoke a token by id (from `token create` or `token list`); it stops working at once."""
    from senflow.services.api.tokens import revoke_token

    if not _run(lambda pool: revoke_token(pool, token_id)):
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(2)
    _print({"revoked": str(token_id)})


@token_app.command("list")
def token_list(
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked and expired")] = False,
) -> None:
    """Tokens, one JSON line each (never the secret)."""
    from senflow.services.api.tokens import list_tokens

    for row in _run(lambda pool: list_tokens(pool, trust, all_)):
        _print(row)


def access_log(
    trust: Annotated[str | None, typer.Option("--trust", help="Only this trust")] = None,
    school: Annotated[str | None, typer.Option("--school", help="Only this school")] = None,
    pupil: Annotated[
        UUID | None, typer.Option("--pupil", help="Reads that showed this pupil")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this reader")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date or time")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 1000,
) -> None:
    """Who read which pupils' personal data through the API, and when (for the DPO)."""
    from senflow.services.api.access_log import entries

    def moment(text: str | None) -> datetime | None:
        if text is None:
            return None
        value = datetime.fromisoformat(text)
        return value if value.tzinfo else value.astimezone()

    rows = _run(
        lambda pool: entries(
            pool, trust, school, pupil, user, moment(since), moment(until), 0, limit
        )
    )
    for row in rows:
        _print(row)
