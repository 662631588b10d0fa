"""The SLA sweep (worker, every minute): flag jobs at risk and breached, each exactly once.

Each batch is one statement: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` feeding the INSERT
of its events and their NOTIFYs (data-modifying CTEs), driven by a
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

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server import events
from server import models as _tables  # noqa: F401  (every table mapped, whoever imports this first)
from server.db import new_session
from server.jobs.models import Job
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


def _iso_sql(col: str) -> str:
    """SQL giving what iso() gives for a timestamptz read in this session: microseconds only when not zero,
    the offset as +HH:MM; NULL stays NULL."""
    return (f"to_char({col}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({col}, 'US') = '000000' THEN '' "
            f"ELSE '.' || to_char({col}, 'US') END || to_char({col}, 'TZH:TZM')")


# One statement per batch, as set-based SQL would do it: flag (the same rows pending_query selects: keep the two
# in step), write one event per flag, queue one NOTIFY per event (events.publish's payload, byte for byte).
_FLAG_SQL = """
WITH f AS (
  UPDATE jobs SET {flag} = :now
   WHERE id IN (SELECT id FROM jobs WHERE {flag} IS NULL AND {deadline} <= :now AND status = ANY(:statuses)
                 ORDER BY {deadline} LIMIT :limit FOR UPDATE SKIP LOCKED)
  RETURNING id, reference, status, due_at, risk_at, sla_started_at, {deadline} AS deadline),
e AS (
  INSERT INTO job_events (job_id, type, actor, actor_role, at, after, data)
  SELECT id, :type, 'system:sla', 'system', :now, CAST(:after AS jsonb),
         jsonb_build_object('due_at', {due}, 'risk_at', {risk}, 'started_at', {started})
    FROM (SELECT * FROM f ORDER BY deadline, id) o
  RETURNING id, job_id),
n AS (
  SELECT f.reference, f.deadline, f.id,
         pg_notify(:channel, '{{"job": ' || to_json(f.reference)::text || ', "event_id": ' || e.id
                   || ', "type": ' || to_json(CAST(:type AS text))::text || ', "status": '
                   || to_json(f.status)::text || '}}') AS queued
    FROM e JOIN f ON f.id = e.job_id)
SELECT reference FROM n ORDER BY deadline, id
"""
_FLAG = {kind: text(_FLAG_SQL.format(flag=flagged.key, deadline=deadline.key, due=_iso_sql("due_at"),
                                     risk=_iso_sql("risk_at"), started=_iso_sql("sla_started_at")))
         for kind, (_, flagged, deadline) in KINDS.items()}


def _flag(session: Session, kind: str, now: datetime) -> list[str]:
    """One batch of up to BATCH jobs flagged, with their events and NOTIFYs, in one statement; their references."""
    event_type, flagged, _ = KINDS[kind]
    return list(session.execute(_FLAG[kind], {
        "now": now, "statuses": list(SWEPT_STATUSES), "limit": BATCH, "type": event_type,
        "after": json.dumps({flagged.key: iso(now)}), "channel": events.CHANNEL}).scalars())


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
