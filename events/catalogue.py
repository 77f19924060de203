"""The event catalogue: every fact senflow records about a pupil's SEN support.

Each event type is a frozen pydantic model named for what happened (past
tense), with an ``event_type`` literal that discriminates the ``Event`` union
and a ``schema_version`` class constant. Events carry only what is needed to
rebuild the record; the envelope (``senflow.events.envelope``) says who, where
and when. Personal values (names, date of birth, free text) use the types of
``senflow.events.personal`` so the vault can seal them.

Paragraph numbers in docstrings are from the SEND Code of Practice, chapter 6.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Union
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from senflow.events.codes import UPN, URN, BroadArea, NeedType
from senflow.events.personal import PersonalDate, PersonalName, PersonalText

ShortId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", examples=["O1", "P2"])]
Label = Annotated[str, Field(min_length=1, max_length=120)]


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: ClassVar[int] = 1


# --- shared vocabularies -------------------------------------------------------------------


class ConcernSource(StrEnum):
    CLASS_TEACHER = "class_teacher"
    SUBJECT_TEACHER = "subject_teacher"
    PARENT = "parent"
    PUPIL = "pupil"
    SENCO = "senco"
    BASELINE_TEST = "baseline_test"
    PREVIOUS_SETTING = "previous_setting"
    OTHER = "other"


class ViewsContext(StrEnum):
    ASSESSMENT = "assessment"
    PLANNING = "planning"
    REVIEW = "review"
    PARENT_MEETING = "parent_meeting"
    OTHER = "other"


class AssessmentKind(StrEnum):
    OBSERVATION = "observation"
    SCREENER = "screener"
    STANDARDISED_SCORE = "standardised_score"
    PREVIOUS_SETTING = "previous_setting"
    SPECIALIST_REPORT = "specialist_report"


class SpecialistType(StrEnum):
    EDUCATIONAL_PSYCHOLOGIST = "educational_psychologist"
    SPEECH_AND_LANGUAGE_THERAPIST = "speech_and_language_therapist"
    OCCUPATIONAL_THERAPIST = "occupational_therapist"
    PHYSIOTHERAPIST = "physiotherapist"
    CAMHS = "camhs"
    SPECIALIST_TEACHER_HI = "specialist_teacher_hi"
    SPECIALIST_TEACHER_VI = "specialist_teacher_vi"
    SPECIALIST_TEACHER_MSI = "specialist_teacher_msi"
    SPECIALIST_TEACHER_OTHER = "specialist_teacher_other"
    SCHOOL_NURSE = "school_nurse"
    OTHER = "other"


class Delivery(StrEnum):
    IN_CLASS = "in_class"
    SMALL_GROUP = "small_group"
    ONE_TO_ONE = "one_to_one"


class StaffRole(StrEnum):
    TEACHER = "teacher"
    TEACHING_ASSISTANT = "teaching_assistant"
    SENCO = "senco"
    SPECIALIST = "specialist"
    EXTERNAL_PROVIDER = "external_provider"


class Participant(StrEnum):
    SENCO = "senco"
    CLASS_TEACHER = "class_teacher"
    TEACHING_ASSISTANT = "teaching_assistant"
    PARENT = "parent"
    PUPIL = "pupil"
    SPECIALIST = "specialist"
    SENIOR_LEADER = "senior_leader"
    LOCAL_AUTHORITY = "local_authority"


class OutcomeRating(StrEnum):
    NOT_MET = "not_met"
    PARTIALLY_MET = "partially_met"
    MET = "met"
    EXCEEDED = "exceeded"


class Impact(StrEnum):
    NONE = "none"
    LIMITED = "limited"
    GOOD = "good"
    STRONG = "strong"


class ReviewDecision(StrEnum):
    """What a review decides (6.53-6.55, 6.58, 6.63)."""

    CONTINUE = "continue"
    REVISE_PLAN = "revise_plan"
    INVOLVE_SPECIALIST = "involve_specialist"
    REQUEST_EHC_NEEDS_ASSESSMENT = "request_ehc_needs_assessment"
    END_SEN_SUPPORT = "end_sen_support"


class RankedNeed(BaseModel):
    """A census need type with its rank: 1 is the primary need, 2 the secondary."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: NeedType
    rank: Literal[1, 2]


class Measure(BaseModel):
    """A measurement taken so impact can be judged (entry, exit, progress)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    instrument: Label = Field(examples=["WellComm", "YARC reading accuracy", "Boxall profile"])
    value: Annotated[float, Field(ge=-1_000_000, le=1_000_000, allow_inf_nan=False)]
    unit: Literal["standardised_score", "raw_score", "age_months", "percentage", "scale"] = (
        "standardised_score"
    )
    higher_is_better: bool = True


# --- identify and assess (6.44-6.47) -----------------------------------------------------


class PupilRegistered(EventData):
    """The pupil exists in senflow, usually registered from the school's MIS."""

    event_type: Literal["pupil_registered"] = "pupil_registered"
    upn: UPN
    forename: PersonalName
    surname: PersonalName
    date_of_birth: PersonalDate
    year_group: Annotated[str, Field(pattern=r"^(N1|N2|R|[1-9]|1[0-4])$")] = Field(
        description="National curriculum year at registration: N1, N2, R, 1-14"
    )
    mis_id: Annotated[str, Field(max_length=64)] | None = None
    on_roll_from: date


class ConcernRaised(EventData):
    """Someone noticed a possible special educational need (6.45: take parents seriously)."""

    event_type: Literal["concern_raised"] = "concern_raised"
    source: ConcernSource
    area: BroadArea | None = None
    description: PersonalText


class ParentViewsRecorded(EventData):
    """Parents' or carers' views, part of every assessment and review (6.45, 6.54)."""

    event_type: Literal["parent_views_recorded"] = "parent_views_recorded"
    context: ViewsContext
    views: PersonalText


class PupilViewsRecorded(EventData):
    """The pupil's own views (6.45, 6.54, 6.70)."""

    event_type: Literal["pupil_views_recorded"] = "pupil_views_recorded"
    context: ViewsContext
    method: Literal["conversation", "one_page_profile", "questionnaire", "visual", "other"]
    views: PersonalText


class AssessmentRecorded(EventData):
    """Evidence towards the analysis of need (6.45-6.46)."""

    event_type: Literal["assessment_recorded"] = "assessment_recorded"
    kind: AssessmentKind
    instrument: Label | None = Field(default=None, examples=["WellComm", "NGRT", "SDQ"])
    area: BroadArea | None = None
    standardised_score: Annotated[int, Field(ge=40, le=160)] | None = None
    summary: PersonalText


class SpecialistInvolved(EventData):
    """An outside specialist was brought in, with the parents' agreement (6.47, 6.58-6.59)."""

    event_type: Literal["specialist_involved"] = "specialist_involved"
    specialist: SpecialistType
    parental_consent: bool
    consent_given_on: date | None = None
    reason: PersonalText


class SenSupportStarted(EventData):
    """The pupil is placed on SEN support (census provision K) (6.48).

    Version 2 ranks the needs; version 1 held an unranked ``need_types`` list,
    primary first (see ``senflow.events.upcasting``).
    """

    schema_version: ClassVar[int] = 2
    event_type: Literal["sen_support_started"] = "sen_support_started"
    needs: list[RankedNeed] = Field(max_length=2)
    parents_notified: bool
    parents_notified_on: date | None = None
    notification_method: Literal["letter", "meeting", "email", "phone"] | None = None


class NeedsReclassified(EventData):
    """The census need types changed after further assessment (6.46)."""

    event_type: Literal["needs_reclassified"] = "needs_reclassified"
    needs: list[RankedNeed] = Field(max_length=2)
    reason: PersonalText


# --- plan and do (6.48-6.52) ---------------------------------------------------------------


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    outcome_id: ShortId
    description: PersonalText
    target_date: date | None = None


class Provision(BaseModel):
    """A line of the provision map: additional to or different from the curriculum (6.76)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    provision_id: ShortId
    name: Label = Field(examples=["Talk Boost", "Precision teaching", "Lego therapy"])
    delivery: Delivery
    staff_role: StaffRole
    sessions_per_week: Annotated[int, Field(ge=1, le=35)]
    minutes_per_session: Annotated[int, Field(ge=5, le=480)]
    weeks: Annotated[int, Field(ge=1, le=52)]
    group_size: Annotated[int, Field(ge=1, le=40)] = 1
    cost_pence: Annotated[int, Field(ge=0)] = Field(
        description="Cost attributed to this pupil for the whole block, in pence"
    )
    outcome_ids: list[ShortId] = Field(default_factory=list)


class PlanAgreed(EventData):
    """A plan for the next cycle: outcomes, provision, expected impact, review date (6.48-6.51)."""

    event_type: Literal["plan_agreed"] = "plan_agreed"
    plan_id: UUID = Field(default_factory=uuid4)
    outcomes: list[Outcome] = Field(max_length=20)
    provisions: list[Provision] = Field(max_length=20)
    expected_impact: PersonalText
    review_date: date
    agreed_by: list[Participant] = Field(max_length=10)
    staff_informed: bool
    staff_informed_on: date | None = None


class InterventionStarted(EventData):
    """Delivery of one planned provision began, with its entry measure (6.52)."""

    event_type: Literal["intervention_started"] = "intervention_started"
    intervention_id: UUID = Field(default_factory=uuid4)
    plan_id: UUID
    provision_id: ShortId
    entry_measure: Measure | None = None


class InterventionSessionRecorded(EventData):
    """One session of an intervention delivered (or missed), for hours and attendance."""

    event_type: Literal["intervention_session_recorded"] = "intervention_session_recorded"
    intervention_id: UUID
    minutes: Annotated[int, Field(ge=0, le=480)]
    attended: bool = True
    note: PersonalText | None = None


class InterventionEnded(EventData):
    """Delivery ended, with the exit measure against which impact is judged."""

    event_type: Literal["intervention_ended"] = "intervention_ended"
    intervention_id: UUID
    reason: Literal["completed", "stopped_early", "replaced", "pupil_left", "sen_support_ended"] = (
        "completed"
    )
    exit_measure: Measure | None = None


class ProgressRecorded(EventData):
    """Progress towards an outcome between reviews, with a measure where there is one."""

    event_type: Literal["progress_recorded"] = "progress_recorded"
    outcome_id: ShortId | None = None
    measure: Measure | None = None
    note: PersonalText


class ParentMeetingHeld(EventData):
    """One of the (at least) three meetings a year with parents (6.65-6.71)."""

    event_type: Literal["parent_meeting_held"] = "parent_meeting_held"
    attendees: list[Participant] = Field(min_length=1, max_length=10)
    summary: PersonalText
    agreed_actions: PersonalText | None = None
    record_given_to_parents: bool = Field(description="6.71: the record is given to parents")


# --- review (6.53-6.55) --------------------------------------------------------------------


class OutcomeProgress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    outcome_id: ShortId
    rating: OutcomeRating
    note: PersonalText | None = None


class InterventionImpact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    intervention_id: UUID
    impact: Impact
    keep: bool


class ReviewHeld(EventData):
    """A review of the plan: progress, impact, views and what happens next."""

    event_type: Literal["review_held"] = "review_held"
    plan_id: UUID
    outcome_progress: list[OutcomeProgress] = Field(max_length=20)
    intervention_impact: list[InterventionImpact] = Field(default_factory=list, max_length=40)
    pupil_views: PersonalText | None = None
    parent_views: PersonalText | None = None
    decision: ReviewDecision
    next_review_date: date | None = None


# --- EHC needs assessment and plans (6.56, 6.63) ------------------------------------------


class EhcNeedsAssessmentRequested(EventData):
    """A request to the local authority for an EHC needs assessment (6.63)."""

    event_type: Literal["ehc_needs_assessment_requested"] = "ehc_needs_assessment_requested"
    requested_by: Literal["school", "parent", "young_person", "other"]
    local_authority: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = Field(
        description="LA number (3 digits)"
    )
    evidence_summary: PersonalText


class EhcNeedsAssessmentDecided(EventData):
    """The local authority's decision whether to carry out the assessment."""

    event_type: Literal["ehc_needs_assessment_decided"] = "ehc_needs_assessment_decided"
    decision: Literal["agreed_to_assess", "declined"]
    la_reference: Annotated[str, Field(max_length=40)] | None = None


class EhcPlanIssued(EventData):
    """The local authority issued an EHC plan: census provision E from now on."""

    event_type: Literal["ehc_plan_issued"] = "ehc_plan_issued"
    la_reference: Annotated[str, Field(min_length=1, max_length=40)]
    needs: list[RankedNeed] = Field(max_length=2)
    first_review_due: date
    provision_summary: PersonalText | None = None


class EhcAnnualReviewHeld(EventData):
    """The annual review of an EHC plan, at least every 12 months (6.56, must)."""

    event_type: Literal["ehc_annual_review_held"] = "ehc_annual_review_held"
    recommendation: Literal["maintain", "amend", "cease"]
    next_review_due: date | None = None
    pupil_views: PersonalText | None = None
    parent_views: PersonalText | None = None


# --- leaving support, transition, leaving school ------------------------------------------


class SenSupportEnded(EventData):
    """The pupil no longer needs SEN support (census provision back to N)."""

    event_type: Literal["sen_support_ended"] = "sen_support_ended"
    reason: Literal["needs_met", "no_longer_sen", "other"]
    note: PersonalText | None = None


class TransitionInformationShared(EventData):
    """Information passed to the next setting, with the parents' agreement (6.57)."""

    event_type: Literal["transition_information_shared"] = "transition_information_shared"
    recipient: Literal["next_school", "next_phase", "college", "local_authority", "other"]
    recipient_urn: URN | None = None
    parental_agreement: bool
    summary: PersonalText | None = None


class PupilTransferred(EventData):
    """The pupil moved to another school of the same trust; the stream goes with them."""

    event_type: Literal["pupil_transferred"] = "pupil_transferred"
    from_urn: URN
    to_urn: URN


class PupilLeft(EventData):
    event_type: Literal["pupil_left"] = "pupil_left"
    destination: Literal[
        "school_outside_trust", "post_16", "elective_home_education", "moved_away", "other"
    ]
    destination_urn: URN | None = None


class PersonalDataErased(EventData):
    """The pupil's vault key was destroyed: personal fields are beyond use from now on."""

    event_type: Literal["personal_data_erased"] = "personal_data_erased"
    reason_code: Literal["retention_expired", "erasure_request", "other"]
    reason: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="Why, in words that name nobody (kept in clear)"
    )


class AnnualReportShared(EventData):
    """The annual report on the pupil's progress was given to the parents (6.64, must)."""

    event_type: Literal["annual_report_shared"] = "annual_report_shared"
    academic_year: Annotated[str, Field(pattern=r"^[0-9]{4}/[0-9]{2}$", examples=["2025/26"])]


# --- notices: what the scheduler records when a date comes or passes ---------------------
#
# Appended by the system actor with ids derived from the occurrence, so each is
# recorded once however many schedulers run. Downstream systems subscribe to
# them (routing key e.g. review_due.<trust>.<urn>).


class ReviewDue(EventData):
    """A plan's review date is near (the lead time before it; 6.53)."""

    event_type: Literal["review_due"] = "review_due"
    plan_id: UUID
    review_date: date
    lead_days: Annotated[int, Field(ge=0)]


class ReviewOverdue(EventData):
    """A plan's review date passed with no review held (6.53)."""

    event_type: Literal["review_overdue"] = "review_overdue"
    plan_id: UUID
    review_date: date


class EhcAnnualReviewDue(EventData):
    """Eleven months since the EHC plan was issued or last reviewed (6.56)."""

    event_type: Literal["ehc_annual_review_due"] = "ehc_annual_review_due"
    last_reviewed_on: date = Field(description="The plan's issue date or its last review")
    due_by: date


class EhcAnnualReviewOverdue(EventData):
    """Twelve months passed without the EHC plan's annual review: a statutory must (6.56)."""

    event_type: Literal["ehc_annual_review_overdue"] = "ehc_annual_review_overdue"
    last_reviewed_on: date
    due_by: date


class ParentMeetingsBehind(EventData):
    """At a term's end, fewer parent meetings this year than one a term (6.65)."""

    event_type: Literal["parent_meetings_behind"] = "parent_meetings_behind"
    academic_year: Annotated[str, Field(pattern=r"^[0-9]{4}/[0-9]{2}$")]
    term: Literal["autumn", "spring", "summer"]
    expected: Annotated[int, Field(ge=1, le=3)]
    held: Annotated[int, Field(ge=0)]


class AnnualReportDue(EventData):
    """The statutory annual report to parents is due and not yet recorded (6.64)."""

    event_type: Literal["annual_report_due"] = "annual_report_due"
    academic_year: Annotated[str, Field(pattern=r"^[0-9]{4}/[0-9]{2}$")]
    due_by: date


class RetentionExpired(EventData):
    """The pupil's SEN file reached the end of its retention period (date of birth + 31
    years by default); the vault's erasure follows."""

    event_type: Literal["retention_expired"] = "retention_expired"
    retention_years: Annotated[int, Field(ge=1, le=120)]


CorrectableEvent = Annotated[
    Union[
        PupilRegistered,
        ConcernRaised,
        ParentViewsRecorded,
        PupilViewsRecorded,
        AssessmentRecorded,
        SpecialistInvolved,
        SenSupportStarted,
        NeedsReclassified,
        PlanAgreed,
        InterventionStarted,
        InterventionSessionRecorded,
        InterventionEnded,
        ProgressRecorded,
        ParentMeetingHeld,
        ReviewHeld,
        EhcNeedsAssessmentRequested,
        EhcNeedsAssessmentDecided,
        EhcPlanIssued,
        EhcAnnualReviewHeld,
        SenSupportEnded,
        TransitionInformationShared,
        PupilTransferred,
        PupilLeft,
        AnnualReportShared,
    ],
    Field(discriminator="event_type"),
]


class RecordCorrected(EventData):
    """A correction: a new event that points at the one it corrects and replaces its content.

    The original stays in the store and in the audit trail; state and read
    models use the replacement from now on (6.72: corrections are new records).
    """

    event_type: Literal["record_corrected"] = "record_corrected"
    corrects_event_id: UUID
    replacement: CorrectableEvent
    reason: PersonalText


Event = Annotated[
    Union[
        PupilRegistered,
        ConcernRaised,
        ParentViewsRecorded,
        PupilViewsRecorded,
        AssessmentRecorded,
        SpecialistInvolved,
        SenSupportStarted,
        NeedsReclassified,
        PlanAgreed,
        InterventionStarted,
        InterventionSessionRecorded,
        InterventionEnded,
        ProgressRecorded,
        ParentMeetingHeld,
        ReviewHeld,
        EhcNeedsAssessmentRequested,
        EhcNeedsAssessmentDecided,
        EhcPlanIssued,
        EhcAnnualReviewHeld,
        SenSupportEnded,
        TransitionInformationShared,
        PupilTransferred,
        PupilLeft,
        RecordCorrected,
        PersonalDataErased,
        AnnualReportShared,
        ReviewDue,
        ReviewOverdue,
        EhcAnnualReviewDue,
        EhcAnnualReviewOverdue,
        ParentMeetingsBehind,
        AnnualReportDue,
        RetentionExpired,
    ],
    Field(discriminator="event_type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: dict[str, type[EventData]] = {
    cls.model_fields["event_type"].default: cls for cls in EventData.__subclasses__()
}
# Recorded by the scheduler when a date comes or passes; never corrected.
NOTICE_TYPES = frozenset(
    {
        "review_due",
        "review_overdue",
        "ehc_annual_review_due",
        "ehc_annual_review_overdue",
        "parent_meetings_behind",
        "annual_report_due",
        "retention_expired",
    }
)


def current_version(event_type: str) -> int:
    return EVENT_TYPES[event_type].schema_version
