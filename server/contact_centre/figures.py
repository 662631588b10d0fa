"""Figures councils report, for a period of local dates [start, end].

- SLA compliance: of the jobs *fixed* in the period (resolved_at in the period and now completed or
  closed — cancelled and duplicate jobs are not fixes), the share fixed by their due time. due_at
  already includes time on hold, so a job held waiting for a part is not counted late for it.
  Grouped by category and by who had the job (contractor, in-house crew, or nobody).
- Median time to fix: the median of resolved_at - created_at over the same fixed jobs (hours).
- Repeat reports per job (avoidable contact): reports received in the period, the distinct jobs they
  went to, and how many were repeats — reports that joined a job someone had already reported.
- Resolved at first contact: of the contact-centre contacts (reports logged by advisers) in the
  period, the share after which nobody had to contact us again about the same job — no later report
  on that job from a public channel (contact centre, Open311/web). A caller who rings back, or a
  second caller reporting the same fault, counts against the first contact.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, exists, func, literal, select
from sqlalchemy.orm import Session, aliased

from server.config import get_settings
from server.dispatch.models import Contractor, Crew
from server.jobs.models import Job
from server.notifications.avoidable import avoidable_contact
from server.reports.models import Report

FIXED = ("completed", "closed")
PUBLIC_CHANNELS = ("contact_centre", "open311", "web")
DEFINITIONS = {
    "sla_compliance": "Jobs fixed in the period (completed or closed; not cancelled or duplicate) whose "
                      "resolved time was at or before their due time (which already allows for time on hold).",
    "median_time_to_fix": "Median of resolved time minus logged time over the same fixed jobs, in hours.",
    "repeat_reports": "Reports received in the period; a repeat is a report that joined a job someone had "
                      "already reported. Reports per job = reports / distinct jobs they went to.",
    "first_contact_resolution": "Contact-centre reports in the period after which no later report on the same "
                                "job came from a public channel (contact centre, Open311/web): nobody had to "
                                "contact us again about it.",
}


def period(start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC instants bounding local days start..end inclusive."""
    zone = ZoneInfo(get_settings().timezone)
    return (datetime.combine(start, time(0), tzinfo=zone),
            datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone))


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _hours(seconds) -> float | None:
    return round(float(seconds) / 3600.0, 1) if seconds is not None else None


def _sla_rows(session: Session, since: datetime, until: datetime, key) -> list[dict]:
    took = func.extract("epoch", Job.resolved_at - Job.created_at)
    on_time = func.count().filter(Job.resolved_at <= Job.due_at)
    q = (select(key.label("key"), func.count().label("fixed"), on_time.label("on_time"),
                func.percentile_cont(0.5).within_group(took).label("median_s"))
         .select_from(Job).outerjoin(Contractor, Contractor.id == Job.contractor_id)
         .outerjoin(Crew, Crew.id == Job.crew_id)
         .where(Job.status.in_(FIXED), Job.resolved_at >= since, Job.resolved_at < until)
         .group_by(key).order_by(key))
    return [{"name": r.key, "fixed": r.fixed, "on_time": r.on_time, "sla_percent": _pct(r.on_time, r.fixed),
             "median_hours_to_fix": _hours(r.median_s)} for r in session.execute(q)]


def _repeats(session: Session, since: datetime, until: datetime) -> dict:
    earlier = aliased(Report)
    repeat = exists(select(earlier.id).where(earlier.job_id == Report.job_id, earlier.id < Report.id))
    row = session.execute(
        select(func.count().label("reports"), func.count(func.distinct(Report.job_id)).label("jobs"),
               func.count().filter(repeat).label("repeats"))
        .where(Report.received_at >= since, Report.received_at < until)).one()
    return {"reports": row.reports, "jobs": row.jobs, "repeat_reports": row.repeats,
            "reports_per_job": round(row.reports / row.jobs, 2) if row.jobs else None,
            "repeat_percent": _pct(row.repeats, row.reports)}


def _first_contact(session: Session, since: datetime, until: datetime) -> dict:
    later = aliased(Report)
    again = exists(select(later.id).where(later.job_id == Report.job_id, later.id > Report.id,
                                          later.channel.in_(PUBLIC_CHANNELS)))
    row = session.execute(
        select(func.count().label("contacts"), func.count().filter(~again).label("resolved"))
        .where(Report.channel == "contact_centre", Report.received_at >= since, Report.received_at < until)).one()
    return {"contacts": row.contacts, "resolved_at_first_contact": row.resolved,
            "percent": _pct(row.resolved, row.contacts)}


def figures(session: Session, start: date, end: date) -> dict:
    """Every figure for the period, with the definitions used."""
    since, until = period(start, end)
    who = case((Contractor.title.is_not(None), Contractor.title),
               (Crew.id.is_not(None), literal("In-house crews")), else_=literal("Not assigned"))
    overall = _sla_rows(session, since, until, literal("All jobs"))
    return {
        "from": start.isoformat(), "to": end.isoformat(), "timezone": get_settings().timezone,
        "sla": {"overall": overall[0] if overall else {"name": "All jobs", "fixed": 0, "on_time": 0,
                                                        "sla_percent": None, "median_hours_to_fix": None},
                "by_category": _sla_rows(session, since, until, Job.category_code),
                "by_assignee": _sla_rows(session, since, until, who)},
        "repeat_reports": _repeats(session, since, until),
        "first_contact": _first_contact(session, since, until),
        "avoidable_contact": avoidable_contact(session, since, until),
        "definitions": DEFINITIONS,
    }

