"""The role matrix of the HTTP API, written out independently of permissions.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from senflow.events.envelope import Role
from senflow.services.workflow.commands import COMMAND_EVENTS
from senflow.services.workflow.permissions import (
    AUDITOR_MAX_LIFETIME,
    DEFAULT_LIFETIME,
    Read,
    Scope,
    lifetime_for,
    matrix_markdown,
    may_read,
    may_read_trust,
    may_run,
    token_problem,
)

pytestmark = pytest.mark.unit

R = Role
EVERY_COMMAND = set(COMMAND_EVENTS)

# What the issue asks for, spelled out: who may run which commands.
EXPECTED_COMMANDS = {
    R.CLASS_TEACHER: {
        "raise_concern",
        "record_progress",
        "record_parent_views",
        "record_pupil_views",
        "hold_parent_meeting",
    },
    R.TEACHING_ASSISTANT: {"record_intervention_session", "record_progress"},
    R.SENCO: EVERY_COMMAND,
    R.SENIOR_LEADER: set(),
    R.TRUST_SEND_LEAD: set(),
    R.AUDITOR: set(),
    R.INTEGRATION: {"register_pupil"},
    R.SYSTEM: set(),
}

EXPECTED_READS = {
    R.CLASS_TEACHER: {Read.PUPIL},
    R.TEACHING_ASSISTANT: {Read.PUPIL},
    R.SENCO: {Read.PUPIL, Read.REGISTER, Read.PROVISION_MAP, Read.COMPLIANCE},
    R.SENIOR_LEADER: {Read.PUPIL, Read.REGISTER, Read.PROVISION_MAP, Read.COMPLIANCE},
    R.TRUST_SEND_LEAD: {
        Read.PUPIL,
        Read.REGISTER,
        Read.PROVISION_MAP,
        Read.COMPLIANCE,
        Read.TRUST_REPORTS,
    },
    R.AUDITOR: set(Read),
    R.INTEGRATION: {Read.EVENTS},
    R.SYSTEM: set(),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("command", sorted(EVERY_COMMAND))
def test_who_may_run_each_command(role: Role, command: str) -> None:
    assert may_run(role, command) is (command in EXPECTED_COMMANDS[role])


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("read", list(Read))
def test_who_may_read_what(role: Role, read: Read) -> None:
    assert may_read(role, read) is (read in EXPECTED_READS[role])


def test_read_only_roles_write_nothing() -> None:
    for role in (R.SENIOR_LEADER, R.TRUST_SEND_LEAD, R.AUDITOR):
        assert not any(may_run(role, c) for c in EVERY_COMMAND)


def test_an_unknown_command_is_nobodys() -> None:
    assert not any(may_run(role, "drop_tables") for role in Role)


def test_scope_covers_own_school_or_whole_trust() -> None:
    school, trust = Scope("trust-1", "100001"), Scope("trust-1")
    assert school.covers("trust-1", "100001")
    assert not school.covers("trust-1", "100002")
    assert not school.covers("trust-2", "100001")
    assert trust.covers("trust-1", "100002")
    assert not trust.covers("trust-2", "100002")
    assert trust.trust_wide and not school.trust_wide


def test_trust_reports_need_a_trust_wide_token() -> None:
    assert may_read_trust(R.TRUST_SEND_LEAD, Scope("t"))
    assert may_read_trust(R.AUDITOR, Scope("t"))
    assert not may_read_trust(R.AUDITOR, Scope("t", "100001"))
    assert not may_read_trust(R.SENCO, Scope("t"))


@pytest.mark.parametrize(
    ("role", "school", "lifetime", "problem"),
    [
        (R.SENCO, "100001", None, None),
        (R.SENCO, None, None, "for one school"),
        (R.CLASS_TEACHER, None, None, "for one school"),
        (R.TRUST_SEND_LEAD, "100001", None, "whole trust"),
        (R.TRUST_SEND_LEAD, None, timedelta(days=30), None),
        (R.AUDITOR, None, None, "time-boxed"),
        (R.AUDITOR, None, timedelta(days=8), "at most 7 days"),
        (R.AUDITOR, "100001", timedelta(hours=8), None),
        (R.INTEGRATION, None, None, None),
        (R.INTEGRATION, "100001", timedelta(days=366), "at most 365 days"),
        (R.SENCO, "100001", timedelta(0), "future"),
        (R.SYSTEM, None, None, "no API tokens"),
    ],
)
def test_which_tokens_may_be_issued(
    role: Role, school: str | None, lifetime: timedelta | None, problem: str | None
) -> None:
    found = token_problem(role, Scope("trust-1", school), lifetime)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_lifetimes() -> None:
    assert lifetime_for(None) == DEFAULT_LIFETIME
    assert lifetime_for(timedelta(hours=1)) == timedelta(hours=1)
    assert AUDITOR_MAX_LIFETIME <= timedelta(days=7)


def test_the_readme_shows_the_current_matrix() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    assert matrix_markdown() in readme, "regenerate the README's role matrix (matrix_markdown)"
