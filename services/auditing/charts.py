"""Small inline SVG charts for evidence packs: no plotting library, no external assets.

* :func:`measures_chart`: one instrument's measures over time (entry, exit and
  progress points) drawn against the interventions that used it (a band from
  start to end, entry joined to exit);
* :func:`need_mix_chart`: a school's pupils on the register by primary need,
  SEN support and EHC plans stacked;
* :func:`impact_chart`: interventions by the share rated good or strong at
  review, with how many were rated and the mean measured change.

Colours are the Okabe-Ito palette (safe for colour-blind readers) and every
chart has a ``<title>`` and ``<desc>`` for screen readers. Labels are escaped;
charts carry codes, instrument and intervention names, never personal data.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape
from typing import Any

Doc = dict[str, Any]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
GRID = "#d9d9d9"
TEXT = "#222"
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}".rstrip("0")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``count`` of them)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}" {FONT} font-size="11">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>" + "".join(body) + "</svg>"
    )


def _days(d: str) -> int:
    return date.fromisoformat(d).toordinal()


def measures_chart(
    series: Doc, interventions: list[Doc], width: int = 660, height: int = 230
) -> str:
    """One instrument's measures over time, against the interventions measured with it."""
    points = series["points"]
    used = {p["intervention_id"] for p in points if p["intervention_id"]}
    bands = [i for i in interventions if i["intervention_id"] in used]
    days = [_days(p["on"]) for p in points]
    for i in bands:
        days += [_days(i["started_on"]), _days(i["ended_on"] or i["started_on"])]
    x0, x1 = min(days), max(days)
    pad = max(7, round((x1 - x0) * 0.06))
    x0, x1 = x0 - pad, x1 + pad
    values = [p["value"] for p in points]
    spread = (max(values) - min(values)) * 0.1 or 1.0
    ticks = nice_ticks(min(values) - spread, max(values) + spread)
    y0, y1 = ticks[0], ticks[-1]
    left, right, top, bottom = 48, 14, 34, 40
    pw, ph = width - left - right, height - top - bottom

    def X(day: int) -> float:
        return left + (day - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    direction = "higher is better" if series["higher_is_better"] else "lower is better"
    title = f"{series['instrument']} ({series['unit'].replace('_', ' ')}; {direction})"
    body = [f'<text x="{left}" y="16" font-weight="bold" fill="{TEXT}">{escape(title)}</text>']
    for t in ticks:
        y = Y(t)
        body.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">{_fmt(t)}</text>'
        )
    # month ticks, thinned to at most eight labels
    first, last = date.fromordinal(x0), date.fromordinal(x1)
    months = []
    m = date(first.year, first.month, 1)
    while m <= last:
        if m >= first:
            months.append(m)
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    stride = max(1, math.ceil(len(months) / 8))
    for k, m in enumerate(months):
        x = X(m.toordinal())
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="{TEXT}"/>'
        )
        if k % stride == 0:
            label = f"{MONTHS[m.month - 1]} {m.year % 100:02d}"
            body.append(
                f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" '
                f'fill="{TEXT}">{label}</text>'
            )
    body.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{TEXT}"/>'
    )
    # intervention bands, each with its colour, entry joined to exit
    legend_x = left
    for n, i in enumerate(bands):
        colour = PALETTE[n % len(PALETTE)]
        xa = X(_days(i["started_on"]))
        xb = X(_days(i["ended_on"])) if i["ended_on"] else left + pw
        body.append(
            f'<rect x="{xa:.1f}" y="{top}" width="{max(2.0, xb - xa):.1f}" height="{ph}" '
            f'fill="{colour}" fill-opacity="0.10"/>'
        )
        mine = [p for p in points if p["intervention_id"] == i["intervention_id"]]
        if len(mine) >= 2:
            coords = " ".join(f"{X(_days(p['on'])):.1f},{Y(p['value']):.1f}" for p in mine)
            body.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for p in mine:
            filled = colour if p["source"] == "exit" else "white"
            body.append(
                f'<circle cx="{X(_days(p["on"])):.1f}" cy="{Y(p["value"]):.1f}" r="4" '
                f'fill="{filled}" stroke="{colour}" stroke-width="2">'
                f"<title>{escape(i['name'])} {p['source']} {p['on']}: {_fmt(p['value'])}</title>"
                "</circle>"
            )
        label = escape(i["name"])
        body.append(
            f'<rect x="{legend_x}" y="{height - 12}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{height - 3}" fill="{TEXT}">{label}</text>'
        )
        legend_x += 24 + 7 * len(i["name"])
    progress = [p for p in points if p["source"] == "progress"]
    if len(progress) >= 2:
        coords = " ".join(f"{X(_days(p['on'])):.1f},{Y(p['value']):.1f}" for p in progress)
        body.append(
            f'<polyline points="{coords}" fill="none" stroke="{TEXT}" stroke-dasharray="4 3"/>'
        )
    for p in progress:
        x, y = X(_days(p["on"])), Y(p["value"])
        body.append(
            f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{TEXT}">'
            f"<title>progress {p['on']}: {_fmt(p['value'])}</title></rect>"
        )
    desc = "; ".join(f"{p['on']} {p['source']} {_fmt(p['value'])}" for p in points)
    return _svg(width, height, title, desc, body)


def _hbars(
    title: str,
    rows: list[tuple[str, list[tuple[float, str]], str]],
    scale_max: float,
    width: int,
    axis_label: str,
    percent: bool = False,
) -> str:
    """Horizontal bars: (label, [(value, colour)...stacked], note) each."""
    label_w, right, top, bar_h, gap = 175, 175, 30, 16, 6
    pw = width - label_w - right
    height = top + len(rows) * (bar_h + gap) + 28
    body = [f'<text x="0" y="16" font-weight="bold" fill="{TEXT}">{escape(title)}</text>']
    ticks = nice_ticks(0, scale_max or 1, 5)
    top_tick = ticks[-1] or 1
    for t in ticks:
        x = label_w + t / top_tick * pw
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height - 24}" stroke="{GRID}"/>'
            f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle" fill="{TEXT}">'
            f"{_fmt(t * 100) + '%' if percent else _fmt(t)}</text>"
        )
    for n, (label, parts, note) in enumerate(rows):
        y = top + n * (bar_h + gap)
        shown = label if len(label) <= 28 else label[:27] + "…"
        body.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end" '
            f'fill="{TEXT}">{escape(shown)}</text>'
        )
        x = float(label_w)
        for value, colour in parts:
            w = value / top_tick * pw
            if w > 0:
                body.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>'
                )
            x += w
        body.append(
            f'<text x="{x + 6:.1f}" y="{y + bar_h - 4}" fill="{TEXT}">{escape(note)}</text>'
        )
    body.append(
        f'<text x="{label_w + pw / 2:.1f}" y="{height - 1}" text-anchor="middle" '
        f'fill="{TEXT}">{escape(axis_label)}</text>'
    )
    desc = "; ".join(f"{label}: {note}" for label, _, note in rows)
    return _svg(width, height, title, desc, body)


def need_mix_chart(counts: dict[str, dict[str, int]], width: int = 560) -> str:
    """Pupils on the register by primary need: ``{need: {"K": n, "E": m}}``."""
    order = sorted(counts, key=lambda need: (-sum(counts[need].values()), need))
    rows = [
        (
            need,
            [
                (float(counts[need].get("K", 0)), PALETTE[0]),
                (float(counts[need].get("E", 0)), PALETTE[1]),
            ],
            f"{counts[need].get('K', 0)} K, {counts[need].get('E', 0)} E",
        )
        for need in order
    ]
    top = max((sum(c.values()) for c in counts.values()), default=1)
    return _hbars(
        "Need mix: pupils on the register by primary need (blue K, orange E)",
        rows,
        top,
        width,
        "pupils",
    )


def impact_chart(impact: list[Doc], width: int = 560, limit: int = 12) -> str:
    """Interventions by the share rated good or strong (``provision_map.intervention_impact``)."""
    rated = [i for i in impact if i["good_share"] is not None][:limit]
    rows = []
    for i in rated:
        change = f", mean change {i['mean_change']:+g}" if i["mean_change"] is not None else ""
        rows.append(
            (
                i["name"],
                [(float(i["good_share"]), PALETTE[2])],
                f"{i['good_share'] * 100:.0f}% of {i['rated']} rated{change}",
            )
        )
    return _hbars(
        "Intervention impact: share rated good or strong at review (weakest first)",
        rows,
        1.0,
        width,
        "share rated good or strong",
        percent=True,
    )
