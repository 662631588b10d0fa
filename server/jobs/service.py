"""Job use-case helpers: references, the append-only timeline, and the summary callers see."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, text
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
    return append_events(session, job, [dict(type=type_, actor=actor, before=before, after=after, data=data,
                                             note=note, geom=geom, at=at, notify=notify)])[0]


def append_events(session: Session, job: Job, specs: list[dict]) -> list[JobEvent]:
    """Add several events in one INSERT (a use case's timeline entries), then publish and fan out each.

    Each spec takes append_event's keywords: type, actor, before, after, data, note, geom, at, notify.
    """
    from server.contact_centre.webhooks import fan_out  # CRM webhooks: outbox rows in this transaction

    now = datetime.now(timezone.utc)
    rows = []
    for spec in specs:
        actor = spec["actor"]
        name, role = (actor.actor, actor.role) if isinstance(actor, Principal) else (actor, "system")
        rows.append({"job_id": job.id, "type": spec["type"], "actor": name, "actor_role": role,
                     "before": spec.get("before"), "after": spec.get("after"), "data": spec.get("data") or {},
                     "note": spec.get("note"), "geom": spec.get("geom"), "at": spec.get("at") or now})
    # Geometry given as EWKT text (or none) batches into one INSERT; a SQL expression needs its own.
    ids: list[int | None] = []
    for row in rows:
        expr = row["geom"] is not None and not isinstance(row["geom"], str)
        ids.append(session.execute(insert(JobEvent).values(**row).returning(JobEvent.id)).scalar_one()
                   if expr else None)
    plain = [r for r, i in zip(rows, ids) if i is None]
    if plain:
        got = iter(session.execute(insert(JobEvent).returning(JobEvent.id, sort_by_parameter_order=True),
                                   plain).scalars().all())
        ids = [i if i is not None else next(got) for i in ids]
    made = []
    for spec, row, ev_id in zip(specs, rows, ids):
        ev = JobEvent(id=ev_id, **{k: v for k, v in row.items() if k != "geom"})
        if spec.get("notify", True):
            events.publish(session, job.reference, ev_id, ev.type, job.status)
        fan_out(session, job, ev)
        made.append(ev)
    return made


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    return dt.isoformat() if dt else None
