"""Moving a job between statuses: the one place that applies rules.py and keeps the SLA clock right."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from server import events
from server.config import get_settings
from server.deps import Principal
from server.errors import DomainError
from server.jobs import rules, sla
from server.jobs.models import Job, JobEvent
from server.jobs.service import append_event, iso

AT_RISK_SHARE = 0.8


def _role(who: Principal | str) -> str:
    return who.role if isinstance(who, Principal) else "system"


def owns(job: Job, who: Principal | str) -> bool:
    """True when a crew or contractor caller holds this job (others are judged by role alone)."""
    if not isinstance(who, Principal):
        return True
    if who.role == "crew":
        return who.crew_id is not None and job.crew_id == who.crew_id
    if who.role == "contractor":
        return who.contractor_id is not None and job.contractor_id == who.contractor_id
    return True


def set_due(job: Job, due: datetime | None) -> None:
    """Store a deadline and when the job becomes at risk; a later deadline re-arms the sweep's flags."""
    now = datetime.now(timezone.utc)
    job.due_at = due
    if due is None:
        job.risk_at = None
        return
    job.risk_at = risk_at_for(job.sla_started_at, due)
    if due > now:
        job.breached_at = None
        if job.risk_at > now:
            job.at_risk_at = None


def risk_at_for(started: datetime, due: datetime) -> datetime:
    """When a job with this clock becomes at risk: the AT_RISK_SHARE point of its allowed time."""
    return started + (due - started) * AT_RISK_SHARE


def recompute_due(job: Job) -> None:
    """Deadline from the job's policy, start and paused time (after a hold or a policy change)."""
    s = get_settings()
    set_due(job, sla.due_at(job.sla_policy, job.sla_started_at, tz=s.timezone, country=s.holiday_country,
                            subdiv=s.holiday_subdivision, paused_seconds=job.paused_seconds))


def move(session: Session, job: Job, to: str, who: Principal | str, *, note: str | None = None,
         data: dict[str, Any] | None = None, geom: Any = None, at: datetime | None = None) -> JobEvent:
    """Apply one lifecycle move or raise 409 `invalid-transition`; records a status_changed event."""
    role = _role(who)
    try:
        rules.check_transition(job.status, to, role, own=owns(job, who))
    except rules.InvalidTransition as exc:
        raise DomainError(exc.reason, fields=["status"], code="invalid-transition", status=409,
                          extra={"from": exc.from_status, "to": exc.to_status}) from None
    now = at or datetime.now(timezone.utc)
    before = {"status": job.status, "due_at": iso(job.due_at)}
    s = get_settings()
    if job.status == "on_hold" and job.on_hold_since is not None:
        # The clock stopped while on hold: push the deadline out by the held (working) time.
        job.paused_seconds += sla.paused_seconds_for(job.sla_policy, job.on_hold_since, now, tz=s.timezone,
                                                     country=s.holiday_country, subdiv=s.holiday_subdivision)
        job.on_hold_since = None
        recompute_due(job)
    if to == "on_hold":
        job.on_hold_since = now
    if to == "completed":
        job.resolved_at = now
    if to in ("closed", "cancelled", "duplicate"):
        job.closed_at = now
        job.resolved_at = job.resolved_at or now
    if to == "new" and job.status in rules.FINISHED_STATUSES:  # reopened
        job.closed_at = job.resolved_at = None
    if to == "in_progress" and job.status == "completed":
        job.resolved_at = None
    job.status = to
    job.updated_at = now
    after = {"status": to, "due_at": iso(job.due_at)}
    event = append_event(session, job, events.STATUS_CHANGED, who, before=before, after=after,
                         data={"action": rules.action_for(before["status"], to), **(data or {})}, note=note,
                         geom=geom, at=now)
    from server.notifications.service import on_status_changed  # reporters' messages, in this transaction

    on_status_changed(session, job, event)
    return event
