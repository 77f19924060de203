"""Evidence packs, their HTML and charts, the Code of Practice checklist, samples, CSVs, SAR."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest

from senflow.events import catalogue as ev
from senflow.projections import provision_map, register
from senflow.projections.base import fold
from senflow.services.auditing import charts, html, practice, sample, tables
from senflow.services.auditing.evidence import build_pack, index_entry
from senflow.services.auditing.pdf import find_renderer
from senflow.services.auditing.sar import REDACTION_NOTE, sar_document
from tests.integration.story import EXAMPLE_PUPIL, story
from tests.unit.auditing_helpers import Pupil, story_pupil

pytestmark = pytest.mark.unit

TODAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
VERIFIED = {
    "ok": True,
    "events": 27,
    "breaks": [],
    "head_hash": "ab" * 32,
    "checked_at": "2026-11-22T10:00:00+00:00",
}


def corrected_story() -> Pupil:
    p = story_pupil()
    started = next(e for e in p.events if e.event_type == "sen_support_started")
    p.correct(
        started,
        "2026-11-01",
        reason="Secondary need was left off.",
        needs=[{"type": "SLCN", "rank": 1}, {"type": "SEMH", "rank": 2}],
    )
    return p


def pack_of(p: Pupil) -> dict:
    return build_pack(p.events, VERIFIED, TODAY, NOW)


def test_the_pack_matches_the_events():
    p = corrected_story()
    pack = pack_of(p)
    data = [e.data for e in p.events]
    reviews = [d for d in data if isinstance(d, ev.ReviewHeld)]
    meetings = [d for d in data if isinstance(d, ev.ParentMeetingHeld)]
    started = [d for d in data if isinstance(d, ev.InterventionStarted)]
    ended = {d.intervention_id: d for d in data if isinstance(d, ev.InterventionEnded)}

    assert pack["pupil"]["forename"] == "Amy" and pack["pupil"]["surname"] == "Jones"
    assert (
        pack["pupil"]["date_of_birth"] == "2017-03-14" and pack["pupil"]["upn"] == "B801200005001"
    )
    assert pack["summary"]["provision"] == "E"
    assert pack["summary"]["interventions"] == len(started) == len(pack["interventions"])
    assert pack["summary"]["parent_meetings"] == len(meetings) == len(pack["parent_meetings"])
    for s, i in zip(started, pack["interventions"], strict=True):
        assert i["intervention_id"] == str(s.intervention_id)
        assert i["entry"]["value"] == s.entry_measure.value
        assert i["exit"]["value"] == ended[s.intervention_id].exit_measure.value
    plan_reviews = [r for r in pack["reviews"] if r["kind"] == "plan_review"]
    assert [(r["pupil_views"], r["parent_views"]) for r in plan_reviews] == [
        (r.pupil_views, r.parent_views) for r in reviews
    ]
    [annual] = [r for r in pack["reviews"] if r["kind"] == "ehc_annual_review"]
    assert annual["pupil_views"] == "I like my new group."
    assert [m["summary"] for m in pack["parent_meetings"]] == [m.summary for m in meetings]
    [specialist] = pack["specialists"]
    assert specialist["specialist"] == "speech_and_language_therapist"
    assert specialist["parental_consent"] is True
    assert [a["assessment_kind"] for a in pack["assessments"]] == ["screener"]
    # the correction shows in the history and in the record
    assert [(n["type"], n["start"]) for n in pack["needs_and_provision"]["needs_history"]] == [
        ("SLCN", "2024-10-08"),
        ("SEMH", "2024-10-08"),
    ]
    [correction] = pack["record"]["corrections"]
    assert correction["corrected_type"] == "sen_support_started"
    assert correction["reason"] == "Secondary need was left off."
    assert pack["record"]["events"] == len(p.events)
    assert pack["verification"] == VERIFIED
    paragraphs = [i["paragraph"] for i in pack["compliance"]["checklist"]]
    for para in ("6.45", "6.47", "6.48", "6.49", "6.52", "6.53", "6.54", "6.56", "6.64", "6.65"):
        assert para in paragraphs
    assert pack["compliance"]["findings"][0]["rule"] == "annual_report_missing"
    by_para = {i["paragraph"]: i for i in pack["compliance"]["checklist"]}
    assert by_para["6.64"]["status"] == "not_met" and by_para["6.56"]["status"] == "met"
    json.dumps(pack)  # JSON-ready


def test_the_checklist_sees_missing_views_late_and_overdue_reviews():
    p = Pupil()
    cmds = story(EXAMPLE_PUPIL)
    for cmd in cmds[:14]:  # up to the end of the first interventions
        p.command(cmd)
    review = dict(cmds[15]["payload"], pupil_views=None, parent_views=None)
    p.add("review_held", review, "2025-02-03")  # agreed for 20 January
    overdue_on = date(2025, 6, 1)  # the next review date, 28 April, has passed
    pack = build_pack(p.events, VERIFIED, overdue_on, NOW)
    items = {(i["paragraph"], i["title"][:20]): i for i in pack["compliance"]["checklist"]}
    views = next(i for k, i in items.items() if k[0] == "6.54" and "views" in i["title"])
    assert views["status"] == "not_met"
    on_date = next(i for k, i in items.items() if k[0] == "6.53")
    assert on_date["status"] == "not_met" and "overdue" in on_date["summary"]
    assert any("14 days late" in e for e in on_date["evidence"])
    assert {f["rule"] for f in on_date["findings"]} == {"review_overdue"}
    assert practice.tally(pack["compliance"]["checklist"])["not_met"] >= 2


def test_html_escapes_prints_well_and_has_no_external_assets():
    p = Pupil()
    for cmd in story(EXAMPLE_PUPIL)[:2]:
        p.command(cmd)
    p.add(
        "concern_raised",
        {"source": "parent", "description": '<script>alert("x")</script> & more'},
        "2024-09-21",
    )
    page = html.pack_html(pack_of(p))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp; more" in page
    assert "@page" in page and "break-before: page" in page and "break-inside: avoid" in page
    assert not re.search(r'(src|href)="https?:', page)
    assert "<link" not in page


def test_the_story_pack_renders_its_charts_and_sections():
    pack = pack_of(corrected_story())
    page = html.pack_html(pack)
    for text in ("Talk Boost is fun.", "We would like more help.", "Colourful semantics", "6.56"):
        assert text in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == len(pack["measures"]) == 3
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.find("{http://www.w3.org/2000/svg}title") is not None


def test_charts_are_valid_svg():
    need_mix = charts.need_mix_chart({"SLCN": {"K": 5, "E": 1}, "ASD": {"K": 1, "E": 4}})
    impact = charts.impact_chart(
        [
            {"name": "Talk Boost", "good_share": 0.75, "rated": 4, "mean_change": 3.5},
            {"name": "A & B <group>", "good_share": 0.0, "rated": 2, "mean_change": None},
            {"name": "Never rated", "good_share": None, "rated": 0, "mean_change": None},
        ]
    )
    for svg in (need_mix, impact):
        ET.fromstring(svg)
    assert "Never rated" not in impact and "A &amp; B &lt;group&gt;" in impact
    assert charts.nice_ticks(78, 86) == [78, 80, 82, 84, 86]
    assert charts.nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]


def test_sample_is_deterministic_and_has_an_ehc_plan():
    candidates = [
        {"pupil_id": f"p{n:02d}", "provision": "E" if n in (7, 31) else "K"} for n in range(40)
    ]
    first = sample.choose(candidates, 6, seed=2026)
    assert first == sample.choose(list(reversed(candidates)), 6, seed=2026)
    assert len(first) == 6 and len({c["pupil_id"] for c in first}) == 6
    assert first[0]["provision"] == "E"
    assert any(sample.choose(candidates, 6, seed=s) != first for s in range(1, 5))
    assert len(sample.choose(candidates[:3], 6, seed=1)) == 3
    only_k = [c for c in candidates if c["provision"] == "K"]
    assert all(c["provision"] == "K" for c in sample.choose(only_k, 6, seed=1))
    with pytest.raises(ValueError):
        sample.choose(candidates, 0, seed=1)


def test_index_entry_and_page():
    pack = pack_of(story_pupil())
    entry = index_entry(pack, {"html": "evidence-x.html", "json": "evidence-x.json", "pdf": None})
    assert entry["name"] == "Amy Jones" and entry["provision"] == "E" and entry["chain_ok"]
    page = html.index_html(
        {
            "school_urn": "123456",
            "judged_on": "2026-11-22",
            "seed": "1",
            "candidates": 1,
            "with_ehc_plan": 1,
            "sample_size": 1,
            "generated_at": NOW.isoformat(),
            "pdf": "not asked for",
            "pupils": [entry],
            "school": {"need_mix": {"SLCN": {"K": 0, "E": 1}}, "impact": []},
        }
    )
    assert 'href="evidence-x.html"' in page and "Amy Jones" in page and "<svg" in page


def test_register_and_provision_tables_are_costed_and_safe_for_spreadsheets():
    events = story_pupil().events
    day = date(2025, 3, 1)
    reg_rows = register.register_rows([fold(register.PROJECTION, events)], day, day)
    prov_rows = provision_map.provision_rows([fold(provision_map.PROJECTION, events)])
    table = tables.register_table(reg_rows, prov_rows, date(2025, 3, 1))
    header, row = table
    line = dict(zip(header, row, strict=True))
    assert line["provision"] == "K" and line["interventions_this_year"] == 3
    assert line["provision_cost_this_year_gbp"] == "570.00"
    prov = tables.provision_table(prov_rows)
    assert len(prov) == 4 and prov[1][prov[0].index("cost_gbp")] == "120.00"
    totals = tables.totals(reg_rows, prov_rows)
    assert [t["scope"] for t in totals] == ["school", "all"]
    assert totals[-1]["cost_pence"] == 57000 and totals[-1]["pupils_on_register"] == 1
    text = tables.to_csv([["name", "n"], ["=HYPERLINK(1)", -2], ["@cmd", None], [True, 1.5]])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [["name", "n"], ["'=HYPERLINK(1)", "-2"], ["'@cmd", ""], ["yes", "1.5"]]


def test_sar_holds_everything_decrypted_with_the_redaction_note():
    p = story_pupil()
    doc = sar_document(
        str(EXAMPLE_PUPIL),
        p.events,
        {"register": {"held": False, "note": "this read model is not built"}},
        {"key_created_at": "2024-09-05T12:00:00+00:00", "key_destroyed_at": None},
        VERIFIED,
        NOW,
    )
    assert doc["note_on_redaction"] == REDACTION_NOTE and "manual step" in REDACTION_NOTE
    assert len(doc["events"]) == len(p.events)
    first = doc["events"][0]
    assert first["data"]["forename"] == "Amy" and first["actor"]["user_id"] == "integration.1"
    assert {"event_id", "version", "position", "occurred_at", "recorded_at", "hash"} <= set(first)
    assert doc["current_state"]["provision"] == "E" and doc["personal_data_erased"] is False
    json.dumps(doc)
    with pytest.raises(LookupError):
        sar_document(str(EXAMPLE_PUPIL), [], {}, {}, VERIFIED, NOW)


def test_pdf_where_a_renderer_is_installed(tmp_path, monkeypatch):
    pytest.importorskip("weasyprint", exc_type=ImportError)
    monkeypatch.delenv("SENFLOW_PDF", raising=False)
    renderer = find_renderer()
    if renderer is None:  # the package is there but its system library is not
        pytest.skip("WeasyPrint cannot load Pango here")
    out = tmp_path / "pack.pdf"
    renderer.render(html.pack_html(pack_of(story_pupil())), out)
    assert out.read_bytes()[:5] == b"%PDF-" and out.stat().st_size > 10_000
    monkeypatch.setenv("SENFLOW_PDF", "off")
    assert find_renderer() is None
