"""The provision map projection: plans, interventions, hours, costs, measured and rated impact."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid5

import pytest

from senflow.projections import provision_map as pm
from senflow.projections.base import Doc, fold
from tests.integration.story import EXAMPLE_PUPIL, ids, story
from tests.unit.test_projection_register import (
    Stream,
    assert_plain_json,
    fold_via_storage,
    story_events,
    story_stream,
)

pytestmark = pytest.mark.unit

IDS = ids(EXAMPLE_PUPIL)


def story_doc() -> Doc:
    doc = fold(pm.PROJECTION, story_events())
    assert doc is not None
    return doc


def test_the_story_folds_to_plans_interventions_and_ratings() -> None:
    doc = story_doc()
    assert_plain_json(doc)
    assert (doc["school_urn"], doc["year_group"], doc["primary_need"]) == ("123456", "3", "SLCN")
    assert doc["secondary_need"] == "SEMH"
    assert set(doc["plans"]) == {IDS["plan1"], IDS["plan2"]}
    plan1 = doc["plans"][IDS["plan1"]]
    assert plan1["agreed_on"] == "2024-10-10"
    assert plan1["review_date"] == "2025-01-20"
    assert (plan1["reviewed_on"], plan1["decision"]) == ("2025-01-20", "revise_plan")
    assert plan1["outcomes"] == [
        {"outcome_id": "O1", "target_date": None},
        {"outcome_id": "O2", "target_date": None},
    ]
    assert plan1["provisions"]["P1"] == {
        "name": "Talk Boost",
        "delivery": "small_group",
        "staff_role": "teaching_assistant",
        "sessions_per_week": 3,
        "minutes_per_session": 30,
        "weeks": 10,
        "group_size": 4,
        "cost_pence": 12000,
        "outcome_ids": ["O1", "O2"],
    }
    assert doc["interventions"][IDS["i1"]] == {
        "plan_id": IDS["plan1"],
        "provision_id": "P1",
        "name": "Talk Boost",
        "school_urn": "123456",
        "year_group": "3",
        "primary_need": "SLCN",
        "started_on": "2024-10-14",
        "ended_on": "2024-12-16",
        "end_reason": "completed",
        "sessions": 1,
        "minutes_delivered": 30,
        "entry": {
            "instrument": "WellComm",
            "value": 78.0,
            "unit": "standardised_score",
            "higher_is_better": True,
        },
        "exit": {
            "instrument": "WellComm",
            "value": 86.0,
            "unit": "standardised_score",
            "higher_is_better": True,
        },
        "impact_rating": "good",
        "keep": True,
        "rated_on": "2025-01-20",
    }
    assert doc["outcome_ratings"] == {
        IDS["plan1"]: {"O1": "met", "O2": "partially_met"},
        IDS["plan2"]: {"O2": "not_met", "O3": "partially_met"},
    }


def test_provision_rows_for_the_three_interventions() -> None:
    rows = pm.provision_rows([story_doc()])
    assert_plain_json(rows)
    summary = [
        (
            r["name"],
            r["delivery"],
            r["sessions_per_week"],
            r["minutes_per_session"],
            r["weeks"],
            r["planned_pupil_minutes"],
            r["planned_staff_hours"],
            r["cost_pence"],
            r["delivered_minutes"],
            r["change"],
            r["impact_rating"],
            r["keep"],
        )
        for r in rows
    ]
    assert summary == [
        ("Talk Boost", "small_group", 3, 30, 10, 900, 3.75, 12000, 30, 8.0, "good", True),
        (
            "Colourful semantics",
            "one_to_one",
            2,
            20,
            10,
            400,
            6.67,
            20000,
            20,
            1.0,
            "limited",
            False,
        ),
        ("Language Link", "one_to_one", 3, 20, 10, 600, 10.0, 25000, 0, 1.0, "limited", True),
    ]
    first = rows[0]
    assert first["pupil_id"] == str(EXAMPLE_PUPIL)
    assert (first["school_urn"], first["year_group"], first["need"]) == ("123456", "3", "SLCN")
    assert first["staff_role"] == "teaching_assistant"
    assert (first["entry"]["value"], first["exit"]["value"]) == (78.0, 86.0)
    assert [r["intervention_id"] for r in rows] == [IDS["i1"], IDS["i2"], IDS["i3"]]


def test_totals_by_school_year_group_and_need() -> None:
    rows = pm.provision_rows([story_doc()])
    expected = {
        "interventions": 3,
        "pupils": 1,
        "planned_staff_hours": 20.42,  # 3.75 + 6.667 + 10, summed before rounding
        "cost_pence": 57000,
        "delivered_hours": 0.83,
    }
    assert pm.provision_totals(rows, "school") == [{"school": "123456", **expected}]
    assert pm.provision_totals(rows, "year_group") == [{"year_group": "3", **expected}]
    assert pm.provision_totals(rows, "need") == [{"need": "SLCN", **expected}]
    with pytest.raises(ValueError):
        pm.provision_totals(rows, "teacher")


def test_intervention_impact_puts_weak_interventions_first() -> None:
    impact = pm.intervention_impact(pm.provision_rows([story_doc()]))
    assert [(i["name"], i["count"], i["mean_change"], i["good_share"]) for i in impact] == [
        ("Colourful semantics", 1, 1.0, 0.0),
        ("Language Link", 1, 1.0, 0.0),
        ("Talk Boost", 1, 8.0, 1.0),
    ]
    talk = impact[-1]
    assert talk["ratings"] == {"none": 0, "limited": 0, "good": 1, "strong": 0}
    assert talk["by_instrument"] == {
        "WellComm (standardised_score)": {"count": 1, "mean_change": 8.0}
    }
    assert (talk["kept"], talk["cost_pence"], talk["planned_staff_hours"]) == (1, 12000, 3.75)


# --- a second pupil: other measures, other ratings, across the trust ---------------------------


def _pupil(
    name: str,
    urn: str = "654321",
    *,
    entry: dict[str, Any] | None,
    exit_: dict[str, Any] | None,
    impact: str | None,
    year_group: str = "5",
    need: str = "SEMH",
    group_size: int = 3,
) -> Stream:
    pupil = uuid5(EXAMPLE_PUPIL, f"{name}-{urn}-{impact}-{year_group}")
    plan, iid = str(uuid5(pupil, "plan")), str(uuid5(pupil, "i"))
    s = Stream(pupil, {"trust_id": "trust-7", "school_urn": urn}, first_position=500)
    s.add(
        "pupil_registered",
        {
            "upn": "B801200005001",
            "forename": "Cat",
            "surname": "Lee",
            "date_of_birth": "2015-05-05",
            "year_group": year_group,
            "on_roll_from": "2020-09-01",
        },
        "2024-09-02",
    )
    s.add(
        "sen_support_started",
        {"needs": [{"type": need, "rank": 1}], "parents_notified": True},
        "2024-09-10",
    )
    s.add(
        "plan_agreed",
        {
            "plan_id": plan,
            "outcomes": [{"outcome_id": "O1", "description": "Calmer at lunch."}],
            "provisions": [
                {
                    "provision_id": "P1",
                    "name": name,
                    "delivery": "small_group",
                    "staff_role": "teaching_assistant",
                    "sessions_per_week": 2,
                    "minutes_per_session": 20,
                    "weeks": 10,
                    "group_size": group_size,
                    "cost_pence": 9000,
                    "outcome_ids": ["O1"],
                }
            ],
            "expected_impact": "Fewer incidents.",
            "review_date": "2024-12-09",
            "agreed_by": ["senco", "parent", "pupil"],
            "staff_informed": True,
        },
        "2024-09-12",
    )
    s.add(
        "intervention_started",
        {"intervention_id": iid, "plan_id": plan, "provision_id": "P1", "entry_measure": entry},
        "2024-09-16",
    )
    for day in ("2024-09-17", "2024-09-19", "2024-09-24"):
        s.add("intervention_session_recorded", {"intervention_id": iid, "minutes": 20}, day)
    s.add(
        "intervention_session_recorded",
        {"intervention_id": iid, "minutes": 0, "attended": False, "note": "Absent."},
        "2024-09-26",
    )
    s.add("intervention_ended", {"intervention_id": iid, "exit_measure": exit_}, "2024-11-25")
    if impact:
        s.add(
            "review_held",
            {
                "plan_id": plan,
                "outcome_progress": [{"outcome_id": "O1", "rating": "met"}],
                "intervention_impact": [{"intervention_id": iid, "impact": impact, "keep": True}],
                "decision": "continue",
                "next_review_date": "2025-03-10",
            },
            "2024-12-09",
        )
    return s


def boxall(value: float) -> dict[str, Any]:
    # lower is better: fewer difficulties
    return {
        "instrument": "Boxall profile",
        "value": value,
        "unit": "scale",
        "higher_is_better": False,
    }


def test_lower_is_better_measures_flip_the_sign() -> None:
    s = _pupil("Zones of Regulation", entry=boxall(40), exit_=boxall(31), impact="strong")
    [row] = pm.provision_rows([fold(pm.PROJECTION, s.events)])  # type: ignore[list-item]
    assert row["change"] == 9.0
    assert (row["sessions"], row["delivered_minutes"]) == (3, 60)  # the absence counts no session
    assert row["planned_staff_hours"] == round(2 * 20 * 10 / 3 / 60, 2)
    assert (row["school_urn"], row["year_group"], row["need"]) == ("654321", "5", "SEMH")


@pytest.mark.parametrize(
    ("entry", "exit_"),
    [
        (None, None),
        ({"instrument": "WellComm", "value": 80}, None),
        ({"instrument": "WellComm", "value": 80}, {"instrument": "NGRT", "value": 90}),
        (
            {"instrument": "WellComm", "value": 80},
            {"instrument": "WellComm", "value": 12, "unit": "raw_score"},
        ),
    ],
)
def test_no_change_without_comparable_measures(
    entry: dict[str, Any] | None, exit_: dict[str, Any] | None
) -> None:
    s = _pupil("Talk Boost", entry=entry, exit_=exit_, impact=None)
    [row] = pm.provision_rows([fold(pm.PROJECTION, s.events)])  # type: ignore[list-item]
    assert row["change"] is None
    assert row["impact_rating"] is None


def test_impact_across_the_trust() -> None:
    docs = [
        story_doc(),
        fold(
            pm.PROJECTION,
            _pupil(
                "Talk  boost",  # spelt differently in another school: the same intervention
                entry={"instrument": "WellComm", "value": 70},
                exit_={"instrument": "WellComm", "value": 72},
                impact="limited",
            ).events,
        ),
        fold(
            pm.PROJECTION,
            _pupil(
                "Zones of Regulation", entry=boxall(40), exit_=boxall(31), impact="strong"
            ).events,
        ),
    ]
    rows = pm.provision_rows(docs)  # type: ignore[arg-type]
    impact = {i["name"]: i for i in pm.intervention_impact(rows)}
    talk = impact["Talk Boost"]
    assert (talk["count"], talk["pupils"], talk["mean_change"], talk["good_share"]) == (
        2,
        2,
        5.0,
        0.5,
    )
    assert talk["cost_pence"] == 12000 + 9000
    assert [i["name"] for i in pm.intervention_impact(rows)] == [
        "Colourful semantics",
        "Language Link",
        "Talk Boost",
        "Zones of Regulation",
    ]
    by_school = pm.provision_totals(rows, "school")
    assert [(g["school"], g["interventions"], g["pupils"]) for g in by_school] == [
        ("123456", 3, 1),
        ("654321", 2, 2),
    ]
    by_year = pm.provision_totals(rows, "year_group")
    assert [g["year_group"] for g in by_year] == ["3", "5"]
    by_need = pm.provision_totals(rows, "need")
    assert [(g["need"], g["cost_pence"]) for g in by_need] == [("SEMH", 18000), ("SLCN", 57000)]


def test_year_groups_sort_in_curriculum_order() -> None:
    docs = [
        fold(pm.PROJECTION, _pupil("A", entry=None, exit_=None, impact=None, year_group=y).events)
        for y in ("10", "R", "2", "N2")
    ]
    totals = pm.provision_totals(pm.provision_rows(docs), "year_group")  # type: ignore[arg-type]
    assert [g["year_group"] for g in totals] == ["N2", "R", "2", "10"]


# --- corrections, transfers, leaving --------------------------------------------------------


def test_a_corrected_plan_changes_the_cost_and_the_name() -> None:
    stream = story_stream()
    plan = next(e for e in stream.events if e.event_type == "plan_agreed")
    fixed = stream.originals[plan.event_id].model_dump(mode="json")
    fixed["provisions"][0] = {
        **fixed["provisions"][0],
        "cost_pence": 15000,
        "name": "Talk Boost KS1",
    }
    stream.correct(plan, "2026-09-28", provisions=fixed["provisions"])
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    rows = pm.provision_rows([doc])
    assert (rows[0]["name"], rows[0]["cost_pence"]) == ("Talk Boost KS1", 15000)
    assert doc["interventions"][IDS["i1"]]["name"] == "Talk Boost KS1"
    assert doc["interventions"][IDS["i1"]]["sessions"] == 1  # sessions survive the rebuild
    assert_plain_json(doc)


def test_a_corrected_exit_measure_and_review_change_impact() -> None:
    stream = story_stream()
    ended = next(e for e in stream.events if e.event_type == "intervention_ended")
    stream.correct(
        ended,
        "2026-09-28",
        exit_measure={"instrument": "WellComm", "value": 90, "unit": "standardised_score"},
    )
    review = next(e for e in stream.events if e.event_type == "review_held")
    original = stream.originals[review.event_id].model_dump(mode="json")
    impacts = [{**original["intervention_impact"][0], "impact": "strong"}]
    stream.correct(
        review, "2026-09-29", intervention_impact=impacts + original["intervention_impact"][1:]
    )
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    i1 = doc["interventions"][IDS["i1"]]
    assert (i1["exit"]["value"], i1["impact_rating"], i1["ended_on"]) == (
        90.0,
        "strong",
        "2024-12-16",
    )
    assert pm.provision_rows([doc])[0]["change"] == 12.0


def test_a_corrected_session_changes_the_delivered_minutes() -> None:
    stream = story_stream()
    session = next(e for e in stream.events if e.event_type == "intervention_session_recorded")
    stream.correct(session, "2026-09-28", minutes=45)
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    assert doc["interventions"][IDS["i1"]]["minutes_delivered"] == 45
    assert doc["interventions"][IDS["i1"]]["sessions"] == 1
    stream.correct(session, "2026-09-29", minutes=0, attended=False)
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    assert (
        doc["interventions"][IDS["i1"]]["sessions"],
        doc["interventions"][IDS["i1"]]["minutes_delivered"],
    ) == (0, 0)


def test_interventions_stay_with_the_school_that_delivered_them() -> None:
    stream = Stream()
    for cmd in story(EXAMPLE_PUPIL)[:11]:  # two interventions running, two sessions
        stream.command(cmd)
    stream.add("pupil_transferred", {"from_urn": "123456", "to_urn": "654321"}, "2024-11-01")
    stream.add(
        "intervention_session_recorded", {"intervention_id": IDS["i1"], "minutes": 30}, "2024-11-04"
    )
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    assert doc["school_urn"] == "654321"
    assert {i["school_urn"] for i in doc["interventions"].values()} == {"123456"}
    assert doc["interventions"][IDS["i1"]]["minutes_delivered"] == 60


def test_pupil_left_ends_running_interventions() -> None:
    stream = Stream()
    for cmd in story(EXAMPLE_PUPIL)[:11]:
        stream.command(cmd)
    stream.add("pupil_left", {"destination": "moved_away"}, "2024-11-08")
    for iid in (IDS["i1"], IDS["i2"]):  # what record_pupil_left also records
        stream.add(
            "intervention_ended", {"intervention_id": iid, "reason": "pupil_left"}, "2024-11-08"
        )
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    rows = pm.provision_rows([doc])
    assert [(r["ended_on"], r["end_reason"], r["change"]) for r in rows] == [
        ("2024-11-08", "pupil_left", None),
        ("2024-11-08", "pupil_left", None),
    ]


# --- determinism -------------------------------------------------------------------------------


def test_folding_the_same_events_twice_gives_equal_documents() -> None:
    events = story_events()
    once = fold(pm.PROJECTION, events)
    assert once == fold(pm.PROJECTION, events)
    assert fold(pm.PROJECTION, events + events) == once


def test_incremental_sessions_agree_with_a_full_derive() -> None:
    stream = story_stream()
    stream.add(
        "intervention_session_recorded", {"intervention_id": IDS["i3"], "minutes": 20}, "2026-09-28"
    )
    doc = fold(pm.PROJECTION, stream.events)
    assert doc is not None
    derived = pm.derive(doc["facts"], doc["session_log"])
    assert {k: doc[k] for k in derived} == derived
    assert doc["interventions"][IDS["i3"]]["minutes_delivered"] == 20


def test_documents_read_back_from_storage_evolve_the_same() -> None:
    stream = story_stream()
    session = next(e for e in stream.events if e.event_type == "intervention_session_recorded")
    stream.correct(session, "2026-09-28", minutes=25)
    assert fold_via_storage(pm.PROJECTION, stream.events) == fold(pm.PROJECTION, stream.events)


def test_evolve_does_not_change_the_document_it_is_given() -> None:
    events = story_events()
    doc = fold(pm.PROJECTION, events[:9])  # both interventions started
    snapshot = json.dumps(doc, sort_keys=True)
    pm.evolve(doc, events[9])  # a session
    pm.evolve(doc, events[12])  # an ending
    assert json.dumps(doc, sort_keys=True) == snapshot


def test_projection_declaration() -> None:
    assert pm.PROJECTION.name == "provision_map"
    for index in pm.PROJECTION.indexes:
        index.format(schema="senflow_provision_map")
