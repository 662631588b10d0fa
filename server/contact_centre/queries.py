"""Reads behind the dashboard: board rows with SLA state, the one-box search, events for the live stream."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from server.areas.models import Area
from server.assets.models import Asset, AssetLayer
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor, Crew
from server.geo import lonlat_of
from server.jobs import rules, sla
from server.jobs.access import visible
from server.jobs.models import Job, JobEvent
from server.jobs.service import iso
from server.jobs.views import jobs_named_by, summary_row, summary_select

BOARD_LIMIT = 500
FIND_LIMIT = 50


def sla_state(job: Job, now: datetime) -> str:
    """ok, at_risk or breached for open jobs; paused on hold; stopped once finished."""
    if job.status not in rules.OPEN_STATUSES:
        return "stopped"
    if job.status == "on_hold":
        return "paused"
    if job.due_at is None:
        return "none"
    return sla.status_of(job.due_at, now, job.sla_started_at)


def board_row(row, now: datetime | None = None) -> dict:
    """A summary row plus SLA state and the due date in words."""
    now = now or datetime.now(timezone.utc)
    job: Job = row.Job
    out = summary_row(row)
    out["sla_state"] = sla_state(job, now)
    out["due_in_words"] = sla.describe_due(job.due_at, now, get_settings().timezone) if job.due_at else None
    return out


def board(session: Session, who: Principal, *, category: str | None = None, ward: str | None = None,
          status: str | None = None, assignee: str | None = None, limit: int = BOARD_LIMIT) -> dict:
    """Open jobs (or one status) matching the filters, soonest due first."""
    q = summary_select().where(visible(who))
    if status and status not in ("open", "overdue", "at_risk"):
        q = q.where(Job.status == status)
    else:
        q = q.where(Job.status.in_(rules.OPEN_STATUSES))
    now = datetime.now(timezone.utc)
    if status == "overdue":
        q = q.where(Job.due_at < now, Job.status != "on_hold")
    if status == "at_risk":
        q = q.where(Job.risk_at <= now, Job.due_at >= now, Job.status != "on_hold")
    if category:
        q = q.where(Job.category_code == category)
    if ward:
        q = q.where(Area.name == ward)
    if assignee == "none":
        q = q.where(Job.crew_id.is_(None), Job.contractor_id.is_(None))
    elif assignee:
        q = q.where(or_(Crew.name == assignee, Contractor.name == assignee))
    total = session.scalar(select(func.count()).select_from(q.order_by(None).subquery()))
    rows = session.execute(q.order_by(Job.due_at.asc().nulls_last(), Job.id).limit(limit)).all()
    return {"total": total, "items": [board_row(r, now) for r in rows]}


def find(session: Session, who: Principal, text: str) -> dict:
    """Jobs matching a job/report reference, asset or contractor reference, or street; and matching assets."""
    term = " ".join(text.split())
    if not term:
        return {"query": term, "jobs": [], "assets": []}
    low = term.lower()
    q = summary_select().where(visible(who), Job.id.in_(jobs_named_by(term)))
    is_open = case((Job.status.in_(rules.OPEN_STATUSES), 0), else_=1)
    now = datetime.now(timezone.utc)
    jobs = [board_row(r, now) for r in session.execute(
        q.order_by(is_open, Job.created_at.desc(), Job.id.desc()).limit(FIND_LIMIT)).all()]
    lon, lat = lonlat_of(Asset.geom)
    open_jobs = (select(func.count()).select_from(Job)
                 .where(Job.asset_id == Asset.id, Job.status.in_(rules.OPEN_STATUSES)).scalar_subquery())
    assets = session.execute(
        select(Asset.external_ref, Asset.name, Asset.street, AssetLayer.name.label("layer"),
               AssetLayer.title.label("layer_title"), Area.name.label("ward"), lon.label("lon"), lat.label("lat"),
               open_jobs.label("open_jobs"))
        .join(AssetLayer, AssetLayer.id == Asset.layer_id).outerjoin(Area, Area.id == Asset.ward_id)
        .where(func.lower(Asset.external_ref) == low).order_by(AssetLayer.name).limit(10)).all()
    return {"query": term, "jobs": jobs, "assets": [
        {"ref": a.external_ref, "name": a.name, "street": a.street, "layer": a.layer, "layer_title": a.layer_title,
         "ward": a.ward, "lat": round(a.lat, 6), "lon": round(a.lon, 6), "open_jobs": a.open_jobs} for a in assets]}


def _event_select():
    return summary_select().add_columns(
        JobEvent.id.label("event_id"), JobEvent.type.label("event_type"), JobEvent.at.label("event_at"),
        JobEvent.actor.label("event_actor"), JobEvent.actor_role.label("event_role"),
        JobEvent.before.label("event_before"), JobEvent.after.label("event_after"),
    ).join(JobEvent, JobEvent.job_id == Job.id)


def _event(row, now: datetime) -> dict:
    return {"id": row.event_id, "type": row.event_type, "at": iso(row.event_at), "actor": row.event_actor,
            "actor_role": row.event_role, "before": row.event_before, "after": row.event_after,
            "job": board_row(row, now),
            # Used to decide who may receive it; stripped before sending.
            "_contractor_id": row.Job.contractor_id, "_crew_id": row.Job.crew_id}


def events_by_id(session: Session, ids: list[int]) -> list[dict]:
    """Events (with their job's current row) for these ids, in id order."""
    now = datetime.now(timezone.utc)
    rows = session.execute(_event_select().where(JobEvent.id.in_(ids)).order_by(JobEvent.id)).all()
    return [_event(r, now) for r in rows]


def events_after(session: Session, who: Principal, after: int, limit: int) -> list[dict]:
    """Events the caller may see with id > after, oldest first, at most `limit`."""
    now = datetime.now(timezone.utc)
    rows = session.execute(_event_select().where(JobEvent.id > after, visible(who))
                           .order_by(JobEvent.id).limit(limit)).all()
    return [_event(r, now) for r in rows]


def last_event_id(session: Session) -> int:
    """The newest job event id (0 when there are none)."""
    return session.scalar(select(func.coalesce(func.max(JobEvent.id), 0)))
