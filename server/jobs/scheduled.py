"""The SLA sweep (worker, every minute): flag jobs at risk and breached, each exactly once.

Each flag is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` (then one INSERT of the
batch's events and one statement queueing its NOTIFYs), driven by a
partial index holding only jobs not yet flagged (ix_jobs_risk_pending, ix_jobs_breach_pending): the
cost follows the jobs whose deadline has come, not the number of healthy open jobs. Two workers never
flag a job twice: a row one of them holds is skipped by the other, and a row it already flagged no
longer matches. Jobs on hold are left alone (their clock is stopped; resuming moves the deadline).
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from server import events
from server import models as _tables  # noqa: F401  (every table mapped, whoever imports this first)
from server.db import new_session
from server.jobs.models import Job, JobEvent
from server.jobs.rules import OPEN_STATUSES
from server.jobs.service import iso

log = logging.getLogger("kerbside.sla")
SWEPT_STATUSES = tuple(s for s in OPEN_STATUSES if s != "on_hold")
# Rows per statement. Locks are held to the sweep's one commit whatever the batch; a small batch only adds
# round trips, and re-walks the partial index past the rows earlier batches flagged in this transaction.
BATCH = 5000
# flag kind → (event type, "flagged at" column, deadline column)
KINDS = {
    "at_risk": ("sla_at_risk", Job.at_risk_at, Job.risk_at),
    "breached": ("sla_breached", Job.breached_at, Job.due_at),
}


def pending_query(kind: str, now: datetime, limit: int = BATCH):
    """SELECT of the jobs to flag (locked, skipping rows another worker holds), oldest deadline first."""
    _, flagged, deadline = KINDS[kind]
    return (select(Job.id).where(flagged.is_(None), deadline <= now, Job.status.in_(SWEPT_STATUSES))
            .order_by(deadline).limit(limit).with_for_update(skip_locked=True))


_INSERT_EVENTS = text("""
    INSERT INTO job_events (job_id, type, actor, actor_role, at, after, data)
    SELECT e.job_id, :type, 'system:sla', 'system', :at, e.after, e.data
      FROM unnest(CAST(:job_ids AS bigint[]), CAST(:afters AS jsonb[]), CAST(:datas AS jsonb[]))
           WITH ORDINALITY AS e(job_id, after, data, n)
     ORDER BY e.n
    RETURNING job_id, id""")


def _flag(session: Session, kind: str, now: datetime) -> list[str]:
    """One batch, set-based: flag up to BATCH jobs, write their events in one INSERT, queue their NOTIFYs in one
    statement (three statements per batch, however many jobs cross; no per-row round trips)."""
    event_type, flagged, deadline = KINDS[kind]
    table = Job.__table__
    stmt = (update(table).where(table.c.id.in_(pending_query(kind, now).scalar_subquery()))
            .values({flagged.key: now})
            .returning(table.c.id, table.c.reference, table.c.status, table.c.due_at, table.c.risk_at,
                       table.c.sla_started_at))
    rows = session.execute(stmt).all()
    if not rows:
        return []
    rows.sort(key=lambda r: (getattr(r, deadline.key), r.id))  # events in deadline order, as the batch was picked
    # One INSERT of the batch from arrays (7 parameters, not 7 per row).
    event_ids = dict(session.execute(_INSERT_EVENTS, {
        "job_ids": [r.id for r in rows], "type": event_type, "at": now,
        "afters": [json.dumps({flagged.key: iso(now)})] * len(rows),
        "datas": [json.dumps({"due_at": iso(r.due_at), "risk_at": iso(r.risk_at), "started_at": iso(r.sla_started_at)})
                  for r in rows]}).all())
    events.publish_many(session, [(r.reference, event_ids[r.id], event_type, r.status) for r in rows])
    return [r.reference for r in rows]


def sweep_sla(session: Session, now: datetime | None = None) -> dict:
    """Flag at-risk and breached jobs once each; returns their references. The caller commits."""
    now = now or datetime.now(timezone.utc)
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        refs: list[str] = []
        while True:
            batch = _flag(session, kind, now)
            refs += batch
            if len(batch) < BATCH:
                break
        out[kind] = refs
    # Loaded jobs must not keep stale copies of the columns changed behind the ORM's back.
    session.expire_all()
    return out


def timed_sweep(session: Session) -> dict:
    """One sweep, its run time recorded on this worker's heartbeat row for /metrics; the caller commits."""
    from server.metrics import record_run

    started = time.perf_counter()
    result = sweep_sla(session)
    record_run(session, "sla_sweep", time.perf_counter() - started)
    return result


def run_sla_sweep() -> dict:
    """The worker's periodic job: one sweep, one commit."""
    with new_session() as session:
        result = timed_sweep(session)
        session.commit()
    if result["at_risk"] or result["breached"]:
        log.info("SLA sweep: %d at risk, %d breached", len(result["at_risk"]), len(result["breached"]))
    return result
