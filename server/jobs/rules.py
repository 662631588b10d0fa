"""Job lifecycle rules, pure: statuses, who may move a job where, and how each status reads outside.

    new ─▶ assigned (crew) ─┐
      │                     ├─▶ accepted ─▶ [scheduled ─▶] in_progress ─▶ completed ─▶ closed
      └──▶ sent (contractor)┘                              │   ▲
                │ rejected ─▶ new                    on_hold ◀─┘   (on_hold stops the SLA clock)
    triage ─▶ new          cancelled · duplicate from any open state

Choices worth knowing:
- Supervisors may make every move; admins every move except "reopen".
- "Closed" in the sense of finished covers closed, cancelled and duplicate: only a supervisor
  moves such a job, and only back to new ("reopen") — a wrongly merged duplicate can be undone.
- completed is not open (it matches the jobs' open-asset index) but not final either: the system
  or a supervisor closes it, or a supervisor sends it back to in_progress (proof rejected).
- Crews act on jobs assigned to them, contractors on jobs sent to them (`own=False` refuses).
- Inbound contractor updates are checked with role "contractor"; when a contractor skips steps
  (sent → completed), `plan` gives the in-between statuses to record.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

STATUSES = ("triage", "new", "assigned", "sent", "accepted", "scheduled", "in_progress", "on_hold",
            "completed", "closed", "cancelled", "duplicate")
# Tuples (lifecycle order) so they drop straight into SQL `IN (...)` with a stable statement.
OPEN_STATUSES = ("triage", "new", "assigned", "sent", "accepted", "scheduled", "in_progress", "on_hold")
FINISHED_STATUSES = ("closed", "cancelled", "duplicate")
ROLES = ("field_worker", "crew", "advisor", "supervisor", "contractor", "system", "admin")
OWN_JOB_ROLES = frozenset({"crew", "contractor"})

EXTENDED_STATUSES = ("open", "investigating", "action_scheduled", "in_progress", "fixed", "closed", "duplicate",
                     "not_councils_responsibility", "no_further_action", "internal_referral")


@dataclass(frozen=True)
class Move:
    """One allowed edge: its action name and the roles that may take it."""

    action: str
    roles: frozenset[str]


_SUP = frozenset({"supervisor", "admin"})
_SYS = _SUP | {"system"}
_WORKERS = _SUP | {"crew", "contractor"}


def _table() -> dict[tuple[str, str], Move]:
    t = {
        ("triage", "new"): Move("triage", _SYS),
        ("new", "assigned"): Move("assign", _SYS),
        ("new", "sent"): Move("send", _SYS),
        ("assigned", "accepted"): Move("accept", _SUP | {"crew"}),
        ("sent", "accepted"): Move("accept", _SUP | {"contractor"}),
        ("assigned", "new"): Move("decline", _SUP | {"crew"}),
        ("sent", "new"): Move("reject", _SYS | {"contractor"}),  # system: delivery gave up
        ("accepted", "scheduled"): Move("schedule", _WORKERS),
        ("accepted", "in_progress"): Move("start", _WORKERS),
        ("scheduled", "in_progress"): Move("start", _WORKERS),
        ("in_progress", "on_hold"): Move("hold", _WORKERS),
        ("on_hold", "in_progress"): Move("resume", _WORKERS),
        ("in_progress", "completed"): Move("complete", _WORKERS),
        ("completed", "closed"): Move("close", _SYS),
        ("completed", "in_progress"): Move("reject_completion", _SUP),
    }
    for status in OPEN_STATUSES:
        t[(status, "cancelled")] = Move("cancel", _SYS)
        t[(status, "duplicate")] = Move("mark_duplicate", _SYS)
    for status in FINISHED_STATUSES:
        t[(status, "new")] = Move("reopen", frozenset({"supervisor"}))
    return t


TRANSITIONS: dict[tuple[str, str], Move] = _table()


class InvalidTransition(ValueError):
    """A move the lifecycle does not allow, for this role; `reason` says why in plain words."""

    code = "invalid-transition"

    def __init__(self, from_status: str, to_status: str, role: str, reason: str):
        super().__init__(f"{from_status} → {to_status} by {role}: {reason}")
        self.from_status = from_status
        self.to_status = to_status
        self.role = role
        self.reason = reason


def check_transition(from_status: str, to_status: str, role: str, *, own: bool = True) -> None:
    """Allow the move or raise InvalidTransition; `own` says whether the crew/contractor holds the job."""
    def fail(reason: str) -> InvalidTransition:
        return InvalidTransition(from_status, to_status, role, reason)

    for status in (from_status, to_status):
        if status not in STATUSES:
            raise fail(f"unknown status {status!r}")
    if role not in ROLES:
        raise fail(f"unknown role {role!r}")
    if from_status == to_status:
        raise fail(f"the job is already {from_status}")
    move = TRANSITIONS.get((from_status, to_status))
    if move is None:
        if from_status in FINISHED_STATUSES:
            raise fail(f"a {from_status} job can only be reopened (to new) by a supervisor")
        raise fail(f"a job cannot go from {from_status} to {to_status}")
    if role not in move.roles:
        raise fail(f"a {role.replace('_', ' ')} may not {move.action.replace('_', ' ')} a job")
    if role in OWN_JOB_ROLES and not own:
        raise fail("the job is not assigned to you")


def is_allowed(from_status: str, to_status: str, role: str, *, own: bool = True) -> bool:
    """True if check_transition would pass."""
    try:
        check_transition(from_status, to_status, role, own=own)
    except InvalidTransition:
        return False
    return True


def action_for(from_status: str, to_status: str) -> str:
    """The action name of a move ("accept", "hold", "reopen"…), for event types; KeyError if none."""
    return TRANSITIONS[(from_status, to_status)].action


def allowed_targets(status: str, role: str) -> list[str]:
    """Statuses this role may move a job to from `status` (for buttons), in lifecycle order."""
    return [s for s in STATUSES if (m := TRANSITIONS.get((status, s))) and role in m.roles]


def plan(from_status: str, to_status: str, role: str) -> list[str]:
    """Shortest chain of statuses (excluding the start) this role can take to reach `to_status`.

    For contractor updates that skip steps. Never routes through cancel, duplicate or reopen.
    Raises InvalidTransition when there is no way.
    """
    if from_status == to_status:
        return []
    skip = {"cancel", "mark_duplicate", "reopen"}
    came: dict[str, str | None] = {from_status: None}
    queue = deque([from_status])
    while queue:
        here = queue.popleft()
        for there in allowed_targets(here, role):
            if there in came or (TRANSITIONS[(here, there)].action in skip and there != to_status):
                continue
            came[there] = here
            if there == to_status:
                path = [there]
                while (prev := came[path[-1]]) != from_status:
                    path.append(prev)
                return path[::-1]
            queue.append(there)
    raise InvalidTransition(from_status, to_status, role, f"no way from {from_status} to {to_status} for a {role}")


def open311_status(status: str) -> str:
    """Open311 GeoReport v2 status: "open" or "closed"."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return "open" if status in OPEN_STATUSES else "closed"


_EXTENDED = {
    "triage": "investigating", "new": "open", "assigned": "open", "sent": "open",
    "accepted": "action_scheduled", "scheduled": "action_scheduled",
    "in_progress": "in_progress", "on_hold": "in_progress",
    "completed": "fixed", "closed": "fixed",  # closed only ever follows completed
    "cancelled": "closed", "duplicate": "duplicate",
}
_CANCEL_REASONS = frozenset({"not_councils_responsibility", "no_further_action", "internal_referral"})


def extended_status(status: str, reason: str | None = None) -> str:
    """Open311 extended status; a cancelled job may carry a reason (e.g. not_councils_responsibility)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if status == "cancelled" and reason in _CANCEL_REASONS:
        return reason
    return _EXTENDED[status]


def describe_status(status: str, assignee: str | None = None) -> str:
    """Plain words for advisers: describe_status("sent", "the street lighting contractor")."""
    who = assignee or "the team"
    words = {
        "triage": "Being checked by a supervisor before it is passed on",
        "new": "Logged and waiting to be passed to a team",
        "assigned": f"With {who}",
        "sent": f"With {who}, waiting for them to accept it",
        "accepted": f"Accepted by {who}",
        "scheduled": f"Booked in by {who}",
        "in_progress": f"{who[0].upper()}{who[1:]} {'is' if assignee else 'are'} working on it",
        "on_hold": f"On hold with {who}; the target date moves while it waits",
        "completed": f"Fixed by {who}; waiting to be signed off",
        "closed": "Fixed and closed",
        "cancelled": "Closed with no further action",
        "duplicate": "Joined to an existing report of the same problem",
    }
    if status not in words:
        raise ValueError(f"unknown status {status!r}")
    return words[status]
