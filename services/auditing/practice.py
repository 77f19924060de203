"""One pupil's record against the SEND Code of Practice, paragraph by paragraph.

Each item names its paragraph, says whether the Code's word is a *must* or a
*should*, and judges the record: ``met``, ``partly_met``, ``not_met`` or
``not_applicable``, with the dated evidence that led there. Items that the
compliance projection also judges (overdue reviews, EHC annual reviews, parent
meetings, annual reports, support without assessment) take its findings, so
an evidence pack and ``senflow compliance`` never disagree.

Input: the pupil's effective events (corrections applied), the cycles of
:mod:`.cycles`, the register view (``register.derive``), the compliance
findings for ``today`` and the hash-chain result. Pure: no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from senflow.events import catalogue as ev
from senflow.events.envelope import RecordedEvent
from senflow.projections.audit import LATE_AFTER as _LATE
from senflow.services.workflow.calendar import school_day

Doc = dict[str, Any]

MET, PARTLY, NOT_MET, NA = "met", "partly_met", "not_met", "not_applicable"
STATUSES = (MET, PARTLY, NOT_MET, NA)


def _item(
    paragraph: str,
    title: str,
    strength: str,
    status: str,
    summary: str,
    evidence: list[str] | None = None,
    findings: list[Doc] | None = None,
) -> Doc:
    return {
        "paragraph": paragraph,
        "title": title,
        "strength": strength,
        "status": status,
        "summary": summary,
        "evidence": evidence or [],
        "findings": [
            {k: f.get(k) for k in ("rule", "paragraph", "meaning", "since")} for f in findings or []
        ],
    }


def _share(good: int, total: int) -> str:
    if total == 0:
        return NA
    if good == total:
        return MET
    return NOT_MET if good == 0 else PARTLY


def _day(e: RecordedEvent) -> str:
    return school_day(e.occurred_at).isoformat()


class _Facts:
    def __init__(self, events: Sequence[RecordedEvent]) -> None:
        self.events = sorted(events, key=lambda e: (e.occurred_at, e.version))

    def of(self, kind: type[ev.EventData]) -> list[tuple[str, Any]]:
        return [(_day(e), e.data) for e in self.events if isinstance(e.data, kind)]


def checklist(
    events: Sequence[RecordedEvent],
    cycles: Doc,
    register_view: Doc,
    findings: list[Doc],
    verification: Doc | None,
    today: date,
) -> list[Doc]:
    """The paragraph-by-paragraph judgement of one pupil's record on ``today``."""
    facts = _Facts(events)
    spells = register_view["provision_history"]
    first_support = min((s["start"] for s in spells), default=None)
    by_rule: dict[str, list[Doc]] = {}
    for f in findings:
        by_rule.setdefault(f["rule"], []).append(f)
    plans = [c for c in cycles["cycles"] if not c["continues_plan"]]
    reviewed = [c for c in cycles["cycles"] if c["review"] is not None]
    out: list[Doc] = []

    # 6.45: assessment and the views of pupil and parents before SEN support
    title = "A clear analysis of need, drawing on assessment and the pupil's and parents' views"
    if first_support is None:
        out.append(_item("6.45", title, "should", NA, "never on SEN support or an EHC plan"))
    else:
        assessed = [d for d, _ in facts.of(ev.AssessmentRecorded) if d <= first_support]
        parents = [d for d, _ in facts.of(ev.ParentViewsRecorded) if d <= first_support]
        pupil = [d for d, _ in facts.of(ev.PupilViewsRecorded) if d <= first_support]
        got = sum(1 for x in (assessed, parents, pupil) if x)
        status = MET if got == 3 else PARTLY if got else NOT_MET
        missing = [
            name
            for name, x in (
                ("assessment", assessed),
                ("parents' views", parents),
                ("pupil's views", pupil),
            )
            if not x
        ]
        out.append(
            _item(
                "6.45",
                title,
                "should",
                status,
                f"before SEN provision began on {first_support}: "
                + (
                    "assessment and both views recorded"
                    if not missing
                    else "no " + ", no ".join(missing)
                ),
                [f"assessment {d}" for d in assessed]
                + [f"parents' views {d}" for d in parents]
                + [f"pupil's views {d}" for d in pupil],
                by_rule.get("support_without_assessment"),
            )
        )

    # 6.47 / 6.59: specialists only with the parents' agreement
    specialists = facts.of(ev.SpecialistInvolved)
    agreed = [
        (d, s)
        for d, s in specialists
        if s.parental_consent
        and s.consent_given_on is not None
        and s.consent_given_on.isoformat() <= d
    ]
    out.append(
        _item(
            "6.47",
            "Specialists involved only with the parents' agreement (also 6.59)",
            "should",
            _share(len(agreed), len(specialists)),
            f"{len(agreed)} of {len(specialists)} specialist involvements with dated consent"
            if specialists
            else "no specialist involved",
            [
                f"{s.specialist.value} on {d}, consent "
                + (s.consent_given_on.isoformat() if s.consent_given_on else "not recorded")
                for d, s in specialists
            ],
        )
    )

    # 6.48: parents formally notified when SEN support starts (must)
    starts = facts.of(ev.SenSupportStarted)
    notified = [
        (d, s)
        for d, s in starts
        if s.parents_notified
        and s.parents_notified_on is not None
        and s.parents_notified_on.isoformat() <= d
    ]
    out.append(
        _item(
            "6.48",
            "Parents formally notified when SEN support starts",
            "must",
            _share(len(notified), len(starts)),
            f"{len(notified)} of {len(starts)} starts of SEN support with parents notified"
            if starts
            else "SEN support never started",
            [
                f"SEN support {d}: parents notified "
                + (s.parents_notified_on.isoformat() if s.parents_notified_on else "not recorded")
                + (f" by {s.notification_method}" if s.notification_method else "")
                for d, s in starts
            ],
        )
    )

    # 6.48: a plan agreed with parent and pupil: outcomes, support, impact, a review date
    title = "Plan agreed with the parent and pupil: outcomes, support, expected impact, review date"
    if not plans:
        status = (
            NOT_MET if register_view["on_register"] and register_view["provision"] == "K" else NA
        )
        summary = (
            f"on SEN support since {register_view['provision_start']} with no plan agreed"
            if status == NOT_MET
            else "no plan agreed"
        )
        out.append(_item("6.48", title, "should", status, summary))
    else:
        both = [c for c in plans if "parent" in c["agreed_by"] and "pupil" in c["agreed_by"]]
        out.append(
            _item(
                "6.48",
                title,
                "should",
                _share(len(both), len(plans)),
                f"{len(both)} of {len(plans)} plans agreed with both parent and pupil; every plan "
                "has outcomes, provision and a review date (the system requires them)",
                [
                    f"plan {c['agreed_on']}: {len(c['outcomes'])} outcomes, "
                    f"{len(c['provisions'])} provisions, review {c['review_date']}, agreed by "
                    + ", ".join(c["agreed_by"])
                    for c in plans
                ],
            )
        )

    # 6.49: all staff told
    informed = [c for c in plans if c["staff_informed"]]
    out.append(
        _item(
            "6.49",
            "All staff working with the pupil told of needs, outcomes and support",
            "should",
            _share(len(informed), len(plans)),
            f"{len(informed)} of {len(plans)} plans shared with staff"
            if plans
            else "no plan agreed",
            [
                f"plan {c['agreed_on']}: staff told "
                + (c["staff_informed_on"] or ("yes" if c["staff_informed"] else "no"))
                for c in plans
            ],
        )
    )

    # 6.52: interventions delivered with entry and exit measures so impact can be judged
    interventions = cycles["interventions"]
    measured = [i for i in interventions if i["entry"] and (i["exit"] or i["ended_on"] is None)]
    status = _share(len(measured), len(interventions))
    if status == NOT_MET and len(measured) * 2 >= len(interventions):
        status = PARTLY
    out.append(
        _item(
            "6.52",
            "Interventions delivered with entry and exit measures so impact can be judged",
            "should",
            status,
            f"{len(measured)} of {len(interventions)} interventions measured on entry and exit"
            if interventions
            else "no intervention delivered",
            [
                f"{i['name']} {i['started_on']} to {i['ended_on'] or 'running'}: entry "
                + (f"{i['entry']['value']:g}" if i["entry"] else "none")
                + ", exit "
                + (
                    f"{i['exit']['value']:g}"
                    if i["exit"]
                    else "none"
                    if i["ended_on"]
                    else "(running)"
                )
                + (f", change {i['change']:+g}" if i["change"] is not None else "")
                for i in interventions
            ],
        )
    )

    # 6.53: reviewed on the agreed date
    overdue = by_rule.get("review_overdue", [])
    on_time = [c for c in reviewed if c["review"]["on_time"]]
    if not plans:
        status = NA
    elif overdue:
        status = NOT_MET
    else:
        status = _share(len(on_time), len(reviewed)) if reviewed else MET
    out.append(
        _item(
            "6.53",
            "Support reviewed on the agreed date",
            "should",
            status,
            (f"{len(on_time)} of {len(reviewed)} reviews on or before the agreed date")
            + (f"; review due {overdue[0]['since']} is overdue" if overdue else ""),
            [
                f"cycle {c['number']}: agreed {c['review']['agreed_date']}, held "
                f"{c['review']['held_on']}"
                + ("" if c["review"]["on_time"] else f" ({c['review']['days_late']} days late)")
                for c in reviewed
            ],
            overdue,
        )
    )

    # 6.54: views of the pupil and parents at reviews (plan reviews and EHC annual reviews)
    annual = facts.of(ev.EhcAnnualReviewHeld)
    heard = [
        (
            f"review {c['review']['held_on']}",
            c["review"]["pupil_views"],
            c["review"]["parent_views"],
        )
        for c in reviewed
    ] + [(f"EHC annual review {d}", a.pupil_views, a.parent_views) for d, a in annual]
    both_heard = [h for h in heard if h[1] is not None and h[2] is not None]
    view_findings = by_rule.get("review_without_pupil_views", []) + by_rule.get(
        "review_without_parent_views", []
    )
    out.append(
        _item(
            "6.54",
            "Reviews evaluate support with the views of the pupil and the parents",
            "should",
            _share(len(both_heard), len(heard)),
            f"{len(both_heard)} of {len(heard)} reviews heard both" if heard else "no review held",
            [
                f"{name}: pupil's views {'yes' if p is not None else 'no'}, parents' views "
                f"{'yes' if q is not None else 'no'}"
                for name, p, q in heard
            ],
            view_findings,
        )
    )

    # 6.54: impact of every intervention evaluated at the review
    rated_all = []
    with_interventions = [c for c in reviewed if c["interventions"]]
    for c in with_interventions:
        rated = {x["intervention_id"] for x in c["review"]["intervention_impact"]}
        rated_all.append((c, all(i["intervention_id"] in rated for i in c["interventions"])))
    out.append(
        _item(
            "6.54",
            "Reviews evaluate the impact of each intervention delivered",
            "should",
            _share(sum(1 for _, ok in rated_all if ok), len(rated_all)),
            f"{sum(1 for _, ok in rated_all if ok)} of {len(rated_all)} reviews rated every "
            "intervention of their cycle"
            if rated_all
            else "no review of a cycle with interventions",
            [
                f"cycle {c['number']} review {c['review']['held_on']}: "
                + ", ".join(
                    f"{x['name']} {x['impact']}" for x in c["review"]["intervention_impact"]
                )
                for c, _ in rated_all
            ],
        )
    )

    # 6.56: EHC plan reviewed at least every 12 months (must)
    issued = facts.of(ev.EhcPlanIssued)
    ehc_overdue = by_rule.get("ehc_annual_review_overdue", [])
    if not issued:
        out.append(
            _item(
                "6.56", "EHC plan reviewed at least every twelve months", "must", NA, "no EHC plan"
            )
        )
    else:
        out.append(
            _item(
                "6.56",
                "EHC plan reviewed at least every twelve months",
                "must",
                NOT_MET if ehc_overdue else MET,
                (
                    f"annual review overdue since {ehc_overdue[0]['since']}"
                    if ehc_overdue
                    else "annual reviews within twelve months"
                )
                + (
                    f"; next due {register_view['ehc_next_review_due']}"
                    if register_view["ehc_next_review_due"]
                    else ""
                ),
                [f"EHC plan issued {d}" for d, _ in issued]
                + [f"annual review {d}: {a.recommendation}" for d, a in annual],
                ehc_overdue,
            )
        )

    # 6.57: transition information shared with the parents' agreement
    shared = facts.of(ev.TransitionInformationShared)
    agreed_t = [(d, t) for d, t in shared if t.parental_agreement]
    out.append(
        _item(
            "6.57",
            "Information shared at transition, as agreed with parents",
            "should",
            _share(len(agreed_t), len(shared)),
            f"{len(agreed_t)} of {len(shared)} with the parents' agreement"
            if shared
            else "no transition information shared",
            [
                f"{t.recipient} {d}" + (f" ({t.recipient_urn})" if t.recipient_urn else "")
                for d, t in shared
            ],
        )
    )

    # 6.63: support adapted or replaced depending on how effective it has been
    dropped: list[tuple[int, str, str]] = []  # (cycle, name, rated on)
    for c in reviewed:
        for x in c["review"]["intervention_impact"]:
            if not x["keep"] and x["name"]:
                dropped.append((c["number"], x["name"], c["review"]["held_on"]))
    repeated = [
        (n, name, on)
        for n, name, on in dropped
        if any(
            later["number"] > n
            and any(i["name"].casefold() == name.casefold() for i in later["interventions"])
            for later in cycles["cycles"]
        )
    ]
    rated_any = any(c["review"]["intervention_impact"] for c in reviewed)
    out.append(
        _item(
            "6.63",
            "Support adapted or replaced depending on how effective it has been",
            "should",
            NA if not rated_any else PARTLY if repeated else MET,
            (
                f"{len(dropped)} interventions judged not worth keeping; "
                f"{len(repeated)} delivered again later"
            )
            if rated_any
            else "no intervention rated at a review yet",
            [f"{name}: not kept at review {on} (cycle {n})" for n, name, on in dropped]
            + [f"{name}: delivered again after review {on}" for _, name, on in repeated],
        )
    )

    # 6.64: annual report to parents (must)
    reports = facts.of(ev.AnnualReportShared)
    missing_report = by_rule.get("annual_report_missing", [])
    out.append(
        _item(
            "6.64",
            "Annual report to parents on the pupil's progress",
            "must",
            NOT_MET if missing_report else MET if reports else NA,
            (
                f"no annual report for {missing_report[0].get('academic_year')}"
                if missing_report
                else f"{len(reports)} annual reports recorded"
                if reports
                else "none due yet"
            ),
            [f"annual report {r.academic_year} given {d}" for d, r in reports],
            missing_report,
        )
    )

    # 6.65: parents met at least three times a year
    meetings = facts.of(ev.ParentMeetingHeld)
    behind = by_rule.get("parent_meetings_behind", [])
    if not register_view["on_register"]:
        status, summary = NA, f"not on the SEN register on {today.isoformat()}"
    elif behind:
        status = NOT_MET
        summary = (
            f"{behind[0].get('held')} meetings this year where {behind[0].get('expected')} were due"
        )
    else:
        status, summary = MET, "a meeting for every term of this year so far"
    out.append(
        _item(
            "6.65",
            "Parents met at least three times a year",
            "should",
            status,
            summary,
            [f"meeting {d}: " + ", ".join(a.value for a in m.attendees) for d, m in meetings],
            behind,
        )
    )

    # 6.71: a record of each meeting given to the parents
    given = [(d, m) for d, m in meetings if m.record_given_to_parents]
    out.append(
        _item(
            "6.71",
            "A record of each meeting given to the parents",
            "should",
            _share(len(given), len(meetings)),
            f"{len(given)} of {len(meetings)} meeting records given to parents"
            if meetings
            else "no parent meeting recorded",
            [
                f"meeting {d}: record {'given' if m.record_given_to_parents else 'not given'}"
                for d, m in meetings
            ],
        )
    )

    # 6.72: records accurate and kept up to date
    if verification is None:
        out.append(
            _item("6.72", "Records accurate and kept up to date", "should", NA, "not verified")
        )
    else:
        late = sum(1 for e in events if e.recorded_at - e.occurred_at > _LATE)
        out.append(
            _item(
                "6.72",
                "Records accurate and kept up to date",
                "should",
                MET if verification["ok"] else NOT_MET,
                ("hash chain intact" if verification["ok"] else "hash chain BROKEN")
                + f" over {verification['events']} events; {late} entries recorded more than "
                "seven days after the event",
                verification.get("breaks", []),
            )
        )
    return out


def tally(items: list[Doc]) -> dict[str, int]:
    return {s: sum(1 for i in items if i["status"] == s) for s in STATUSES}
