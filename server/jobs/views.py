"""How a job reads to API callers: summary rows and the full page with timeline and SLA."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, func, select, union
from sqlalchemy.orm import Session

from server.areas.models import Area
from server.assets.models import Asset, AssetLayer
from server.config import get_settings
from server.dispatch.models import Contractor, Crew
from server.geo import lonlat_of
from server.jobs import rules, sla
from server.jobs.models import Job, JobEvent
from server.jobs.service import iso
from server.reports.models import Photo, Report
from server.reports.photos import photo_view


def street_holds(term: str):
    """The job's street holds `term` in any case, as typed: `%`, `_` and `\\` are no wildcards."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Job.street.ilike(f"%{escaped}%", escape="\\")


def jobs_named_by(term: str, *, exact: bool = False):
    """Ids of the jobs a search term names: its job or report reference (upper case), its asset's or its
    contractor's reference (in any case; `exact`: as typed), or a part of its street (street_holds).

    Each way of matching is a SELECT on its own index (migration 0020) and the jobs are their union: an OR
    across them would read every job (0.65-1.7 s at 1M jobs)."""
    def ref(col):
        if exact:  # lower() only lets ix_assets_external_ref_lower / ix_jobs_contractor_ref_lower serve it
            return and_(func.lower(col) == func.lower(term), col == term)
        return func.lower(col) == term.lower()

    return union(
        select(Job.id).where(Job.reference == term.upper()),
        select(Report.job_id).where(Report.reference == term.upper()),
        select(Job.id).join(Asset, Asset.id == Job.asset_id).where(ref(Asset.external_ref)),
        select(Job.id).where(ref(Job.contractor_ref)),
        select(Job.id).where(street_holds(term)))


def sla_view(job, now: datetime) -> dict:
    """The page's SLA block; `job` is a Job or any row with its due_at, sla_policy, paused_seconds,
    on_hold_since, sla_started_at and status."""
    s = get_settings()
    out = {"due_at": iso(job.due_at), "policy": job.sla_policy, "paused_seconds": job.paused_seconds,
           "on_hold_since": iso(job.on_hold_since), "started_at": iso(job.sla_started_at)}
    if job.due_at is not None:
        remaining = sla.remaining(job.due_at, now)
        out.update(remaining_seconds=int(remaining.total_seconds()),
                   state=sla.status_of(job.due_at, now, job.sla_started_at) if job.status in rules.OPEN_STATUSES
                   else "stopped",
                   due_in_words=sla.describe_due(job.due_at, now, s.timezone))
    return out


def summary_select():
    """One SELECT giving everything a job list row needs (no per-row queries)."""
    lon, lat = lonlat_of(Job.geom)
    return (
        select(Job, lon.label("lon"), lat.label("lat"), Asset.external_ref.label("asset_ref"),
               Asset.name.label("asset_name"), AssetLayer.name.label("layer"), Area.name.label("ward"),
               Crew.name.label("crew"), Crew.title.label("crew_title"), Contractor.name.label("contractor"),
               Contractor.title.label("contractor_title"))
        .outerjoin(Asset, Asset.id == Job.asset_id).outerjoin(AssetLayer, AssetLayer.id == Asset.layer_id)
        .outerjoin(Area, Area.id == Job.ward_id).outerjoin(Crew, Crew.id == Job.crew_id)
        .outerjoin(Contractor, Contractor.id == Job.contractor_id)
    )


def summary_row(row) -> dict:
    """A list row from one result of summary_select()."""
    return summary_fields(row.Job, row)


def summary_fields(job, row) -> dict:
    """A list row from the job's columns (`job`: a Job, or a row with the same names) and the joined names of
    summary_select() (`row`: lon, lat, asset_ref, asset_name, layer, ward, crew, crew_title, contractor,
    contractor_title)."""
    if row.contractor:
        assignee = {"kind": "contractor", "name": row.contractor, "title": row.contractor_title,
                    "reference": job.contractor_ref}
    elif row.crew:
        assignee = {"kind": "crew", "name": row.crew, "title": row.crew_title}
    else:
        assignee = None
    return {
        "reference": job.reference, "category": job.category_code, "status": job.status,
        "status_in_words": rules.describe_status(job.status, assignee["title"] if assignee else None),
        "open311_status": rules.open311_status(job.status), "priority": job.priority,
        "asset": {"layer": row.layer, "ref": row.asset_ref, "name": row.asset_name} if row.asset_ref else None,
        "ward": row.ward, "street": job.street, "lat": round(row.lat, 6), "lon": round(row.lon, 6),
        "assignee": assignee, "contractor_ref": job.contractor_ref, "due_at": iso(job.due_at), "demand_count": job.demand_count,
        "triage_reason": job.triage_reason, "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
        "resolved_at": iso(job.resolved_at),
    }


def job_summary(session: Session, job: Job) -> dict:
    """The list row of one job."""
    return summary_row(session.execute(summary_select().where(Job.id == job.id)).one())


def job_page(session: Session, job: Job, *, include_reporters: bool) -> dict:
    """The full job: summary, SLA, timeline (newest first), reports and photos.

    Through the ORM, statement by statement: GET /api/v1/jobs/{reference} answers the same page from one
    statement (jobs.page), and tests/server/test_job_page.py holds the two equal.
    """
    now = datetime.now(timezone.utc)
    out = job_summary(session, job)
    out["sla"] = sla_view(job, now)
    out["description"] = job.description
    if job.asset_id:
        lon, lat = session.execute(select(*lonlat_of(Asset.geom)).where(Asset.id == job.asset_id)).one()
        out["asset"].update(lat=round(lat, 6), lon=round(lon, 6))
    evs = session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id.desc()))
    out["timeline"] = [
        {"id": e.id, "type": e.type, "at": iso(e.at), "actor": e.actor, "actor_role": e.actor_role,
         "before": e.before, "after": e.after, "data": e.data, "note": e.note} for e in evs
    ]
    reps = session.scalars(select(Report).where(Report.job_id == job.id).order_by(Report.id))
    out["reports"] = [
        {"reference": r.reference, "channel": r.channel, "observed_at": iso(r.observed_at),
         "received_at": iso(r.received_at), "description": r.description, "answers": r.answers,
         "lat": r.lat, "lon": r.lon, "accuracy_m": r.accuracy_m, "snap_distance_m": r.snap_distance_m,
         "snap_confidence": r.snap_confidence, **({"reporter": r.reporter} if include_reporters else {})}
        for r in reps
    ]
    photos = session.scalars(select(Photo).where(Photo.job_id == job.id).order_by(Photo.id))
    out["photos"] = [photo_view(p) for p in photos]
    return out


def count(session: Session, q) -> int:
    """Rows a filtered query would return."""
    return session.scalar(select(func.count()).select_from(q.order_by(None).subquery()))
