"""Census days, the census SEN extract and its rules, and the CTF SEN part: pure, no database."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from senflow.projections import register
from senflow.projections.base import fold
from senflow.services.auditing import census, ctf
from tests.unit.auditing_helpers import Pupil, story_pupil

pytestmark = pytest.mark.unit

GENERATED = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


# --- census days -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "year", "expected"),
    [
        ("autumn", 2025, date(2025, 10, 2)),
        ("spring", 2026, date(2026, 1, 15)),
        ("summer", 2026, date(2026, 5, 21)),
        ("autumn", 2024, date(2024, 10, 3)),
        ("spring", 2025, date(2025, 1, 16)),
        ("summer", 2025, date(2025, 5, 15)),
    ],
)
def test_census_days(term, year, expected):
    assert census.census_day(term, year) == expected
    assert census.census_term(expected) == term


def test_census_days_are_the_right_thursdays_every_year():
    for year in range(2015, 2040):
        autumn, spring, summer = (census.census_day(t, year) for t in census.TERMS)
        assert {d.weekday() for d in (autumn, spring, summer)} == {3}
        assert 1 <= autumn.day <= 7 and 15 <= spring.day <= 21 and 15 <= summer.day <= 21
    assert census.census_term(date(2025, 10, 9)) is None
    assert census.latest_census_day(date(2026, 1, 14)) == date(2025, 10, 2)
    assert census.latest_census_day(date(2026, 1, 15)) == date(2026, 1, 15)
    with pytest.raises(ValueError):
        census.census_day("winter", 2025)


# --- the extract ---------------------------------------------------------------------------------


def test_the_story_pupil_on_each_census_day():
    doc = fold(register.PROJECTION, story_pupil().events)

    def row(day: date) -> dict:
        [r] = census.census_rows([doc], day)
        return r

    assert row(date(2024, 10, 3))["sen_provision"] == "N" and row(date(2024, 10, 3))["needs"] == []
    assert row(date(2025, 1, 16))["sen_provision"] == "K"
    assert row(date(2025, 1, 16))["needs"] == [{"rank": 1, "type": "SLCN"}]
    later = row(date(2026, 1, 15))
    assert later["sen_provision"] == "E" and later["year_group"] == "4"
    assert later["needs"] == [{"rank": 1, "type": "SLCN"}, {"rank": 2, "type": "SEMH"}]
    assert census.census_rows([doc], date(2024, 5, 16)) == []  # not yet in senflow
    assert census.census_rows([doc], date(2025, 1, 16), "654321") == []
    rows = [row(date(2025, 10, 2))]
    assert census.validate(rows) == []
    assert census.csv_rows(rows)[1] == [
        "B801200005001",
        str(doc["pupil_id"]),
        "123456",
        "4",
        "K",
        "SLCN",
        "",
    ]


def test_a_transferred_pupil_counts_where_they_were_and_a_leaver_is_gone():
    p = Pupil()
    p.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "Sam",
            "surname": "Lee",
            "date_of_birth": "2016-01-02",
            "year_group": "4",
            "on_roll_from": "2020-09-01",
        },
        "2025-09-03",
    )
    p.add("pupil_transferred", {"from_urn": "123456", "to_urn": "654321"}, "2025-12-01")
    p.add("pupil_left", {"destination": "moved_away"}, "2026-03-01")
    doc = fold(register.PROJECTION, p.events)
    autumn, spring, summer = date(2025, 10, 2), date(2026, 1, 15), date(2026, 5, 21)
    assert [r["school_urn"] for r in census.census_rows([doc], autumn)] == ["123456"]
    assert census.census_rows([doc], autumn, "654321") == []
    assert [r["school_urn"] for r in census.census_rows([doc], spring, "654321")] == ["654321"]
    assert census.census_rows([doc], summer) == []


def _row(
    provision: str, *needs: tuple[int, str], upn: str = "B801200005001", pid: str = "p1"
) -> dict:
    return {
        "pupil_id": pid,
        "upn": upn,
        "school_urn": "123456",
        "year_group": "4",
        "sen_provision": provision,
        "needs": [{"rank": r, "type": t} for r, t in needs],
    }


@pytest.mark.parametrize(
    ("row", "rules"),
    [
        (_row("N"), []),
        (_row("K", (1, "SLCN")), []),
        (_row("K", (1, "NSA")), []),
        (_row("E", (1, "ASD"), (2, "SLCN")), []),
        (_row("K"), ["type_required"]),
        (_row("E"), ["type_required"]),
        (_row("K", (2, "SLCN")), ["one_primary"]),
        (_row("K", (1, "SLCN"), (1, "SEMH")), ["one_primary"]),
        (_row("K", (1, "SLCN"), (2, "SEMH"), (2, "MLD")), ["at_most_two"]),
        (_row("K", (1, "SLCN"), (3, "SEMH")), ["at_most_two"]),
        (_row("K", (1, "SLCN"), (2, "SLCN")), ["distinct_types"]),
        (_row("E", (1, "NSA")), ["nsa_only_with_k"]),
        (_row("N", (1, "SLCN")), ["no_detail_with_n"]),
        (_row("S"), ["provision_code"]),
        (_row("K", (1, "DYSLEXIA")), ["need_type_code"]),
        (_row("K", (1, "SLCN"), upn="B801200005002"), ["upn_valid"]),
    ],
)
def test_census_rules(row, rules):
    assert [b["rule"] for b in census.validate([row])] == rules
    for b in census.validate([row]):
        assert b["pupil_id"] == "p1" and b["message"].startswith(census.RULES[b["rule"]])


def test_a_pupil_twice_is_a_breach_and_counts():
    rows = [_row("K", (1, "SLCN")), _row("E", (1, "ASD"), pid="p1")]
    assert {b["rule"] for b in census.validate(rows)} == {"one_provision"}
    counts = census.counts([_row("K", (1, "SLCN")), _row("N", pid="p2", upn="A801200005001")])
    assert counts == {"pupils": 2, "by_provision": {"K": 1, "N": 1}, "by_primary_need": {"SLCN": 1}}


# --- CTF ------------------------------------------------------------------------------------


def test_the_story_pupils_sen_history():
    doc = fold(register.PROJECTION, story_pupil().events)
    history = ctf.sen_history(doc)
    assert history["sen"] == [
        {"start_date": "2024-10-08", "provision": "K"},
        {"start_date": "2025-10-15", "provision": "E"},
    ]
    assert history["needs"] == [
        {"start_date": "2024-10-08", "end_date": None, "rank": 1, "type": "SLCN"},
        {"start_date": "2025-10-15", "end_date": None, "rank": 2, "type": "SEMH"},
    ]


def _leaver(end_support: bool) -> dict:
    p = Pupil()
    p.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "Sam",
            "surname": "O'Neil <Jr>",
            "date_of_birth": "2016-01-02",
            "year_group": "4",
            "on_roll_from": "2020-09-01",
        },
        "2025-09-03",
    )
    p.add(
        "sen_support_started",
        {
            "needs": [{"type": "SPLD", "rank": 1}, {"type": "SEMH", "rank": 2}],
            "parents_notified": True,
            "parents_notified_on": "2025-09-10",
        },
        "2025-09-10",
    )
    p.add(
        "needs_reclassified",
        {"needs": [{"type": "SPLD", "rank": 1}], "reason": "Settled."},
        "2026-01-20",
    )
    if end_support:
        p.add("sen_support_ended", {"reason": "needs_met"}, "2026-04-01")
    p.add(
        "pupil_left",
        {"destination": "school_outside_trust", "destination_urn": "765432"},
        "2026-07-20",
    )
    doc = fold(register.PROJECTION, p.events)
    assert doc is not None
    return doc


def test_support_ended_is_an_n_and_leaving_ends_nothing():
    ended = ctf.sen_history(_leaver(end_support=True))
    assert ended["sen"] == [
        {"start_date": "2025-09-10", "provision": "K"},
        {"start_date": "2026-04-01", "provision": "N"},
    ]
    assert ended["needs"] == [
        {"start_date": "2025-09-10", "end_date": "2026-04-01", "rank": 1, "type": "SPLD"},
        {"start_date": "2025-09-10", "end_date": "2026-01-20", "rank": 2, "type": "SEMH"},
    ]
    kept = ctf.sen_history(_leaver(end_support=False))
    assert kept["sen"] == [{"start_date": "2025-09-10", "provision": "K"}]
    assert kept["needs"][0] == {
        "start_date": "2025-09-10",
        "end_date": None,
        "rank": 1,
        "type": "SPLD",
    }


def test_ctf_is_well_formed_and_round_trips():
    doc = _leaver(end_support=True)
    history = ctf.sen_history(doc)
    pupil = {"upn": doc["upn"], "surname": "O'Neil <Jr>", "forename": "Sam", "dob": "2016-01-02"}
    xml = ctf.build(
        pupil,
        history,
        generated_at=GENERATED,
        source_urn="123456",
        dest_urn="765432",
        source_laestab="8861234",
    )
    root = ET.fromstring(xml)  # well-formed
    assert root.tag == "CTfile"
    assert root.findtext("Header/SourceSchool/LEA") == "886"
    assert root.findtext("Header/SourceSchool/Estab") == "1234"
    first = root.find("CTFpupilData/Pupil/SENneeds/SENneed")
    assert [c.tag for c in first] == ["NeedStartDate", "NeedEndDate", "SENtypeRank", "SENtype"]
    assert [c.tag for c in root.find("CTFpupilData/Pupil/SENhistory/SEN")] == [
        "StartDate",
        "SENprovision",
    ]
    [back] = ctf.parse(xml)
    assert back == {**pupil, "history": history}
    assert (
        ctf.build(
            {k: back[k] for k in ("upn", "surname", "forename", "dob")},
            back["history"],
            generated_at=GENERATED,
            source_urn="123456",
            dest_urn="765432",
            source_laestab="8861234",
        )
        == xml
    )
    assert ctf.header(xml)["dest_urn"] == "765432" and ctf.header(xml)["qualifier"] == "partial"


def test_ctf_without_names_and_without_sen():
    xml = ctf.build(
        {"upn": "B801200005001"},
        {"sen": [], "needs": []},
        generated_at=GENERATED,
        source_urn="123456",
    )
    [back] = ctf.parse(xml)
    assert back == {
        "upn": "B801200005001",
        "surname": None,
        "forename": None,
        "dob": None,
        "history": {"sen": [], "needs": []},
    }
    assert "<Surname" not in xml and "<SENhistory" not in xml


def test_ctf_refuses_entities_and_other_documents():
    with pytest.raises(ValueError):
        ctf.parse('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><CTfile/>')
    with pytest.raises(ValueError):
        ctf.parse("<NotACTF/>")


_days = st.dates(min_value=date(2010, 1, 1), max_value=date(2030, 12, 31)).map(date.isoformat)


@settings(max_examples=60, deadline=None)
@given(
    sen=st.lists(
        st.fixed_dictionaries({"start_date": _days, "provision": st.sampled_from(["N", "K", "E"])}),
        max_size=6,
    ),
    needs=st.lists(
        st.fixed_dictionaries(
            {
                "start_date": _days,
                "end_date": st.none() | _days,
                "rank": st.sampled_from([1, 2]),
                "type": st.sampled_from(["SPLD", "MLD", "SEMH", "SLCN", "ASD", "NSA", "OTH"]),
            }
        ),
        max_size=6,
    ),
    name=st.none()
    | st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=30),
)
def test_any_sen_history_round_trips(sen, needs, name):
    history = {"sen": sen, "needs": needs}
    surname = name.strip() or None if name else None
    pupil = {"upn": "B801200005001", "surname": surname}
    xml = ctf.build(pupil, history, generated_at=GENERATED - timedelta(days=1), source_urn="123456")
    [back] = ctf.parse(xml)
    assert back["history"] == history
    assert back["surname"] == pupil["surname"]
