"""Statutory exports on pupils recorded through the real command path, and the auditors' CLI.

Forty pupils of two schools of a fresh trust (see ``auditing_pupils``): every
kind of provision and need the census rules care about, a transfer and a
leaver. The census extract must pass the census rules and show each pupil as
they stood on the day; the CTF of the leaver must be well-formed and read back
as the SEN history it was built from. The CLI commands run in-process against
the test database (in a thread: they run their own event loop).
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from senflow.projections import register
from senflow.projections.base import fold
from senflow.services import bootstrap
from senflow.services.application import SenflowService
from senflow.services.auditing import census, ctf, gather
from senflow.services.cli import app
from senflow.services.store.eventstore import EventStore
from senflow.services.workflow.commands import parse_command
from tests.integration import auditing_pupils as gen

pytestmark = pytest.mark.integration

PUPILS = 40
SCHOOLS = ("223344", "556677")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trust(pool) -> str:
    trust_id = f"trust-x{uuid.uuid4().hex[:8]}"
    svc = SenflowService(EventStore(pool))
    gate = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        async with gate:
            for raw in gen.commands(trust_id, SCHOOLS, n):
                result = await svc.handle(parse_command(raw))
                assert result.accepted, (n, raw["command"], result.rejection)

    await asyncio.gather(*(one(n) for n in range(PUPILS)))
    return trust_id


@pytest.mark.parametrize("day", [gen.AUTUMN, gen.SPRING], ids=["autumn", "spring"])
async def test_census_extract_passes_the_census_rules_and_shows_each_pupil_on_the_day(
    trust, pool, day
):
    store = EventStore(pool)
    docs = await gather.scope_docs(store, pool, trust, None, (register.PROJECTION,))
    rows = census.census_rows(docs["register"], day)
    assert census.validate(rows) == []
    expected = {
        str(gen.pupil_id(trust, n)): e
        for n in range(PUPILS)
        if (e := gen.expected_on(n, day, SCHOOLS)) is not None
    }
    got = {
        r["pupil_id"]: {
            "school": r["school_urn"],
            "provision": r["sen_provision"],
            "needs": [x["type"] for x in r["needs"]],
        }
        for r in rows
    }
    assert got == expected
    provisions = {r["sen_provision"] for r in rows}
    assert provisions == ({"N", "K"} if day == gen.AUTUMN else {"N", "K", "E"})
    for school in SCHOOLS:  # a school's extract: its pupils on the day, nobody else's
        school_docs = await gather.scope_docs(store, pool, trust, school, (register.PROJECTION,))
        school_rows = census.census_rows(school_docs["register"], day, school)
        assert census.validate(school_rows) == []
        assert {r["pupil_id"] for r in school_rows} == {
            p for p, e in expected.items() if e["school"] == school
        }


async def test_leavers_ctf_is_well_formed_and_round_trips(trust, pool):
    n = gen.KINDS.index("k_left")
    events = await gather.pupil_events(EventStore(pool), gen.pupil_id(trust, n))
    doc = fold(register.PROJECTION, events)
    history = ctf.sen_history(doc)
    assert history["sen"] == [{"start_date": "2025-09-22", "provision": "K"}]
    assert history["needs"] == [
        {
            "start_date": "2025-09-22",
            "end_date": None,
            "rank": 1,
            "type": gen.needs_of(n)[0]["type"],
        }
    ]
    xml = ctf.build(
        {"upn": doc["upn"], "surname": "Test", "forename": f"Pupil{n}"},
        history,
        generated_at=datetime.now(UTC),
        source_urn=doc["school_urn"],
        dest_urn=gen.LEFT_TO,
    )
    ET.fromstring(xml)
    [back] = ctf.parse(xml)
    assert back["history"] == history and back["upn"] == doc["upn"]
    ended = gen.KINDS.index("k_ended")
    events = await gather.pupil_events(EventStore(pool), gen.pupil_id(trust, ended))
    assert ctf.sen_history(fold(register.PROJECTION, events))["sen"] == [
        {"start_date": "2025-09-22", "provision": "K"},
        {"start_date": "2025-12-15", "provision": "N"},
    ]


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def _csv(path: Path, header: bool = False) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f) if header else csv.reader(f))


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _cli(database_url: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(
        app, list(args), env={"SENFLOW_DATABASE_URL": database_url, "SENFLOW_LOG_LEVEL": "WARNING"}
    )
    stderr = result.stderr if result.stderr_bytes is not None else ""
    # with logging left unconfigured, structlog's default prints log lines to stdout
    out = "".join(line for line in result.stdout.splitlines(True) if not _LOG_LINE.match(line))
    return result.exit_code, out, stderr


async def test_the_auditors_commands(trust, pool, migrated, tmp_path: Path, monkeypatch):
    # The CLI points structlog at stderr; under CliRunner that stream is closed afterwards,
    # and later tests would log into it. Keep the test process's logging as it is.
    monkeypatch.setattr(bootstrap, "configure_logging", lambda settings: None)

    async def cli(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(_cli, migrated, *args)

    school = SCHOOLS[0]
    code, out, err = await cli(
        "export",
        "census",
        "--trust",
        trust,
        "--term",
        "spring",
        "--year",
        "2026",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["valid"] and summary["census_day"] == "2026-01-15"
    stem = f"census-trust-{trust}-2026-01-15"
    lines = await asyncio.to_thread(_csv, tmp_path / f"{stem}.csv")
    assert lines[0] == list(census.CSV_COLUMNS) and len(lines) - 1 == summary["counts"]["pupils"]
    assert (
        await asyncio.to_thread((tmp_path / f"{stem}.json").stat)
    ).st_mode & 0o077 == 0  # owner only
    code, _, err = await cli("export", "census", "--school", school, "--day", "2026-01-16")
    assert code == 2 and "not a census day" in err

    sample = ["evidence", "--school", school, "--sample", "4", "--seed", "7", "--no-pdf"]
    sample += ["--date", "2026-01-20"]
    code, out, err = await cli(*sample, "--out", str(tmp_path / "sample"))
    assert code == 0, err
    result = json.loads(out)
    assert result["sample"]["sample_size"] == 4 and result["pdf"] == "not asked for"
    index = await asyncio.to_thread(_json, tmp_path / "sample" / "index.json")
    assert any(p["provision"] == "E" for p in index["pupils"])
    assert all(p["school_urn"] == school for p in index["pupils"])
    assert await asyncio.to_thread((tmp_path / "sample" / "index.html").exists)
    again = json.loads((await cli(*sample, "--out", str(tmp_path / "again")))[1])
    assert [p["pupil_id"] for p in again["packs"]] == [p["pupil_id"] for p in result["packs"]]
    for pack in result["packs"]:
        body = await asyncio.to_thread(_json, tmp_path / "sample" / pack["files"]["json"])
        assert body["pupil"]["pupil_id"] == pack["pupil_id"] and body["verification"]["ok"]

    leaver = str(gen.pupil_id(trust, gen.KINDS.index("k_left")))
    code, out, err = await cli("export", "ctf", leaver, "--out", str(tmp_path))
    assert code == 0, err
    written = json.loads(out)
    assert written["dest_urn"] == gen.LEFT_TO and written["on_roll"] is False
    [back] = ctf.parse(await asyncio.to_thread(Path(written["written"]).read_text))
    assert back["forename"].startswith("Pupil") and back["history"]["sen"][0]["provision"] == "K"

    code, out, err = await cli("export", "sar", leaver, "--out", str(tmp_path / "sar.json"))
    assert code == 0, err
    sar = await asyncio.to_thread(_json, tmp_path / "sar.json")
    assert sar["events"][0]["data"]["forename"].startswith("Pupil")
    assert "manual step" in sar["note_on_redaction"] and sar["verification"]["ok"]
    assert set(sar["read_models"]) == {"register", "provision_map", "compliance", "audit"}

    code, out, err = await cli("export", "register-csv", "--trust", trust, "--out", str(tmp_path))
    assert code == 0, err
    totals = json.loads(out)["totals"]
    assert totals["pupils_on_register"] == sum(
        1
        for n in range(PUPILS)
        if (e := gen.expected_on(n, datetime.now(UTC).date(), SCHOOLS)) and e["provision"] != "N"
    )
    code, out, err = await cli(
        "export", "provision-csv", "--school", school, "--out", str(tmp_path)
    )
    assert code == 0, err
    rows = await asyncio.to_thread(
        _csv, tmp_path / f"provision-map-school-{school}-totals.csv", True
    )
    assert [r["scope"] for r in rows] == ["school", "all"] and float(rows[-1]["cost_gbp"]) > 0

    code, out, err = await cli("replay", leaver, "--as-of", "2025-10-02", "--json")
    assert code == 0, err
    assert json.loads(out)["state"]["provision"] == "K"
    code, out, _ = await cli("replay", leaver)
    assert code == 0 and "cycle 1" in out
    code, out, err = await cli("verify", "--trust", trust)
    assert code == 0, err
    report = json.loads(out)
    assert [s["school_urn"] for s in report["schools"]] == sorted(SCHOOLS)
    assert (await cli("verify", "--pupil", str(uuid.uuid4())))[0] == 2
    assert (await cli("replay", str(uuid.uuid4())))[0] == 2
