"""Auditors' commands: ``senflow replay``, ``senflow evidence``, ``senflow export ...``, verify.

Wired into the main CLI by :func:`register_commands` (see the end of
``services/cli.py``). The work is done by ``senflow.services.auditing``: these
functions parse options, open a pool, call it, write files and print one JSON
object (or lines for a person). Output that holds personal data goes to files
created owner-only; stdout carries ids, counts and file names.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer

from senflow.services import bootstrap
from senflow.services.settings import Settings, from_environment

T = TypeVar("T")

export_app = typer.Typer(
    help="Statutory exports: census, CTF, subject access, register and provision map CSVs",
    no_args_is_help=True,
)


def register_commands(app: typer.Typer) -> None:
    """Add ``replay``, ``evidence`` and ``export`` to the main ``senflow`` command."""
    app.command("replay")(replay_cmd)
    app.command("evidence")(evidence_cmd)
    app.add_typer(export_app, name="export")


def _run(fn: Callable[[Settings], Awaitable[T]]) -> T:
    settings = from_environment()
    bootstrap.configure_logging(settings)
    return asyncio.run(fn(settings))


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from exc


def _scope_name(trust: str | None, school: str | None) -> str:
    return f"school-{school}" if school else f"trust-{trust}"


def _need_scope(trust: str | None, school: str | None) -> None:
    if not trust and not school:
        raise _fail("name a school (--school URN) or a trust (--trust ID)")


# --- replay -------------------------------------------------------------------------------------


def replay_cmd(
    pupil: UUID,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD: what had happened by that day")
    ] = None,
    as_known_at: Annotated[
        str | None,
        typer.Option(
            "--as-known-at",
            help="ISO timestamp (or date: end of that day): what senflow had recorded by then",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Replay a pupil's history: state, every assess-plan-do-review cycle and the timeline."""
    from senflow.services.auditing.gather import replay_pupil
    from senflow.services.auditing.replay import describe
    from senflow.services.auditing.timeline import parse_moment
    from senflow.services.store.eventstore import EventStore

    day = _day(as_of, "--as-of")
    try:
        moment = parse_moment(as_known_at) if as_known_at else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-known-at") from exc

    async def go(settings: Settings) -> dict[str, Any]:
        async with bootstrap.pool(settings) as pool:
            return await replay_pupil(EventStore(pool), pupil, day, moment)

    try:
        doc = _run(go)
    except LookupError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        _print(doc)
        return
    for line in describe(doc):
        typer.echo(line)


# --- evidence -----------------------------------------------------------------------------------


def evidence_cmd(
    pupils: Annotated[list[UUID] | None, typer.Argument(help="Pupil ids")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the packs into")] = Path(
        "evidence"
    ),
    school: Annotated[
        str | None, typer.Option("--school", help="School URN (for --sample)")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option("--sample", help="Pick N pupils of the school's register (one with an EHCP)"),
    ] = None,
    seed: Annotated[
        str, typer.Option("--seed", help="Seed for the sample (same seed, same pupils)")
    ] = "0",
    on: Annotated[
        str | None, typer.Option("--date", help="Judge compliance on YYYY-MM-DD (default today)")
    ] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also PDF, where it renders")] = True,
) -> None:
    """Evidence packs (HTML, JSON and PDF where it renders) per pupil, or an inspection sample."""
    from senflow.projections import provision_map, register
    from senflow.services.auditing import evidence, gather, output
    from senflow.services.auditing import sample as sampling
    from senflow.services.auditing.html import index_html
    from senflow.services.auditing.pdf import NO_RENDERER, find_renderer
    from senflow.services.store.eventstore import EventStore

    if not pupils and not sample:
        raise _fail("name pupils, or ask for a sample: --school URN --sample N")
    if sample and not school:
        raise _fail("a sample needs the school: --school URN")
    day = _day(on, "--date") or gather.today()
    generated_at = datetime.now(UTC)

    async def go(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        async with bootstrap.pool(settings) as pool:
            store = EventStore(pool)
            chosen = list(pupils or [])
            index: dict[str, Any] | None = None
            if sample:
                docs = await gather.scope_docs(store, pool, None, school)
                rows = [
                    r
                    for r in register.register_rows(docs["register"], None, day)
                    if r["school_urn"] == school
                ]
                picked = sampling.choose(rows, sample, seed) if rows else []
                chosen += [UUID(r["pupil_id"]) for r in picked if UUID(r["pupil_id"]) not in chosen]
                need_mix: dict[str, dict[str, int]] = defaultdict(lambda: {"K": 0, "E": 0})
                for r in rows:
                    need_mix[r["primary_need"] or "none"][r["provision"]] += 1
                prov = [
                    p
                    for p in provision_map.provision_rows(docs["provision_map"])
                    if p["school_urn"] == school
                ]
                index = {
                    "kind": "senflow.inspection_sample",
                    "school_urn": school,
                    "judged_on": day.isoformat(),
                    "seed": seed,
                    "candidates": len(rows),
                    "with_ehc_plan": sum(1 for r in rows if r["provision"] == "E"),
                    "sample_size": len(picked),
                    "generated_at": generated_at.isoformat(),
                    "school": {
                        "need_mix": dict(need_mix),
                        "impact": provision_map.intervention_impact(prov),
                    },
                }
            packs = [await gather.evidence_pack(pool, p, day, generated_at) for p in chosen]
            return packs, index

    try:
        packs, index = _run(go)
    except LookupError as exc:
        raise _fail(str(exc)) from exc
    renderer = find_renderer() if pdf else None
    pdf_note = renderer.name if renderer else (NO_RENDERER if pdf else "not asked for")
    written = []
    for pack in packs:
        files = output.write_pack(pack, out, renderer)
        written.append(
            {
                "pupil_id": pack["pupil"]["pupil_id"],
                "files": files,
                "chain_ok": pack["summary"]["chain_ok"],
                "findings": pack["summary"]["findings"],
            }
        )
    result: dict[str, Any] = {"out": str(out), "pdf": pdf_note, "packs": written}
    if index is not None:
        index["pdf"] = pdf_note
        index["pupils"] = [
            evidence.index_entry(pack, w["files"]) for pack, w in zip(packs, written, strict=True)
        ]
        output.write_json(out / "index.json", index)
        page = index_html(index)
        output.write_text(out / "index.html", page)
        if renderer is not None:
            output.write_pdf(renderer, page, out / "index.pdf")
        result["index"] = "index.html"
        result["sample"] = {
            k: index[k] for k in ("school_urn", "seed", "candidates", "sample_size")
        }
    _print(result)


# --- exports --------------------------------------------------------------------------------------


@export_app.command("census")
def export_census(
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    day: Annotated[str | None, typer.Option("--day", help="The census day, YYYY-MM-DD")] = None,
    term: Annotated[str | None, typer.Option("--term", help="autumn | spring | summer")] = None,
    year: Annotated[int | None, typer.Option("--year", help="Calendar year of that census")] = None,
    any_day: Annotated[
        bool, typer.Option("--any-day", help="Allow a --day that is not a census day")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSV and JSON")] = Path("."),
) -> None:
    """The School Census SEN extract (provision and ranked needs), validated; exit 1 on a breach.

    Without --day or --term, the latest census day up to today.
    """
    from senflow.projections import register
    from senflow.services.auditing import census, gather, output, tables
    from senflow.services.store.eventstore import EventStore

    _need_scope(trust, school)
    if term is not None or year is not None:
        if term is None or year is None:
            raise _fail("--term and --year go together")
        try:
            when = census.census_day(term, year)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    elif day is not None:
        when = _day(day, "--day")  # type: ignore[assignment]
        assert when is not None
        if census.census_term(when) is None and not any_day:
            days = ", ".join(census.census_day(t, when.year).isoformat() for t in census.TERMS)
            raise _fail(f"{when} is not a census day (in {when.year}: {days}); or --any-day")
    else:
        when = census.latest_census_day(gather.today())

    async def go(settings: Settings) -> list[dict[str, Any]]:
        async with bootstrap.pool(settings) as pool:
            docs = await gather.scope_docs(
                EventStore(pool), pool, trust, school, (register.PROJECTION,)
            )
        return docs["register"]

    rows = census.census_rows(_run(go), when, school)
    breaches = census.validate(rows)
    stem = f"census-{_scope_name(trust, school)}-{when.isoformat()}"
    doc = {
        "kind": "senflow.census_sen_extract",
        "census_day": when.isoformat(),
        "term": census.census_term(when),
        "scope": {"trust": trust, "school": school},
        "counts": census.counts(rows),
        "valid": not breaches,
        "breaches": breaches,
        "rules": census.RULES,
        "rows": rows,
    }
    output.write_json(out / f"{stem}.json", doc)
    output.write_text(out / f"{stem}.csv", tables.to_csv(census.csv_rows(rows)))
    _print(
        {
            "census_day": doc["census_day"],
            "term": doc["term"],
            "counts": doc["counts"],
            "valid": doc["valid"],
            "breaches": len(breaches),
            "by_rule": dict(sorted(Counter(b["rule"] for b in breaches).items())),
            "files": [f"{stem}.csv", f"{stem}.json"],
        }
    )
    if breaches:
        for b in breaches[:20]:
            typer.echo(f"BREACH {b['rule']}: pupil {b['pupil_id']}: {b['message']}", err=True)
        raise typer.Exit(1)


@export_app.command("ctf")
def export_ctf(
    pupil: UUID,
    out: Annotated[Path, typer.Option("--out", help="File (.xml) or folder to write into")],
    dest_urn: Annotated[
        str | None, typer.Option("--dest-urn", help="Receiving school (default: as recorded)")
    ] = None,
    source_laestab: Annotated[
        str | None, typer.Option("--source-laestab", help="LA + establishment number, 7 digits")
    ] = None,
    dest_laestab: Annotated[str | None, typer.Option("--dest-laestab")] = None,
) -> None:
    """The SEN part of a Common Transfer File for a pupil who is leaving (XML)."""
    from senflow.events import catalogue as ev
    from senflow.events.personal import Redacted
    from senflow.projections import register
    from senflow.projections.base import fold
    from senflow.services.auditing import ctf, gather, output
    from senflow.services.auditing.timeline import effective_events, personal, select
    from senflow.services.store.eventstore import EventStore

    for value, name in ((source_laestab, "--source-laestab"), (dest_laestab, "--dest-laestab")):
        if value is not None and not (len(value) == 7 and value.isdigit()):
            raise typer.BadParameter("a LAESTAB is 7 digits", param_hint=name)

    async def go(settings: Settings) -> list[Any]:
        async with bootstrap.pool(settings) as pool:
            return await gather.pupil_events(EventStore(pool), pupil)

    try:
        events = _run(go)
    except LookupError as exc:
        raise _fail(str(exc)) from exc
    reg = fold(register.PROJECTION, events)
    assert reg is not None
    effective = effective_events(select(events))
    registered = next((e.data for e in effective if isinstance(e.data, ev.PupilRegistered)), None)
    recorded_dest = next(
        (
            e.data.destination_urn if isinstance(e.data, ev.PupilLeft) else e.data.recipient_urn
            for e in reversed(effective)
            if isinstance(e.data, ev.PupilLeft | ev.TransitionInformationShared)
            and (getattr(e.data, "destination_urn", None) or getattr(e.data, "recipient_urn", None))
        ),
        None,
    )

    def known(value: Any) -> Any:
        """A personal value, or None once erased (a CTF carries no redaction markers)."""
        return None if isinstance(value, Redacted) else personal(value)

    details = {
        "upn": reg["upn"],
        "surname": known(registered.surname) if registered else None,
        "forename": known(registered.forename) if registered else None,
        "dob": known(registered.date_of_birth) if registered else None,
    }
    history = ctf.sen_history(reg)
    xml = ctf.build(
        details,
        history,
        generated_at=datetime.now(UTC),
        source_urn=reg["school_urn"],
        dest_urn=dest_urn or recorded_dest,
        source_laestab=source_laestab,
        dest_laestab=dest_laestab,
    )
    [back] = ctf.parse(xml)
    if back["history"] != history or back["upn"] != reg["upn"]:
        raise _fail("the CTF did not read back as written; nothing saved", 1)
    path = out / f"ctf-{pupil}.xml" if out.suffix.lower() != ".xml" else out
    output.write_text(path, xml)
    _print(
        {
            "written": str(path),
            "pupil_id": str(pupil),
            "on_roll": reg["on_roll"],
            "sen_history": len(history["sen"]),
            "sen_needs": len(history["needs"]),
            "dest_urn": dest_urn or recorded_dest,
        }
    )


@export_app.command("sar")
def export_sar(
    pupil: UUID,
    out: Annotated[Path, typer.Option("--out", help="File (.json) or folder to write into")],
) -> None:
    """Subject access export: everything held about one pupil, decrypted, in one JSON file."""
    from senflow.services.auditing import gather, output
    from senflow.services.auditing.sar import sar_document

    async def go(settings: Settings) -> dict[str, Any]:
        async with bootstrap.pool(settings) as pool:
            return await gather.sar_material(pool, pupil)

    try:
        material = _run(go)
    except LookupError as exc:
        raise _fail(str(exc)) from exc
    doc = sar_document(
        str(pupil),
        material["events"],
        material["read_models"],
        material["vault"],
        material["verification"],
        datetime.now(UTC),
    )
    path = out / f"sar-{pupil}.json" if out.suffix.lower() != ".json" else out
    output.write_json(path, doc)
    _print(
        {
            "written": str(path),
            "pupil_id": str(pupil),
            "events": len(doc["events"]),
            "personal_data_erased": doc["personal_data_erased"],
            "note": "redacting other people's personal data in free text is a manual step",
        }
    )


async def _scope_rows(
    settings: Settings, trust: str | None, school: str | None, as_of: date | None, on: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from senflow.projections import provision_map, register
    from senflow.services.auditing import gather
    from senflow.services.store.eventstore import EventStore

    async with bootstrap.pool(settings) as pool:
        docs = await gather.scope_docs(EventStore(pool), pool, trust, school)
    reg_rows = register.register_rows(docs["register"], as_of, on)
    prov_rows = provision_map.provision_rows(docs["provision_map"])
    if school is not None:
        reg_rows = [r for r in reg_rows if r["school_urn"] == school]
        prov_rows = [p for p in prov_rows if p["school_urn"] == school]
    return reg_rows, prov_rows


@export_app.command("register-csv")
def export_register_csv(
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder")] = Path("."),
) -> None:
    """The SEN register as CSV, costed (provision this academic year), with totals per school."""
    from senflow.services.auditing import gather, output, tables

    _need_scope(trust, school)
    day = _day(as_of, "--as-of")
    ref = day or gather.today()
    reg_rows, prov_rows = _run(lambda s: _scope_rows(s, trust, school, day, ref))
    if day is not None:
        prov_rows = [p for p in prov_rows if p["started_on"] <= day.isoformat()]
    stem = f"register-{_scope_name(trust, school)}" + (f"-{day.isoformat()}" if day else "")
    output.write_text(
        out / f"{stem}.csv", tables.to_csv(tables.register_table(reg_rows, prov_rows, ref))
    )
    totals = tables.totals(reg_rows, prov_rows)
    output.write_text(out / f"{stem}-totals.csv", tables.to_csv(tables.totals_table(totals)))
    _print(
        {
            "files": [f"{stem}.csv", f"{stem}-totals.csv"],
            "pupils": len(reg_rows),
            "totals": totals[-1],
        }
    )


@export_app.command("provision-csv")
def export_provision_csv(
    school: Annotated[str | None, typer.Option("--school", help="School URN")] = None,
    trust: Annotated[str | None, typer.Option("--trust")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Started on or after YYYY-MM-DD")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Started on or before YYYY-MM-DD")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder")] = Path("."),
) -> None:
    """The provision map as CSV (one line an intervention, costed), with totals per school."""
    from senflow.services.auditing import gather, output, tables

    _need_scope(trust, school)
    start, end = _day(since, "--since"), _day(until, "--until")
    reg_rows, prov_rows = _run(lambda s: _scope_rows(s, trust, school, None, gather.today()))
    prov_rows = [
        p
        for p in prov_rows
        if (start is None or p["started_on"] >= start.isoformat())
        and (end is None or p["started_on"] <= end.isoformat())
    ]
    stem = f"provision-map-{_scope_name(trust, school)}"
    output.write_text(out / f"{stem}.csv", tables.to_csv(tables.provision_table(prov_rows)))
    totals = tables.totals(reg_rows, prov_rows)
    output.write_text(out / f"{stem}-totals.csv", tables.to_csv(tables.totals_table(totals)))
    _print(
        {
            "files": [f"{stem}.csv", f"{stem}-totals.csv"],
            "interventions": len(prov_rows),
            "totals": totals[-1],
        }
    )


# --- verify (called by `senflow verify`) ----------------------------------------------------------


def verify_report(pupil: UUID | None, trust: str | None, school: str | None) -> None:
    """Check the hash chains in scope; print the result with a summary per school.

    Exit 0 when every chain holds, 1 naming the first break, 2 when a pupil,
    school or trust was named and nothing of it is stored.
    """
    from senflow.services.auditing.gather import verify_scope

    async def go(settings: Settings) -> dict[str, Any]:
        async with bootstrap.pool(settings) as pool:
            return await verify_scope(pool, pupil, trust, school)

    report = _run(go)
    _print(report)
    if not report["found"] and (pupil or trust or school):
        named = ", ".join(f"{k} {v}" for k, v in report["scope"].items() if v is not None)
        raise _fail(f"nothing to verify: no events stored for {named}")
    if not report["ok"]:
        typer.echo(f"BROKEN: {report['breaks'][0]}", err=True)
        raise typer.Exit(1)
