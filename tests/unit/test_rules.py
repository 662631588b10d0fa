"""Job lifecycle rules: the transition table, who may do what, and how statuses read outside."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.jobs.rules import (
    EXTENDED_STATUSES,
    FINISHED_STATUSES,
    OPEN_STATUSES,
    ROLES,
    STATUSES,
    TRANSITIONS,
    InvalidTransition,
    action_for,
    allowed_targets,
    check_transition,
    describe_status,
    extended_status,
    is_allowed,
    open311_status,
    plan,
)

SETTINGS = settings(max_examples=200, deadline=None)
ALL = list(itertools.product(STATUSES, STATUSES, ROLES))

# The whole table written out by hand: (from, to) → roles. If the code drifts, this fails.
SUP = {"supervisor", "admin"}
SYS = SUP | {"system"}
WORK = SUP | {"crew", "contractor"}
EXPECTED = {
    ("triage", "new"): SYS,
    ("new", "assigned"): SYS,
    ("new", "sent"): SYS,
    ("assigned", "accepted"): SUP | {"crew"},
    ("sent", "accepted"): SUP | {"contractor"},
    ("assigned", "new"): SUP | {"crew"},
    ("sent", "new"): SYS | {"contractor"},
    ("accepted", "scheduled"): WORK,
    ("accepted", "in_progress"): WORK,
    ("scheduled", "in_progress"): WORK,
    ("in_progress", "on_hold"): WORK,
    ("on_hold", "in_progress"): WORK,
    ("in_progress", "completed"): WORK,
    ("completed", "closed"): SYS,
    ("completed", "in_progress"): SUP,
    **{(s, "cancelled"): SYS for s in OPEN_STATUSES},
    **{(s, "duplicate"): SYS for s in OPEN_STATUSES},
    **{(s, "new"): {"supervisor"} for s in FINISHED_STATUSES},
}


@pytest.mark.parametrize("from_status, to_status, role", ALL)
def test_exhaustive_table(from_status, to_status, role):
    expected = role in EXPECTED.get((from_status, to_status), set())
    assert is_allowed(from_status, to_status, role) is expected
    if not expected:
        with pytest.raises(InvalidTransition) as err:
            check_transition(from_status, to_status, role)
        e = err.value
        assert (e.from_status, e.to_status, e.role) == (from_status, to_status, role)
        assert e.reason and e.code == "invalid-transition"
    else:
        assert check_transition(from_status, to_status, role) is None


def test_table_matches_the_written_out_table():
    assert {k: set(v.roles) for k, v in TRANSITIONS.items()} == EXPECTED


def test_statuses_partition():
    assert set(STATUSES) == set(OPEN_STATUSES) | set(FINISHED_STATUSES) | {"completed"}
    assert not set(OPEN_STATUSES) & set(FINISHED_STATUSES)
    # Matches the jobs table's partial index of open jobs.
    assert set(STATUSES) - set(OPEN_STATUSES) == {"completed", "closed", "cancelled", "duplicate"}
    assert len(OPEN_STATUSES) == len(set(OPEN_STATUSES))


@SETTINGS
@given(st.sampled_from(sorted(FINISHED_STATUSES)), st.sampled_from(STATUSES), st.sampled_from(ROLES), st.booleans())
def test_finished_jobs_only_reopened_by_supervisor(from_status, to_status, role, own):
    allowed = is_allowed(from_status, to_status, role, own=own)
    assert allowed == (role == "supervisor" and to_status == "new")
    if allowed:
        assert action_for(from_status, to_status) == "reopen"


@SETTINGS
@given(st.sampled_from(STATUSES), st.sampled_from(["cancelled", "duplicate"]), st.booleans())
def test_contractors_and_crews_cannot_cancel_or_merge(from_status, to_status, own):
    for role in ("contractor", "crew", "field_worker", "advisor"):
        assert not is_allowed(from_status, to_status, role, own=own)


@SETTINGS
@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES))
def test_contractor_moves_are_only_contractual(from_status, to_status):
    if is_allowed(from_status, to_status, "contractor"):
        assert action_for(from_status, to_status) in {"accept", "schedule", "start", "hold", "resume", "complete",
                                                      "reject"}


@SETTINGS
@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES), st.sampled_from(["crew", "contractor"]))
def test_crews_and_contractors_only_on_their_own_jobs(from_status, to_status, role):
    assert not is_allowed(from_status, to_status, role, own=False)
    if is_allowed(from_status, to_status, role):
        with pytest.raises(InvalidTransition, match="not assigned to you"):
            check_transition(from_status, to_status, role, own=False)


@SETTINGS
@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES))
def test_supervisor_can_do_whatever_anyone_can(from_status, to_status):
    if any(is_allowed(from_status, to_status, r) for r in ROLES):
        assert is_allowed(from_status, to_status, "supervisor")


def test_field_workers_and_advisors_move_nothing():
    for role in ("field_worker", "advisor"):
        assert all(allowed_targets(s, role) == [] for s in STATUSES)


def test_crew_cannot_take_contractor_steps_and_vice_versa():
    assert not is_allowed("sent", "accepted", "crew")
    assert not is_allowed("assigned", "accepted", "contractor")
    assert not is_allowed("new", "assigned", "crew")
    assert not is_allowed("completed", "closed", "contractor")


def test_messages_and_unknowns():
    with pytest.raises(InvalidTransition, match="already in_progress"):
        check_transition("in_progress", "in_progress", "supervisor")
    with pytest.raises(InvalidTransition, match="unknown status 'rejected'"):
        check_transition("sent", "rejected", "contractor")
    with pytest.raises(InvalidTransition, match="unknown role 'mayor'"):
        check_transition("new", "sent", "mayor")
    with pytest.raises(InvalidTransition, match="only be reopened"):
        check_transition("closed", "in_progress", "supervisor")
    with pytest.raises(InvalidTransition, match="contractor may not cancel"):
        check_transition("sent", "cancelled", "contractor")
    with pytest.raises(InvalidTransition, match="cannot go from new to completed"):
        check_transition("new", "completed", "supervisor")


def test_plan_fills_in_skipped_steps():
    assert plan("sent", "completed", "contractor") == ["accepted", "in_progress", "completed"]
    assert plan("on_hold", "completed", "contractor") == ["in_progress", "completed"]
    assert plan("assigned", "in_progress", "crew") == ["accepted", "in_progress"]
    assert plan("sent", "sent", "contractor") == []
    assert plan("in_progress", "cancelled", "supervisor") == ["cancelled"]
    assert "cancelled" not in plan("new", "closed", "supervisor")
    with pytest.raises(InvalidTransition):
        plan("sent", "closed", "contractor")
    with pytest.raises(InvalidTransition):
        plan("completed", "in_progress", "contractor")


@SETTINGS
@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES), st.sampled_from(ROLES))
def test_every_planned_step_is_allowed(from_status, to_status, role):
    try:
        steps = plan(from_status, to_status, role)
    except InvalidTransition:
        return
    here = from_status
    for step in steps:
        check_transition(here, step, role)
        here = step
    assert here == to_status


@pytest.mark.parametrize("status", STATUSES)
def test_open311_and_extended_status(status):
    assert open311_status(status) == ("open" if status in OPEN_STATUSES else "closed")
    assert extended_status(status) in EXTENDED_STATUSES


def test_extended_status_examples():
    assert extended_status("triage") == "investigating"
    assert extended_status("scheduled") == "action_scheduled"
    assert extended_status("on_hold") == "in_progress"
    assert extended_status("completed") == "fixed"
    assert extended_status("duplicate") == "duplicate"
    assert extended_status("cancelled") == "closed"
    assert extended_status("cancelled", "not_councils_responsibility") == "not_councils_responsibility"
    assert extended_status("cancelled", "internal_referral") == "internal_referral"
    assert extended_status("in_progress", "no_further_action") == "in_progress"  # reason only for cancelled
    with pytest.raises(ValueError):
        open311_status("lost")
    with pytest.raises(ValueError):
        extended_status("lost")


def test_describe_status():
    assert describe_status("assigned", "the street lighting contractor") == "With the street lighting contractor"
    assert describe_status("in_progress", "the cleansing crew") == "The cleansing crew is working on it"
    assert describe_status("assigned") == "With the team"
    assert all(describe_status(s, "X") for s in STATUSES)
    assert len({describe_status(s, "X") for s in STATUSES}) == len(STATUSES)
    with pytest.raises(ValueError):
        describe_status("lost")
