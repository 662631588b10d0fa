"""Job use-case helpers: references, the append-only timeline, and the summary callers see."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from server import events
from server.deps import Principal
from server.jobs.models import Job, JobEvent


def next_reference(session: Session, kind: str) -> str:
    """A new public reference: J-001234 for jobs, R-001234 for reports (short enough to read out)."""
    seq = {"job": ("job_reference_seq", "J"), "report": ("report_reference_seq", "R")}[kind]
    n = session.execute(text(f"SELECT nextval('{seq[0]}')")).scalar_one()
    return f"{seq[1]}-{n:06d}"


def append_event(session: Session, job: Job, type_: str, actor: Principal | str, *,
                 before: dict | None = None, after: dict | None = None, data: dict | None = None,
                 note: str | None = None, geom: Any = None, at: datetime | None = None,
                 notify: bool = True) -> JobEvent:
    """Add one event to a job's timeline and publish it after commit."""
    if isinstance(actor, Principal):
        name, role = actor.actor, actor.role
    else:
        name, role = actor, "system"
    ev = JobEvent(job_id=job.id, type=type_, actor=name, actor_role=role, before=before, after=after,
                  data=data or {}, note=note, geom=geom)
    if at is not None:
        ev.at = at
    session.add(ev)
    session.flush()
    if notify:
        events.publish(session, job.reference, ev.id, type_, job.status)
    from server.contact_centre.webhooks import fan_out  # CRM webhooks: outbox rows in this transaction

    fan_out(session, job, ev)
    return ev


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    return dt.isoformat() if dt else None
