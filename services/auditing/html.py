"""Evidence packs and sample indexes as HTML that prints well: one file, no external assets.

Print CSS: A4 pages with the pupil's name and page numbers in the margins
(where the renderer supports CSS paged media), each major section on a new
page, table rows and cards never split across pages, table headers repeated.
Every value is escaped. Charts are inline SVG from :mod:`.charts`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from senflow.services.auditing import charts

Doc = dict[str, Any]

CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
  @top-left { content: string(who); font-size: 8pt; color: #555; }
  @top-right { content: "CONFIDENTIAL: special category personal data"; font-size: 8pt;
               color: #a00; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 8pt;
                  color: #555; } }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 10pt;
       line-height: 1.4; color: #111; margin: 0 auto; max-width: 190mm; padding: 8px; }
h1 { font-size: 17pt; margin: 0 0 4px; string-set: who content(); }
h2 { font-size: 13pt; border-bottom: 2px solid #0072B2; padding-bottom: 2px;
     margin: 18px 0 8px; }
h3 { font-size: 11pt; margin: 12px 0 4px; }
h2, h3 { break-after: avoid; }
section.page { break-before: page; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; }
thead { display: table-header-group; }
th, td { border: 1px solid #bbb; padding: 3px 5px; text-align: left; vertical-align: top;
         font-size: 9pt; overflow-wrap: break-word; }
th { background: #eef3f8; }
tr, .card, figure, svg { break-inside: avoid; }
.card { border: 1px solid #ccc; border-left: 4px solid #0072B2; padding: 6px 8px;
        margin: 6px 0; }
.meta { color: #555; font-size: 8.5pt; }
.late { color: #a00; font-weight: bold; }
.quote { font-style: italic; white-space: pre-wrap; }
.banner { border: 2px solid #a00; color: #a00; padding: 4px 8px; margin: 6px 0 10px;
          font-weight: bold; }
.ok { color: #006400; font-weight: bold; } .bad { color: #a00; font-weight: bold; }
.status-met { background: #e6f4ea; } .status-partly_met { background: #fff4d6; }
.status-not_met { background: #fde2e1; } .status-not_applicable { color: #666; }
dl.facts { display: grid; grid-template-columns: 40mm 1fr; gap: 2px 8px; margin: 4px 0; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
figure { margin: 6px 0 12px; }
@media print { a { color: inherit; text-decoration: none; } body { max-width: none; padding: 0; } }
"""

STATUS_TEXT = {
    "met": "met",
    "partly_met": "partly met",
    "not_met": "NOT met",
    "not_applicable": "not applicable",
}
KIND_TEXT = {
    "concern_raised": "Concern raised",
    "parent_views_recorded": "Parents' views",
    "pupil_views_recorded": "Pupil's views",
    "assessment_recorded": "Assessment",
    "specialist_involved": "Specialist involved",
    "sen_support_started": "SEN support started",
    "needs_reclassified": "Needs reclassified",
    "progress_recorded": "Progress",
    "parent_meeting_held": "Parent meeting",
    "sen_support_ended": "SEN support ended",
    "transition_information_shared": "Transition information shared",
    "pupil_transferred": "Transferred",
    "pupil_left": "Left the school",
    "annual_report_shared": "Annual report given to parents",
    "ehc_needs_assessment_requested": "EHC needs assessment requested",
    "ehc_needs_assessment_decided": "EHC needs assessment decided",
    "ehc_plan_issued": "EHC plan issued",
    "ehc_annual_review_held": "EHC annual review",
}
# Content fields shown as quoted free text, and fields shown as facts beside them.
TEXT_FIELDS = (
    "description",
    "views",
    "summary",
    "reason",
    "note",
    "agreed_actions",
    "evidence_summary",
    "provision_summary",
    "pupil_views",
    "parent_views",
)
SKIP_FIELDS = {
    "kind",
    "on",
    "event_id",
    "version",
    "recorded_at",
    "recorded_late",
    "recorded_by",
    *TEXT_FIELDS,
}


def e(value: Any) -> str:
    """Escaped text of a value (``-`` for nothing)."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return escape(", ".join(_flat(v) for v in value))
    if isinstance(value, dict):
        return escape(_flat(value))
    return escape(str(value))


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        if "type" in value and "rank" in value:
            return f"{value['type']} ({value['rank']})"
        if "instrument" in value and "value" in value:
            return f"{value['instrument']} {value['value']:g} {value.get('unit', '')}".strip()
        return "; ".join(f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]], raw: set[int] | None = None) -> str:
    """A table; columns listed in ``raw`` hold HTML already escaped."""
    if not rows:
        return '<p class="meta">None recorded.</p>'
    raw = raw or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if i in raw else e(v)}</td>" for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(pairs: list[tuple[str, Any]]) -> str:
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{e(v)}</dd>" for k, v in pairs)
        + "</dl>"
    )


def late_mark(item: Doc) -> str:
    return ' <span class="late">recorded late</span>' if item.get("recorded_late") else ""


def item_card(item: Doc) -> str:
    kind = KIND_TEXT.get(item["kind"], item["kind"].replace("_", " "))
    details = [
        f"{k.replace('_', ' ')}: {e(v)}"
        for k, v in item.items()
        if k not in SKIP_FIELDS and v not in (None, "", [])
    ]
    texts = [
        f'<div><b>{escape(k.replace("_", " "))}:</b> <span class="quote">{e(item[k])}</span></div>'
        for k in TEXT_FIELDS
        if item.get(k)
    ]
    return (
        f'<div class="card"><b>{escape(kind)}</b>, {e(item["on"])}{late_mark(item)}'
        + (f'<div class="meta">{"; ".join(details)}</div>' if details else "")
        + "".join(texts)
        + f'<div class="meta">recorded {e(item["recorded_at"][:16])} by '
        f"{e(item['recorded_by'])}</div></div>"
    )


def cards(items: list[Doc]) -> str:
    return "".join(item_card(i) for i in items) or '<p class="meta">None recorded.</p>'


def _measure(m: Doc | None) -> str:
    return f"{m['instrument']} {m['value']:g}" if m else "-"


def interventions_table(items: list[Doc]) -> str:
    def change(i: Doc) -> str | None:
        return f"{i['change']:+g}" if i["change"] is not None else None

    return table(
        ["intervention", "delivery", "dates", "sessions", "entry to exit", "change", "impact", "£"],
        [
            [
                i["name"],
                f"{(i['delivery'] or '-').replace('_', ' ')}, "
                f"{i['sessions_per_week'] or '-'} x {i['minutes_per_session'] or '-'} min a week, "
                f"{(i['staff_role'] or '-').replace('_', ' ')}",
                f"{i['started_on']} to {i['ended_on'] or 'running'}",
                f"{i['sessions_attended']} ({i['minutes_delivered']} min)",
                f"{_measure(i['entry'])} to {_measure(i['exit'])}",
                change(i),
                f"{i['impact'] or '-'}" + ("" if i["keep"] is None else f", keep {e(i['keep'])}"),
                f"{i['cost_pence'] / 100:.2f}" if i["cost_pence"] is not None else None,
            ]
            for i in items
        ],
    )


def _views(label: str, text: Any) -> str:
    return f'<div><b>{escape(label)}:</b> <span class="quote">{e(text)}</span></div>'


def cycle_html(c: Doc) -> str:
    title = f"Cycle {c['number']}: " + (
        f"plan agreed {c['agreed_on']}"
        if not c["continues_plan"]
        else f"plan continued from {c['started_on']}"
    )
    parts = [f"<h3>{escape(title)}</h3>"]
    if c["assess"]:
        parts.append("<h3>Assess</h3>" + cards(c["assess"]))
    parts.append(
        "<h3>Plan</h3>"
        + facts(
            [
                ("Review date", c["review_date"]),
                ("Agreed with", c["agreed_by"]),
                ("Staff told", c["staff_informed_on"] or c["staff_informed"]),
                ("Expected impact", c["expected_impact"]),
                ("Status", c["status"].replace("_", " ")),
            ]
        )
        + table(
            ["outcome", "sought", "target date", "rating at review", "note"],
            [
                [o["outcome_id"], o["description"], o["target_date"], o["rating"], o["note"]]
                for o in c["outcomes"]
            ],
        )
        + table(
            ["provision", "delivery", "staff", "sessions", "weeks", "group", "cost £", "outcomes"],
            [
                [
                    p["name"],
                    p["delivery"],
                    p["staff_role"],
                    f"{p['sessions_per_week']} x {p['minutes_per_session']} min",
                    p["weeks"],
                    p["group_size"],
                    f"{p['cost_pence'] / 100:.2f}",
                    p["outcome_ids"],
                ]
                for p in c["provisions"]
            ],
        )
    )
    parts.append("<h3>Do</h3>" + interventions_table(c["interventions"]) + cards(c["during"]))
    r = c["review"]
    if r is None:
        parts.append(f"<h3>Review</h3><p>Not reviewed ({escape(c['status'])}).</p>")
    else:
        timing = "on time" if r["on_time"] else f"{r['days_late']} days after the agreed date"
        parts.append(
            "<h3>Review</h3>"
            + facts(
                [
                    ("Held", f"{r['held_on']} ({timing}; agreed {r['agreed_date']})"),
                    ("Decision", r["decision"].replace("_", " ")),
                    ("Next review", r["next_review_date"]),
                ]
            )
            + _views("Pupil's views", r["pupil_views"])
            + _views("Parents' views", r["parent_views"])
            + table(
                ["intervention", "impact", "keep"],
                [[x["name"], x["impact"], x["keep"]] for x in r["intervention_impact"]],
            )
        )
    return '<div class="cycle">' + "".join(parts) + "</div>"


def checklist_html(items: list[Doc]) -> str:
    rows = []
    for i in items:
        evidence = "<br>".join(escape(x) for x in i["evidence"][:12])
        if len(i["evidence"]) > 12:
            evidence += f"<br>... {len(i['evidence']) - 12} more"
        status = f'<span class="status-{i["status"]}">{escape(STATUS_TEXT[i["status"]])}</span>'
        rows.append(
            [
                i["paragraph"],
                f"<b>{escape(i['title'])}</b> ({escape(i['strength'])})<br>{escape(i['summary'])}",
                status,
                evidence or "-",
            ]
        )
    body = "".join(
        f'<tr class="status-{i["status"]}">' + "".join(f"<td>{v}</td>" for v in r) + "</tr>"
        for i, r in zip(items, rows, strict=True)
    )
    return (
        "<table><thead><tr><th>para.</th><th>the Code asks</th><th>judged</th>"
        f"<th>evidence</th></tr></thead><tbody>{body}</tbody></table>"
    )


def pack_html(pack: Doc) -> str:
    p, s, v = pack["pupil"], pack["summary"], pack["verification"]
    name = " ".join(x for x in (p["forename"], p["surname"]) if x) or p["pupil_id"]
    chain = (
        '<span class="ok">intact</span>'
        if v and v["ok"]
        else '<span class="bad">BROKEN</span>'
        if v
        else "not checked"
    )
    needs = pack["needs_and_provision"]
    out = [
        f'<h1>{escape(name)}</h1><p class="meta">Evidence pack: SEN support record, '
        f"generated {e(pack['generated_at'][:16])}, judged on {e(pack['judged_on'])}</p>",
        '<div class="banner">Confidential. Special category personal data, for authorised '
        "people only. Do not copy or forward.</div>",
        facts(
            [
                ("UPN", p["upn"]),
                ("Date of birth", p["date_of_birth"]),
                ("Year group", p["year_group"]),
                ("School (URN)", p["school_urn"]),
                ("Trust", p["trust_id"]),
                (
                    "On roll",
                    f"from {p['on_roll_from']}"
                    + (f", left {p['left_on']}" if p["left_on"] else ""),
                ),
                ("SEN provision", f"{s['provision']} since {s['provision_start'] or '-'}"),
                ("Needs", ", ".join(x for x in (s["primary_need"], s["secondary_need"]) if x)),
                ("Next review", s["next_review_date"]),
                ("EHC annual review due", s["ehc_next_review_due"]),
                (
                    "Record",
                    f"{s['cycles']} cycles, {s['interventions']} interventions, "
                    f"{s['reviews']} reviews, {s['parent_meetings']} parent meetings",
                ),
            ]
        ),
        "<p>Hash chain: "
        + chain
        + f" over {e(v['events'] if v else None)} events. Code of Practice: "
        + ", ".join(f"{n} {STATUS_TEXT[k]}" for k, n in s["checklist"].items() if n)
        + ".</p>",
        "<h2>Need and provision history</h2>",
        table(
            ["SEN provision", "from", "to"],
            [[x["provision"], x["start"], x["end"] or "now"] for x in needs["provision_history"]],
        ),
        table(
            ["need type", "rank", "from", "to"],
            [[x["type"], x["rank"], x["start"], x["end"] or "now"] for x in needs["needs_history"]],
        ),
        table(
            ["school (URN)", "from", "to"],
            [[x["school_urn"], x["start"], x["end"] or "now"] for x in needs["school_history"]],
        ),
        '<section class="page"><h2>Identification and assessment</h2>',
        cards(pack["identification"]),
        "</section>",
    ]
    for c in pack["cycles"]:
        out.append(f'<section class="page"><h2>Assess, plan, do, review: cycle {c["number"]}</h2>')
        out.append(cycle_html(c) + "</section>")
    if pack["after_last_cycle"]:
        out.append("<h2>Since the last cycle</h2>" + cards(pack["after_last_cycle"]))
    out.append('<section class="page"><h2>Interventions and their impact</h2>')
    out.append(interventions_table(pack["interventions"]))
    if pack["measures"]:
        out.append("<h3>Measures over time, against the interventions</h3>")
        for series in pack["measures"]:
            out.append(
                "<figure>" + charts.measures_chart(series, pack["interventions"]) + "</figure>"
            )
    out.append("</section>")
    out.append('<section class="page"><h2>Reviews and the views of pupil and parents</h2>')
    out.append(
        table(
            ["review", "held", "on time", "decision", "pupil's views", "parents' views"],
            [
                [
                    f"cycle {r['cycle']}" if r["kind"] == "plan_review" else "EHC annual review",
                    r["held_on"],
                    r.get("on_time"),
                    r.get("decision") or r.get("recommendation"),
                    r["pupil_views"],
                    r["parent_views"],
                ]
                for r in pack["reviews"]
            ],
        )
    )
    out.append("<h3>Views recorded</h3>" + cards(pack["views"]))
    out.append("</section>")
    out.append('<section class="page"><h2>Parent meetings</h2>' + cards(pack["parent_meetings"]))
    out.append("<h2>Specialists involved</h2>" + cards(pack["specialists"]))
    out.append("<h2>Assessments</h2>" + cards(pack["assessments"]))
    out.append("<h2>EHC needs assessment and plan</h2>" + cards(pack["ehc"]))
    out.append("<h2>Transitions, transfers and annual reports</h2>" + cards(pack["transitions"]))
    out.append("</section>")
    comp = pack["compliance"]
    out.append(
        '<section class="page"><h2>The SEND Code of Practice, paragraph by paragraph</h2>'
        f'<p class="meta">Judged on {e(comp["judged_on"])}.</p>'
        + checklist_html(comp["checklist"])
        + "</section>"
    )
    rec = pack["record"]
    out.append(
        '<section class="page"><h2>The record: who recorded what, when</h2>'
        + facts(
            [
                ("Events", rec["events"]),
                ("Recorded more than 7 days late", rec["late_entries"]),
                ("Corrections", len(rec["corrections"])),
                (
                    "Recorded by role",
                    ", ".join(f"{k} {n}" for k, n in rec["recorded_by_role"].items()),
                ),
                ("Hash chain", "intact" if v and v["ok"] else "BROKEN" if v else "not checked"),
                ("Last hash", v.get("head_hash") if v else None),
                ("Checked at", v.get("checked_at") if v else None),
            ]
        )
        + (
            "<p class='bad'>" + "<br>".join(escape(b) for b in v["breaks"]) + "</p>"
            if v and v["breaks"]
            else ""
        )
        + "<h3>Corrections</h3>"
        + table(
            ["corrected", "type", "on", "recorded", "by", "reason"],
            [
                [
                    c["corrects"][:8],
                    c["corrected_type"],
                    c["on"],
                    c["recorded_at"][:16],
                    c["recorded_by"],
                    c["reason"],
                ]
                for c in rec["corrections"]
            ],
        )
        + "<h3>Audit trail</h3>"
        + table(
            ["v", "event", "happened", "recorded", "by", "school", "notes"],
            [
                [
                    t["version"],
                    t["event_type"],
                    t["on"],
                    t["recorded_at"][:16],
                    f"{t['actor']['role']}:{t['actor']['user_id']}",
                    t["school_urn"],
                    "; ".join(
                        x
                        for x in (
                            f"late by {t['delay_days']} days" if t["recorded_late"] else "",
                            f"corrects {t['corrects'][:8]}" if t["corrects"] else "",
                            "corrected" if t["corrected_by"] else "",
                        )
                        if x
                    ),
                ]
                for t in rec["audit_trail"]
            ],
        )
        + "</section>"
    )
    return document(f"Evidence pack: {name}", "".join(out))


def document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en-GB"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def index_html(index: Doc) -> str:
    """The one-page index of an inspection sample, with the school's need mix and impact."""
    rows = []
    for r in index["pupils"]:
        links = " ".join(
            f'<a href="{escape(path)}">{escape(kind)}</a>'
            for kind, path in r["files"].items()
            if path
        )
        chain = '<span class="ok">ok</span>' if r["chain_ok"] else '<span class="bad">BROKEN</span>'
        rows.append(
            [
                e(r["name"]),
                e(r["upn"]),
                e(r["year_group"]),
                e(r["provision"]),
                e(", ".join(x for x in (r["primary_need"], r["secondary_need"]) if x)),
                e(r["cycles"]),
                e(r["interventions"]),
                e(f"{r['not_met']} not met, {r['partly_met']} partly"),
                chain,
                links,
            ]
        )
    school = index.get("school") or {}
    charts_html = ""
    if school.get("need_mix"):
        charts_html += (
            "<figure>" + charts.need_mix_chart(school["need_mix"], width=520) + "</figure>"
        )
    if school.get("impact") and any(i["good_share"] is not None for i in school["impact"]):
        charts_html += (
            "<figure>" + charts.impact_chart(school["impact"], width=520, limit=8) + "</figure>"
        )
    body = (
        f"<h1>Inspection sample: school {e(index['school_urn'])}</h1>"
        f'<p class="meta">{e(index["sample_size"])} of {e(index["candidates"])} pupils on the SEN '
        f"register on {e(index['judged_on'])} ({e(index['with_ehc_plan'])} with an EHC plan), "
        f"chosen with seed {e(index['seed'])}; generated {e(index['generated_at'][:16])}. "
        f"PDF: {e(index['pdf'])}.</p>"
        '<div class="banner">Confidential. Special category personal data, for authorised '
        "people only.</div>"
        + table(
            [
                "pupil",
                "UPN",
                "year",
                "provision",
                "needs",
                "cycles",
                "interventions",
                "Code of Practice",
                "chain",
                "pack",
            ],
            rows,
            raw=set(range(10)),
        )
        + charts_html
    )
    return document(f"Inspection sample {index['school_urn']}", body)
