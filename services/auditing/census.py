"""The School Census SEN extract for a census day, and the census rules it must meet.

Census days: the first Thursday of October (autumn), the third Thursdays of
January (spring) and May (summer). The extract has one row per pupil on roll at
the school on that day: UPN, year group, the SEN provision (N, K, E) and the
ranked need types in force that day. Pupils are taken from the register's fact
log (:func:`senflow.projections.register.derive` cut at the census day), so a
correction recorded since is applied, a pupil who has moved since counts for
the school they were at then, and a pupil who left before the day is not there.

:func:`validate` checks the rows against the census rules and reports every
breach (it never "fixes" a row): K and E need a type; exactly one primary need
(rank 1); at most two needs, ranked 1 and 2, of different types; NSA only with
K; no SEN detail with N; one SEN provision per pupil; a valid UPN.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from senflow.events.codes import NeedType, SenProvision, upn_problem
from senflow.projections import register
from senflow.projections.common import year_group_on

Doc = dict[str, Any]

TERMS = ("autumn", "spring", "summer")
_THURSDAY = 3

# rule -> what it says (the census's own wording, shortened)
RULES: dict[str, str] = {
    "provision_code": "SEN provision must be N, K or E",
    "type_required": "a pupil on K or E must have an SEN type of need",
    "one_primary": "exactly one need must be ranked 1 (the primary need)",
    "at_most_two": "at most two needs, ranked 1 and 2",
    "distinct_types": "the primary and secondary needs must be different types",
    "need_type_code": "SEN type must be one of the census codes",
    "nsa_only_with_k": "NSA (no specialist assessment) is only valid with provision K",
    "no_detail_with_n": "a pupil on N must have no SEN need types",
    "one_provision": "a pupil appears once, with one SEN provision",
    "upn_valid": "the UPN must be valid (check letter and shape)",
}


def _nth_thursday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    offset = (_THURSDAY - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def census_day(term: str, year: int) -> date:
    """The census day of ``term`` in calendar ``year`` (autumn 2025 is 2 October 2025)."""
    match term:
        case "autumn":
            return _nth_thursday(year, 10, 1)
        case "spring":
            return _nth_thursday(year, 1, 3)
        case "summer":
            return _nth_thursday(year, 5, 3)
    raise ValueError(f"term must be one of {', '.join(TERMS)}, not {term!r}")


def census_term(day: date) -> str | None:
    """The term whose census day ``day`` is, or None if it is not a census day."""
    for term in TERMS:
        if census_day(term, day.year) == day:
            return term
    return None


def latest_census_day(on_or_before: date) -> date:
    """The most recent census day on or before a day."""
    days = [
        census_day(term, year)
        for year in (on_or_before.year - 1, on_or_before.year)
        for term in TERMS
    ]
    return max(d for d in days if d <= on_or_before)


def census_rows(docs: list[Doc], day: date, school_urn: str | None = None) -> list[Doc]:
    """One row per pupil on roll on ``day`` (at ``school_urn`` if given), from register docs.

    A pupil whose record in senflow starts after the day (registered later) is
    not in the extract: senflow knows nothing of them on that day.
    """
    d = day.isoformat()
    rows: list[Doc] = []
    for doc in docs:
        view = register.derive(doc["facts"], until=day)
        if view["registered_on"] is None or not view["on_roll"]:
            continue
        if view["on_roll_from"] and view["on_roll_from"] > d:
            continue
        school = view["school_urn"] or doc.get("school_urn")
        if school_urn is not None and school != school_urn:
            continue
        provision = str(view["provision"])
        needs = sorted(view["needs"], key=lambda n: (n["rank"], n["type"]))
        rows.append(
            {
                "pupil_id": doc["pupil_id"],
                "trust_id": doc.get("trust_id"),
                "school_urn": school,
                "upn": view["upn"],
                "year_group": year_group_on(
                    view["year_group"], view["year_group_recorded_on"], day
                ),
                "sen_provision": provision,
                "needs": [{"rank": int(n["rank"]), "type": str(n["type"])} for n in needs],
            }
        )
    rows.sort(key=lambda r: (r["school_urn"] or "", r["upn"] or "", r["pupil_id"]))
    return rows


def _breach(row: Doc, rule: str, detail: str | None = None) -> Doc:
    return {
        "pupil_id": row["pupil_id"],
        "upn": row["upn"],
        "school_urn": row["school_urn"],
        "rule": rule,
        "message": RULES[rule] + (f" ({detail})" if detail else ""),
    }


def validate(rows: list[Doc]) -> list[Doc]:
    """Every breach of the census rules in the rows (an empty list when they all pass)."""
    out: list[Doc] = []
    seen = Counter(r["pupil_id"] for r in rows)
    upns = Counter(r["upn"] for r in rows if r["upn"])
    valid_types = {t.value for t in NeedType}
    for row in rows:
        provision, needs = row["sen_provision"], row["needs"]
        ranks = [n["rank"] for n in needs]
        types = [n["type"] for n in needs]
        if seen[row["pupil_id"]] > 1 or (row["upn"] and upns[row["upn"]] > 1):
            out.append(_breach(row, "one_provision", "the pupil appears more than once"))
        if row["upn"] is None or upn_problem(row["upn"]):
            out.append(_breach(row, "upn_valid", upn_problem(row["upn"] or "") or "no UPN"))
        if provision not in {p.value for p in SenProvision}:
            out.append(_breach(row, "provision_code", f"got {provision!r}"))
            continue
        for t in types:
            if t not in valid_types:
                out.append(_breach(row, "need_type_code", f"got {t!r}"))
        if provision == "N":
            if needs:
                out.append(_breach(row, "no_detail_with_n", f"got {', '.join(types)}"))
            continue
        if not needs:
            out.append(_breach(row, "type_required", f"provision {provision}"))
            continue
        if ranks.count(1) != 1:
            out.append(_breach(row, "one_primary", f"ranks {sorted(ranks)}"))
        if len(needs) > 2 or any(r not in (1, 2) for r in ranks) or ranks.count(2) > 1:
            out.append(_breach(row, "at_most_two", f"ranks {sorted(ranks)}"))
        if len(set(types)) != len(types):
            out.append(_breach(row, "distinct_types", f"got {', '.join(types)}"))
        if "NSA" in types and provision != "K":
            out.append(_breach(row, "nsa_only_with_k", f"provision {provision}"))
    return out


def counts(rows: list[Doc]) -> Doc:
    """Totals: pupils by provision, and pupils on K or E by primary need."""
    primary = Counter(
        next((n["type"] for n in r["needs"] if n["rank"] == 1), "none")
        for r in rows
        if r["sen_provision"] in ("K", "E")
    )
    return {
        "pupils": len(rows),
        "by_provision": dict(sorted(Counter(r["sen_provision"] for r in rows).items())),
        "by_primary_need": dict(sorted(primary.items())),
    }


CSV_COLUMNS = (
    "UPN",
    "pupil_id",
    "school_urn",
    "year_group",
    "SENprovision",
    "SENtype_rank1",
    "SENtype_rank2",
)


def csv_rows(rows: list[Doc]) -> list[list[Any]]:
    """The extract as spreadsheet rows (header first): one line a pupil, needs by rank."""
    out: list[list[Any]] = [list(CSV_COLUMNS)]
    for r in rows:
        by_rank = {n["rank"]: n["type"] for n in r["needs"]}
        out.append(
            [
                r["upn"],
                r["pupil_id"],
                r["school_urn"],
                r["year_group"],
                r["sen_provision"],
                by_rank.get(1, ""),
                by_rank.get(2, ""),
            ]
        )
    return out
