"""Who may do what: the role matrix of the HTTP API, pure and with no I/O.

A role grants *actions*; a token's *scope* (its trust, and its school unless
it is trust-wide) says where it may use them. Every check here is a plain
function of role, scope and target, so the matrix is tested in milliseconds
and the README's table can be generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from senflow.events.envelope import Role
from senflow.services.workflow.commands import COMMAND_EVENTS


class Read(StrEnum):
    PUPIL = "read_pupil"  # a pupil's state and timeline: personal data
    REGISTER = "read_register"  # a school's SEN register
    PROVISION_MAP = "read_provision_map"  # a school's provision map
    TRUST_REPORTS = "read_trust_reports"  # register and provision map across the trust
    EVENTS = "read_events"  # the event feed (personal fields withheld)
    ACCESS_LOG = "read_access_log"  # who looked at whom
    COMPLIANCE = "read_compliance"  # the compliance view (Code of Practice findings)


ALL_COMMANDS: frozenset[str] = frozenset(COMMAND_EVENTS)

COMMANDS: dict[Role, frozenset[str]] = {
    # 6.65: meetings with parents are led by a teacher who knows the pupil, so the
    # class teacher records them as well as concerns, progress and views.
    Role.CLASS_TEACHER: frozenset(
        {
            "raise_concern",
            "record_progress",
            "record_parent_views",
            "record_pupil_views",
            "hold_parent_meeting",
        }
    ),
    Role.TEACHING_ASSISTANT: frozenset({"record_intervention_session", "record_progress"}),
    Role.SENCO: ALL_COMMANDS,
    Role.SENIOR_LEADER: frozenset(),
    Role.TRUST_SEND_LEAD: frozenset(),
    Role.AUDITOR: frozenset(),
    Role.INTEGRATION: frozenset({"register_pupil"}),
    Role.SYSTEM: frozenset(),  # senflow's own services write through the store, not HTTP
}

_SCHOOL_READS = frozenset({Read.PUPIL, Read.REGISTER, Read.PROVISION_MAP, Read.COMPLIANCE})

READS: dict[Role, frozenset[Read]] = {
    Role.CLASS_TEACHER: frozenset({Read.PUPIL}),
    Role.TEACHING_ASSISTANT: frozenset({Read.PUPIL}),
    Role.SENCO: _SCHOOL_READS,
    Role.SENIOR_LEADER: _SCHOOL_READS,
    Role.TRUST_SEND_LEAD: _SCHOOL_READS | {Read.TRUST_REPORTS},
    Role.AUDITOR: _SCHOOL_READS | {Read.TRUST_REPORTS, Read.EVENTS, Read.ACCESS_LOG},
    Role.INTEGRATION: frozenset({Read.EVENTS}),
    Role.SYSTEM: frozenset(),
}

# Where a token of each role may be scoped.
SCHOOL_ONLY: frozenset[Role] = frozenset(
    {Role.CLASS_TEACHER, Role.TEACHING_ASSISTANT, Role.SENCO, Role.SENIOR_LEADER}
)
TRUST_ONLY: frozenset[Role] = frozenset({Role.TRUST_SEND_LEAD})
NO_TOKENS: frozenset[Role] = frozenset({Role.SYSTEM})

DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=365)
# An auditor's access is time-boxed: the expiry must be given and short.
AUDITOR_MAX_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class Scope:
    """Where a token acts: a trust, and one school of it unless trust-wide."""

    trust_id: str
    school_urn: str | None = None

    @property
    def trust_wide(self) -> bool:
        return self.school_urn is None

    def covers(self, trust_id: str, school_urn: str) -> bool:
        """True if a pupil (or school) at ``trust_id``/``school_urn`` is within this scope."""
        if trust_id != self.trust_id:
            return False
        return self.school_urn is None or self.school_urn == school_urn


def may_run(role: Role, command: str) -> bool:
    return command in COMMANDS[role]


def may_read(role: Role, read: Read) -> bool:
    return read in READS[role]


def may_read_trust(role: Role, scope: Scope) -> bool:
    """Trust-wide reports need the role and a trust-wide token."""
    return may_read(role, Read.TRUST_REPORTS) and scope.trust_wide


def token_problem(role: Role, scope: Scope, lifetime: timedelta | None) -> str | None:
    """Why a token of this role, scope and lifetime may not be issued; None if it may.

    ``lifetime`` None means "the default"; an auditor must give one.
    """
    if role in NO_TOKENS:
        return f"no API tokens for the {role.value} role: it is senflow's own services"
    if role in SCHOOL_ONLY and scope.school_urn is None:
        return f"a {role.value} token is for one school: give --school"
    if role in TRUST_ONLY and scope.school_urn is not None:
        return f"a {role.value} token covers the whole trust: leave out --school"
    if role is Role.AUDITOR:
        if lifetime is None:
            return "an auditor token must be time-boxed: give --expires-in"
        if lifetime > AUDITOR_MAX_LIFETIME:
            return f"an auditor token may last at most {AUDITOR_MAX_LIFETIME.days} days"
    if lifetime is not None and lifetime <= timedelta(0):
        return "the expiry must be in the future"
    if lifetime is not None and lifetime > MAX_LIFETIME:
        return f"a token may last at most {MAX_LIFETIME.days} days"
    return None


def lifetime_for(lifetime: timedelta | None) -> timedelta:
    return lifetime if lifetime is not None else DEFAULT_LIFETIME


def matrix_markdown() -> str:
    """The role matrix as a Markdown table (what the README shows)."""
    roles = [r for r in Role if r not in NO_TOKENS]
    reads = list(Read)
    header = "| role | scope | commands | " + " | ".join(r.value[5:] for r in reads) + " |"
    lines = [header, "|" + "---|" * (3 + len(reads))]
    for role in roles:
        scope = (
            "school"
            if role in SCHOOL_ONLY
            else "trust"
            if role in TRUST_ONLY
            else "school or trust"
        )
        commands = COMMANDS[role]
        listed = (
            "all"
            if commands == ALL_COMMANDS
            else ", ".join(f"`{c}`" for c in sorted(commands))
            if commands
            else "none"
        )
        marks = " | ".join("✓" if may_read(role, r) else "" for r in reads)
        lines.append(f"| `{role.value}` | {scope} | {listed} | {marks} |")
    return "\n".join(lines)
