"""The rules a command is judged by, named so people can look them up.

A *must* (a statutory duty, a census rule, or a precondition without which the
record would not make sense) rejects the command. A *should* lets it through
with a named warning. Paragraphs are from the SEND Code of Practice (0-25);
"census" means the School Census SEN validation rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    MUST = "must"
    SHOULD = "should"


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    basis: str  # paragraph of the Code, "census", or "record integrity"
    text: str
    remedy: str


def _must(name: str, basis: str, text: str, remedy: str) -> Rule:
    return Rule(name, Severity.MUST, basis, text, remedy)


def _should(name: str, basis: str, text: str, remedy: str) -> Rule:
    return Rule(name, Severity.SHOULD, basis, text, remedy)


RULES: dict[str, Rule] = {
    r.name: r
    for r in [
        # --- statutory duties and census rules -----------------------------------------
        _must(
            "parents_notified_before_sen_support",
            "6.48",
            "Parents must be formally notified when SEN support starts.",
            "Notify the parents, then record parents_notified=true with parents_notified_on.",
        ),
        _must(
            "one_sen_provision_open",
            "census",
            "Only one SEN provision (K or E) may be open at a time.",
            "End the open provision first, or record a change of need instead.",
        ),
        _must(
            "need_type_required",
            "census",
            "A need type is required for SEN support (K) and EHC plans (E).",
            "Give the primary need (rank 1) and, if any, one secondary need (rank 2).",
        ),
        _must(
            "need_ranking",
            "census",
            "Exactly one primary need, at most one secondary, and no type twice.",
            "Rank the needs 1 (primary) and 2 (secondary) with different types.",
        ),
        _must(
            "nsa_only_with_sen_support",
            "census",
            "NSA (no specialist assessment) may only be used with SEN support (K).",
            "Record the assessed need type for a pupil with an EHC plan.",
        ),
        _must(
            "no_sen_detail_without_provision",
            "census",
            "A pupil with no SEN provision (N) has no SEN need types.",
            "Start SEN support first, or record the concern and assessment only.",
        ),
        _must(
            "plan_requires_outcomes",
            "6.48",
            "A plan must set out the outcomes sought.",
            "Add at least one outcome.",
        ),
        _must(
            "plan_requires_provision",
            "6.48",
            "A plan must set out the interventions and support to be put in place.",
            "Add at least one provision.",
        ),
        _must(
            "plan_requires_review_date",
            "6.48",
            "A plan must have a clear review date after the day it is agreed.",
            "Set review_date to a day after the plan is agreed.",
        ),
        _must(
            "specialist_requires_parental_consent",
            "6.47",
            "Specialists are involved only if the parents agree.",
            "Ask the parents; record parental_consent=true and consent_given_on.",
        ),
        _must(
            "ehc_review_within_12_months",
            "6.56",
            "An EHC plan must be reviewed at least every twelve months.",
            "Set the next review date no later than twelve months ahead.",
        ),
        _must(
            "transition_requires_parental_agreement",
            "6.57",
            "Information is shared at transition with the parents' agreement.",
            "Ask the parents; record parental_agreement=true.",
        ),
        # --- preconditions: without these the record would not make sense ----------------
        _must(
            "pupil_must_be_registered",
            "record integrity",
            "The pupil must be registered before anything else is recorded.",
            "Register the pupil (register_pupil) first.",
        ),
        _must(
            "pupil_already_registered",
            "record integrity",
            "The pupil is already registered.",
            "Correct the registration with correct_record instead.",
        ),
        _must(
            "pupil_has_left",
            "record integrity",
            "The pupil has left; only corrections and transition information may follow.",
            "Record this at the pupil's new setting, or correct the leaving record.",
        ),
        _must(
            "personal_data_erased",
            "record integrity",
            "The pupil's personal data was erased; the record is closed.",
            "Nothing more can be recorded for this pupil.",
        ),
        _must(
            "occurred_at_not_in_future",
            "record integrity",
            "occurred_at is when it happened in school, so it cannot be in the future.",
            "Record events after they happen, with the day they happened.",
        ),
        _must(
            "tenant_matches_pupil",
            "record integrity",
            "A command must name the school the pupil is on roll at.",
            "Use the pupil's current school, or transfer the pupil first.",
        ),
        _must(
            "requires_sen_provision",
            "record integrity",
            "This needs the pupil to be on SEN support or to have an EHC plan.",
            "Start SEN support first.",
        ),
        _must(
            "requires_sen_support",
            "record integrity",
            "This needs the pupil to be on SEN support (K); an EHC plan ends by the LA.",
            "Use the EHC annual review to recommend that the plan ceases.",
        ),
        _must(
            "requires_ehc_plan",
            "record integrity",
            "This needs the pupil to have an EHC plan.",
            "Record the EHC plan first.",
        ),
        _must(
            "plan_references_valid",
            "record integrity",
            "Outcome and provision ids must be unique and provisions may only serve "
            "outcomes of the same plan.",
            "Give each outcome and provision its own id and link provisions to listed outcomes.",
        ),
        _must(
            "intervention_requires_planned_provision",
            "6.50",
            "An intervention delivers a provision of the current plan.",
            "Use the current plan_id and one of its provision_ids, or revise the plan.",
        ),
        _must(
            "intervention_must_be_new",
            "record integrity",
            "This intervention has already started.",
            "Use a new intervention_id, or record a session of the running one.",
        ),
        _must(
            "intervention_must_be_running",
            "record integrity",
            "There is no running intervention with this id.",
            "Start the intervention first; an ended one cannot take sessions.",
        ),
        _must(
            "review_requires_current_plan",
            "6.53",
            "A review evaluates the current plan.",
            "Agree a plan first, and review it by its plan_id.",
        ),
        _must(
            "review_references_plan",
            "6.53",
            "Progress is rated against the plan's outcomes and impact against its interventions.",
            "Use outcome_ids of the plan and intervention_ids delivered under it.",
        ),
        _must(
            "review_requires_next_date",
            "6.48",
            "Unless SEN support ends, a review sets the next review date, after the review.",
            "Set next_review_date after the day of the review.",
        ),
        _must(
            "ehc_request_not_open",
            "6.63",
            "An EHC needs assessment request is already open, or a plan is in place.",
            "Wait for the local authority's decision.",
        ),
        _must(
            "ehc_request_required",
            "6.63",
            "There is no open EHC needs assessment request to decide.",
            "Record the request first.",
        ),
        _must(
            "ehc_plan_requires_assessment",
            "6.63",
            "An EHC plan follows an EHC needs assessment the local authority agreed to carry out.",
            "Record the request and the local authority's decision to assess first.",
        ),
        _must(
            "transfer_within_trust",
            "record integrity",
            "A transfer moves the pupil from their current school to another school.",
            "Set from_urn to the current school and to_urn to a different one.",
        ),
        _must(
            "correction_target",
            "6.72",
            "A correction replaces one earlier event of this pupil with content of the same "
            "type, keeping its ids.",
            "Point corrects_event_id at an event of this pupil; keep its type and ids.",
        ),
        _must(
            "annual_report_year",
            "6.64",
            "The annual report belongs to the academic year in which it is given.",
            "Name the academic year of the day the report was given, e.g. 2025/26.",
        ),
        # --- good practice: warnings -----------------------------------------------------
        _should(
            "assessment_before_sen_support",
            "6.45",
            "SEN support should follow a clear analysis of need.",
            "Record the assessment evidence (observation, screener, scores).",
        ),
        _should(
            "parents_involved_before_sen_support",
            "6.48",
            "Parents should already be involved in assessing needs before SEN support starts.",
            "Record the parents' views.",
        ),
        _should(
            "plan_agreed_with_parents_and_pupil",
            "6.48",
            "The plan should be agreed in consultation with the parent and the pupil.",
            "Involve them and list them in agreed_by.",
        ),
        _should(
            "staff_informed_of_plan",
            "6.49",
            "All staff who work with the pupil should be told of needs, outcomes and support.",
            "Tell them and record staff_informed=true.",
        ),
        _should(
            "entry_and_exit_measures",
            "6.52",
            "Interventions should have entry and exit measures so their impact can be judged.",
            "Record the entry measure at the start and the exit measure at the end.",
        ),
        _should(
            "review_on_agreed_date",
            "6.53",
            "Reviews should take place in line with the agreed date.",
            "Hold reviews by the review date set in the plan.",
        ),
        _should(
            "review_with_pupil_views",
            "6.54",
            "Reviews should take account of the pupil's views.",
            "Gather the pupil's views and record them in the review.",
        ),
        _should(
            "review_with_parent_views",
            "6.54",
            "Reviews should take account of the parents' views.",
            "Gather the parents' views and record them in the review.",
        ),
        _should(
            "three_parent_meetings_a_year",
            "6.65",
            "Schools should meet parents at least three times each year (once a term).",
            "Hold and record a parent meeting this term.",
        ),
        _should(
            "meeting_record_given_to_parents",
            "6.71",
            "A record of the meeting should be given to the parents.",
            "Give the record to the parents and note it.",
        ),
        _should(
            "ehc_annual_review_on_time",
            "6.56",
            "The EHC plan review was held more than twelve months after the last.",
            "Hold EHC annual reviews within twelve months.",
        ),
    ]
}
