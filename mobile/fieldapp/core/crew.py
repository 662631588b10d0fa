"""Crew moves on a job, queued through the same outbox as reports (so they work offline)."""
from __future__ import annotations

from .models import JOB_STATUS, SENDING, WAITING, Fix, QueueItem
from .outbox import Outbox

# How a crew gets from a job's status to "in progress".
_START = {"assigned": ["accepted", "in_progress"], "accepted": ["in_progress"], "scheduled": ["in_progress"],
          "on_hold": ["in_progress"]}


class CrewError(ValueError):
    """A move the app will not queue (missing evidence, wrong state)."""


def _where(fix: Fix | None) -> dict:
    if fix is None:
        return {}
    return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7), "accuracy_m": fix.accuracy_m}


def effective_status(outbox: Outbox, job: dict) -> tuple[str, bool]:
    """(status the job will have once queued moves are sent, whether some are still unsent)."""
    pending = [i for i in outbox.items(kind=JOB_STATUS, states=(WAITING, SENDING)) if i.target == job["reference"]]
    if not pending:
        return job["status"], False
    return max(pending, key=lambda i: i.id).payload["status"], True


def can_start(status: str) -> bool:
    """Whether Start makes sense from this status."""
    return status in _START


def start(outbox: Outbox, job: dict, fix: Fix | None, note: str | None = None) -> list[QueueItem]:
    """Queue the moves to 'in progress' (accept first when the job is only assigned)."""
    status, _ = effective_status(outbox, job)
    steps = _START.get(status)
    if not steps:
        raise CrewError(f"a {status.replace('_', ' ')} job cannot be started")
    return [outbox.add_job_status(job["reference"], {"status": s, "note": note, **_where(fix)}) for s in steps]


def complete(outbox: Outbox, job: dict, fix: Fix | None, photos: list[str], note: str | None = None) -> QueueItem:
    """Queue the completion with its photo(s) and GPS fix (both required, as the server requires)."""
    status, _ = effective_status(outbox, job)
    if status != "in_progress":
        raise CrewError("start the job before completing it")
    if fix is None:
        raise CrewError("a completion needs a GPS fix: wait for one")
    if not photos:
        raise CrewError("a completion needs a photo of the finished work")
    return outbox.add_job_status(job["reference"], {"status": "completed", "note": note, **_where(fix)}, photos)
